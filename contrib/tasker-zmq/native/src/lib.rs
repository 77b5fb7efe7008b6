//! `tasker_zmq._sender`: a publisher thread that owns a ZeroMQ socket and sends queued events
//! through the libzmq that pyzmq already loaded, without ever taking the GIL.
//!
//! The engine's threads call [`Publisher::publish`] with a batch of events: the events nobody
//! subscribes to are skipped, the others encoded by `tasker_core.encode_event_runs` into
//! messages, consecutive events with the same topic in one, their payloads joined by `\n` (the
//! wire format's version 2, `tasker_zmq.wire`): at most `max_events` events and `max_bytes`
//! bytes of payload per message, a single larger event alone. `tasker_zmq.wire.group` states the
//! same rule in Python; the tests hold the two to the same bytes. The messages go into a
//! bounded queue (at most `capacity` events; a message that does not fit is dropped and
//! counted) and the caller returns: it never waits on the network and never gives up the GIL.
//!
//! The publisher's own thread takes the queue whole every `GATHER` (sooner when `WAKE_AT` events
//! wait), sends every message without waiting
//! (`ZMQ_DONTWAIT`: a message refused at the high-water mark is dropped and counted), and then
//! reads the subscription messages an XPUB socket receives, so the sink can skip events nobody
//! subscribes to. A Python thread doing this work would take the GIL from the engine for every
//! batch; this one runs beside it.
//!
//! ZeroMQ sockets are not thread-safe: from `Publisher::new` until `stop` returns, the socket
//! belongs to the publisher's thread, and the caller must not touch it (nor close it). The
//! library is opened with `RTLD_NOLOAD`: only a copy already in the process is accepted, so the
//! socket handle (taken from pyzmq's `Socket.underlying`) always meets the code that made it.

use std::collections::VecDeque;
use std::ffi::{c_int, c_void, CStr, CString};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

const ZMQ_DONTWAIT: c_int = 1;
const ZMQ_SNDMORE: c_int = 2;
/// How long the thread lets events gather before it sends them (and looks for subscriptions).
/// Waking for every push would cost the pushing thread a futex call and this thread and
/// libzmq's a wake-up per message; an event bus may lag by this much.
const GATHER: Duration = Duration::from_millis(10);
/// Queued events that wake the thread before `GATHER` has passed (at most half the capacity).
const WAKE_AT: usize = 256;
/// How long the thread sleeps after a round with nothing to send; the first push after such a
/// round wakes it at once, so an idle bus neither spins nor delays the next event.
const IDLE: Duration = Duration::from_millis(200);

type ZmqSend = unsafe extern "C" fn(*mut c_void, *const c_void, usize, c_int) -> c_int;
type ZmqErrno = unsafe extern "C" fn() -> c_int;
type ZmqVersion = unsafe extern "C" fn(*mut c_int, *mut c_int, *mut c_int);
type ZmqMsgInit = unsafe extern "C" fn(*mut ZmqMsg) -> c_int;
type ZmqMsgRecv = unsafe extern "C" fn(*mut ZmqMsg, *mut c_void, c_int) -> c_int;
type ZmqMsgData = unsafe extern "C" fn(*mut ZmqMsg) -> *mut c_void;
type ZmqMsgSize = unsafe extern "C" fn(*const ZmqMsg) -> usize;
type ZmqMsgClose = unsafe extern "C" fn(*mut ZmqMsg) -> c_int;

/// libzmq's `zmq_msg_t`: 64 opaque bytes, pointer-aligned (zmq.h).
#[repr(C, align(8))]
struct ZmqMsg([u8; 64]);

/// The libzmq functions the publisher calls.
#[derive(Clone, Copy)]
struct Lib {
    send: ZmqSend,
    errno: ZmqErrno,
    msg_init: ZmqMsgInit,
    msg_recv: ZmqMsgRecv,
    msg_data: ZmqMsgData,
    msg_size: ZmqMsgSize,
    msg_close: ZmqMsgClose,
}

/// One message: a topic and the payloads of `events` events, joined.
struct Message {
    topic: Vec<u8>,
    payload: Vec<u8>,
    events: usize,
}

/// What the pushing threads and the publisher's thread share, under one lock.
#[derive(Default)]
struct Queue {
    messages: VecDeque<Message>,
    events: usize,
    /// The thread waits on the condition variable: a push must wake it.
    sleeping: bool,
    /// The thread's last round sent nothing: the next push wakes it whatever its size.
    idle: bool,
    /// `stop` was called: no more pushes; the thread sends what is queued and ends.
    stopping: bool,
}

