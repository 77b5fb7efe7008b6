//! The task and step state machines of tasker, generated at build time from spec/states.toml.
//!
//! States and events are small integer codes: their positions in the spec's `states` and `events`
//! lists. Every query is a lookup in a dense table, so checking a transition costs a bounds check
//! and one load.

mod error;
mod machine;
mod table;

pub use error::{FsmError, Item};
pub use machine::StateMachine;

include!(concat!(env!("OUT_DIR"), "/tables.rs"));

/// The text of spec/states.toml the tables were generated from.
pub const SPEC_STATES_TOML: &str = include_str!("../../../../spec/states.toml");

/// The text of spec/events.toml (the lifecycle event catalogue) at build time.
pub const SPEC_EVENTS_TOML: &str = include_str!("../../../../spec/events.toml");

/// The task state machine.
pub static TASK: StateMachine = StateMachine::new(&TASK_TABLE);

/// The step state machine.
pub static STEP: StateMachine = StateMachine::new(&STEP_TABLE);
