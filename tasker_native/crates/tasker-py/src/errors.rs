//! Rust errors as the exception classes of tasker_core.errors, built with their own arguments.

use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::PyErr;

use tasker_dag::{GraphError, IndexError, ReadyError};
use tasker_fsm::FsmError;

pyo3::import_exception!(tasker_core.errors, InvalidTransitionError);
pyo3::import_exception!(tasker_core.errors, UnknownStateError);
pyo3::import_exception!(tasker_core.errors, DuplicateStepError);
pyo3::import_exception!(tasker_core.errors, UnknownDependencyError);
pyo3::import_exception!(tasker_core.errors, SelfDependencyError);
pyo3::import_exception!(tasker_core.errors, CycleError);

/// A code that cannot even be a table index (negative) is unknown like any other bad code.
pub(crate) fn negative_code(kind: &'static str, what: &'static str, code: i64) -> PyErr {
    UnknownStateError::new_err((kind, what, code))
}

pub(crate) fn fsm(err: FsmError) -> PyErr {
    match err {
        FsmError::UnknownName { kind, what, name } => {
            UnknownStateError::new_err((kind, what.as_str(), name))
        }
        FsmError::UnknownCode { kind, what, code } => {
            UnknownStateError::new_err((kind, what.as_str(), code))
        }
        FsmError::IllegalTransition { kind, from, to } => {
            InvalidTransitionError::new_err((kind, from, to))
        }
        FsmError::IllegalEvent { kind, from, event } => {
            InvalidTransitionError::new_err((kind, from, None::<&str>, event))
        }
    }
}

pub(crate) fn graph(err: GraphError) -> PyErr {
    match err {
        GraphError::DuplicateStep { step } => DuplicateStepError::new_err((step,)),
        GraphError::UnknownDependency { step, dependency } => {
            UnknownDependencyError::new_err((step, dependency))
        }
        GraphError::SelfDependency { step } => SelfDependencyError::new_err((step,)),
        GraphError::Cycle { path } => CycleError::new_err((path,)),
        other @ (GraphError::LengthMismatch { .. } | GraphError::TooLarge { .. }) => {
            PyValueError::new_err(other.to_string())
        }
    }
}

pub(crate) fn index(err: IndexError) -> PyErr {
    PyIndexError::new_err(err.to_string())
}

pub(crate) fn ready(err: ReadyError) -> PyErr {
    match err {
        ReadyError::LengthMismatch { .. } => PyValueError::new_err(err.to_string()),
        ReadyError::UnknownState { code, .. } => {
            UnknownStateError::new_err(("step", "state", code))
        }
    }
}
