//! Step names resolved through the hashes CPython caches in its str objects, and object
//! identity: a dependency that is the very object naming a step (the usual case) is found
//! without hashing or even reading its text.

use pyo3::prelude::*;
use pyo3::types::PyString;
use pyo3::Borrowed;

/// Python's str hash: equal texts hash alike, so it can stand for a hash of the text.
fn str_hash(name: &Bound<'_, PyString>) -> PyResult<u64> {
    let hash = if name.is_exact_instance_of::<PyString>() {
        name.hash()?
    } else {
        // A subclass may define its own __hash__; hash an exact copy of the text instead.
        PyString::new(name.py(), name.to_str()?).hash()?
    };
    Ok(u64::from_ne_bytes(hash.to_ne_bytes()))
}

/// Step names to positions, borrowing the Python strings for as long as it lives.
///
/// Open addressing with linear probing over a power-of-two array of `u32` (0: empty, else
/// position + 1) at most half full: 1 MiB for 100k steps, so it stays in cache, where a map of
/// keys would not. The per-step columns are read near the step being resolved, since
/// dependencies mostly name nearby steps.
pub(crate) struct NameTable<'a> {
    slots: Vec<u32>,
    mask: usize,
    hashes: Vec<u64>,
    /// Object addresses, compared only (never dereferenced).
    objects: Vec<usize>,
    texts: Vec<&'a str>,
}

impl<'a> NameTable<'a> {
    /// Index `steps` by position; also the position of the first name that repeats an earlier
    /// one (the earlier position keeps the name). Conversion errors (a lone surrogate) propagate.
    pub(crate) fn new(steps: &'a [Borrowed<'_, '_, PyString>]) -> PyResult<(Self, Option<usize>)> {
        let n = steps.len();
        let size = (2 * n).max(8).next_power_of_two();
        let mut table = NameTable {
            slots: vec![0; size],
            mask: size - 1,
            hashes: Vec::with_capacity(n),
            objects: Vec::with_capacity(n),
            texts: Vec::with_capacity(n),
        };
        let mut duplicate = None;
        for (i, step) in steps.iter().enumerate() {
            let (hash, object, text) = (str_hash(step)?, step.as_ptr() as usize, step.to_str()?);
            let mut slot = hash as usize & table.mask;
            let mut repeated = false;
            while let Some(j) = table.occupant(slot) {
                if table.objects[j] == object || (table.hashes[j] == hash && table.texts[j] == text)
                {
                    repeated = true;
                    break;
                }
                slot = (slot + 1) & table.mask;
            }
            if repeated {
                duplicate.get_or_insert(i);
            } else {
                table.slots[slot] =
                    u32::try_from(i + 1).expect("graphs hold at most u32::MAX steps");
            }
            table.hashes.push(hash);
            table.objects.push(object);
            table.texts.push(text);
        }
        Ok((table, duplicate))
    }

    #[inline]
    fn occupant(&self, slot: usize) -> Option<usize> {
        match self.slots[slot] {
            0 => None,
            step => Some(step as usize - 1),
        }
    }

    /// The position of the step called `name`: the same object, else the same text.
    #[inline]
    pub(crate) fn get(&self, name: &Bound<'_, PyString>) -> PyResult<Option<u32>> {
        let (hash, object) = (str_hash(name)?, name.as_ptr() as usize);
        let mut text: Option<&str> = None;
        let mut slot = hash as usize & self.mask;
        while let Some(j) = self.occupant(slot) {
            if self.objects[j] == object {
                return Ok(Some(j as u32));
            }
            if self.hashes[j] == hash {
                let text = match text {
                    Some(text) => text,
                    None => *text.insert(name.to_str()?),
                };
                if self.texts[j] == text {
                    return Ok(Some(j as u32));
                }
            }
            slot = (slot + 1) & self.mask;
        }
        Ok(None)
    }
}
