//! Why a state-machine query failed.

use std::fmt;

/// What a name or code was meant to denote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// A state of the machine.
    State,
    /// An event of the machine.
    Event,
}

impl Item {
    /// The word used in messages and in `UnknownStateError(kind, what, value)`.
    pub fn as_str(self) -> &'static str {
        match self {
            Item::State => "state",
            Item::Event => "event",
        }
    }
}

/// Errors of [`crate::StateMachine`]; each names the machine's kind and the values involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsmError {
    /// A state or event name the table does not define.
    UnknownName {
        /// "task" or "step".
        kind: &'static str,
        /// State or event.
        what: Item,
        /// The name given.
        name: String,
    },
    /// A state or event code outside the table.
    UnknownCode {
        /// "task" or "step".
        kind: &'static str,
        /// State or event.
        what: Item,
        /// The code given.
        code: usize,
    },
    /// No event moves `from` to `to`.
    IllegalTransition {
        /// "task" or "step".
        kind: &'static str,
        /// The current state's name.
        from: &'static str,
        /// The requested state's name.
        to: &'static str,
    },
    /// `event` does not apply in state `from`.
    IllegalEvent {
        /// "task" or "step".
        kind: &'static str,
        /// The current state's name.
        from: &'static str,
        /// The event's name.
        event: &'static str,
    },
}

impl fmt::Display for FsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsmError::UnknownName { kind, what, name } => {
                write!(f, "unknown {kind} {} {name:?}", what.as_str())
            }
            FsmError::UnknownCode { kind, what, code } => {
                write!(f, "unknown {kind} {} {code}", what.as_str())
            }
            FsmError::IllegalTransition { kind, from, to } => {
                write!(f, "illegal {kind} transition from {from:?} to {to:?}")
            }
            FsmError::IllegalEvent { kind, from, event } => {
                write!(
                    f,
                    "illegal {kind} transition by event {event:?} from {from:?}"
                )
            }
        }
    }
}

impl std::error::Error for FsmError {}
