//! The memory store's usual batch of step changes, applied in one native call.
//!
//! `MemoryStore.apply` runs several times per engine step, and in the interpreter each change
//! costs a dozen attribute reads and dict writes at a few hundred instructions apiece. Here the
//! same work is a C-API call each. Only the usual batch is handled: step changes of known steps
//! whose (from, to) pair the step machine's own table accepts, payloads that copy cleanly, and
//! in an atomic batch every compare-and-set won. For anything else every row is put back and
//! `None` is returned, so the store's Python paths, which also raise its errors in the planner's
//! order, decide the batch as if this had never run. The Python paths stay the reference: a
//! hypothesis test holds this one to them.

use pyo3::exceptions::PyKeyError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySet, PyString, PyTuple, PyType};
use tasker_fsm::STEP as STEP_MACHINE;

use crate::flat_json::copy_flat_dict;

/// The store's tables (the same objects its Python code reads and writes) and what deciding a
/// change needs, bound once per store.
#[pyclass(frozen, module = "tasker_core._native")]
pub(crate) struct StepBatchApplier {
    positions: Py<PyDict>,
    steps: Py<PyDict>,
    transitions: Py<PyDict>,
    metadata: Py<PyDict>,
    recent: Py<PyDict>,
    in_progress: Py<PySet>,
    step_change: Py<PyType>,
    copy_json: Py<PyAny>,
    /// The step machine's event names, by event code.
    events: Vec<Py<PyString>>,
    /// StepChange's field names (interned), in [`FIELDS`] order.
    names: Vec<Py<PyString>>,
}

/// StepChange's fields in declaration order: attrs fills an instance's `__dict__` in this order,
/// so reading it front to back finds each field where its index says.
const FIELDS: [&str; 13] = [
    "task_id",
    "step",
    "from_state",
    "to_state",
    "reason",
    "metadata",
    "lease_owner",
    "lease_expires_at",
    "results",
    "error",
    "next_retry_at",
    "expect_attempt",
    "max_attempts",
];
const TASK_ID: usize = 0;
const STEP: usize = 1;
const FROM_STATE: usize = 2;
const TO_STATE: usize = 3;
const REASON: usize = 4;
const METADATA: usize = 5;
const LEASE_OWNER: usize = 6;
const LEASE_EXPIRES_AT: usize = 7;
const RESULTS: usize = 8;
const ERROR: usize = 9;
const NEXT_RETRY_AT: usize = 10;
const EXPECT_ATTEMPT: usize = 11;
const MAX_ATTEMPTS: usize = 12;

/// A task's transition log, the metadata beside it, and its most-recent map.
#[derive(Clone)]
struct TaskLogs<'py> {
    log: Bound<'py, PyList>,
    metadata_log: Bound<'py, PyList>,
    recent: Bound<'py, PyDict>,
}

/// A change that won its compare-and-set, waiting to be logged in its task's tables.
struct Logged<'py> {
    logs: TaskLogs<'py>,
    task_id: Bound<'py, PyAny>,
    step: Bound<'py, PyAny>,
    from_state: Bound<'py, PyAny>,
    to_state: Bound<'py, PyAny>,
    record: Bound<'py, PyTuple>,
    metadata: Bound<'py, PyAny>,
}

/// A step row and its contents before this batch first moved it.
type Undo<'py> = (Bound<'py, PyDict>, Bound<'py, PyDict>);

/// The tables of one task, looked up once per run of changes naming it.
struct Named<'py> {
    task_id: Bound<'py, PyAny>,
    positions: Bound<'py, PyDict>,
    rows: Bound<'py, PyList>,
    logs: TaskLogs<'py>,
}

#[pymethods]
impl StepBatchApplier {
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        positions: Py<PyDict>,
        steps: Py<PyDict>,
        transitions: Py<PyDict>,
        metadata: Py<PyDict>,
        recent: Py<PyDict>,
        in_progress: Py<PySet>,
        step_change: Py<PyType>,
        copy_json: Py<PyAny>,
    ) -> Self {
        let events = STEP_MACHINE
            .events()
            .iter()
            .map(|name| PyString::intern(py, name).unbind())
            .collect();
        let names = FIELDS
            .iter()
            .map(|name| PyString::intern(py, name).unbind())
            .collect();
        Self {
            positions,
            steps,
            transitions,
            metadata,
            recent,
            in_progress,
            step_change,
            copy_json,
            events,
            names,
        }
    }

    /// `(applied, last sort key)` for the usual batch, written and logged; `None`, with nothing
    /// changed, for any other.
    fn apply<'py>(
        &self,
        py: Python<'py>,
        changes: &Bound<'py, PyAny>,
        now: &Bound<'py, PyAny>,
        atomic: bool,
        sort_key: i64,
    ) -> PyResult<Option<(Bound<'py, PyList>, i64)>> {
        let mut undo: Vec<Undo<'py>> = Vec::new();
        let mut logged: Vec<Logged<'py>> = Vec::new();
        // An error reading a change is left to the Python paths too: they read the same
        // changes, meet it again and raise it where the planner would.
        if let Ok(Some((applied, last))) =
            self.write(py, changes, now, atomic, sort_key, &mut undo, &mut logged)
        {
            self.log(py, logged)?;
            return Ok(Some((applied, last)));
        }
        for (row, saved) in undo.iter().rev() {
            row.update(saved.as_mapping())?;
        }
        Ok(None)
    }
}

