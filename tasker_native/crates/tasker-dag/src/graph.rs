//! Building and validating a workflow's step graph, and the structural queries on it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::OnceLock;

use rustc_hash::FxBuildHasher;

use crate::error::{GraphError, IndexError};

/// A validated DAG of steps in compressed-sparse-row form.
///
/// Step `i` is `names[i]`. Parents (the steps `i` depends on) and children (the steps depending
/// on `i`) are each one flat array sliced by an offsets array, ascending within a step.
#[derive(Debug, Clone)]
pub struct WorkflowGraph {
    names: Vec<String>,
    /// Built on the first `index` call: construction itself only borrows the names.
    index: OnceLock<HashMap<String, u32, FxBuildHasher>>,
    parent_offsets: Vec<u32>,
    parents: Vec<u32>,
    child_offsets: Vec<u32>,
    children: Vec<u32>,
    order: Vec<u32>,
}

/// Dependency indices in the order the steps list them (repeats dropped), before sorting.
struct Listed {
    offsets: Vec<u32>,
    targets: Vec<u32>,
}

impl Listed {
    fn row(&self, step: usize) -> &[u32] {
        &self.targets[self.offsets[step] as usize..self.offsets[step + 1] as usize]
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("graphs are limited to u32::MAX steps and edges")
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
        if names.len() != dependencies.len() {
            return Err(GraphError::LengthMismatch {
                names: names.len(),
                dependencies: dependencies.len(),
            });
        }
        if u32::try_from(names.len()).is_err() {
            return Err(GraphError::TooLarge { steps: names.len() });
        }
        let index = index_names(&names)?;
        let listed = resolve_dependencies(&names, &index, dependencies)?;
        let n = names.len();

        let parent_offsets = listed.offsets.clone();
        let mut parents = listed.targets.clone();
        for step in 0..n {
            let (a, b) = (
                parent_offsets[step] as usize,
                parent_offsets[step + 1] as usize,
            );
            parents[a..b].sort_unstable();
        }
        let (child_offsets, children) = transpose(n, &parent_offsets, &parents);
        let mut graph = WorkflowGraph {
            names,
            index: OnceLock::new(),
            parent_offsets,
            parents,
            child_offsets,
            children,
            order: Vec::new(),
        };
        graph.order = graph.kahn();
        if graph.order.len() < n {
            let path = find_cycle(&listed)
                .expect("Kahn's algorithm left steps unordered, so the graph has a cycle");
            return Err(GraphError::Cycle {
                path: path
                    .iter()
                    .map(|&i| graph.names[i as usize].clone())
                    .collect(),
            });
        }
        Ok(graph)
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the graph has no steps.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Step names by index.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of distinct (step, parent) edges.
    pub fn edge_count(&self) -> usize {
        self.parents.len()
    }

    /// Index of the step called `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        let index = self.index.get_or_init(|| {
            let mut index = HashMap::with_capacity_and_hasher(self.len(), FxBuildHasher);
            for (i, name) in self.names.iter().enumerate() {
                index.insert(name.clone(), to_u32(i));
            }
            index
        });
        index.get(name).map(|&i| i as usize)
    }

    /// The steps `step` depends on, ascending.
    pub fn parents(&self, step: usize) -> Result<&[u32], IndexError> {
        self.check_index(step)?;
        Ok(self.parents_of(step))
    }

    /// The steps that depend on `step`, ascending.
    pub fn children(&self, step: usize) -> Result<&[u32], IndexError> {
        self.check_index(step)?;
        Ok(self.children_of(step))
    }

    /// Kahn's topological order, smallest ready index first.
    pub fn topological_order(&self) -> &[u32] {
        &self.order
    }

    /// Per step: 0 for a root, else 1 + the largest level among its parents.
    pub fn levels(&self) -> Vec<u32> {
        let mut levels = vec![0u32; self.len()];
        for &step in &self.order {
            let step = step as usize;
            levels[step] = self
                .parents_of(step)
                .iter()
                .map(|&p| levels[p as usize] + 1)
                .max()
                .unwrap_or(0);
        }
        levels
    }

    /// Steps without parents, ascending.
    pub fn roots(&self) -> Vec<u32> {
        (0..self.len())
            .filter(|&i| self.parent_offsets[i] == self.parent_offsets[i + 1])
            .map(to_u32)
            .collect()
    }

    /// Steps without children, ascending.
    pub fn leaves(&self) -> Vec<u32> {
        (0..self.len())
            .filter(|&i| self.child_offsets[i] == self.child_offsets[i + 1])
            .map(to_u32)
            .collect()
    }

    pub(crate) fn check_index(&self, step: usize) -> Result<(), IndexError> {
        if step < self.len() {
            Ok(())
        } else {
            Err(IndexError {
                step,
                len: self.len(),
            })
        }
    }

    #[inline]
    pub(crate) fn parents_of(&self, step: usize) -> &[u32] {
        &self.parents[self.parent_offsets[step] as usize..self.parent_offsets[step + 1] as usize]
    }

    #[inline]
    pub(crate) fn children_of(&self, step: usize) -> &[u32] {
        &self.children[self.child_offsets[step] as usize..self.child_offsets[step + 1] as usize]
    }

    pub(crate) fn parent_count(&self, step: usize) -> u32 {
        self.parent_offsets[step + 1] - self.parent_offsets[step]
    }

    fn kahn(&self) -> Vec<u32> {
        let n = self.len();
        let mut pending: Vec<u32> = (0..n).map(|i| self.parent_count(i)).collect();
        let mut ready: BinaryHeap<Reverse<u32>> = (0..n)
            .filter(|&i| pending[i] == 0)
            .map(|i| Reverse(to_u32(i)))
            .collect();
        let mut order = Vec::with_capacity(n);
        while let Some(Reverse(step)) = ready.pop() {
            order.push(step);
            for &child in self.children_of(step as usize) {
                let left = &mut pending[child as usize];
                *left -= 1;
                if *left == 0 {
                    ready.push(Reverse(child));
                }
            }
        }
        order
    }
}

