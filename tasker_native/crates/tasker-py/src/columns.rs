//! Per-step columns from Python sequences: a list is copied to a tuple in one C call and read
//! without reference counting per item, which is most of the cost of a 100k-step solve.

use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use pyo3::Borrowed;

/// A `Vec<T>` argument read through a tuple; any other sequence goes through pyo3's own
/// conversion (so the accepted inputs and the errors are those of `Vec<T>`).
pub(crate) struct Column<T>(pub(crate) Vec<T>);

impl<'py, T> FromPyObject<'_, 'py> for Column<T>
where
    T: for<'a> FromPyObject<'a, 'py>,
{
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        let tuple = if let Ok(list) = obj.cast::<PyList>() {
            list.to_tuple()
        } else if let Ok(tuple) = obj.cast::<PyTuple>() {
            tuple.to_owned()
        } else {
            return Ok(Column(obj.extract::<Vec<T>>()?));
        };
        let mut column = Vec::with_capacity(tuple.len());
        for i in 0..tuple.len() {
            column.push(tuple.get_borrowed_item(i)?.extract::<T>().map_err(Into::into)?);
        }
        Ok(Column(column))
    }
}
