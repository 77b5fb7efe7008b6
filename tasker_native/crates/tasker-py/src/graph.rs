//! `WorkflowGraph` and `DependencyTracker`: the graph stays on the Rust side behind an `Arc`,
//! shared with its trackers; calls pass indices and flat columns.

use std::sync::Arc;

use pyo3::exceptions::{PyIndexError, PyKeyError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;

use tasker_dag::StepColumns;

use crate::errors;

fn step_index(step: i64) -> PyResult<usize> {
    usize::try_from(step)
        .map_err(|_| PyIndexError::new_err(format!("step index {step} is negative")))
}

/// A validated DAG of steps, built once per task and queried by index.
#[pyclass(frozen, module = "tasker_core._native")]
pub(crate) struct WorkflowGraph {
    graph: Arc<tasker_dag::WorkflowGraph>,
}

#[pymethods]
impl WorkflowGraph {
    #[new]
    fn new(names: Vec<String>, dependencies: Vec<Vec<PyBackedStr>>) -> PyResult<Self> {
        let graph = tasker_dag::WorkflowGraph::new(names, &dependencies).map_err(errors::graph)?;
        Ok(WorkflowGraph {
            graph: Arc::new(graph),
        })
    }

    fn __len__(&self) -> usize {
        self.graph.len()
    }

    #[getter]
    fn names(&self) -> Vec<&str> {
        self.graph.names().iter().map(String::as_str).collect()
    }

    #[getter]
    fn edge_count(&self) -> usize {
        self.graph.edge_count()
    }

    /// Index of a step name; KeyError if absent.
    fn index(&self, name: &str) -> PyResult<usize> {
        self.graph
            .index(name)
            .ok_or_else(|| PyKeyError::new_err(name.to_owned()))
    }

    /// Indices step depends on, ascending. IndexError for an index out of range.
    fn parents(&self, step: i64) -> PyResult<Vec<u32>> {
        let step = step_index(step)?;
        self.graph
            .parents(step)
            .map(<[u32]>::to_vec)
            .map_err(errors::index)
    }

    /// Indices that depend on step, ascending.
    fn children(&self, step: i64) -> PyResult<Vec<u32>> {
        let step = step_index(step)?;
        self.graph
            .children(step)
            .map(<[u32]>::to_vec)
            .map_err(errors::index)
    }

    /// Kahn's order, always taking the smallest ready index first (so it is deterministic).
    fn topological_order(&self) -> Vec<u32> {
        self.graph.topological_order().to_vec()
    }

    /// Per step: 0 for a root, else 1 + the largest level among its parents.
    fn levels(&self) -> Vec<u32> {
        self.graph.levels()
    }

    /// Steps without parents, ascending.
    fn roots(&self) -> Vec<u32> {
        self.graph.roots()
    }

    /// Steps without children, ascending.
    fn leaves(&self) -> Vec<u32> {
        self.graph.leaves()
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
        self.graph.ready(&columns, now).map_err(errors::ready)
    }

    /// Remaining-parent counters for incremental readiness, starting from ``satisfied``.
    #[pyo3(signature = (satisfied = Vec::new()), text_signature = "(self, /, satisfied=())")]
    fn tracker(&self, satisfied: Vec<i64>) -> PyResult<DependencyTracker> {
        let satisfied = satisfied
            .into_iter()
            .map(step_index)
            .collect::<PyResult<Vec<usize>>>()?;
        let tracker = tasker_dag::DependencyTracker::new(Arc::clone(&self.graph), &satisfied)
            .map_err(errors::index)?;
        Ok(DependencyTracker { tracker })
    }

    fn __repr__(&self) -> String {
        format!(
            "<WorkflowGraph {} steps, {} edges>",
            self.graph.len(),
            self.graph.edge_count()
        )
    }
}

/// Counts each step's unsatisfied parents so that completing a step costs O(out-degree).
#[pyclass(module = "tasker_core._native")]
pub(crate) struct DependencyTracker {
    tracker: tasker_dag::DependencyTracker,
}

#[pymethods]
impl DependencyTracker {
    /// Record that ``step`` is satisfied; return its children whose last unsatisfied parent
    /// this was, ascending.
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