/// Counters, read without the queue's lock.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    messages: AtomicU64,
    /// Events refused: the socket at its high-water mark, or the queue full.
    full: AtomicU64,
    /// Events pushed after a send failed or `stop` was called.
    closed: AtomicU64,
    /// Events `publish` skipped: nobody subscribes to their names.
    unwanted: AtomicU64,
    /// `stop` was called, or a send failed: `publish` counts events as closed at once.
    shut: AtomicBool,
    /// 0, or the errno of the send that failed (nothing is sent after it).
    error: AtomicI32,
    /// Bumped on every change of `subscriptions`.
    generation: AtomicU64,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    counters: Counters,
    subscriptions: Mutex<Vec<Vec<u8>>>,
    lib: Lib,
    /// The socket's `void *`, as an address.
    socket: usize,
    limits: Limits,
    capacity: usize,
    wake_at: usize,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing under these locks can panic half-way through a change; a poisoned lock's data
    // is as good as any.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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

/// How much one message may carry.
#[derive(Clone, Copy)]
struct Limits {
    events: usize,
    bytes: usize,
}

/// A libzmq already loaded in this process, one socket of it, and the thread that sends on it.
#[pyclass(frozen, module = "tasker_zmq._sender")]
struct Publisher {
    /// The `dlopen` handle (a reference the drop gives back), as an address.
    handle: usize,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    version: (c_int, c_int, c_int),
    path: String,
    /// The keyword arguments of `tasker_core.encode_event_runs`: this publisher's limits.
    limits: Py<PyDict>,
}

/// `tasker_core.encode_event_runs`, imported on first use.
static ENCODE_RUNS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Resolve every function the publisher needs; `handle` stays open.
fn resolve(handle: *mut c_void, path: &str) -> PyResult<(Lib, ZmqVersion)> {
    let address = |name: &CStr| symbol(handle, name, path);
    let (send, errno, version) = (
        address(c"zmq_send")?,
        address(c"zmq_errno")?,
        address(c"zmq_version")?,
    );
    let (init, recv, data, size, close) = (
        address(c"zmq_msg_init")?,
        address(c"zmq_msg_recv")?,
        address(c"zmq_msg_data")?,
        address(c"zmq_msg_size")?,
        address(c"zmq_msg_close")?,
    );
    // SAFETY: these are libzmq's exported functions, whose C signatures (zmq.h, stable since
    // 3.x) the types above spell out.
    unsafe {
        Ok((
            Lib {
                send: std::mem::transmute::<*mut c_void, ZmqSend>(send),
                errno: std::mem::transmute::<*mut c_void, ZmqErrno>(errno),
                msg_init: std::mem::transmute::<*mut c_void, ZmqMsgInit>(init),
                msg_recv: std::mem::transmute::<*mut c_void, ZmqMsgRecv>(recv),
                msg_data: std::mem::transmute::<*mut c_void, ZmqMsgData>(data),
                msg_size: std::mem::transmute::<*mut c_void, ZmqMsgSize>(size),
                msg_close: std::mem::transmute::<*mut c_void, ZmqMsgClose>(close),
            },
            std::mem::transmute::<*mut c_void, ZmqVersion>(version),
        ))
    }
}

