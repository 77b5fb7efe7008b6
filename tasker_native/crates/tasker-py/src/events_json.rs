//! Event payloads as compact ASCII JSON, a whole batch per call: byte for byte what
//! `json.dumps(event.to_dict(), separators=(",", ":"), allow_nan=False).encode()` writes, without
//! the interpreter's per-value work (the zmq sink encodes every event it sends).
//!
//! Written natively: values of the exact types None, bool, int, float, str, list, tuple and dict
//! with str keys, nested at most [`MAX_DEPTH`] deep, in an event whose `data` is an exact dict
//! with no key named like a common field. Any other event goes whole to the caller's fallback,
//! which writes the reference itself; so every payload matches the reference or fails where it
//! would. Only the error for a NaN or infinity is raised here (ValueError, as json raises), with
//! the event and the key that hold it.

use std::fmt::Write as _;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};

/// Containers nested deeper than this go to the fallback (which also reports cycles).
const MAX_DEPTH: usize = 100;

/// The fields `Event.to_dict` writes first, in its order; `data` follows.
const COMMON: [&str; 7] = [
    "name",
    "id",
    "time",
    "task_id",
    "namespace",
    "workflow",
    "version",
];

/// The text before each common field's value.
const OPENINGS: [&[u8]; 7] = [
    b"{\"name\":",
    b",\"id\":",
    b",\"time\":",
    b",\"task_id\":",
    b",\"namespace\":",
    b",\"workflow\":",
    b",\"version\":",
];

/// Why an event was not written natively.
enum Stop {
    /// Outside the native subset: the fallback writes the event.
    Fallback,
    /// A NaN or infinity, and where (the path built leaf to root).
    NotFinite { value: f64, path: Vec<Segment> },
    /// An error from Python (reading an attribute, a huge int's repr).
    Python(PyErr),
}

impl From<PyErr> for Stop {
    fn from(err: PyErr) -> Self {
        Stop::Python(err)
    }
}

/// One step of the path to a non-finite float.
enum Segment {
    Field(&'static str),
    Key(String),
    Index(usize),
}

/// The JSON payload of each event, in order; `fallback(event)` (which must return bytes)
/// for an event outside the native subset. ValueError for a NaN or infinity.
#[pyfunction]
pub(crate) fn encode_event_payloads<'py>(
    events: &Bound<'py, PyAny>,
    fallback: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let py = events.py();
    let names = field_names(py);
    let mut payloads = Vec::with_capacity(events.len().unwrap_or(0));
    let mut buf = Vec::with_capacity(512);
    for (index, event) in events.try_iter()?.enumerate() {
        let event = event?;
        buf.clear();
        match write_event(&mut buf, &event, &names) {
            Ok(()) => payloads.push(PyBytes::new(py, &buf)),
            Err(Stop::Fallback) => payloads.push(
                fallback
                    .call1((&event,))?
                    .cast_into::<PyBytes>()
                    .map_err(|err| {
                        PyTypeError::new_err(format!(
                            "the fallback encoder returned {}, not bytes",
                            type_name(err.into_inner().as_any())
                        ))
                    })?,
            ),
            Err(Stop::NotFinite { value, path }) => {
                return Err(not_finite(&event, index, value, &path))
            }
            Err(Stop::Python(err)) => return Err(err),
        }
    }
    PyList::new(py, payloads)
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "an object".to_owned(), |name| name.to_string())
}

/// ValueError naming the event (position, name, id) and the path to the value.
fn not_finite(event: &Bound<'_, PyAny>, index: usize, value: f64, path: &[Segment]) -> PyErr {
    let py = event.py();
    let field = |name| {
        event
            .getattr(name)
            .and_then(|v| v.repr())
            .map_or_else(|_| "?".to_owned(), |r| r.to_string())
    };
    let mut place = String::new();
    for segment in path.iter().rev() {
        match segment {
            Segment::Field(name) => place.push_str(name),
            Segment::Key(key) => write!(place, "[{key:?}]").expect("writing to a String"),
            Segment::Index(i) => write!(place, "[{i}]").expect("writing to a String"),
        }
    }
    PyValueError::new_err(format!(
        "event {index} (name={}, id={}): {place}: float {} is not JSON compliant (no NaN or \
         Infinity)",
        field(intern!(py, "name")),
        field(intern!(py, "id")),
        if value.is_nan() {
            "nan"
        } else if value > 0.0 {
            "inf"
        } else {
            "-inf"
        },
    ))
}

