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
    let mut writer = Writer::new(py, &names, fallback);
    let mut payloads = Vec::with_capacity(events.len().unwrap_or(0));
    let mut buf = Vec::with_capacity(512);
    for (index, event) in events.try_iter()?.enumerate() {
        let event = event?;
        buf.clear();
        writer.write(&mut buf, &event, index)?;
        payloads.push(PyBytes::new(py, &buf));
    }
    PyList::new(py, payloads)
}

/// The events as runs: consecutive events of one name, their payloads (as
/// [`encode_event_payloads`] writes them) joined by `\n`, a run cut before the event that would
/// take it past `max_events` events or `max_bytes` bytes (separators counted; a run holds one
/// event at least). Each run as `(name, number of events, payload)`, in order. One buffer for
/// the whole batch and no bytes object per event: what a sink shipping one message per run of
/// a topic wants. TypeError for an event whose name is not a str.
#[pyfunction]
pub(crate) fn encode_event_runs<'py>(
    events: &Bound<'py, PyAny>,
    max_events: usize,
    max_bytes: usize,
    fallback: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    if max_events == 0 || max_bytes == 0 {
        return Err(PyValueError::new_err(
            "max_events and max_bytes must be at least 1",
        ));
    }
    let py = events.py();
    let names = field_names(py);
    let mut writer = Writer::new(py, &names, fallback);
    let mut runs: Vec<Bound<'py, PyTuple>> = Vec::new();
    // The open run's name and number of events; its payload is `buf[1..]`: every event is
    // written after a separator, and a run's first one drops.
    let mut open: Option<(Bound<'py, PyString>, usize)> = None;
    let mut buf = Vec::with_capacity(4096);
    for (index, event) in events.try_iter()?.enumerate() {
        let event = event?;
        let start = buf.len();
        buf.push(b'\n');
        let name = writer
            .write(&mut buf, &event, index)?
            .cast_into::<PyString>()
            .map_err(|_| PyTypeError::new_err(format!("event {index}: its name is not a str")))?;
        if let Some((current, count)) = &mut open {
            if *count < max_events && buf.len() - 1 <= max_bytes && same_name(current, &name)? {
                *count += 1;
                continue;
            }
        }
        // The event starts a run of its own: the open one ends before it.
        if let Some((current, count)) = open.take() {
            runs.push(run(py, current, count, &buf[1..start])?);
        }
        buf.drain(..start);
        open = Some((name, 1));
    }
    if let Some((current, count)) = open {
        runs.push(run(py, current, count, &buf[1..])?);
    }
    PyList::new(py, runs)
}

/// Whether two names are equal strings (usually the very same object).
fn same_name(a: &Bound<'_, PyString>, b: &Bound<'_, PyString>) -> PyResult<bool> {
    Ok(a.is(b) || a.as_any().eq(b)?)
}

fn run<'py>(
    py: Python<'py>,
    name: Bound<'py, PyString>,
    count: usize,
    payload: &[u8],
) -> PyResult<Bound<'py, PyTuple>> {
    (name, count, PyBytes::new(py, payload)).into_pyobject(py)
}

/// Writes one event after another, remembering what repeats between them.
struct Writer<'py, 'a> {
    names: &'a [&'a Bound<'py, PyString>; 8],
    /// `tasker_core.models.Event`, resolved once per batch; if it cannot be imported, every
    /// event is read attribute by attribute.
    event_type: Option<&'a Bound<'py, PyType>>,
    fallback: &'a Bound<'py, PyAny>,
    /// The name of the last event written, and its text.
    name: Recall<'py, 1>,
    /// The task fields (`task_id`, `namespace`, `workflow`, `version`) of the last event
    /// written, and their text.
    task: Recall<'py, 4>,
}

impl<'py, 'a> Writer<'py, 'a> {
    fn new(
        py: Python<'py>,
        names: &'a [&'a Bound<'py, PyString>; 8],
        fallback: &'a Bound<'py, PyAny>,
    ) -> Self {
        Writer {
            names,
            event_type: EVENT.import(py, "tasker_core.models", "Event").ok(),
            fallback,
            name: Recall::new(),
            task: Recall::new(),
        }
    }

    /// The event's payload, appended to `buf`: written natively, or by the fallback. Returns
    /// the event's name (read on the way).
    fn write(
        &mut self,
        buf: &mut Vec<u8>,
        event: &Bound<'py, PyAny>,
        index: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let start = buf.len();
        match self.write_native(buf, event) {
            Ok(name) => Ok(name),
            Err(Stop::Fallback) => {
                buf.truncate(start);
                let payload = self
                    .fallback
                    .call1((event,))?
                    .cast_into::<PyBytes>()
                    .map_err(|err| {
                        PyTypeError::new_err(format!(
                            "the fallback encoder returned {}, not bytes",
                            type_name(err.into_inner().as_any())
                        ))
                    })?;
                buf.extend_from_slice(payload.as_bytes());
                event.getattr(self.names[0])
            }
            Err(Stop::NotFinite { value, path }) => Err(not_finite(event, index, value, &path)),
            Err(Stop::Python(err)) => Err(err),
        }
    }