#[pymethods]
impl Publisher {
    /// Bind to the libzmq at `path`, which must already be loaded, for the socket at `socket`
    /// (see the module comment for the limits); `start` starts the thread.
    #[new]
    fn new(
        py: Python<'_>,
        path: &str,
        socket: usize,
        max_events: usize,
        max_bytes: usize,
        capacity: usize,
    ) -> PyResult<Self> {
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
        let (lib, zmq_version) = match resolve(handle, path) {
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
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            counters: Counters::default(),
            subscriptions: Mutex::new(Vec::new()),
            lib,
            socket,
            limits: Limits {
                events: max_events,
                bytes: max_bytes,
            },
            capacity,
            wake_at: WAKE_AT.min(capacity / 2).max(1),
        });
        let limits = PyDict::new(py);
        limits.set_item("max_events", max_events)?;
        limits.set_item("max_bytes", max_bytes)?;
        Ok(Publisher {
            handle: handle as usize,
            shared,
            thread: Mutex::new(None),
            version: (major, minor, patch),
            path: path.to_owned(),
            limits: limits.unbind(),
        })
    }

    /// Start the thread: from here until `stop` returns, the socket is the thread's alone.
    fn start(&self) -> PyResult<()> {
        let mut thread = locked(&self.thread);
        if thread.is_some() || locked(&self.shared.queue).stopping {
            return Err(PyRuntimeError::new_err(
                "the zmq publisher was already started",
            ));
        }
        let worker = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("tasker-zmq-pub".into())
            .spawn(move || run(&worker))
            .map_err(|err| {
                PyOSError::new_err(format!("cannot start the publisher thread: {err}"))
            })?;
        *thread = Some(spawned);
        Ok(())
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

    /// Queue messages made already: `(topic, events, payload)` each, as
    /// `tasker_core.encode_event_runs` returns them (`topic` a str, sent as UTF-8), within the
    /// limits this publisher was made with; returns at once. Every run is checked before
    /// anything is queued, so a bad one queues nothing. Returns the number of events queued.
    fn push_runs(&self, runs: &Bound<'_, PyList>) -> PyResult<usize> {
        let limits = self.shared.limits;
        let mut messages = Vec::with_capacity(runs.len());
        for item in runs.iter() {
            let (topic, events, payload): (Bound<'_, PyString>, usize, Bound<'_, PyBytes>) =
                item.extract().map_err(|_| {
                    PyTypeError::new_err(
                        "zmq publisher: every run must be a (str, int, bytes) tuple",
                    )
                })?;
            let payload = payload.as_bytes();
            if events == 0 || events > limits.events || (events > 1 && payload.len() > limits.bytes)
            {
                return Err(PyValueError::new_err(format!(
                    "zmq publisher: a run of {events} events in {} bytes is outside the \
                     limits ({} events, {} bytes)",
                    payload.len(),
                    limits.events,
                    limits.bytes
                )));
            }
            messages.push(Message {
                topic: topic.to_str()?.as_bytes().to_vec(),
                payload: payload.to_vec(),
                events,
            });
        }
        Ok(self.enqueue_messages(messages))
    }

    /// An event sink's whole `publish`, in one call from the engine's thread: skip the events
    /// whose names nobody subscribes to (a subscription is a prefix of the name), encode the
    /// others into messages with `tasker_core.encode_event_runs`, queue them; returns at once.
    /// The encoder's errors propagate (for an event that is not plain JSON), and then nothing is
    /// queued or counted. Returns the number of events queued.
    fn publish(&self, events: &Bound<'_, PyAny>) -> PyResult<usize> {
        let py = events.py();
        let events = match events.cast::<PyList>() {
            Ok(list) => list.clone(),
            Err(_) => PyList::new(py, events.try_iter()?.collect::<PyResult<Vec<_>>>()?)?,
        };
        let counters = &self.shared.counters;
        let total = events.len() as u64;
        if counters.shut.load(Ordering::Relaxed) {
            counters.closed.fetch_add(total, Ordering::Relaxed);
            return Ok(0);
        }
        let wanted = {
            let subscriptions = locked(&self.shared.subscriptions);
            if subscriptions.iter().any(Vec::is_empty) {
                events
            } else {
                wanted_events(&events, &subscriptions)?
            }
        };
        let unwanted = total - wanted.len() as u64;
        let queued = if wanted.is_empty() {
            0
        } else {
            let encode = ENCODE_RUNS.import(py, "tasker_core", "encode_event_runs")?;
            let runs = encode.call((&wanted,), Some(self.limits.bind(py)))?;
            let runs = runs.cast::<PyList>().map_err(|_| {
                PyTypeError::new_err("tasker_core.encode_event_runs did not return a list")
            })?;
            self.push_runs(runs)?
        };
        counters.unwanted.fetch_add(unwanted, Ordering::Relaxed);
        Ok(queued)
    }

    /// `(sent, messages, full, closed, error, unwanted)`: events sent, messages sent, events
    /// refused at the high-water mark (the socket's, or the queue's `capacity`), events pushed
    /// after a failed send or `stop`, 0 or the errno of the send that failed, and events
    /// `publish` skipped for want of a subscriber.
    fn stats(&self) -> (u64, u64, u64, u64, c_int, u64) {
        let counters = &self.shared.counters;
        (
            counters.sent.load(Ordering::Relaxed),
            counters.messages.load(Ordering::Relaxed),
            counters.full.load(Ordering::Relaxed),
            counters.closed.load(Ordering::Relaxed),
            counters.error.load(Ordering::Relaxed),
            counters.unwanted.load(Ordering::Relaxed),
        )
    }

    /// Bumped whenever the subscriptions change: a cheap check before reading them.
    #[getter]
    fn generation(&self) -> u64 {
        self.shared.counters.generation.load(Ordering::Acquire)
    }

    /// `(generation, prefixes)`: the topic prefixes someone downstream subscribes to.
    fn subscriptions<'py>(&self, py: Python<'py>) -> (u64, Vec<Bound<'py, PyBytes>>) {
        let prefixes = locked(&self.shared.subscriptions);
        let generation = self.shared.counters.generation.load(Ordering::Acquire);
        let list = prefixes.iter().map(|p| PyBytes::new(py, p)).collect();
        (generation, list)
    }

    /// Events queued and not yet taken by the thread.
    fn queued(&self) -> usize {
        locked(&self.shared.queue).events
    }

    /// Send what is queued, stop the thread and wait for it (with the GIL released); the
    /// socket is the caller's again when this returns. Idempotent; later pushes are counted
    /// as closed.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let thread = locked(&self.thread).take();
        locked(&self.shared.queue).stopping = true;
        self.shared.counters.shut.store(true, Ordering::Relaxed);
        if let Some(thread) = thread {
            py.detach(|| stop_and_join(&self.shared, thread))
                .map_err(|_| PyRuntimeError::new_err("the zmq publisher thread panicked"))?;
        }
        Ok(())
    }
}

