//! `WorkflowGraph` and `DependencyTracker`: the graph stays on the Rust side behind an `Arc`,
//! shared with its trackers; calls pass indices and flat columns.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use pyo3::exceptions::{PyIndexError, PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PySequence, PyString, PyTuple};
use rustc_hash::FxBuildHasher;

use tasker_dag::{Dag, DagBuilder, DagError, GraphError, NameIndex, StepColumns};

use crate::errors;

fn step_index(step: i64) -> PyResult<usize> {
    usize::try_from(step)
        .map_err(|_| PyIndexError::new_err(format!("step index {step} is negative")))
}

/// Call `each` on every item of a sequence argument (list and tuple without the generic protocol;
/// a bare str is refused, not read as one item per character).
fn for_each_item<'py>(
    seq: &Bound<'py, PyAny>,
    what: impl FnOnce() -> String,
    mut each: impl FnMut(Bound<'py, PyAny>) -> PyResult<()>,
) -> PyResult<()> {
    if let Ok(list) = seq.cast::<PyList>() {
        return list.iter().try_for_each(each);
    }
    if let Ok(tuple) = seq.cast::<PyTuple>() {
        return tuple.iter().try_for_each(each);
    }
    if seq.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{} must be a sequence of step names, not a str",
            what()
        )));
    }
    let Ok(seq) = seq.cast::<PySequence>() else {
        return Err(PyTypeError::new_err(format!(
            "{} must be a sequence, not {}",
            what(),
            seq.get_type().name()?
        )));
    };
    for item in seq.try_iter()? {
        each(item?)?;
    }
    Ok(())
}

fn step_name(item: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyString>> {
    Ok(item.cast_into::<PyString>()?)
}

/// A validated DAG of steps, built once per task and queried by index.
///
/// Construction borrows the UTF-8 of the Python strings (no copies) and keeps the name objects
/// themselves; the Rust side holds only indices.
#[pyclass(frozen, module = "tasker_core._native")]
pub(crate) struct WorkflowGraph {
    dag: Arc<Dag>,
    names: Vec<Py<PyString>>,
    /// Built on the first `index` call.
    index: OnceLock<HashMap<Box<str>, u32, FxBuildHasher>>,
}

#[pymethods]
impl WorkflowGraph {
    /// Conversion errors (a non-str name, a non-sequence) come first, then the documented
    /// validation order: length, duplicates, unknown dependencies, self-dependencies, cycles.
    #[new]
    fn new(names: &Bound<'_, PyAny>, dependencies: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mut steps: Vec<Bound<'_, PyString>> = Vec::with_capacity(names.len().unwrap_or(0));
        for_each_item(
            names,
            || "names".to_owned(),
            |item| {
                steps.push(step_name(item)?);
                Ok(())
            },
        )?;
        let dag = build_dag(&steps, dependencies)?;
        Ok(WorkflowGraph {
            dag: Arc::new(dag),
            names: steps.into_iter().map(Bound::unbind).collect(),
            index: OnceLock::new(),
        })
    }

    fn __len__(&self) -> usize {
        self.dag.len()
    }

    #[getter]
    fn names<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.names.iter().map(|name| name.bind(py)))
    }

    #[getter]
    fn edge_count(&self) -> usize {
        self.dag.edge_count()
    }

    /// Index of a step name; KeyError if absent.
    fn index(&self, py: Python<'_>, name: &str) -> PyResult<u32> {
        let index = self.index.get_or_init(|| {
            let mut index = HashMap::with_capacity_and_hasher(self.names.len(), FxBuildHasher);
            for (i, step) in self.names.iter().enumerate() {
                // Every name converted when the graph was built, so this borrows, never replaces.
                let step = step
                    .bind(py)
                    .to_string_lossy()
                    .into_owned()
                    .into_boxed_str();
                index.entry(step).or_insert(as_u32(i));
            }
            index
        });
        index
            .get(name)
            .copied()
            .ok_or_else(|| PyKeyError::new_err(name.to_owned()))
    }

    /// Indices step depends on, ascending. IndexError for an index out of range.
    fn parents(&self, step: i64) -> PyResult<Vec<u32>> {
        let step = step_index(step)?;
        self.dag
            .parents(step)
            .map(<[u32]>::to_vec)
            .map_err(errors::index)
    }

    /// Indices that depend on step, ascending.
    fn children(&self, step: i64) -> PyResult<Vec<u32>> {
        let step = step_index(step)?;
        self.dag
            .children(step)
            .map(<[u32]>::to_vec)
            .map_err(errors::index)
    }

    /// Kahn's order, always taking the smallest ready index first (so it is deterministic).
    fn topological_order(&self) -> Vec<u32> {
        self.dag.topological_order().to_vec()
    }

    /// Per step: 0 for a root, else 1 + the largest level among its parents.
    fn levels(&self) -> Vec<u32> {
        self.dag.levels()
    }

    /// Steps without parents, ascending.
    fn roots(&self) -> Vec<u32> {
        self.dag.roots()
    }

    /// Steps without children, ascending.
    fn leaves(&self) -> Vec<u32> {
        self.dag.leaves()
    }

    /// Full readiness solve: the ready steps, ascending.
    #[allow(clippy::too_many_arguments)]
    fn ready(
        &self,
        states: Vec<i64>,
        attempts: Vec<i64>,
        max_attempts: Vec<i64>,
        retryable: Vec<bool>,
        next_retry_at: Vec<f64>,
        leased: Vec<bool>,
        now: f64,
    ) -> PyResult<Vec<u32>> {
        let columns = StepColumns {
            states: &states,
            attempts: &attempts,
            max_attempts: &max_attempts,
            retryable: &retryable,
            next_retry_at: &next_retry_at,
            leased: &leased,
        };
        self.dag.ready(&columns, now).map_err(errors::ready)
    }

    /// Remaining-parent counters for incremental readiness, starting from ``satisfied``.
    #[pyo3(signature = (satisfied = Vec::new()), text_signature = "(self, /, satisfied=())")]
    fn tracker(&self, satisfied: Vec<i64>) -> PyResult<DependencyTracker> {
        let satisfied = satisfied
            .into_iter()
            .map(step_index)
            .collect::<PyResult<Vec<usize>>>()?;
        let tracker = tasker_dag::DependencyTracker::new(Arc::clone(&self.dag), &satisfied)
            .map_err(errors::index)?;
        Ok(DependencyTracker { tracker })
    }

    fn __repr__(&self) -> String {
        format!(
            "<WorkflowGraph {} steps, {} edges>",
            self.dag.len(),
            self.dag.edge_count()
        )
    }
}