/// The interned attribute names of [`COMMON`] and `data`, looked up once per call.
fn field_names(py: Python<'_>) -> [&Bound<'_, PyString>; 8] {
    [
        intern!(py, "name"),
        intern!(py, "id"),
        intern!(py, "time"),
        intern!(py, "task_id"),
        intern!(py, "namespace"),
        intern!(py, "workflow"),
        intern!(py, "version"),
        intern!(py, "data"),
    ]
}

/// `tasker_core.models.Event`, imported on first use.
static EVENT: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// The values of [`COMMON`], in order. For an exact `tasker_core` Event they are read in one
/// pass over its `__dict__`, which attrs fills in field order (COMMON, then `data`): eight
/// attribute lookups cost more than the rest of the encoding of a small event. Anything else
/// (another class, or a dict not in that shape) is read attribute by attribute.
fn common_values<'py>(
    event: &Bound<'py, PyAny>,
    names: &[&Bound<'py, PyString>; 8],
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let py = event.py();
    let mut values = Vec::with_capacity(COMMON.len());
    if EVENT
        .import(py, "tasker_core.models", "Event")
        .is_ok_and(|event_type| event.get_type().is(event_type))
    {
        let fields = event
            .getattr(intern!(py, "__dict__"))?
            .cast_into::<PyDict>()?;
        if fields.len() == names.len() {
            for ((key, value), name) in fields.iter().zip(names.iter()).take(COMMON.len()) {
                if !key.is(*name) {
                    break;
                }
                values.push(value);
            }
        }
        if values.len() == COMMON.len() {
            return Ok(values);
        }
        values.clear();
    }
    for name in names.iter().take(COMMON.len()) {
        values.push(event.getattr(*name)?);
    }
    Ok(values)
}

