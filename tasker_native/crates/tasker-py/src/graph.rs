//! `WorkflowGraph` and `DependencyTracker`: the graph stays on the Rust side behind an `Arc`,
//! shared with its trackers; calls pass indices and flat columns.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use pyo3::exceptions::{PyIndexError, PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PySequence, PyString, PyTuple};
use rustc_hash::FxBuildHasher;

use tasker_dag::{Dag, DagBuilder, DagError, GraphError};

use crate::columns::{Columns, SolveError};
use crate::errors;
use crate::names::{str_hash, NameTable};
use crate::scratch::{Lease, Scratch};

fn step_index(step: i64) -> PyResult<usize> {
    usize::try_from(step)
        .map_err(|_| PyIndexError::new_err(format!("step index {step} is negative")))
}

/// `item` as a str: the exact type by a pointer comparison (no call into Python), a subclass
/// by the full check.
#[inline]
fn into_str(item: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyString>> {
    match item.cast_into_exact::<PyString>() {
        Ok(name) => Ok(name),
        Err(err) => Ok(err.into_inner().cast_into::<PyString>()?),
    }
}

fn not_a_sequence(seq: &Bound<'_, PyAny>, what: impl FnOnce() -> String) -> PyErr {
    let kind = if seq.is_instance_of::<PyString>() {
        "a str".to_owned()
    } else {
        seq.get_type()
            .name()
            .map_or_else(|_| "another type".to_owned(), |name| name.to_string())
    };
    PyTypeError::new_err(format!(
        "{} must be a sequence of step names, not {kind}",
        what()
    ))
}

/// A sequence argument as a tuple, in one C call for a list (its items then read without
/// reference counting); a bare str is refused, not read as one name per character.
fn as_tuple<'py>(
    seq: &Bound<'py, PyAny>,
    what: impl FnOnce() -> String,
) -> PyResult<Bound<'py, PyTuple>> {
    if let Ok(list) = seq.cast::<PyList>() {
        return Ok(list.to_tuple());
    }
    if let Ok(tuple) = seq.cast::<PyTuple>() {
        return Ok(tuple.clone());
    }
    match seq.cast::<PySequence>() {
        Ok(seq) if !seq.is_instance_of::<PyString>() => seq.to_tuple(),
        _ => Err(not_a_sequence(seq, what)),
    }
}

/// Call `each` on every item of a sequence argument (list and tuple by index, without the
/// iterator protocol; a bare str is refused).
fn for_each_item<'py>(
    seq: &Bound<'py, PyAny>,
    what: impl FnOnce() -> String,
    mut each: impl FnMut(Bound<'py, PyAny>) -> PyResult<()>,
) -> PyResult<()> {
    if let Ok(list) = seq.cast_exact::<PyList>().or_else(|_| seq.cast::<PyList>()) {
        // Nothing here runs Python code, so the list cannot change under the loop.
        for i in 0..list.len() {
            each(list.get_item(i)?)?;
        }
        return Ok(());
    }
    let tuple = as_tuple(seq, what)?;
    for i in 0..tuple.len() {
        each(tuple.get_borrowed_item(i)?.to_owned())?;
    }
    Ok(())
}

/// A validated DAG of steps, built once per task and queried by index.
///
/// Construction copies no names: it resolves dependencies through the str objects themselves
/// and keeps them (a tuple) for `names`; the Rust side holds only indices.
#[pyclass(frozen, module = "tasker_core._native")]
pub(crate) struct WorkflowGraph {
    dag: Arc<Dag>,
    names: Py<PyTuple>,
    /// Built on the first `index` call.
    index: OnceLock<HashMap<Box<str>, u32, FxBuildHasher>>,
}

#[pymethods]
impl WorkflowGraph {
    /// Conversion errors (a non-str name, a non-sequence) come first, then the documented
    /// validation order: length, duplicates, unknown dependencies, self-dependencies, cycles.
    #[new]
    fn new(names: &Bound<'_, PyAny>, dependencies: &Bound<'_, PyAny>) -> PyResult<Self> {
        let names = as_tuple(names, || "names".to_owned())?;
        let dag = build_dag(&names, dependencies)?;
        Ok(WorkflowGraph {
            dag: Arc::new(dag),
            names: names.unbind(),
            index: OnceLock::new(),
        })
    }

    fn __len__(&self) -> usize {
        self.dag.len()
    }

