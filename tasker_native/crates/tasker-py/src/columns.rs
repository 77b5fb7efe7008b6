//! The per-step columns of `WorkflowGraph.ready`, read from the Python sequences an entry at a
//! time: only `states` is read whole; the rule reads the other columns only where it needs them
//! (see `tasker_dag::StepInputs`), which spares converting most of a 100k-step solve's input.

use std::borrow::Cow;

use pyo3::conversion::FromPyObjectOwned;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PySequence, PyString, PyTuple};

use tasker_dag::{ReadyError, StepInputs};

use crate::errors;

/// One column argument: a list or tuple is indexed directly, any other sequence through
/// `__getitem__`; a bare str is refused.
enum Column<'py> {
    List(Bound<'py, PyList>),
    Tuple(Bound<'py, PyTuple>),
    Other(Bound<'py, PySequence>),
}

impl<'py> Column<'py> {
    fn new(field: &str, column: &Bound<'py, PyAny>) -> PyResult<(Self, usize)> {
        let column = if let Ok(list) = column.cast::<PyList>() {
            Column::List(list.clone())
        } else if let Ok(tuple) = column.cast::<PyTuple>() {
            Column::Tuple(tuple.clone())
        } else if let (false, Ok(seq)) = (
            column.is_instance_of::<PyString>(),
            column.cast::<PySequence>(),
        ) {
            Column::Other(seq.clone())
        } else {
            return Err(PyTypeError::new_err(format!(
                "{field} must be a sequence with one entry per step, not {}",
                column.get_type().name()?
            )));
        };
        let len = match &column {
            Column::List(list) => list.len(),
            Column::Tuple(tuple) => tuple.len(),
            Column::Other(seq) => seq.len()?,
        };
        Ok((column, len))
    }

    fn get<T: FromPyObjectOwned<'py>>(&self, step: usize) -> PyResult<T> {
        let entry = match self {
            Column::List(list) => list.get_item(step)?,
            Column::Tuple(tuple) => {
                return tuple.get_borrowed_item(step)?.extract().map_err(Into::into)
            }
            Column::Other(seq) => seq.get_item(step)?,
        };
        entry.extract().map_err(Into::into)
    }

    fn all<T: FromPyObjectOwned<'py>>(&self) -> PyResult<Vec<T>> {
        match self {
            Column::List(list) => list.extract(),
            Column::Tuple(tuple) => tuple.extract(),
            Column::Other(seq) => seq.extract(),
        }
    }
}

/// Why a solve failed: a readiness error of the graph, or a Python error reading an entry.
pub(crate) struct SolveError(pub(crate) PyErr);

impl From<ReadyError> for SolveError {
    fn from(err: ReadyError) -> Self {
        SolveError(errors::ready(err))
    }
}

impl From<PyErr> for SolveError {
    fn from(err: PyErr) -> Self {
        SolveError(err)
    }
}

/// The six columns of a solve, with their lengths (taken once, up front).
pub(crate) struct Columns<'py> {
    columns: [(Column<'py>, usize); 6],
}

/// Column names in argument order; `Columns` and `StepInputs::lengths` follow it.
const FIELDS: [&str; 6] = [
    "states",
    "attempts",
    "max_attempts",
    "retryable",
    "next_retry_at",
    "leased",
];

impl<'py> Columns<'py> {
    pub(crate) fn new(columns: [&Bound<'py, PyAny>; 6]) -> PyResult<Self> {
        let [a, b, c, d, e, f] = columns;
        Ok(Columns {
            columns: [
                Column::new(FIELDS[0], a)?,
                Column::new(FIELDS[1], b)?,
                Column::new(FIELDS[2], c)?,
                Column::new(FIELDS[3], d)?,
                Column::new(FIELDS[4], e)?,
                Column::new(FIELDS[5], f)?,
            ],
        })
    }

    fn column(&self, index: usize) -> &Column<'py> {
        &self.columns[index].0
    }
}

impl StepInputs for Columns<'_> {
    type Error = SolveError;

    fn lengths(&self) -> [(&'static str, usize); 6] {
        std::array::from_fn(|i| (FIELDS[i], self.columns[i].1))
    }

    fn states(&self) -> Result<Cow<'_, [i64]>, SolveError> {
        Ok(Cow::Owned(self.column(0).all()?))
    }

    fn attempts(&self, step: usize) -> Result<i64, SolveError> {
        Ok(self.column(1).get(step)?)
    }

    fn max_attempts(&self, step: usize) -> Result<i64, SolveError> {
        Ok(self.column(2).get(step)?)
    }

    fn retryable(&self, step: usize) -> Result<bool, SolveError> {
        Ok(self.column(3).get(step)?)
    }

    fn next_retry_at(&self, step: usize) -> Result<f64, SolveError> {
        Ok(self.column(4).get(step)?)
    }

    fn leased(&self, step: usize) -> Result<bool, SolveError> {
        Ok(self.column(5).get(step)?)
    }
}
