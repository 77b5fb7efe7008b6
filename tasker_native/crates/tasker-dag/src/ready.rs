//! The full readiness solve: which steps may be dispatched now.

use tasker_fsm::STEP;

use crate::dag::Dag;
use crate::error::ReadyError;

/// One column per step attribute, each with one entry per step (by index).
#[derive(Debug, Clone, Copy)]
pub struct StepColumns<'a> {
    /// Step state codes of [`tasker_fsm::STEP`].
    pub states: &'a [i64],
    /// Attempts counted so far.
    pub attempts: &'a [i64],
    /// Attempts allowed in all, the first included.
    pub max_attempts: &'a [i64],
    /// Whether a failure may be retried.
    pub retryable: &'a [bool],
    /// When a failed step may run again (0.0: no retry time).
    pub next_retry_at: &'a [f64],
    /// Whether a worker holds the step.
    pub leased: &'a [bool],
}

impl StepColumns<'_> {
    fn check_lengths(&self, expected: usize) -> Result<(), ReadyError> {
        let lengths = [
            ("states", self.states.len()),
            ("attempts", self.attempts.len()),
            ("max_attempts", self.max_attempts.len()),
            ("retryable", self.retryable.len()),
            ("next_retry_at", self.next_retry_at.len()),
            ("leased", self.leased.len()),
        ];
        match lengths.iter().find(|(_, len)| *len != expected) {
            Some(&(field, len)) => Err(ReadyError::LengthMismatch {
                field,
                len,
                expected,
            }),
            None => Ok(()),
        }
    }
}

fn code(name: &str) -> i64 {
    let code = STEP
        .state_code(name)
        .unwrap_or_else(|e| panic!("readiness needs the step state {name:?}: {e}"));
    i64::try_from(code).expect("state codes are small")
}

impl Dag {
    /// The ready steps at time `now`, ascending.
    ///
    /// A step is ready when it is not leased; and it is `pending`, or `error` with `retryable`,
    /// `attempts < max_attempts` and `now >= next_retry_at`; and every parent satisfies a
    /// dependency. A pending step's first attempt is always allowed, whatever its attempt fields.
    pub fn ready(&self, steps: &StepColumns<'_>, now: f64) -> Result<Vec<u32>, ReadyError> {
        let n = self.len();
        steps.check_lengths(n)?;
        let state_count = i64::try_from(STEP.states().len()).expect("state counts are small");
        let mask = STEP.satisfying_mask();
        let mut satisfied = Vec::with_capacity(n);
        for (step, &state) in steps.states.iter().enumerate() {
            if !(0..state_count).contains(&state) {
                return Err(ReadyError::UnknownState { step, code: state });
            }
            satisfied.push(mask & (1u64 << state) != 0);
        }
        let (pending, error) = (code("pending"), code("error"));
        let mut ready = Vec::new();
        for step in 0..n {
            if steps.leased[step] {
                continue;
            }
            let state = steps.states[step];
            let runnable = state == pending
                || (state == error
                    && steps.retryable[step]
                    && steps.attempts[step] < steps.max_attempts[step]
                    && now >= steps.next_retry_at[step]);
            if runnable && self.parents_of(step).iter().all(|&p| satisfied[p as usize]) {
                ready.push(u32::try_from(step).expect("graphs hold at most u32::MAX steps"));
            }
        }
        Ok(ready)
    }
}
