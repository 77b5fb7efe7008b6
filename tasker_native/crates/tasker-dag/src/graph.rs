//! A [`Dag`] with step names: resolving dependency names and naming steps in errors.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use rustc_hash::FxBuildHasher;

use crate::dag::{to_u32, Dag, DagBuilder};
use crate::error::{DagError, GraphError};

/// Step names to indices, borrowing the names (no copies); the first position of a name wins.
#[derive(Debug, Default)]
pub struct NameIndex<'a> {
    map: HashMap<&'a str, u32, FxBuildHasher>,
}

impl<'a> NameIndex<'a> {
    /// An empty index with room for `steps` names.
    pub fn with_capacity(steps: usize) -> Self {
        NameIndex {
            map: HashMap::with_capacity_and_hasher(steps, FxBuildHasher),
        }
    }

    /// Record `name` as step `step`; false (and no change) when the name is already there.
    #[inline]
    pub fn insert(&mut self, name: &'a str, step: u32) -> bool {
        match self.map.entry(name) {
            Entry::Vacant(slot) => {
                slot.insert(step);
                true
            }
            Entry::Occupied(_) => false,
        }
    }

    /// The step called `name`.
    #[inline]
    pub fn get(&self, name: &str) -> Option<u32> {
        self.map.get(name).copied()
    }
}

/// A validated DAG of named steps: step `i` is `names()[i]`; the structure is the [`Dag`] it
/// dereferences to.
#[derive(Debug, Clone)]
pub struct WorkflowGraph {
    names: Vec<String>,
    /// Built on the first `index` call: construction itself only borrows the names.
    index: OnceLock<HashMap<String, u32, FxBuildHasher>>,
    dag: Arc<Dag>,
}

impl WorkflowGraph {
    /// Validate and build a graph; `dependencies[i]` names the steps that step `i` depends on.
    ///
    /// Checks run in this order, each over every step before the next: duplicate names, unknown
    /// dependencies, self-dependencies, cycles (see [`GraphError`] for which instance is named).
    pub fn new<D, S>(names: Vec<String>, dependencies: &[D]) -> Result<Self, GraphError>
    where
        D: AsRef<[S]>,
        S: AsRef<str>,
    {
        let n = names.len();
        if n != dependencies.len() {
            return Err(GraphError::LengthMismatch {
                names: n,
                dependencies: dependencies.len(),
            });
        }
        let mut builder = DagBuilder::new(n, n)?;
        let mut index = NameIndex::with_capacity(n);
        for (i, name) in names.iter().enumerate() {
            if !index.insert(name, to_u32(i)) {
                return Err(GraphError::DuplicateStep { step: name.clone() });
            }
        }
        for (step, deps) in dependencies.iter().enumerate() {
            for dep in deps.as_ref() {
                let dep = dep.as_ref();
                let Some(parent) = index.get(dep) else {
                    return Err(GraphError::UnknownDependency {
                        step: names[step].clone(),
                        dependency: dep.to_owned(),
                    });
                };
                builder.depend(parent);
            }
            builder.end_step();
        }
        let dag = builder
            .build()
            .map_err(|err| named_error(err, |i| names[i].clone()))?;
        Ok(WorkflowGraph {
            names,
            index: OnceLock::new(),
            dag: Arc::new(dag),
        })
    }

    /// Step names by index.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The name-free graph, shared with trackers.
    pub fn dag(&self) -> &Arc<Dag> {
        &self.dag
    }

    /// Index of the step called `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        let index = self.index.get_or_init(|| {
            let mut index = HashMap::with_capacity_and_hasher(self.names.len(), FxBuildHasher);
            for (i, name) in self.names.iter().enumerate() {
                index.insert(name.clone(), to_u32(i));
            }
            index
        });
        index.get(name).map(|&i| i as usize)
    }
}

impl Deref for WorkflowGraph {
    type Target = Dag;

    fn deref(&self) -> &Dag {
        &self.dag
    }
}

/// A [`DagError`] with its step indices replaced by `name(index)`.
pub(crate) fn named_error(err: DagError, name: impl Fn(usize) -> String) -> GraphError {
    match err {
        DagError::SelfDependency { step } => GraphError::SelfDependency { step: name(step) },
        DagError::Cycle { path } => GraphError::Cycle {
            path: path.iter().map(|&i| name(i as usize)).collect(),
        },
    }
}