fn write_event(
    buf: &mut Vec<u8>,
    event: &Bound<'_, PyAny>,
    names: &[&Bound<'_, PyString>; 8],
) -> Result<(), Stop> {
    let data = event.getattr(names[7])?;
    let data = data.cast_exact::<PyDict>().map_err(|_| Stop::Fallback)?;
    match write_fields(buf, event, data, names) {
        // A data key named like a common field replaces that field's value in to_dict, so the
        // reference may fail elsewhere first, or not at all: the fallback's case.
        Err(Stop::NotFinite { .. }) if overrides_common(data) => Err(Stop::Fallback),
        written => written,
    }
}

fn write_fields(
    buf: &mut Vec<u8>,
    event: &Bound<'_, PyAny>,
    data: &Bound<'_, PyDict>,
    names: &[&Bound<'_, PyString>; 8],
) -> Result<(), Stop> {
    for ((field, opening), value) in COMMON
        .iter()
        .zip(OPENINGS)
        .zip(common_values(event, names)?)
    {
        buf.extend_from_slice(opening);
        write_value(buf, &value, 0).map_err(|stop| at(stop, Segment::Field(field)))?;
    }
    for (key, value) in data.iter() {
        let key = key.cast_exact::<PyString>().map_err(|_| Stop::Fallback)?;
        let key = key.to_str().map_err(|_| Stop::Fallback)?;
        if COMMON.contains(&key) {
            return Err(Stop::Fallback);
        }
        buf.push(b',');
        write_str(buf, key);
        buf.push(b':');
        write_value(buf, &value, 1).map_err(|stop| {
            at(
                at(stop, Segment::Key(key.to_owned())),
                Segment::Field("data"),
            )
        })?;
    }
    buf.push(b'}');
    Ok(())
}

/// Whether a key of `data` may replace a common field in to_dict: one named like a field, or
/// one that is not a plain str (whose equality is its own).
fn overrides_common(data: &Bound<'_, PyDict>) -> bool {
    data.keys().iter().any(|key| {
        key.cast_exact::<PyString>()
            .ok()
            .and_then(|key| key.to_str().ok().map(|key| COMMON.contains(&key)))
            .unwrap_or(true)
    })
}

/// `stop` with `segment` added on its way to the root.
fn at(mut stop: Stop, segment: Segment) -> Stop {
    if let Stop::NotFinite { path, .. } = &mut stop {
        path.push(segment);
    }
    stop
}

fn write_value(buf: &mut Vec<u8>, value: &Bound<'_, PyAny>, depth: usize) -> Result<(), Stop> {
    if let Ok(text) = value.cast_exact::<PyString>() {
        // A lone surrogate has no UTF-8 form: the fallback escapes it.
        write_str(buf, text.to_str().map_err(|_| Stop::Fallback)?);
    } else if let Ok(number) = value.cast_exact::<PyFloat>() {
        let number = number.value();
        if !write_float(buf, number) {
            return Err(Stop::NotFinite {
                value: number,
                path: Vec::new(),
            });
        }
    } else if value.is_exact_instance_of::<PyInt>() {
        match value.extract::<i64>() {
            Ok(number) => write_int(buf, number),
            Err(_) => buf.extend_from_slice(value.repr()?.to_str()?.as_bytes()),
        }
    } else if let Ok(flag) = value.cast_exact::<PyBool>() {
        buf.extend_from_slice(if flag.is_true() { b"true" } else { b"false" });
    } else if value.is_none() {
        buf.extend_from_slice(b"null");
    } else if depth >= MAX_DEPTH {
        return Err(Stop::Fallback);
    } else if let Ok(dict) = value.cast_exact::<PyDict>() {
        buf.push(b'{');
        for (n, (key, item)) in dict.iter().enumerate() {
            let key = key.cast_exact::<PyString>().map_err(|_| Stop::Fallback)?;
            let key = key.to_str().map_err(|_| Stop::Fallback)?;
            if n > 0 {
                buf.push(b',');
            }
            write_str(buf, key);
            buf.push(b':');
            write_value(buf, &item, depth + 1).map_err(|s| at(s, Segment::Key(key.to_owned())))?;
        }
        buf.push(b'}');
    } else if let Ok(list) = value.cast_exact::<PyList>() {
        write_items(buf, list.iter(), depth)?;
    } else if let Ok(tuple) = value.cast_exact::<PyTuple>() {
        write_items(buf, tuple.iter(), depth)?;
    } else {
        return Err(Stop::Fallback);
    }
    Ok(())
}

fn write_items<'py>(
    buf: &mut Vec<u8>,
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    depth: usize,
) -> Result<(), Stop> {
    buf.push(b'[');
    for (n, item) in items.enumerate() {
        if n > 0 {
            buf.push(b',');
        }
        write_value(buf, &item, depth + 1).map_err(|stop| at(stop, Segment::Index(n)))?;
    }
    buf.push(b']');
    Ok(())
}

/// Bytes written as they are: printable ASCII except `"` and `\`.
const PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = b' ';
    while byte <= b'~' {
        table[byte as usize] = byte != b'"' && byte != b'\\';
        byte += 1;
    }
    table
};

/// Whether every byte is [`PLAIN`], eight at a time: a word is plain when no byte has its high
/// bit set, is below a space, or equals `"`, `\\` or DEL (each test is exact for "some byte").
fn all_plain(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Some byte of `word` is below `n` (n <= 128).
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH;
    let equal = |word: u64, b: u8| below(word ^ (ONES * u64::from(b)), 1);
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let word = u64::from_ne_bytes(chunk.try_into().expect("chunks of eight"));
        if (word & HIGH)
            | below(word, b' ')
            | equal(word, b'"')
            | equal(word, b'\\')
            | equal(word, 0x7f)
            != 0
        {
            return false;
        }
    }
    words.remainder().iter().all(|&b| PLAIN[b as usize])
}

/// A JSON string as Python's `ensure_ascii` writes it: `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`,
/// `\u00XX` for the other controls and DEL, `\uXXXX` (lowercase hex) beyond ASCII, a surrogate
/// pair beyond the BMP.
fn write_str(buf: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    buf.reserve(bytes.len() + 2);
    buf.push(b'"');
    // Most strings (names, ids, keys) need no escape: one copy.
    if all_plain(bytes) {
        buf.extend_from_slice(bytes);
        buf.push(b'"');
        return;
    }
    let mut i = 0;
    loop {
        // Copy the run of plain bytes, then escape the byte (or character) that ends it.
        let run = bytes[i..].iter().position(|&b| !PLAIN[b as usize]);
        let end = run.map_or(bytes.len(), |n| i + n);
        buf.extend_from_slice(&bytes[i..end]);
        if end == bytes.len() {
            break;
        }
        i = end;
        let escape: &[u8] = match bytes[i] {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => b"",
        };
        if escape.is_empty() {
            let c = text[i..].chars().next().expect("i is at a char boundary");
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let unit = usize::from(*unit);
                buf.extend_from_slice(b"\\u");
                buf.extend([12, 8, 4, 0].map(|shift| HEX[(unit >> shift) & 0xf]));
            }
            i += c.len_utf8();
        } else {
            buf.extend_from_slice(escape);
            i += 1;
        }
    }
    buf.push(b'"');
}

