//! `StateMachine`: a frozen wrapper over a static table, so each call is an argument conversion
//! and one lookup.

use pyo3::prelude::*;

use crate::errors;

/// One entity's transition table (``kind`` is "task" or "step"), generated from the spec.
#[pyclass(frozen, module = "tasker_core._native")]
pub(crate) struct StateMachine {
    machine: tasker_fsm::StateMachine,
}

impl From<tasker_fsm::StateMachine> for StateMachine {
    fn from(machine: tasker_fsm::StateMachine) -> Self {
        StateMachine { machine }
    }
}

impl StateMachine {
    #[inline]
    fn code(&self, what: &'static str, code: i64) -> PyResult<usize> {
        usize::try_from(code).map_err(|_| errors::negative_code(self.machine.kind(), what, code))
    }
}

#[pymethods]
impl StateMachine {
    #[getter]
    fn kind(&self) -> &'static str {
        self.machine.kind()
    }

    #[getter]
    fn states(&self) -> Vec<&'static str> {
        self.machine.states().to_vec()
    }

    #[getter]
    fn events(&self) -> Vec<&'static str> {
        self.machine.events().to_vec()
    }

    #[getter]
    fn initial(&self) -> usize {
        self.machine.initial()
    }

    /// Code of a state name; UnknownStateError if there is none.
    fn state_code(&self, name: &str) -> PyResult<usize> {
        self.machine.state_code(name).map_err(errors::fsm)
    }

    /// Code of an event name; UnknownStateError if there is none.
    fn event_code(&self, name: &str) -> PyResult<usize> {
        self.machine.event_code(name).map_err(errors::fsm)
    }

    /// The event code that moves ``from_state`` to ``to_state``.
    fn check(&self, from_state: i64, to_state: i64) -> PyResult<usize> {
        let (from, to) = (
            self.code("state", from_state)?,
            self.code("state", to_state)?,
        );
        self.machine.check(from, to).map_err(errors::fsm)
    }

    /// Whether the transition is legal (never raises for in-range codes).
    fn can(&self, from_state: i64, to_state: i64) -> PyResult<bool> {
        let (from, to) = (
            self.code("state", from_state)?,
            self.code("state", to_state)?,
        );
        self.machine.can(from, to).map_err(errors::fsm)
    }

    /// The state ``event`` leads to from ``from_state``.
    fn apply(&self, from_state: i64, event: i64) -> PyResult<usize> {
        let (from, event) = (self.code("state", from_state)?, self.code("event", event)?);
        self.machine.apply(from, event).map_err(errors::fsm)
    }

    /// Every state reachable from ``from_state`` in one transition, ascending.
    fn targets(&self, from_state: i64) -> PyResult<Vec<usize>> {
        let from = self.code("state", from_state)?;
        self.machine.targets(from).map_err(errors::fsm)
    }

    /// Every (event, from, to) triple of the table, sorted.
    fn transitions(&self) -> Vec<(usize, usize, usize)> {
        self.machine.transitions().collect()
    }

    fn is_terminal(&self, state: i64) -> PyResult<bool> {
        let state = self.code("state", state)?;
        self.machine.is_terminal(state).map_err(errors::fsm)
    }

    /// True for the states that satisfy a dependency (step: complete, resolved_manually).
    fn satisfies_dependency(&self, state: i64) -> PyResult<bool> {
        let state = self.code("state", state)?;
        self.machine
            .satisfies_dependency(state)
            .map_err(errors::fsm)
    }

    fn __repr__(&self) -> String {
        format!("<StateMachine {}>", self.machine.kind())
    }
}
