//! Queries over one generated transition table.

use crate::error::{FsmError, Item};
use crate::table::{Table, NONE};

/// One entity's state machine (task or step). Cheap to copy: it is a reference to a static table.
#[derive(Debug, Clone, Copy)]
pub struct StateMachine {
    table: &'static Table,
}

impl StateMachine {
    pub(crate) const fn new(table: &'static Table) -> Self {
        StateMachine { table }
    }

    /// "task" or "step".
    pub fn kind(&self) -> &'static str {
        self.table.kind
    }

    /// State names in code order.
    pub fn states(&self) -> &'static [&'static str] {
        self.table.states
    }

    /// Event names in code order.
    pub fn events(&self) -> &'static [&'static str] {
        self.table.events
    }

    /// Code of the initial state.
    pub fn initial(&self) -> usize {
        self.table.initial
    }

    /// Bitmask of the states that satisfy a dependency (bit `s` for state code `s`).
    pub fn satisfying_mask(&self) -> u64 {
        self.table.satisfies
    }

    /// Code of the state called `name`.
    pub fn state_code(&self, name: &str) -> Result<usize, FsmError> {
        self.table
            .states
            .iter()
            .position(|s| *s == name)
            .ok_or_else(|| self.unknown_name(Item::State, name))
    }

    /// Code of the event called `name`.
    pub fn event_code(&self, name: &str) -> Result<usize, FsmError> {
        self.table
            .events
            .iter()
            .position(|e| *e == name)
            .ok_or_else(|| self.unknown_name(Item::Event, name))
    }

    /// Name of state `code`.
    pub fn state_name(&self, code: usize) -> Result<&'static str, FsmError> {
        self.table
            .states
            .get(code)
            .copied()
            .ok_or_else(|| self.unknown_code(Item::State, code))
    }

    /// Name of event `code`.
    pub fn event_name(&self, code: usize) -> Result<&'static str, FsmError> {
        self.table
            .events
            .get(code)
            .copied()
            .ok_or_else(|| self.unknown_code(Item::Event, code))
    }

    /// The event that moves `from` to `to`.
    #[inline]
    pub fn check(&self, from: usize, to: usize) -> Result<usize, FsmError> {
        let n = self.state_count(from, to)?;
        match self.table.pair_event[from * n + to] {
            NONE => Err(FsmError::IllegalTransition {
                kind: self.table.kind,
                from: self.table.states[from],
                to: self.table.states[to],
            }),
            event => Ok(usize::from(event)),
        }
    }

    /// Whether some event moves `from` to `to`.
    #[inline]
    pub fn can(&self, from: usize, to: usize) -> Result<bool, FsmError> {
        let n = self.state_count(from, to)?;
        Ok(self.table.pair_event[from * n + to] != NONE)
    }

    /// The state `event` leads to from `from`.
    #[inline]
    pub fn apply(&self, from: usize, event: usize) -> Result<usize, FsmError> {
        self.valid_state(from)?;
        let e = self.table.events.len();
        if event >= e {
            return Err(self.unknown_code(Item::Event, event));
        }
        match self.table.event_target[from * e + event] {
            NONE => Err(FsmError::IllegalEvent {
                kind: self.table.kind,
                from: self.table.states[from],
                event: self.table.events[event],
            }),
            to => Ok(usize::from(to)),
        }
    }

    /// Every state one transition away from `from`, ascending.
    pub fn targets(&self, from: usize) -> Result<Vec<usize>, FsmError> {
        self.valid_state(from)?;
        let mask = self.table.targets[from];
        Ok((0..self.table.states.len())
            .filter(|s| mask & (1u64 << s) != 0)
            .collect())
    }

    /// Every `(event, from, to)` triple of the table, sorted.
    pub fn transitions(&self) -> impl ExactSizeIterator<Item = (usize, usize, usize)> + 'static {
        self.table
            .transitions
            .iter()
            .map(|&[e, f, t]| (usize::from(e), usize::from(f), usize::from(t)))
    }

    /// Whether no transition leaves `state` by design (the spec's `terminal` list).
    #[inline]
    pub fn is_terminal(&self, state: usize) -> Result<bool, FsmError> {
        self.valid_state(state)?;
        Ok(self.table.terminal & (1u64 << state) != 0)
    }

    /// Whether a step in `state` satisfies its dependents (the spec's `satisfies_dependency`).
    #[inline]
    pub fn satisfies_dependency(&self, state: usize) -> Result<bool, FsmError> {
        self.valid_state(state)?;
        Ok(self.table.satisfies & (1u64 << state) != 0)
    }

    #[inline]
    fn valid_state(&self, state: usize) -> Result<(), FsmError> {
        if state < self.table.states.len() {
            Ok(())
        } else {
            Err(self.unknown_code(Item::State, state))
        }
    }

    #[inline]
    fn state_count(&self, from: usize, to: usize) -> Result<usize, FsmError> {
        self.valid_state(from)?;
        self.valid_state(to)?;
        Ok(self.table.states.len())
    }

    fn unknown_name(&self, what: Item, name: &str) -> FsmError {
        FsmError::UnknownName {
            kind: self.table.kind,
            what,
            name: name.to_owned(),
        }
    }

    fn unknown_code(&self, what: Item, code: usize) -> FsmError {
        FsmError::UnknownCode {
            kind: self.table.kind,
            what,
            code,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{FsmError, Item, STEP, TASK};

    #[test]
    fn check_and_apply_agree_on_every_pair() {
        for machine in [TASK, STEP] {
            let n = machine.states().len();
            for from in 0..n {
                for to in 0..n {
                    match machine.check(from, to) {
                        Ok(event) => {
                            assert!(machine.can(from, to).unwrap());
                            assert_eq!(machine.apply(from, event).unwrap(), to);
                            assert!(machine.targets(from).unwrap().contains(&to));
                        }
                        Err(FsmError::IllegalTransition { .. }) => {
                            assert!(!machine.can(from, to).unwrap());
                            assert!(!machine.targets(from).unwrap().contains(&to));
                        }
                        Err(other) => panic!("unexpected {other}"),
                    }
                }
            }
        }
    }

    #[test]
    fn terminal_states_have_no_targets() {
        for machine in [TASK, STEP] {
            for s in 0..machine.states().len() {
                if machine.is_terminal(s).unwrap() {
                    assert!(
                        machine.targets(s).unwrap().is_empty(),
                        "{}",
                        machine.states()[s]
                    );
                }
            }
        }
    }

    #[test]
    fn out_of_range_codes_are_unknown() {
        let n = STEP.states().len();
        let err = STEP.check(n, 0).unwrap_err();
        assert_eq!(
            err,
            FsmError::UnknownCode {
                kind: "step",
                what: Item::State,
                code: n
            }
        );
        assert_eq!(err.to_string(), format!("unknown step state {n}"));
        assert!(matches!(
            STEP.apply(0, STEP.events().len()),
            Err(FsmError::UnknownCode {
                what: Item::Event,
                ..
            })
        ));
        assert!(STEP.is_terminal(n).is_err());
        assert!(STEP.satisfies_dependency(n).is_err());
        assert!(TASK.targets(TASK.states().len()).is_err());
    }

    #[test]
    fn names_round_trip_and_messages_name_the_values() {
        for machine in [TASK, STEP] {
            for (code, name) in machine.states().iter().enumerate() {
                assert_eq!(machine.state_code(name).unwrap(), code);
                assert_eq!(machine.state_name(code).unwrap(), *name);
            }
            for (code, name) in machine.events().iter().enumerate() {
                assert_eq!(machine.event_code(name).unwrap(), code);
                assert_eq!(machine.event_name(code).unwrap(), *name);
            }
        }
        let err = TASK.state_code("bogus").unwrap_err();
        assert_eq!(err.to_string(), "unknown task state \"bogus\"");
        let complete = STEP.state_code("complete").unwrap();
        let pending = STEP.state_code("pending").unwrap();
        assert_eq!(
            STEP.check(complete, pending).unwrap_err().to_string(),
            "illegal step transition from \"complete\" to \"pending\""
        );
        let retry = STEP.event_code("retry").unwrap();
        assert_eq!(
            STEP.apply(pending, retry).unwrap_err().to_string(),
            "illegal step transition by event \"retry\" from \"pending\""
        );
    }

    #[test]
    fn dependency_satisfaction_follows_the_spec() {
        let satisfied: Vec<&str> = (0..STEP.states().len())
            .filter(|&s| STEP.satisfies_dependency(s).unwrap())
            .map(|s| STEP.states()[s])
            .collect();
        assert_eq!(satisfied, ["complete", "resolved_manually"]);
        assert_eq!(TASK.satisfying_mask(), 0);
    }
}
