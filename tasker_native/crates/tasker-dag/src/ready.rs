//! The full readiness solve: which steps may be dispatched now.

use std::borrow::Cow;

use tasker_fsm::STEP;

use crate::dag::Dag;
use crate::error::ReadyError;

/// The per-step inputs of the readiness rule, read one entry at a time so that a caller whose
/// columns live elsewhere (Python lists) converts only the entries the rule looks at.
pub trait StepInputs {
    /// Why an entry could not be read; a [`ReadyError`] must convert into it.
    type Error: From<ReadyError>;

    /// Each column's name and length, in the order they are checked.
    fn lengths(&self) -> [(&'static str, usize); 6];
    /// Every step's state code, by index (read whole: every code is checked).
    fn states(&self) -> Result<Cow<'_, [i64]>, Self::Error>;
    /// Attempts counted so far for `step`.
    fn attempts(&self, step: usize) -> Result<i64, Self::Error>;
    /// Attempts allowed in all for `step`, the first included.
    fn max_attempts(&self, step: usize) -> Result<i64, Self::Error>;
    /// Whether a failure of `step` may be retried.
    fn retryable(&self, step: usize) -> Result<bool, Self::Error>;
    /// When `step` may run again after a failure (0.0: no retry time).
    fn next_retry_at(&self, step: usize) -> Result<f64, Self::Error>;
    /// Whether a worker holds `step`.
    fn leased(&self, step: usize) -> Result<bool, Self::Error>;
}

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

impl StepInputs for StepColumns<'_> {
    type Error = ReadyError;

    fn lengths(&self) -> [(&'static str, usize); 6] {
        [
            ("states", self.states.len()),
            ("attempts", self.attempts.len()),
            ("max_attempts", self.max_attempts.len()),
            ("retryable", self.retryable.len()),
            ("next_retry_at", self.next_retry_at.len()),
            ("leased", self.leased.len()),
        ]
    }

    fn states(&self) -> Result<Cow<'_, [i64]>, ReadyError> {
        Ok(Cow::Borrowed(self.states))
    }

    fn attempts(&self, step: usize) -> Result<i64, ReadyError> {
        Ok(self.attempts[step])
    }

    fn max_attempts(&self, step: usize) -> Result<i64, ReadyError> {
        Ok(self.max_attempts[step])
    }

    fn retryable(&self, step: usize) -> Result<bool, ReadyError> {
        Ok(self.retryable[step])
    }

    fn next_retry_at(&self, step: usize) -> Result<f64, ReadyError> {
        Ok(self.next_retry_at[step])
    }

    fn leased(&self, step: usize) -> Result<bool, ReadyError> {
        Ok(self.leased[step])
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
    /// A step is ready when it is `pending`, or `error` with `retryable`,
    /// `attempts < max_attempts` and `now >= next_retry_at`; and every parent satisfies a
    /// dependency; and it is not leased. A pending step's first attempt is always allowed,
    /// whatever its attempt fields.
    pub fn ready(&self, steps: &StepColumns<'_>, now: f64) -> Result<Vec<u32>, ReadyError> {
        self.ready_from(steps, now)
    }

    /// [`ready`](Self::ready) over any [`StepInputs`]. After the length check and the whole
    /// `states` column, each step's entries are read in the order of the rule, stopping at the
    /// first that decides it: `retryable`, `attempts`, `max_attempts`, `next_retry_at` only for
    /// a step in `error`, `leased` only for a runnable step whose parents are all satisfied.
    pub fn ready_from<I: StepInputs>(&self, steps: &I, now: f64) -> Result<Vec<u32>, I::Error> {
        let n = self.len();
        if let Some(&(field, len)) = steps.lengths().iter().find(|(_, len)| *len != n) {
            return Err(ReadyError::LengthMismatch {
                field,
                len,
                expected: n,
            }
            .into());
        }
        let states = steps.states()?;
        let state_count = i64::try_from(STEP.states().len()).expect("state counts are small");
        let mask = STEP.satisfying_mask();
        let mut satisfied = Vec::with_capacity(n);
        for (step, &state) in states.iter().enumerate() {
            if !(0..state_count).contains(&state) {
                return Err(ReadyError::UnknownState { step, code: state }.into());
            }
            satisfied.push(mask & (1u64 << state) != 0);
        }
        let (pending, error) = (code("pending"), code("error"));
        let mut ready = Vec::new();
        for (step, &state) in states.iter().enumerate() {
            let runnable = state == pending
                || (state == error
                    && steps.retryable(step)?
                    && steps.attempts(step)? < steps.max_attempts(step)?
                    && now >= steps.next_retry_at(step)?);
            if runnable
                && self.parents_of(step).iter().all(|&p| satisfied[p as usize])
                && !steps.leased(step)?
            {
                ready.push(u32::try_from(step).expect("graphs hold at most u32::MAX steps"));
            }
        }
        Ok(ready)
    }
}
