//! Buffers kept between graph builds: at 100k steps a fresh allocation costs more in page
//! faults than the work done in it.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use pyo3::prelude::*;
use pyo3::types::PyString;

/// Buffers longer than this are not kept (about 200 MiB at most in all).
const KEEP: usize = 1 << 23;

/// The scratch space of one build.
#[derive(Default)]
pub(crate) struct Scratch {
    /// The name table's slots.
    pub(crate) slots: Vec<u32>,
    /// Each step's name hash and object address.
    pub(crate) entries: Vec<(u64, usize)>,
    /// Every dependency in order, with its hash (empty whenever kept).
    pub(crate) deps: Vec<(u64, Py<PyString>)>,
    /// Where each step's dependencies end in `deps`.
    pub(crate) row_ends: Vec<usize>,
}

thread_local! {
    static SPARE: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

/// A thread's spare [`Scratch`] (new buffers when it has none, as in a nested build), handed
/// back when dropped.
pub(crate) struct Lease(Option<Scratch>);

impl Lease {
    pub(crate) fn take() -> Lease {
        let spare = SPARE
            .try_with(|spare| spare.borrow_mut().take())
            .ok()
            .flatten();
        Lease(Some(spare.unwrap_or_default()))
    }
}

impl Deref for Lease {
    type Target = Scratch;

    fn deref(&self) -> &Scratch {
        self.0
            .as_ref()
            .expect("a lease holds its scratch until dropped")
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut Scratch {
        self.0
            .as_mut()
            .expect("a lease holds its scratch until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(mut scratch) = self.0.take() else {
            return;
        };
        // Dropped in a build, with the GIL held: the references are released here and now.
        scratch.deps.clear();
        let sizes = [
            scratch.slots.capacity(),
            scratch.entries.capacity(),
            scratch.deps.capacity(),
            scratch.row_ends.capacity(),
        ];
        if sizes.iter().all(|&size| size <= KEEP) {
            // At thread exit the spare may be gone already; the buffers are then just freed.
            let _ = SPARE.try_with(|spare| *spare.borrow_mut() = Some(scratch));
        }
    }
}