    #[getter]
    fn names<'py>(&self, py: Python<'py>) -> Bound<'py, PyList> {
        self.names.bind(py).to_list()
    }

    #[getter]
    fn edge_count(&self) -> usize {
        self.dag.edge_count()
    }

    /// Index of a step name; KeyError if absent.
    fn index(&self, py: Python<'_>, name: &str) -> PyResult<u32> {
        let index = self.index.get_or_init(|| {
            let names = self.names.bind(py);
            let mut index = HashMap::with_capacity_and_hasher(names.len(), FxBuildHasher);
            for (i, step) in names.iter().enumerate() {
                // Every name was a str that converted when the graph was built.
                if let Ok(step) = step.cast::<PyString>() {
                    let step = step.to_string_lossy().into_owned().into_boxed_str();
                    index.entry(step).or_insert(as_u32(i));
                }
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
    fn ready<'py>(
        &self,
        states: &Bound<'py, PyAny>,
        attempts: &Bound<'py, PyAny>,
        max_attempts: &Bound<'py, PyAny>,
        retryable: &Bound<'py, PyAny>,
        next_retry_at: &Bound<'py, PyAny>,
        leased: &Bound<'py, PyAny>,
        now: f64,
    ) -> PyResult<Vec<u32>> {
        let columns = Columns::new([
            states,
            attempts,
            max_attempts,
            retryable,
            next_retry_at,
            leased,
        ])?;
        self.dag
            .ready_from(&columns, now)
            .map_err(|SolveError(err)| err)
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

/// Check that every dependency converts to UTF-8 (the first that does not raises).
fn check_text(py: Python<'_>, deps: &[(u64, Py<PyString>)]) -> PyResult<()> {
    for (_, dep) in deps {
        dep.bind(py).to_str()?;
    }
    Ok(())
}

fn as_u32(i: usize) -> u32 {
    u32::try_from(i).expect("graphs hold at most u32::MAX steps")
}

/// Resolve every dependency name against the names (a [`NameTable`]: Python's cached hashes,
/// identity before text) and validate.
///
/// The first pass reads the Python objects (converted and hashed); the second resolves them in
/// a tight loop (independent probes, whose cache misses the processor overlaps). A dependency
/// that is a name object is valid UTF-8 already; any other is checked in the second pass, and
/// on every early exit the dependencies before it are checked first, so the first conversion
/// error by position wins, before any validation error, as when the arguments were converted
/// up front.
fn build_dag(names: &Bound<'_, PyTuple>, dependencies: &Bound<'_, PyAny>) -> PyResult<Dag> {
    let py = names.py();
    let n = names.len();
    let mut scratch = Lease::take();
    let Scratch {
        slots,
        entries,
        deps,
        row_ends,
    } = &mut *scratch;
    let (index, duplicate) = NameTable::new(names, slots, entries)?;
    deps.clear();
    row_ends.clear();
    let read = for_each_item(
        dependencies,
        || "dependencies".to_owned(),
        |row| {
            let step = row_ends.len();
            for_each_item(
                &row,
                || format!("dependencies of step {step}"),
                |dep| {
                    let dep = into_str(dep)?;
                    deps.push((str_hash(&dep)?, dep.unbind()));
                    Ok(())
                },
            )?;
            row_ends.push(deps.len());
            Ok(())
        },
    );
    if let Err(err) = read {
        check_text(py, deps)?;
        return Err(err);
    }
    let name = |i: usize| -> PyResult<String> {
        Ok(names
            .get_borrowed_item(i)?
            .cast::<PyString>()?
            .to_str()?
            .to_owned())
    };
    if row_ends.len() != n {
        check_text(py, deps)?;
        let err = GraphError::LengthMismatch {
            names: n,
            dependencies: row_ends.len(),
        };
        return Err(PyValueError::new_err(err.to_string()));
    }
    let mut builder = DagBuilder::new(n, deps.len()).map_err(errors::graph)?;
    let mut unknown: Option<(usize, String)> = None;
    let mut step = 0;
    for (k, (hash, dep)) in deps.iter().enumerate() {
        // End the rows that end here (a row without dependencies ends where it starts).
        while row_ends[step] == k {
            builder.end_step();
            step += 1;
        }
        let dep = dep.bind(py);
        let found = index.get(*hash, dep)?;
        if !found.is_some_and(|parent| index.is_name(parent, dep)) {
            dep.to_str()?;
        }
        match found {
            Some(parent) => builder.depend(parent),
            None => {
                unknown = Some((step, dep.to_str()?.to_owned()));
                check_text(py, &deps[k + 1..])?;
                break;
            }
        }
    }
    if unknown.is_none() {
        while step < n {
            builder.end_step();
            step += 1;
        }
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

    /// ``mark_satisfied`` of each step in order, their answers concatenated: one crossing of the
    /// boundary for many steps. Every index is checked first, so an error changes nothing.
    fn mark_satisfied_many(&mut self, steps: Vec<i64>) -> PyResult<Vec<u32>> {
        // Negative and too-large indices are checked in one pass: the first by position raises.
        let steps = steps
            .into_iter()
            .map(|step| {
                let step = step_index(step)?;
                self.tracker
                    .graph()
                    .check_index(step)
                    .map_err(errors::index)?;
                Ok(step)
            })
            .collect::<PyResult<Vec<usize>>>()?;
        self.tracker
            .mark_satisfied_many(&steps)
            .map_err(errors::index)
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