/// The events someone subscribes to: those whose name starts with one of `subscriptions`
/// (none of them empty). Each run of one name object is matched once.
fn wanted_events<'py>(
    events: &Bound<'py, PyList>,
    subscriptions: &[Vec<u8>],
) -> PyResult<Bound<'py, PyList>> {
    let py = events.py();
    let name = pyo3::intern!(py, "name");
    let wanted = PyList::empty(py);
    let mut last: Option<(Bound<'py, PyAny>, bool)> = None;
    for event in events.iter() {
        let this = event.getattr(name)?;
        let keep = match &last {
            Some((previous, keep)) if previous.is(&this) => *keep,
            _ => {
                let text = this.cast::<PyString>().map_err(|_| {
                    PyTypeError::new_err("zmq publisher: an event's name must be a str")
                })?;
                let topic = text.to_str()?.as_bytes();
                let keep = subscriptions.iter().any(|prefix| topic.starts_with(prefix));
                last = Some((this, keep));
                keep
            }
        };
        if keep {
            wanted.append(event)?;
        }
    }
    Ok(wanted)
}

fn stop_and_join(shared: &Shared, thread: JoinHandle<()>) -> std::thread::Result<()> {
    locked(&shared.queue).stopping = true;
    shared.wake.notify_one();
    thread.join()
}

impl Publisher {
    /// Queue whole messages while they fit; the number of events queued.
    fn enqueue_messages(&self, messages: Vec<Message>) -> usize {
        if messages.is_empty() {
            return 0;
        }
        let shared = &self.shared;
        let counters = &shared.counters;
        let (mut queued, mut full, mut closed) = (0, 0, 0);
        let wake = {
            let mut queue = locked(&shared.queue);
            for message in messages {
                let n = message.events;
                if queue.stopping || counters.error.load(Ordering::Relaxed) != 0 {
                    closed += n;
                } else if queue.events + n > shared.capacity {
                    full += n;
                } else {
                    queue.events += n;
                    queue.messages.push_back(message);
                    queued += n;
                }
            }
            queued > 0 && queue.sleeping && (queue.idle || queue.events >= shared.wake_at)
        };
        if wake {
            shared.wake.notify_one();
        }
        counters.full.fetch_add(full as u64, Ordering::Relaxed);
        counters.closed.fetch_add(closed as u64, Ordering::Relaxed);
        queued
    }
}

/// The publisher's thread: take the queue, send it, read subscriptions; until stopped.
fn run(shared: &Shared) {
    let mut batch: Vec<Message> = Vec::new();
    loop {
        let stopping = {
            let mut queue = locked(&shared.queue);
            if queue.events < shared.wake_at && !queue.stopping {
                queue.sleeping = true;
                let wait = if queue.idle { IDLE } else { GATHER };
                queue = shared
                    .wake
                    .wait_timeout(queue, wait)
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0;
                queue.sleeping = false;
            }
            queue.idle = queue.messages.is_empty();
            batch.extend(queue.messages.drain(..));
            queue.events = 0;
            queue.stopping
        };
        send_all(shared, &batch);
        batch.clear();
        if shared.counters.error.load(Ordering::Relaxed) == 0 {
            read_subscriptions(shared);
        }
        if stopping {
            return;
        }
    }
}

/// Send one frame without waiting: 0, or the errno (never EINTR).
fn send_frame(shared: &Shared, bytes: &[u8], flags: c_int) -> c_int {
    let socket = shared.socket as *mut c_void;
    loop {
        // SAFETY: the socket is a live libzmq socket of this library, used by this thread only
        // until `stop` returns (the caller's contract); zmq_send copies the bytes.
        let rc = unsafe { (shared.lib.send)(socket, bytes.as_ptr().cast(), bytes.len(), flags) };
        if rc >= 0 {
            return 0;
        }
        // SAFETY: zmq_errno only reads the calling thread's errno.
        let code = unsafe { (shared.lib.errno)() };
        if code != libc::EINTR {
            return code;
        }
    }
}

