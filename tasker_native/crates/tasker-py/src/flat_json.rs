//! A copy of a flat JSON object in one call: the shape of nearly every transition's metadata and
//! of many step results, which the stores copy on every write. The interpreter's per-item type
//! checks cost several times the copy itself; here they are a pointer comparison each.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};

/// A new dict equal to `value` if `value` is exactly a dict whose keys are exactly str and whose
/// values are exactly str, int, bool, None or a finite float; None for anything else (the
/// caller then takes the general path, which also names what is wrong).
#[pyfunction]
pub(crate) fn copy_flat_dict<'py>(
    value: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    match flat_dict(value) {
        Some(dict) => dict.copy().map(Some),
        None => Ok(None),
    }
}

/// Whether `copy_flat_dict(value)` would copy `value`: for callers that only need to know that
/// it is plain JSON (the SQLite store before encoding it), without the copy.
#[pyfunction]
pub(crate) fn is_flat_dict(value: &Bound<'_, PyAny>) -> bool {
    flat_dict(value).is_some()
}

/// `value` as a dict, when it is one of the flat shape [`copy_flat_dict`] describes.
fn flat_dict<'a, 'py>(value: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, PyDict>> {
    let dict = value.cast_exact::<PyDict>().ok()?;
    dict.iter()
        .all(|(key, item)| key.is_exact_instance_of::<PyString>() && is_flat_scalar(&item))
        .then_some(dict)
}

fn is_flat_scalar(item: &Bound<'_, PyAny>) -> bool {
    if item.is_none()
        || item.is_exact_instance_of::<PyString>()
        || item.is_exact_instance_of::<PyInt>()
        || item.is_exact_instance_of::<PyBool>()
    {
        return true;
    }
    item.cast_exact::<PyFloat>()
        .map(|number| number.value().is_finite())
        .unwrap_or(false)
}
