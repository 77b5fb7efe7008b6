//! `tasker_zmq._sender`: one call sends a whole batch of events as `[topic, payload]` messages
//! through the libzmq that pyzmq already loaded, with the GIL released once for the batch.
//!
//! Consecutive events with the same topic share a message, their payloads joined by `\n` (the
//! wire format's version 2, `tasker_zmq.wire`): at most `max_events` events and `max_bytes`
//! bytes of payload per message, a single larger event alone. `tasker_zmq.wire.group` is the
//! same rule in Python, for pyzmq's path; the tests hold the two to the same bytes.
//!
//! pyzmq releases and re-takes the GIL for every frame it sends; with the engine's threads
//! waiting for the GIL, each release wakes one of them. Here the frames' bytes are borrowed
//! while the GIL is held, then every `zmq_send` of the batch runs without it.
//!
//! The library is opened with `RTLD_NOLOAD`: only a copy already in the process is accepted, so
//! the socket handle (taken from pyzmq's `Socket.underlying`) always meets the code that made
//! it. The caller keeps the socket open, and used by this thread only, while it sends.

use std::ffi::{c_int, c_void, CStr, CString};

use pyo3::exceptions::{PyOSError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

const ZMQ_DONTWAIT: c_int = 1;
const ZMQ_SNDMORE: c_int = 2;

type ZmqSend = unsafe extern "C" fn(*mut c_void, *const c_void, usize, c_int) -> c_int;
type ZmqErrno = unsafe extern "C" fn() -> c_int;
type ZmqVersion = unsafe extern "C" fn(*mut c_int, *mut c_int, *mut c_int);

/// A libzmq already loaded in this process, and one socket of it.
#[pyclass(frozen, module = "tasker_zmq._sender")]
struct Sender {
    /// The `dlopen` handle (a reference the drop gives back), as an address.
    handle: usize,
    /// The socket's `void *`, as an address.
    socket: usize,
    send: ZmqSend,
    errno: ZmqErrno,
    version: (c_int, c_int, c_int),
    path: String,
}

fn dl_error(what: &str) -> PyErr {
    // SAFETY: dlerror returns NULL or a NUL-terminated string valid until the next dl* call on
    // this thread; it is copied at once.
    let detail = unsafe {
        let message = libc::dlerror();
        if message.is_null() {
            "no detail".to_owned()
        } else {
            CStr::from_ptr(message).to_string_lossy().into_owned()
        }
    };
    PyOSError::new_err(format!("{what}: {detail}"))
}

/// `name` resolved in `handle`.
fn symbol(handle: *mut c_void, name: &CStr, path: &str) -> PyResult<*mut c_void> {
    // SAFETY: handle is a live dlopen handle; name is NUL-terminated.
    let address = unsafe { libc::dlsym(handle, name.as_ptr()) };
    if address.is_null() {
        return Err(dl_error(&format!(
            "{} has no symbol {}",
            path,
            name.to_string_lossy()
        )));
    }
    Ok(address)
}

#[pymethods]
impl Sender {
    /// Bind to the libzmq at `path`, which must already be loaded, and the socket at `socket`.
    #[new]
    fn new(path: &str, socket: usize) -> PyResult<Self> {
        if socket == 0 {
            return Err(PyOSError::new_err(
                "the socket handle is NULL (a closed socket?)",
            ));
        }
        let c_path = CString::new(path)
            .map_err(|_| PyTypeError::new_err(format!("library path {path:?} contains NUL")))?;
        // SAFETY: c_path is NUL-terminated; RTLD_NOLOAD never loads (or initialises) anything,
        // it only returns a new reference to a library that is already mapped.
        let handle = unsafe {
            libc::dlopen(
                c_path.as_ptr(),
                libc::RTLD_NOW | libc::RTLD_LOCAL | libc::RTLD_NOLOAD,
            )
        };
        if handle.is_null() {
            return Err(dl_error(&format!(
                "libzmq at {path} is not loaded in this process"
            )));
        }
        let resolved = (|| {
            let send = symbol(handle, c"zmq_send", path)?;
            let errno = symbol(handle, c"zmq_errno", path)?;
            let version = symbol(handle, c"zmq_version", path)?;
            // SAFETY: these are libzmq's exported functions, whose C signatures (zmq.h, stable
            // since 3.x) the types above spell out.
            unsafe {
                Ok::<_, PyErr>((
                    std::mem::transmute::<*mut c_void, ZmqSend>(send),
                    std::mem::transmute::<*mut c_void, ZmqErrno>(errno),
                    std::mem::transmute::<*mut c_void, ZmqVersion>(version),
                ))
            }
        })();
        let (send, errno, zmq_version) = match resolved {
            Ok(functions) => functions,
            Err(err) => {
                // SAFETY: handle came from dlopen above and is given back once.
                unsafe { libc::dlclose(handle) };
                return Err(err);
            }
        };
        let (mut major, mut minor, mut patch) = (0, 0, 0);
        // SAFETY: zmq_version writes three ints through valid pointers.
        unsafe { zmq_version(&mut major, &mut minor, &mut patch) };
        Ok(Sender {
            handle: handle as usize,
            socket,
            send,
            errno,
            version: (major, minor, patch),
            path: path.to_owned(),
        })
    }

    /// The library's `(major, minor, patch)`, as its `zmq_version` reports it.
    #[getter]
    fn version(&self) -> (c_int, c_int, c_int) {
        self.version
    }

    /// The library's path, as given.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    /// Send event i's payload under `topics[i]`, skipping a None payload, without waiting;
    /// consecutive events with equal topics share a message (see the module comment).
    ///
    /// Returns `(sent, full, messages, error)`: events sent, events refused at the high-water
    /// mark (EAGAIN on a message's topic frame: nothing of that message went out), messages
    /// sent, and 0 or the errno that stopped the batch (the events after it are neither sent
    /// nor counted). Every send runs with the GIL released once for the whole batch.
    fn send(
        &self,
        py: Python<'_>,
        topics: &Bound<'_, PyList>,
        payloads: &Bound<'_, PyList>,
        max_events: usize,
        max_bytes: usize,
    ) -> PyResult<Sent> {
        if topics.len() != payloads.len() {
            return Err(PyTypeError::new_err(format!(
                "{} topics but {} payloads",
                topics.len(),
                payloads.len()
            )));
        }
        // Owned references keep every frame's bytes alive while the GIL is released, whatever
        // happens to the lists meanwhile.
        let mut held: Vec<(Bound<'_, PyBytes>, Bound<'_, PyBytes>)> =
            Vec::with_capacity(topics.len());
        for (topic, payload) in topics.iter().zip(payloads.iter()) {
            if payload.is_none() {
                continue;
            }
            let topic = topic
                .cast_into::<PyBytes>()
                .map_err(|_| PyTypeError::new_err("zmq sender: every topic must be bytes"))?;
            held.push((topic, bytes_payload(payload)?));
        }
        let frames: Vec<(&[u8], &[u8])> = held
            .iter()
            .map(|(topic, payload)| (topic.as_bytes(), payload.as_bytes()))
            .collect();
        Ok(self.send_frames(py, &frames, max_events, max_bytes))
    }

    /// As `send`, each topic being `events[i].name` encoded as UTF-8.
    ///
    /// For a batch whose events are all wanted: no topic list to build in Python. Every name
    /// is read and checked before anything is sent, so a bad one sends nothing.
    fn send_events(
        &self,
        py: Python<'_>,
        events: &Bound<'_, PyList>,
        payloads: &Bound<'_, PyList>,
        max_events: usize,
        max_bytes: usize,
    ) -> PyResult<Sent> {
        if events.len() != payloads.len() {
            return Err(PyTypeError::new_err(format!(
                "{} events but {} payloads",
                events.len(),
                payloads.len()
            )));
        }
        let name = intern!(py, "name");
        let mut held: Vec<(Bound<'_, PyString>, Bound<'_, PyBytes>)> =
            Vec::with_capacity(events.len());
        for (event, payload) in events.iter().zip(payloads.iter()) {
            if payload.is_none() {
                continue;
            }
            let topic = event
                .getattr(name)?
                .cast_into::<PyString>()
                .map_err(|_| PyTypeError::new_err("zmq sender: an event's name must be a str"))?;
            held.push((topic, bytes_payload(payload)?));
        }
        let frames = held
            .iter()
            .map(|(topic, payload)| Ok((topic.to_str()?.as_bytes(), payload.as_bytes())))
            .collect::<PyResult<Vec<(&[u8], &[u8])>>>()?;
        Ok(self.send_frames(py, &frames, max_events, max_bytes))
    }
}

impl Sender {
    /// Every event's `(topic, payload)` sent, coalesced, with the GIL released once.
    fn send_frames(
        &self,
        py: Python<'_>,
        events: &[(&[u8], &[u8])],
        max_events: usize,
        max_bytes: usize,
    ) -> Sent {
        let (send, errno, socket) = (self.send, self.errno, self.socket);
        let limits = Limits {
            events: max_events,
            bytes: max_bytes,
        };
        py.detach(move || send_all(send, errno, socket, events, limits))
    }
}

fn bytes_payload(payload: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyBytes>> {
    payload
        .cast_into::<PyBytes>()
        .map_err(|_| PyTypeError::new_err("zmq sender: every payload must be bytes or None"))
}

/// `(events sent, events refused at the high-water mark, messages sent, errno or 0)`.
type Sent = (usize, usize, usize, c_int);

/// How much one message may carry.
#[derive(Clone, Copy)]
struct Limits {
    events: usize,
    bytes: usize,
}

/// Where the message starting at `events[start]` ends (exclusive): the run of equal topics,
/// cut before the event that would pass either limit; at least one event.
fn message_end(events: &[(&[u8], &[u8])], start: usize, limits: Limits) -> usize {
    let (topic, first) = events[start];
    let mut size = first.len();
    let mut end = start + 1;
    while let Some((next_topic, payload)) = events.get(end) {
        let grown = size + 1 + payload.len();
        if *next_topic != topic || end - start >= limits.events || grown > limits.bytes {
            break;
        }
        size = grown;
        end += 1;
    }
    end
}

/// The batch's sends, GIL released. See [`Sender::send`] for the result.
fn send_all(
    send: ZmqSend,
    errno: ZmqErrno,
    socket: usize,
    events: &[(&[u8], &[u8])],
    limits: Limits,
) -> Sent {
    let socket = socket as *mut c_void;
    let frame = |bytes: &[u8], flags: c_int| -> c_int {
        loop {
            // SAFETY: socket is a live libzmq socket of this library, used by this thread only
            // (the caller's contract); zmq_send copies the bytes before it returns.
            let rc = unsafe { send(socket, bytes.as_ptr().cast(), bytes.len(), flags) };
            if rc >= 0 {
                return 0;
            }
            // SAFETY: zmq_errno only reads the calling thread's errno.
            let code = unsafe { errno() };
            if code != libc::EINTR {
                return code;
            }
        }
    };
    let (mut sent, mut full, mut messages) = (0, 0, 0);
    let mut joined: Vec<u8> = Vec::new(); // reused for every message of several events
    let mut start = 0;
    while start < events.len() {
        let end = message_end(events, start, limits);
        let run = &events[start..end];
        start = end;
        match frame(run[0].0, ZMQ_DONTWAIT | ZMQ_SNDMORE) {
            0 => {}
            libc::EAGAIN => {
                full += run.len();
                continue;
            }
            code => return (sent, full, messages, code),
        }
        let payload = if run.len() == 1 {
            run[0].1
        } else {
            joined.clear();
            for (i, (_, payload)) in run.iter().enumerate() {
                if i > 0 {
                    joined.push(b'\n');
                }
                joined.extend_from_slice(payload);
            }
            &joined[..]
        };
        // libzmq checks the high-water mark once per message, on its first frame (a pipe
        // counts a message only when its last frame is written), so this does not meet EAGAIN;
        // any error here ends the batch, and the caller gives up the socket.
        match frame(payload, ZMQ_DONTWAIT) {
            0 => {
                sent += run.len();
                messages += 1;
            }
            code => return (sent, full, messages, code),
        }
    }
    (sent, full, messages, 0)
}

impl Drop for Sender {
    fn drop(&mut self) {
        // SAFETY: handle is the reference dlopen gave in new(), given back exactly once.
        unsafe { libc::dlclose(self.handle as *mut c_void) };
    }
}

/// The `tasker_zmq._sender` module.
#[pymodule]
fn _sender(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Sender>()?;
    Ok(())
}