impl StepBatchApplier {
    /// Write each change's fields to its row (keeping what to put back in `undo`) and collect
    /// its transition in `logged`; `None` at the first change outside the usual batch.
    #[allow(clippy::too_many_arguments)]
    fn write<'py>(
        &self,
        py: Python<'py>,
        changes: &Bound<'py, PyAny>,
        now: &Bound<'py, PyAny>,
        atomic: bool,
        mut sort_key: i64,
        undo: &mut Vec<Undo<'py>>,
        logged: &mut Vec<Logged<'py>>,
    ) -> PyResult<Option<(Bound<'py, PyList>, i64)>> {
        let step_change = self.step_change.bind(py);
        let positions = self.positions.bind(py);
        let steps = self.steps.bind(py);
        let transitions = self.transitions.bind(py);
        let metadata_logs = self.metadata.bind(py);
        let recents = self.recent.bind(py);
        let applied = PyList::empty(py);
        let mut named: Option<Named<'py>> = None;
        for change in changes.try_iter()? {
            let change = change?;
            if !change.get_type().is(step_change) {
                return Ok(None); // a task change, or a subclass
            }
            let field = self.fields(py, &change)?;
            let (from_state, to_state) = (&field[FROM_STATE], &field[TO_STATE]);
            let to = to_state.cast::<PyString>()?.to_str()?;
            let pair = STEP_MACHINE
                .state_code(from_state.cast::<PyString>()?.to_str()?)
                .and_then(|from| STEP_MACHINE.check(from, STEP_MACHINE.state_code(to)?));
            let Ok(event) = pair else {
                return Ok(None); // the Python paths raise the error
            };
            let task_id = &field[TASK_ID];
            let same_task = match &named {
                Some(n) => n.task_id.is(task_id),
                None => false,
            };
            if !same_task {
                let (Some(found), Some(rows), Some(log), Some(metadata_log), Some(recent)) = (
                    positions.get_item(task_id)?,
                    steps.get_item(task_id)?,
                    transitions.get_item(task_id)?,
                    metadata_logs.get_item(task_id)?,
                    recents.get_item(task_id)?,
                ) else {
                    return Ok(None);
                };
                named = Some(Named {
                    task_id: task_id.clone(),
                    positions: found.cast_into::<PyDict>()?,
                    rows: rows.cast_into::<PyList>()?,
                    logs: TaskLogs {
                        log: log.cast_into::<PyList>()?,
                        metadata_log: metadata_log.cast_into::<PyList>()?,
                        recent: recent.cast_into::<PyDict>()?,
                    },
                });
            }
            let Some(table) = named.as_ref() else {
                return Ok(None);
            };
            let step = &field[STEP];
            let Some(position) = table.positions.get_item(step)? else {
                return Ok(None);
            };
            // Payloads first: a change whose payload does not copy fails the batch even when it
            // would lose its compare-and-set.
            let metadata = self.copy(py, &field[METADATA], "metadata")?;
            let mut results = field[RESULTS].clone();
            if !results.is_none() && (to == "complete" || to == "resolved_manually") {
                results = self.copy(py, &results, "results")?;
            }
            let row = table
                .rows
                .get_item(position.extract::<usize>()?)?
                .cast_into::<PyDict>()?;
            let state = row
                .get_item(intern!(py, "state"))?
                .ok_or_else(|| PyKeyError::new_err("a step row without state or attempts"))?;
            let attempts_obj = row
                .get_item(intern!(py, "attempts"))?
                .ok_or_else(|| PyKeyError::new_err("a step row without state or attempts"))?;
            let expect = &field[EXPECT_ATTEMPT];
            let lost = !(state.is(from_state) || state.eq(from_state)?)
                || (!expect.is_none() && !attempts_obj.eq(expect)?);
            if lost {
                if atomic {
                    return Ok(None);
                }
                applied.append(false)?;
                continue;
            }
            undo.push((row.clone(), row.copy()?));
            write_fields(py, &row, to, now, &attempts_obj, &results, &field)?;
            sort_key += 1;
            let record = PyTuple::new(
                py,
                [
                    task_id.clone(),
                    step.clone(),
                    from_state.clone(),
                    to_state.clone(),
                    self.events[event].bind(py).clone().into_any(),
                    field[REASON].clone(),
                    now.clone(),
                    sort_key.into_pyobject(py)?.into_any(),
                ],
            )?;
            logged.push(Logged {
                logs: table.logs.clone(),
                task_id: task_id.clone(),
                step: step.clone(),
                from_state: from_state.clone(),
                to_state: to_state.clone(),
                record,
                metadata,
            });
            applied.append(true)?;
        }
        Ok(Some((applied, sort_key)))
    }

    /// A StepChange's field values in [`FIELDS`] order: read front to back from its `__dict__`
    /// when that holds exactly the fields in order (as attrs writes it), else by name.
    fn fields<'py>(
        &self,
        py: Python<'py>,
        change: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let fields = change
            .getattr(intern!(py, "__dict__"))?
            .cast_into::<PyDict>()?;
        let mut values = Vec::with_capacity(FIELDS.len());
        if fields.len() == FIELDS.len() {
            for ((key, value), name) in fields.iter().zip(&self.names) {
                if !key.is(name.bind(py)) {
                    break;
                }
                values.push(value);
            }
            if values.len() == FIELDS.len() {
                return Ok(values);
            }
            values.clear();
        }
        for name in &self.names {
            let name = name.bind(py);
            let value = fields
                .get_item(name)?
                .ok_or_else(|| PyKeyError::new_err(name.clone().unbind()))?;
            values.push(value);
        }
        Ok(values)
    }

    /// A payload copied as the store keeps it: natively when flat, else by `copy_json`.
    fn copy<'py>(
        &self,
        py: Python<'py>,
        value: &Bound<'py, PyAny>,
        what: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Some(copied) = copy_flat_dict(value)? {
            return Ok(copied.into_any());
        }
        self.copy_json.bind(py).call1((value, what))
    }

    /// Append each applied change's transition to its task's log, note it as the step's most
    /// recent, and keep the set of steps in progress.
    fn log<'py>(&self, py: Python<'py>, logged: Vec<Logged<'py>>) -> PyResult<()> {
        let in_progress = self.in_progress.bind(py);
        for entry in logged {
            if entry.to_state.cast::<PyString>()?.to_str()? == "in_progress" {
                in_progress.add((&entry.task_id, &entry.step))?;
            } else if entry.from_state.cast::<PyString>()?.to_str()? == "in_progress" {
                in_progress.discard((&entry.task_id, &entry.step))?;
            }
            let logs = &entry.logs;
            logs.recent.set_item(&entry.step, logs.log.len())?;
            logs.log.append(entry.record)?;
            logs.metadata_log.append(entry.metadata)?;
        }
        Ok(())
    }
}

