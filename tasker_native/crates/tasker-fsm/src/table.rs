//! The shape of a generated transition table.

/// Marks "no transition" in the dense lookup tables.
pub(crate) const NONE: u8 = u8::MAX;

/// One machine's table, emitted by the build script as a `static`.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) kind: &'static str,
    pub(crate) states: &'static [&'static str],
    pub(crate) events: &'static [&'static str],
    pub(crate) initial: usize,
    /// Bit `s` is set when state `s` is terminal.
    pub(crate) terminal: u64,
    /// Bit `s` is set when state `s` satisfies a dependency.
    pub(crate) satisfies: u64,
    /// Every `[event, from, to]`, sorted.
    pub(crate) transitions: &'static [[u8; 3]],
    /// `pair_event[from * states.len() + to]`: the event code, or [`NONE`].
    pub(crate) pair_event: &'static [u8],
    /// `event_target[from * events.len() + event]`: the target state, or [`NONE`].
    pub(crate) event_target: &'static [u8],
    /// `targets[from]`: bitmask of the states one transition away.
    pub(crate) targets: &'static [u64],
}
