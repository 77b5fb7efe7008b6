//! Step names resolved through the hashes CPython caches in its str objects, and object
//! identity: a dependency that is the very object naming a step (the usual case) is found
//! without hashing or comparing its text.

use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};
use pyo3::Borrowed;

/// Python's str hash: equal texts hash alike, so it can stand for a hash of the text.
/// (A subclass instance is converted here, so a lone surrogate in one fails already.)
pub(crate) fn str_hash(name: &Bound<'_, PyString>) -> PyResult<u64> {
    let hash = if name.is_exact_instance_of::<PyString>() {
        name.hash()?
    } else {
        // A subclass may define its own __hash__; hash an exact copy of the text instead.
        PyString::new(name.py(), name.to_str()?).hash()?
    };
    Ok(u64::from_ne_bytes(hash.to_ne_bytes()))
}

/// The hash [`NameTable`] wants for `name`; also checks that it is valid UTF-8 (a lone
/// surrogate fails), as every name must be.
#[inline]
fn name_hash(name: &Bound<'_, PyString>) -> PyResult<u64> {
    name.to_str()?;
    str_hash(name)
}

/// Step names to positions, borrowing the names tuple for as long as it lives.
///
/// Open addressing with linear probing over a power-of-two array of `u32` (0: empty, else
/// position + 1) at most half full (1 MiB for 100k steps), beside each step's
/// `(hash, object address)`; addresses are compared, never dereferenced.
pub(crate) struct NameTable<'a, 'py> {
    names: &'a Bound<'py, PyTuple>,
    mask: usize,
    slots: &'a mut Vec<u32>,
    entries: &'a mut Vec<(u64, usize)>,
}

/// Where a probe ended: at the step of that name, or at the empty slot it would take.
enum Probe {
    Found(u32),
    Vacant(usize),
}

impl<'a, 'py> NameTable<'a, 'py> {
    /// Index the str items of `names` by position; also the position of the first name that
    /// repeats an earlier one (the earlier position keeps the name). A non-str item (TypeError)
    /// or one that is not valid UTF-8 fails.
    pub(crate) fn new(
        names: &'a Bound<'py, PyTuple>,
        slots: &'a mut Vec<u32>,
        entries: &'a mut Vec<(u64, usize)>,
    ) -> PyResult<(Self, Option<usize>)> {
        let n = names.len();
        entries.clear();
        entries.reserve(n);
        for i in 0..n {
            let item = names.get_borrowed_item(i)?;
            let name = match item.cast_exact::<PyString>() {
                Ok(name) => name,
                Err(_) => item.cast::<PyString>()?,
            };
            entries.push((name_hash(&name)?, name.as_ptr() as usize));
        }
        let size = (2 * n).max(8).next_power_of_two();
        slots.clear();
        slots.resize(size, 0);
        let table = NameTable {
            names,
            mask: size - 1,
            slots,
            entries,
        };
        // Inserted apart from the pass over the Python objects: a tight loop of independent
        // probes, whose cache misses the processor overlaps.
        let mut duplicate = None;
        for i in 0..n {
            let (hash, object) = table.entries[i];
            match table.probe(hash, object, || table.name(i))? {
                Probe::Found(_) => {
                    duplicate.get_or_insert(i);
                }
                Probe::Vacant(slot) => {
                    table.slots[slot] =
                        u32::try_from(i + 1).expect("graphs hold at most u32::MAX steps");
                }
            }
        }
        Ok((table, duplicate))
    }

    /// Step `step`'s name (a str, checked when the table was built).
    fn name(&self, step: usize) -> PyResult<Borrowed<'a, 'py, PyString>> {
        Ok(self.names.get_borrowed_item(step)?.cast::<PyString>()?)
    }

    /// Probe from `hash`'s home slot for the name `object`: the same object, else the same
    /// text (`name` read only then). The table is at most half full, so an empty slot always
    /// ends the probe.
    #[inline]
    fn probe<'b>(
        &self,
        hash: u64,
        object: usize,
        name: impl FnOnce() -> PyResult<Borrowed<'b, 'py, PyString>>,
    ) -> PyResult<Probe> {
        let mut name = Some(name);
        let mut held: Option<Borrowed<'b, 'py, PyString>> = None;
        let mut slot = hash as usize & self.mask;
        loop {
            let occupant = match self.slots[slot] {
                0 => return Ok(Probe::Vacant(slot)),
                step => step - 1,
            };
            let (step_hash, step_object) = self.entries[occupant as usize];
            if step_object == object {
                return Ok(Probe::Found(occupant));
            }
            if step_hash == hash {
                if let Some(read) = name.take() {
                    held = Some(read()?);
                }
                let wanted = held.as_ref().map(|name| name.to_str()).transpose()?;
                if wanted == Some(self.name(occupant as usize)?.to_str()?) {
                    return Ok(Probe::Found(occupant));
                }
            }
            slot = (slot + 1) & self.mask;
        }
    }

    /// Whether `name` is the very object that names step `step`.
    #[inline]
    pub(crate) fn is_name(&self, step: u32, name: &Bound<'_, PyString>) -> bool {
        self.entries[step as usize].1 == name.as_ptr() as usize
    }

    /// The position of the step called `name`, whose [`str_hash`] is `hash`.
    #[inline]
    pub(crate) fn get(&self, hash: u64, name: &Bound<'py, PyString>) -> PyResult<Option<u32>> {
        Ok(
            match self.probe(hash, name.as_ptr() as usize, || Ok(name.as_borrowed()))? {
                Probe::Found(step) => Some(step),
                Probe::Vacant(_) => None,
            },
        )
    }
}
