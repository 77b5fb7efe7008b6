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
/// keys would not. The names' hashes sit in a column by position, read near the step being
/// resolved, since dependencies mostly name nearby steps.
pub(crate) struct NameTable<'a, 'py> {
    steps: &'a [Borrowed<'a, 'py, PyString>],
    slots: Vec<u32>,
    mask: usize,
    hashes: Vec<u64>,
}

impl<'a, 'py> NameTable<'a, 'py> {
    /// Index `steps` by position; also the position of the first name that repeats an earlier
    /// one (the earlier position keeps the name). Conversion errors (a lone surrogate) propagate.
    pub(crate) fn new(steps: &'a [Borrowed<'a, 'py, PyString>]) -> PyResult<(Self, Option<usize>)> {
        let n = steps.len();
        let size = (2 * n).max(8).next_power_of_two();
        let mut table = NameTable {
            steps,
            slots: vec![0; size],
            mask: size - 1,
            hashes: Vec::with_capacity(n),
        };
        let mut duplicate = None;
        for (i, step) in steps.iter().enumerate() {
            let hash = str_hash(step)?;
            // Converted here so that a name that is not valid UTF-8 fails the build.
            step.to_str()?;
            table.hashes.push(hash);
            match table.find(hash, step)? {
                Some(_) => {
                    duplicate.get_or_insert(i);
                }
                None => {
                    let free = table.probe(hash).find(|&slot| table.slots[slot] == 0);
                    let free = free.expect("the table is never more than half full");
                    table.slots[free] =
                        u32::try_from(i + 1).expect("graphs hold at most u32::MAX steps");
                }
            }
        }
        Ok((table, duplicate))
    }

    /// Slots from `hash`'s home slot on, wrapping around once.
    #[inline]
    fn probe(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let start = hash as usize & self.mask;
        (0..self.slots.len()).map(move |k| (start + k) & self.mask)
    }

    /// The step named by `name`: the same object, else the same text (read only then).
    #[inline]
    fn find(&self, hash: u64, name: &Bound<'_, PyString>) -> PyResult<Option<u32>> {
        let object = name.as_ptr();
        let mut text: Option<&str> = None;
        for slot in self.probe(hash) {
            let occupant = match self.slots[slot] {
                0 => return Ok(None),
                step => step - 1,
            };
            let step = &self.steps[occupant as usize];
            if step.as_ptr() == object {
                return Ok(Some(occupant));
            }
            if self.hashes[occupant as usize] == hash {
                let wanted = match text {
                    Some(wanted) => wanted,
                    None => *text.insert(name.to_str()?),
                };
                if step.to_str()? == wanted {
                    return Ok(Some(occupant));
                }
            }
        }
        Ok(None)
    }

    /// The position of the step called `name`: the same object, else the same text.
    #[inline]
    pub(crate) fn get(&self, name: &Bound<'_, PyString>) -> PyResult<Option<u32>> {
        self.find(str_hash(name)?, name)
    }
}