type NameIndex<'a> = HashMap<&'a str, u32, FxBuildHasher>;

fn index_names(names: &[String]) -> Result<NameIndex<'_>, GraphError> {
    let mut index = HashMap::with_capacity_and_hasher(names.len(), FxBuildHasher);
    for (i, name) in names.iter().enumerate() {
        if index.insert(name.as_str(), to_u32(i)).is_some() {
            return Err(GraphError::DuplicateStep { step: name.clone() });
        }
    }
    Ok(index)
}

fn resolve_dependencies<D, S>(
    names: &[String],
    index: &NameIndex<'_>,
    dependencies: &[D],
) -> Result<Listed, GraphError>
where
    D: AsRef<[S]>,
    S: AsRef<str>,
{
    let n = names.len();
    let mut offsets = Vec::with_capacity(n + 1);
    offsets.push(0u32);
    let mut targets = Vec::new();
    // last_seen[p] == step + 1 when step already listed p: drops repeats without a set per step.
    let mut last_seen = vec![0u32; n];
    let mut first_self: Option<usize> = None;
    for (step, deps) in dependencies.iter().enumerate() {
        let marker = to_u32(step + 1);
        for dep in deps.as_ref() {
            let dep = dep.as_ref();
            let Some(&parent) = index.get(dep) else {
                return Err(GraphError::UnknownDependency {
                    step: names[step].clone(),
                    dependency: dep.to_owned(),
                });
            };
            if parent as usize == step {
                first_self.get_or_insert(step);
            } else if last_seen[parent as usize] != marker {
                last_seen[parent as usize] = marker;
                targets.push(parent);
            }
        }
        offsets.push(to_u32(targets.len()));
    }
    if let Some(step) = first_self {
        return Err(GraphError::SelfDependency {
            step: names[step].clone(),
        });
    }
    Ok(Listed { offsets, targets })
}

/// Children CSR from parents CSR; rows come out ascending because steps are visited in order.
fn transpose(n: usize, parent_offsets: &[u32], parents: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let mut offsets = vec![0u32; n + 1];
    for &p in parents {
        offsets[p as usize + 1] += 1;
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    let mut fill = offsets.clone();
    let mut children = vec![0u32; parents.len()];
    for step in 0..n {
        let row = &parents[parent_offsets[step] as usize..parent_offsets[step + 1] as usize];
        for &p in row {
            let slot = &mut fill[p as usize];
            children[*slot as usize] = to_u32(step);
            *slot += 1;
        }
    }
    (offsets, children)
}

const UNVISITED: u8 = 0;
const ON_PATH: u8 = 1;
const FINISHED: u8 = 2;

/// The cycle the documented depth-first search meets first, as step indices, re-entered step
/// first and last. Iterative, so a 100k-step chain cannot overflow the stack.
fn find_cycle(listed: &Listed) -> Option<Vec<u32>> {
    let n = listed.offsets.len() - 1;
    let mut color = vec![UNVISITED; n];
    let mut depth = vec![0u32; n];
    // The search path: (step, position of the next dependency to follow).
    let mut path: Vec<(u32, usize)> = Vec::new();
    for start in 0..n {
        if color[start] != UNVISITED {
            continue;
        }
        color[start] = ON_PATH;
        path.push((to_u32(start), 0));
        while let Some(top) = path.last_mut() {
            let (step, next) = (top.0 as usize, top.1);
            let row = listed.row(step);
            if next == row.len() {
                color[step] = FINISHED;
                path.pop();
                continue;
            }
            top.1 += 1;
            let dep = row[next] as usize;
            match color[dep] {
                ON_PATH => {
                    let from = depth[dep] as usize;
                    let mut cycle: Vec<u32> = path[from..].iter().map(|&(s, _)| s).collect();
                    cycle.push(to_u32(dep));
                    return Some(cycle);
                }
                UNVISITED => {
                    color[dep] = ON_PATH;
                    depth[dep] = to_u32(path.len());
                    path.push((to_u32(dep), 0));
                }
                _ => {}
            }
        }
    }
    None
}