/// Set in `row` the fields a step has after the change (StepChange's rules, as
/// `batch.write_step_fields` writes them); `field` holds the change's values in [`FIELDS`] order.
fn write_fields<'py>(
    py: Python<'py>,
    row: &Bound<'py, PyDict>,
    to: &str,
    now: &Bound<'py, PyAny>,
    attempts: &Bound<'py, PyAny>,
    results: &Bound<'py, PyAny>,
    field: &[Bound<'py, PyAny>],
) -> PyResult<()> {
    let none = py.None().into_bound(py);
    let lease_owner = intern!(py, "lease_owner");
    let lease_expires_at = intern!(py, "lease_expires_at");
    row.set_item(intern!(py, "state"), &field[TO_STATE])?;
    row.set_item(intern!(py, "updated_at"), now)?;
    match to {
        "in_progress" => {
            row.set_item(intern!(py, "attempts"), attempts.add(1)?)?;
            row.set_item(lease_owner, &field[LEASE_OWNER])?;
            row.set_item(lease_expires_at, &field[LEASE_EXPIRES_AT])?;
            row.set_item(intern!(py, "next_retry_at"), &none)?;
        }
        "complete" => {
            row.set_item(intern!(py, "results"), results)?;
            row.set_item(intern!(py, "error"), &none)?;
            row.set_item(lease_owner, &none)?;
            row.set_item(lease_expires_at, &none)?;
        }
        "error" => {
            row.set_item(intern!(py, "error"), &field[ERROR])?;
            row.set_item(intern!(py, "next_retry_at"), &field[NEXT_RETRY_AT])?;
            row.set_item(lease_owner, &none)?;
            row.set_item(lease_expires_at, &none)?;
        }
        "resolved_manually" => {
            row.set_item(intern!(py, "results"), results)?;
            row.set_item(lease_owner, &none)?;
            row.set_item(lease_expires_at, &none)?;
        }
        "cancelled" => {
            row.set_item(lease_owner, &none)?;
            row.set_item(lease_expires_at, &none)?;
        }
        _ => {}
    }
    if !field[MAX_ATTEMPTS].is_none() {
        row.set_item(intern!(py, "max_attempts"), &field[MAX_ATTEMPTS])?;
    }
    Ok(())
}