/// A send failed with errno `code`: nothing is sent from now on.
fn fail(counters: &Counters, code: c_int) {
    counters.error.store(code, Ordering::Relaxed);
    counters.shut.store(true, Ordering::Relaxed);
}

/// Send every message of the batch, counting; after a failed send, count the rest as closed.
fn send_all(shared: &Shared, batch: &[Message]) {
    let counters = &shared.counters;
    let (mut sent, mut messages, mut full, mut closed) = (0, 0, 0, 0);
    for message in batch {
        if counters.error.load(Ordering::Relaxed) != 0 {
            closed += message.events;
            continue;
        }
        match send_frame(shared, &message.topic, ZMQ_DONTWAIT | ZMQ_SNDMORE) {
            0 => {}
            libc::EAGAIN => {
                full += message.events;
                continue;
            }
            code => {
                fail(counters, code);
                closed += message.events;
                continue;
            }
        }
        // libzmq checks the high-water mark once per message, on its first frame (a pipe
        // counts a message only when its last frame is written), so this does not meet EAGAIN;
        // any error here ends the sending.
        match send_frame(shared, &message.payload, ZMQ_DONTWAIT) {
            0 => {
                sent += message.events;
                messages += 1;
            }
            code => {
                fail(counters, code);
                closed += message.events;
            }
        }
    }
    counters.sent.fetch_add(sent as u64, Ordering::Relaxed);
    counters.messages.fetch_add(messages, Ordering::Relaxed);
    counters.full.fetch_add(full as u64, Ordering::Relaxed);
    counters.closed.fetch_add(closed as u64, Ordering::Relaxed);
}

/// Apply the (un)subscription messages waiting on the XPUB socket: `\x01prefix` subscribes,
/// `\x00prefix` leaves; anything else is ignored.
fn read_subscriptions(shared: &Shared) {
    let lib = shared.lib;
    let socket = shared.socket as *mut c_void;
    let mut changes: Vec<(u8, Vec<u8>)> = Vec::new();
    loop {
        let mut msg = ZmqMsg([0; 64]);
        // SAFETY: msg is a zmq_msg_t-sized, aligned buffer; init, recv and close follow
        // libzmq's message protocol, and data/size are read before close.
        let received = unsafe {
            (lib.msg_init)(&mut msg);
            let rc = (lib.msg_recv)(&mut msg, socket, ZMQ_DONTWAIT);
            let got = if rc >= 0 {
                let size = (lib.msg_size)(&msg);
                let data = (lib.msg_data)(&mut msg).cast::<u8>();
                Some(if size == 0 || data.is_null() {
                    Vec::new()
                } else {
                    std::slice::from_raw_parts(data, size).to_vec()
                })
            } else {
                None
            };
            (lib.msg_close)(&mut msg);
            got
        };
        match received {
            Some(message) => {
                if let Some((&kind, prefix)) = message.split_first() {
                    changes.push((kind, prefix.to_vec()));
                }
            }
            None => {
                // SAFETY: zmq_errno only reads the calling thread's errno.
                if unsafe { (lib.errno)() } == libc::EINTR {
                    continue;
                }
                break;
            }
        }
    }
    if changes.is_empty() {
        return;
    }
    let mut prefixes = locked(&shared.subscriptions);
    let mut changed = false;
    for (kind, prefix) in changes {
        let known = prefixes.iter().position(|p| *p == prefix);
        match (kind, known) {
            (1, None) => {
                prefixes.push(prefix);
                changed = true;
            }
            (0, Some(index)) => {
                prefixes.swap_remove(index);
                changed = true;
            }
            _ => {}
        }
    }
    if changed {
        shared.counters.generation.fetch_add(1, Ordering::Release);
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // The thread must be gone before the library reference is: stop it if nobody did.
        let thread = self
            .thread
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread {
            // A panicked thread has nothing left to send; the library goes all the same.
            let _ = stop_and_join(&self.shared, thread);
        }
        // SAFETY: handle is the reference dlopen gave in new(), given back exactly once, after
        // the only thread calling into the library through it has ended.
        unsafe { libc::dlclose(self.handle as *mut c_void) };
    }
}

/// The `tasker_zmq._sender` module.
#[pymodule]
fn _sender(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Publisher>()?;
    Ok(())
}
