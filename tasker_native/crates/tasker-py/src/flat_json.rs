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
    let Ok(dict) = value.cast_exact::<PyDict>() else {
        return Ok(None);
    };
    for (key, item) in dict.iter() {
        if !key.is_exact_instance_of::<PyString>() || !is_flat_scalar(&item) {
            return Ok(None);
        }
    }
    dict.copy().map(Some)
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
