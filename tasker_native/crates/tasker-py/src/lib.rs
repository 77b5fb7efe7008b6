//! `tasker_core._native`: the pyo3 face of the pure-Rust crates.
//!
//! Only conversion lives here: Python sequences become Rust vectors once, Rust errors become the
//! exception classes of `tasker_core.errors`. The API is declared in tasker_core/_native.pyi.

mod columns;
mod errors;
mod events_json;
mod flat_json;
mod fsm;
mod graph;
mod memory_apply;
mod names;
mod scratch;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use tasker_backoff::Backoff;

/// A number in [0, 1) that is a pure function of (key, attempt, seed), all unsigned 64-bit.
#[pyfunction]
fn jitter_fraction(key: u64, attempt: u64, seed: u64) -> f64 {
    tasker_backoff::jitter_fraction(key, attempt, seed)
}

/// Seconds to wait before the next attempt after failed attempt number ``attempt`` (>= 1).
#[pyfunction]
#[pyo3(signature = (attempt, base, max_delay, jitter, key, seed = 0, retry_after = None))]
fn backoff_delay(
    attempt: i64,
    base: f64,
    max_delay: f64,
    jitter: f64,
    key: u64,
    seed: u64,
    retry_after: Option<f64>,
) -> PyResult<f64> {
    let policy = Backoff {
        base,
        max_delay,
        jitter,
        seed,
    };
    tasker_backoff::backoff_delay(attempt, &policy, key, retry_after)
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("SPEC_DIGEST", tasker_fsm::SPEC_DIGEST)?;
    m.add("SPEC_STATES_TOML", tasker_fsm::SPEC_STATES_TOML)?;
    m.add("SPEC_EVENTS_TOML", tasker_fsm::SPEC_EVENTS_TOML)?;
    m.add_class::<fsm::StateMachine>()?;
    m.add("TASK_MACHINE", fsm::StateMachine::from(tasker_fsm::TASK))?;
    m.add("STEP_MACHINE", fsm::StateMachine::from(tasker_fsm::STEP))?;
    m.add_class::<graph::WorkflowGraph>()?;
    m.add_class::<graph::DependencyTracker>()?;
    m.add_function(wrap_pyfunction!(jitter_fraction, m)?)?;
    m.add_function(wrap_pyfunction!(backoff_delay, m)?)?;
    m.add_function(wrap_pyfunction!(events_json::encode_event_payloads, m)?)?;
    m.add_function(wrap_pyfunction!(events_json::encode_event_runs, m)?)?;
    m.add_function(wrap_pyfunction!(flat_json::copy_flat_dict, m)?)?;
    m.add_function(wrap_pyfunction!(flat_json::is_flat_dict, m)?)?;
    m.add_class::<memory_apply::StepBatchApplier>()?;
    // pyo3 lists every added name in `__all__`; the private module's surface is the stub's.
    m.delattr("__all__")?;
    Ok(())
}