fn write_int(buf: &mut Vec<u8>, number: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = number.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if number < 0 {
        buf.push(b'-');
    }
    buf.extend_from_slice(&digits[at..]);
}

/// `float.__repr__` of a finite number, written; false (nothing written) for NaN or infinity.
///
/// ryu gives the shortest digits that read back as the same float, the closest to it when
/// several do and the even one on an exact tie: the digits Python's repr uses (Rust's own `{:e}`
/// rounds such ties up). Laid out like repr: positional when `-4 < decpt <= 16` (`decpt`: where
/// the decimal point falls, counted from the first digit), with `.0` on a whole number;
/// otherwise `d[.ddd]e±XX` with at least two exponent digits.
fn write_float(buf: &mut Vec<u8>, number: f64) -> bool {
    if !number.is_finite() {
        return false;
    }
    let mut formatter = ryu::Buffer::new();
    let (digits, count, decpt) = shortest_digits(formatter.format_finite(number.abs()).as_bytes());
    let digits = &digits[..count];
    if number.is_sign_negative() {
        buf.push(b'-');
    }
    if -4 < decpt && decpt <= 16 {
        if decpt <= 0 {
            buf.extend_from_slice(b"0.");
            buf.extend(std::iter::repeat_n(b'0', decpt.unsigned_abs() as usize));
            buf.extend_from_slice(digits);
        } else {
            let point = decpt.unsigned_abs() as usize;
            if point >= digits.len() {
                buf.extend_from_slice(digits);
                buf.extend(std::iter::repeat_n(b'0', point - digits.len()));
                buf.extend_from_slice(b".0");
            } else {
                buf.extend_from_slice(&digits[..point]);
                buf.push(b'.');
                buf.extend_from_slice(&digits[point..]);
            }
        }
    } else {
        buf.push(digits[0]);
        if digits.len() > 1 {
            buf.push(b'.');
            buf.extend_from_slice(&digits[1..]);
        }
        let exponent = decpt - 1;
        buf.push(b'e');
        buf.push(if exponent < 0 { b'-' } else { b'+' });
        if exponent.unsigned_abs() < 10 {
            buf.push(b'0');
        }
        write_int(buf, i64::from(exponent.unsigned_abs()));
    }
    true
}

/// Room for a float's significant digits (ryu writes at most 17).
const DIGITS: usize = 24;

/// The significant digits of a non-negative decimal number as ryu writes it (`123.45`,
/// `1e16`, `1.5e-7`), without leading or trailing zeros (`0` for zero), their count, and
/// `decpt`: the number is `0.<digits> * 10**decpt`.
fn shortest_digits(text: &[u8]) -> ([u8; DIGITS], usize, i32) {
    let (mantissa, exponent) = match text.iter().position(|&b| b == b'e') {
        Some(e) => (
            &text[..e],
            std::str::from_utf8(&text[e + 1..])
                .ok()
                .and_then(|s| s.parse::<i32>().ok())
                .expect("ryu writes a decimal exponent"),
        ),
        None => (text, 0),
    };
    let point = mantissa
        .iter()
        .position(|&b| b == b'.')
        .unwrap_or(mantissa.len());
    let mut digits = [0u8; DIGITS];
    let mut count = 0;
    let mut decpt = i32::try_from(point).expect("a float's digits are few") + exponent;
    for &b in mantissa.iter().filter(|b| b.is_ascii_digit()) {
        if count == 0 && b == b'0' {
            decpt -= 1; // a leading zero: 0.05 is 0.5 * 10**-1
        } else {
            digits[count] = b;
            count += 1;
        }
    }
    while count > 0 && digits[count - 1] == b'0' {
        count -= 1;
    }
    if count == 0 {
        digits[0] = b'0';
        return (digits, 1, 1);
    }
    (digits, count, decpt)
}