fn as_u32(i: usize) -> u32 {
    u32::try_from(i).expect("graphs hold at most u32::MAX steps")
}

/// Resolve every dependency name against `steps` (borrowed UTF-8, an Fx map of `&str`) and
/// validate. Every dependency is converted before any validation error is raised, so a type
/// error anywhere wins, as when the arguments were converted up front.
fn build_dag(steps: &[Bound<'_, PyString>], dependencies: &Bound<'_, PyAny>) -> PyResult<Dag> {
    let n = steps.len();
    let mut index = NameIndex::with_capacity(n);
    let mut duplicate: Option<usize> = None;
    for (i, step) in steps.iter().enumerate() {
        if !index.insert(step.to_str()?, as_u32(i)) {
            duplicate.get_or_insert(i);
        }
    }
    let listed = dependencies.len().unwrap_or(0);
    let resolve = listed == n;
    let mut builder = DagBuilder::new(n, 2 * n).map_err(errors::graph)?;
    let mut unknown: Option<(usize, String)> = None;
    let mut step = 0;
    for_each_item(
        dependencies,
        || "dependencies".to_owned(),
        |deps| {
            let this = step;
            step += 1;
            for_each_item(
                &deps,
                || format!("dependencies of step {this}"),
                |dep| {
                    let dep = step_name(dep)?;
                    let dep = dep.to_str()?;
                    if resolve && this < n && unknown.is_none() {
                        match index.get(dep) {
                            Some(parent) => builder.depend(parent),
                            None => unknown = Some((this, dep.to_owned())),
                        }
                    }
                    Ok(())
                },
            )?;
            if resolve && this < n {
                builder.end_step();
            }
            Ok(())
        },
    )?;
    let name = |i: usize| -> PyResult<String> { Ok(steps[i].to_str()?.to_owned()) };
    if !resolve || step != n {
        let err = GraphError::LengthMismatch {
            names: n,
            dependencies: step,
        };
        return Err(PyValueError::new_err(err.to_string()));
    }
    if let Some(i) = duplicate {
        return Err(errors::DuplicateStepError::new_err((name(i)?,)));
    }
    if let Some((i, dependency)) = unknown {
        return Err(errors::UnknownDependencyError::new_err((
            name(i)?,
            dependency,
        )));
    }
    builder.build().map_err(|err| match err {
        DagError::SelfDependency { step } => match name(step) {
            Ok(step) => errors::SelfDependencyError::new_err((step,)),
            Err(err) => err,
        },
        DagError::Cycle { path } => {
            match path
                .iter()
                .map(|&i| name(i as usize))
                .collect::<PyResult<Vec<String>>>()
            {
                Ok(path) => errors::CycleError::new_err((path,)),
                Err(err) => err,
            }
        }
    })
}

/// Counts each step's unsatisfied parents so that completing a step costs O(out-degree).
#[pyclass(module = "tasker_core._native")]
pub(crate) struct DependencyTracker {
    tracker: tasker_dag::DependencyTracker,
}

#[pymethods]
impl DependencyTracker {
    /// Record that ``step`` is satisfied; return its children, not themselves satisfied, whose
    /// last unsatisfied parent this was, ascending.
    fn mark_satisfied(&mut self, step: i64) -> PyResult<Vec<u32>> {
        let step = step_index(step)?;
        self.tracker.mark_satisfied(step).map_err(errors::index)
    }

    fn is_satisfied(&self, step: i64) -> PyResult<bool> {
        let step = step_index(step)?;
        self.tracker.is_satisfied(step).map_err(errors::index)
    }

    fn remaining_parents(&self, step: i64) -> PyResult<u32> {
        let step = step_index(step)?;
        self.tracker.remaining_parents(step).map_err(errors::index)
    }

    /// Steps not yet satisfied whose parents all are, ascending (O(N); for start-up).
    fn unblocked(&self) -> Vec<u32> {
        self.tracker.unblocked()
    }

    #[getter]
    fn satisfied_count(&self) -> usize {
        self.tracker.satisfied_count()
    }

    fn all_satisfied(&self) -> bool {
        self.tracker.all_satisfied()
    }

    fn __repr__(&self) -> String {
        format!(
            "<DependencyTracker {}/{} satisfied>",
            self.tracker.satisfied_count(),
            self.tracker.graph().len()
        )
    }
}