    /// The event's payload, appended to `buf`, and its name; or why not.
    fn write_native(
        &mut self,
        buf: &mut Vec<u8>,
        event: &Bound<'py, PyAny>,
    ) -> Result<Bound<'py, PyAny>, Stop> {
        if let Some([common @ .., data]) = dict_values(event, self.event_type, self.names)? {
            let data = data.cast_exact::<PyDict>().map_err(|_| Stop::Fallback)?;
            self.write_checked(buf, &common, data)?;
            let [name, ..] = common;
            return Ok(name);
        }
        // Attribute by attribute, `data` first: an event without a dict there goes to the
        // fallback whatever its other attributes do.
        let names = self.names;
        let data = event.getattr(names[7])?;
        let data = data.cast_exact::<PyDict>().map_err(|_| Stop::Fallback)?;
        let common = [
            event.getattr(names[0])?,
            event.getattr(names[1])?,
            event.getattr(names[2])?,
            event.getattr(names[3])?,
            event.getattr(names[4])?,
            event.getattr(names[5])?,
            event.getattr(names[6])?,
        ];
        self.write_checked(buf, &common, data)?;
        let [name, ..] = common;
        Ok(name)
    }

    /// [`Self::write_fields`], unless `data` may override a common field that does not encode.
    fn write_checked(
        &mut self,
        buf: &mut Vec<u8>,
        common: &[Bound<'py, PyAny>; 7],
        data: &Bound<'py, PyDict>,
    ) -> Result<(), Stop> {
        match self.write_fields(buf, common, data) {
            // A data key named like a common field replaces that field's value in to_dict, so
            // the reference may fail elsewhere first, or not at all: the fallback's case.
            Err(Stop::NotFinite { .. }) if overrides_common(data) => Err(Stop::Fallback),
            written => written,
        }
    }

    fn write_fields(
        &mut self,
        buf: &mut Vec<u8>,
        common: &[Bound<'py, PyAny>; 7],
        data: &Bound<'py, PyDict>,
    ) -> Result<(), Stop> {
        // One call per field, so that each opening is copied with its length known.
        let [name, id, time, task_id, namespace, workflow, version] = common;
        self.name.write(buf, [name], |buf| {
            write_field(buf, b"{\"name\":", "name", name)
        })?;
        write_field(buf, b",\"id\":", "id", id)?;
        write_field(buf, b",\"time\":", "time", time)?;
        let task = [task_id, namespace, workflow, version];
        self.task.write(buf, task, |buf| {
            write_field(buf, b",\"task_id\":", "task_id", task_id)?;
            write_field(buf, b",\"namespace\":", "namespace", namespace)?;
            write_field(buf, b",\"workflow\":", "workflow", workflow)?;
            write_field(buf, b",\"version\":", "version", version)
        })?;
        let items = data.iter();
        // As many items as the dict holds, so it is not asked once more for none.
        let count = items.len();
        for (key, value) in items.take(count) {
            let key = key.cast_exact::<PyString>().map_err(|_| Stop::Fallback)?;
            let key = key.to_str().map_err(|_| Stop::Fallback)?;
            if is_common(key) {
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
}

/// The text of fields that repeat from one event to the next as the very same objects (the
/// engine makes a task's events from one Task's objects, and runs of one name): what was
/// written for the last event's objects, written again when this event holds them too. Only
/// exact str values are remembered (they cannot change), and they are held, so none is freed
/// and another object made at its address while remembered.
struct Recall<'py, const N: usize> {
    last: Option<[Bound<'py, PyAny>; N]>,
    text: Vec<u8>,
}

impl<'py, const N: usize> Recall<'py, N> {
    fn new() -> Self {
        Recall {
            last: None,
            text: Vec::new(),
        }
    }

    /// The remembered text if `fields` are the last objects, else what `write` writes.
    fn write(
        &mut self,
        buf: &mut Vec<u8>,
        fields: [&Bound<'py, PyAny>; N],
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), Stop>,
    ) -> Result<(), Stop> {
        if let Some(last) = &self.last {
            if last.iter().zip(fields).all(|(last, field)| last.is(field)) {
                buf.extend_from_slice(&self.text);
                return Ok(());
            }
        }
        let start = buf.len();
        self.last = None;
        write(buf)?;
        if fields
            .iter()
            .all(|field| field.is_exact_instance_of::<PyString>())
        {
            self.text.clear();
            self.text.extend_from_slice(&buf[start..]);
            self.last = Some(fields.map(|field| field.clone()));
        }
        Ok(())
    }
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

/// The interned attribute names of the common fields, in the order `Event.to_dict` writes
/// them, and `data`, looked up once per call.
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

/// The values of the common fields then `data`, in order, for an exact `tasker_core` Event whose
/// `__dict__` holds exactly those fields in that order (attrs fills it in field order); None
/// for any other event. One pass over the dict costs less than eight attribute lookups, which
/// cost more than the rest of the encoding of a small event. For such an Event each value is
/// what its attribute lookup returns: the class has no descriptor of those names.
fn dict_values<'py>(
    event: &Bound<'py, PyAny>,
    event_type: Option<&Bound<'py, PyType>>,
    names: &[&Bound<'py, PyString>; 8],
) -> PyResult<Option<[Bound<'py, PyAny>; 8]>> {
    if !event_type.is_some_and(|event_type| event.is_exact_instance(event_type)) {
        return Ok(None);
    }
    let fields = event
        .getattr(intern!(event.py(), "__dict__"))?
        .cast_into::<PyDict>()?;
    if fields.len() != names.len() {
        return Ok(None);
    }
    let mut items = fields.iter();
    // The value of the next item if its key is `name` (the interned name attrs set).
    let mut next = |name: &Bound<'py, PyString>| {
        items
            .next()
            .and_then(|(key, value)| key.is(name).then_some(value))
    };
    // In order, stopping at the first miss, and never asking the dict for a ninth item.
    let mut read = || {
        Some([
            next(names[0])?,
            next(names[1])?,
            next(names[2])?,
            next(names[3])?,
            next(names[4])?,
            next(names[5])?,
            next(names[6])?,
            next(names[7])?,
        ])
    };
    Ok(read())
}

/// Whether `key` names a common field (which `Event.to_dict` writes before `data`).
fn is_common(key: &str) -> bool {
    matches!(
        key,
        "name" | "id" | "time" | "task_id" | "namespace" | "workflow" | "version"
    )
}

/// A common field: the text before its value (its key), then the value.
#[inline(always)]
fn write_field(
    buf: &mut Vec<u8>,
    opening: &[u8],
    field: &'static str,
    value: &Bound<'_, PyAny>,
) -> Result<(), Stop> {
    buf.extend_from_slice(opening);
    write_value(buf, value, 0).map_err(|stop| at(stop, Segment::Field(field)))
}

/// Whether a key of `data` may replace a common field in to_dict: one named like a field, or
/// one that is not a plain str (whose equality is its own).
fn overrides_common(data: &Bound<'_, PyDict>) -> bool {
    data.keys().iter().any(|key| {
        key.cast_exact::<PyString>()
            .ok()
            .and_then(|key| key.to_str().ok().map(is_common))
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
    // Strings (most values) here, the rest out of line.
    if let Ok(text) = value.cast_exact::<PyString>() {
        // A lone surrogate has no UTF-8 form: the fallback escapes it.
        write_str(buf, text.to_str().map_err(|_| Stop::Fallback)?);
        Ok(())
    } else {
        write_other(buf, value, depth)
    }
}

/// [`write_value`] of anything but a str.
#[inline(never)]
fn write_other(buf: &mut Vec<u8>, value: &Bound<'_, PyAny>, depth: usize) -> Result<(), Stop> {
    if let Ok(number) = value.cast_exact::<PyFloat>() {
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

/// Whether no byte of `word` needs an escape, that is each is [`PLAIN`]. Each term is exact for
/// "some byte": a borrow or carry between bytes only starts at a byte that is itself caught.
fn plain_word(word: u64) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // A byte whose high bit is set, is below a space (minus 0x20 borrows) or is DEL (plus one
    // sets the high bit).
    let outside = word | word.wrapping_sub(ONES * 0x20) | word.wrapping_add(ONES);
    // A zero byte of `word ^ b * ONES`: a byte equal to b.
    let zero = |x: u64| x.wrapping_sub(ONES) & !x;
    let quote = zero(word ^ (ONES * u64::from(b'"')));
    let backslash = zero(word ^ (ONES * u64::from(b'\\')));
    (outside | quote | backslash) & HIGH == 0
}

/// Eight bytes of `bytes` from `at` as one word.
fn word_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

/// The longest string [`write_plain`] copies from a local array.
const SHORT: usize = 16;

/// Four bytes of `bytes` from `at` as one half word.
fn half_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

/// `"text"` when no byte of it needs an escape, and true; false (nothing written) otherwise.
/// Tested a word at a time, overlapping words covering a length that is not a multiple of the
/// word's, so no byte goes alone. A short string (most are: names, ids, keys) is laid out
/// quoted in a local array and copied whole, its length known when compiled, then cut to size.
fn write_plain(buf: &mut Vec<u8>, text: &[u8]) -> bool {
    let len = text.len();
    let mut quoted = [b'"'; SHORT + 2];
    match len {
        0 => {}
        1..=3 => {
            // The first, middle and last bytes are all the bytes; padded with plain bytes.
            let (first, middle, last) = (text[0], text[len / 2], text[len - 1]);
            let word = u64::from_le_bytes([first, middle, last, b'a', b'a', b'a', b'a', b'a']);
            if !plain_word(word) {
                return false;
            }
            quoted[1] = first;
            quoted[1 + len / 2] = middle;
            quoted[len] = last;
        }
        4..=8 => {
            let (head, tail) = (half_at(text, 0), half_at(text, len - 4));
            if !plain_word(u64::from(head) | u64::from(tail) << 32) {
                return false;
            }
            quoted[1..5].copy_from_slice(&head.to_le_bytes());
            quoted[len - 3..=len].copy_from_slice(&tail.to_le_bytes());
        }
        9..=SHORT => {
            let (head, tail) = (word_at(text, 0), word_at(text, len - 8));
            if !plain_word(head) || !plain_word(tail) {
                return false;
            }
            quoted[1..9].copy_from_slice(&head.to_le_bytes());
            quoted[len - 7..=len].copy_from_slice(&tail.to_le_bytes());
        }
        _ => {
            let mut at = 0;
            while at + 8 < len {
                if !plain_word(word_at(text, at)) {
                    return false;
                }
                at += 8;
            }
            if !plain_word(word_at(text, len - 8)) {
                return false;
            }
            buf.reserve(len + 2);
            buf.push(b'"');
            buf.extend_from_slice(text);
            buf.push(b'"');
            return true;
        }
    }
    quoted[len + 1] = b'"';
    let end = buf.len() + len + 2;
    buf.extend_from_slice(&quoted);
    buf.truncate(end);
    true
}

/// A JSON string as Python's `ensure_ascii` writes it: `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`,
/// `\u00XX` for the other controls and DEL, `\uXXXX` (lowercase hex) beyond ASCII, a surrogate
/// pair beyond the BMP.
fn write_str(buf: &mut Vec<u8>, text: &str) {
    if !write_plain(buf, text.as_bytes()) {
        write_escaped(buf, text);
    }
}

/// [`write_str`] of a string with some byte to escape.
#[cold]
#[inline(never)]
fn write_escaped(buf: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    buf.reserve(bytes.len() + 2);
    buf.push(b'"');
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
/// rounds such ties up). Only their layout differs at times. With `decpt` where the decimal
/// point falls, counted from the first digit, repr is positional when `-4 < decpt <= 16`
/// (`1234.5`, `12340000000.0`, `0.00012`), and otherwise `d[.ddd]e±XX`, its exponent signed and
/// two digits at least (`1e+16`, `1.5e-07`). ryu is positional when `-5 < decpt <= 16`, and
/// otherwise writes `d[.ddd]e[-]X`.
fn write_float(buf: &mut Vec<u8>, number: f64) -> bool {
    if !number.is_finite() {
        return false;
    }
    let mut formatter = ryu::Buffer::new();
    let text = formatter.format_finite(number.abs()).as_bytes();
    if number.is_sign_negative() {
        buf.push(b'-');
    }
    // An exponent has its `e` among the last five bytes (`e-324`).
    let tail = text.len().saturating_sub(5);
    match text[tail..].iter().position(|&b| b == b'e') {
        Some(e) => {
            let (mantissa, exponent) = text.split_at(tail + e + 1);
            let (sign, digits) = match exponent {
                [b'-', digits @ ..] => (b'-', digits),
                digits => (b'+', digits),
            };
            buf.extend_from_slice(mantissa);
            buf.push(sign);
            if digits.len() < 2 {
                buf.push(b'0');
            }
            buf.extend_from_slice(digits);
        }
        // `decpt == -4`: positional for ryu only (`0.0000123` is repr's `1.23e-05`).
        None => match text.strip_prefix(b"0.0000") {
            Some([first, rest @ ..]) => {
                buf.push(*first);
                if !rest.is_empty() {
                    buf.push(b'.');
                    buf.extend_from_slice(rest);
                }
                buf.extend_from_slice(b"e-05");
            }
            _ => buf.extend_from_slice(text),
        },
    }
    true
}
