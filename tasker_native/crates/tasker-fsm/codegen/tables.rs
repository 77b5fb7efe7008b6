//! Parse spec/states.toml and render it as Rust transition tables.
//!
//! This file is compiled twice: by build.rs, which writes the generated tables into OUT_DIR,
//! and by the crate's tests and the `spec_tables` example (through `#[path]`), so the generation
//! logic itself is tested on edited copies of the spec without rebuilding the crate.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The machines the spec must define, in the order they are generated.
pub const KINDS: [&str; 2] = ["task", "step"];

/// Codes are stored as `u8` and sets as `u64` bitmasks, so a machine has at most 64 of each.
pub const MAX_CODES: usize = 64;

/// Sentinel for "no transition" in the dense lookup tables (matches `table::NONE`).
pub const NONE: u8 = u8::MAX;

/// One state machine of the spec with every name resolved to its code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSpec {
    /// "task" or "step".
    pub kind: String,
    /// State names; a state's code is its position.
    pub states: Vec<String>,
    /// Event names; an event's code is its position.
    pub events: Vec<String>,
    /// Code of the initial state.
    pub initial: usize,
    /// Codes of the terminal states, ascending.
    pub terminal: Vec<usize>,
    /// Codes of the states that satisfy a dependency, ascending (empty when not given).
    pub satisfies: Vec<usize>,
    /// Every (event, from, to) triple, sorted.
    pub transitions: Vec<(usize, usize, usize)>,
}

impl MachineSpec {
    /// `pair_event[from * states + to]`: the event moving `from` to `to`, or [`NONE`].
    pub fn pair_event(&self) -> Vec<u8> {
        let n = self.states.len();
        let mut out = vec![NONE; n * n];
        for &(event, from, to) in &self.transitions {
            out[from * n + to] = code_u8(event);
        }
        out
    }

    /// `event_target[from * events + event]`: where `event` leads from `from`, or [`NONE`].
    pub fn event_target(&self) -> Vec<u8> {
        let e = self.events.len();
        let mut out = vec![NONE; self.states.len() * e];
        for &(event, from, to) in &self.transitions {
            out[from * e + event] = code_u8(to);
        }
        out
    }

    /// `targets[from]`: bitmask of the states reachable from `from` in one transition.
    pub fn targets(&self) -> Vec<u64> {
        let mut out = vec![0u64; self.states.len()];
        for &(_, from, to) in &self.transitions {
            out[from] |= 1u64 << to;
        }
        out
    }
}

fn code_u8(code: usize) -> u8 {
    u8::try_from(code).expect("codes are bounded by MAX_CODES at parse time")
}

fn mask(codes: &[usize]) -> u64 {
    codes.iter().fold(0u64, |m, &c| m | (1u64 << c))
}

/// Parse the whole spec text into one [`MachineSpec`] per entry of [`KINDS`].
///
/// Errors name the section, the transition (by position and event) and the offending value.
pub fn parse(text: &str) -> Result<Vec<MachineSpec>, String> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| format!("not valid TOML: {e}"))?;
    for key in doc.keys() {
        if !KINDS.contains(&key.as_str()) {
            return Err(format!(
                "unknown top-level table [{key}] (expected {KINDS:?})"
            ));
        }
    }
    KINDS
        .iter()
        .map(|kind| {
            let section = doc
                .get(*kind)
                .and_then(toml::Value::as_table)
                .ok_or_else(|| format!("missing table [{kind}]"))?;
            parse_machine(kind, section)
        })
        .collect()
}

const MACHINE_KEYS: [&str; 6] = [
    "states",
    "events",
    "initial",
    "terminal",
    "satisfies_dependency",
    "transitions",
];
const TRANSITION_KEYS: [&str; 4] = ["event", "from", "to", "why"];

fn parse_machine(kind: &str, section: &toml::Table) -> Result<MachineSpec, String> {
    for key in section.keys() {
        if !MACHINE_KEYS.contains(&key.as_str()) {
            return Err(format!(
                "[{kind}]: unknown key {key:?} (expected {MACHINE_KEYS:?})"
            ));
        }
    }
    let states = name_list(kind, section, "states")?;
    let events = name_list(kind, section, "events")?;
    let state = |field: &str, name: &str| -> Result<usize, String> {
        states
            .iter()
            .position(|s| s == name)
            .ok_or_else(|| format!("[{kind}] {field}: unknown state {name:?}"))
    };
    let initial_name = section
        .get("initial")
        .and_then(toml::Value::as_str)
        .ok_or_else(|| format!("[{kind}]: `initial` must be a state name"))?;
    let initial = state("initial", initial_name)?;
    let terminal = code_set(kind, section, "terminal", &state, true)?;
    let satisfies = code_set(kind, section, "satisfies_dependency", &state, false)?;
    let transitions = parse_transitions(kind, section, &states, &events, &terminal)?;
    Ok(MachineSpec {
        kind: kind.to_owned(),
        states,
        events,
        initial,
        terminal,
        satisfies,
        transitions,
    })
}

fn string_array(kind: &str, value: &toml::Value, field: &str) -> Result<Vec<String>, String> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("[{kind}] {field}: expected an array of strings"))?;
    items
        .iter()
        .map(|item| {
            item.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("[{kind}] {field}: {item:?} is not a string"))
        })
        .collect()
}

fn name_list(kind: &str, section: &toml::Table, field: &str) -> Result<Vec<String>, String> {
    let value = section
        .get(field)
        .ok_or_else(|| format!("[{kind}]: missing `{field}`"))?;
    let names = string_array(kind, value, field)?;
    if names.is_empty() || names.len() > MAX_CODES {
        return Err(format!(
            "[{kind}] {field}: needs 1 to {MAX_CODES} names, got {}",
            names.len()
        ));
    }
    let mut seen = BTreeSet::new();
    for name in &names {
        if name.is_empty() {
            return Err(format!("[{kind}] {field}: empty name"));
        }
        if !seen.insert(name.as_str()) {
            return Err(format!("[{kind}] {field}: {name:?} is listed twice"));
        }
    }
    Ok(names)
}

fn code_set(
    kind: &str,
    section: &toml::Table,
    field: &str,
    state: &dyn Fn(&str, &str) -> Result<usize, String>,
    required: bool,
) -> Result<Vec<usize>, String> {
    let Some(value) = section.get(field) else {
        return if required {
            Err(format!("[{kind}]: missing `{field}`"))
        } else {
            Ok(Vec::new())
        };
    };
    let mut codes = BTreeSet::new();
    for name in string_array(kind, value, field)? {
        if !codes.insert(state(field, &name)?) {
            return Err(format!("[{kind}] {field}: {name:?} is listed twice"));
        }
    }
    Ok(codes.into_iter().collect())
}

fn parse_transitions(
    kind: &str,
    section: &toml::Table,
    states: &[String],
    events: &[String],
    terminal: &[usize],
) -> Result<Vec<(usize, usize, usize)>, String> {
    let list = section
        .get("transitions")
        .and_then(toml::Value::as_array)
        .ok_or_else(|| format!("[{kind}]: missing [[{kind}.transitions]]"))?;
    let mut by_pair: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let mut by_event: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let at = format!("[{kind}] transition #{}", i + 1);
        let table = item
            .as_table()
            .ok_or_else(|| format!("{at}: expected a table"))?;
        for key in table.keys() {
            if !TRANSITION_KEYS.contains(&key.as_str()) {
                return Err(format!(
                    "{at}: unknown key {key:?} (expected {TRANSITION_KEYS:?})"
                ));
            }
        }
        let text = |field: &str| -> Result<&str, String> {
            table
                .get(field)
                .and_then(toml::Value::as_str)
                .ok_or_else(|| format!("{at}: `{field}` must be a string"))
        };
        let event_name = text("event")?;
        let at = format!("{at} (event {event_name:?})");
        let event = events
            .iter()
            .position(|e| e == event_name)
            .ok_or_else(|| format!("{at}: unknown event {event_name:?}"))?;
        let lookup = |name: &str| {
            states
                .iter()
                .position(|s| s == name)
                .ok_or_else(|| format!("{at}: unknown state {name:?}"))
        };
        let to = lookup(text("to")?)?;
        if text("why")?.trim().is_empty() {
            return Err(format!("{at}: `why` must say why the transition happens"));
        }
        let from_value = table
            .get("from")
            .ok_or_else(|| format!("{at}: missing `from`"))?;
        let from_names = string_array(kind, from_value, "from")?;
        if from_names.is_empty() {
            return Err(format!("{at}: `from` lists no state"));
        }
        for name in &from_names {
            let from = lookup(name)?;
            if terminal.contains(&from) {
                return Err(format!("{at}: leaves terminal state {name:?}"));
            }
            if let Some(other) = by_pair.insert((from, to), event) {
                return Err(format!(
                    "{at}: {name:?} -> {:?} is already event {:?}",
                    states[to], events[other]
                ));
            }
            if by_event.insert((from, event), to).is_some() {
                return Err(format!("{at}: event already leaves {name:?}"));
            }
            out.push((event, from, to));
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Render the machines as Rust items: `SPEC_DIGEST` and one `static <KIND>_TABLE: Table` each.
pub fn render(specs: &[MachineSpec], digest: &str) -> String {
    let mut out = String::new();
    out.push_str(
        "// Generated by tasker-fsm's build script from spec/states.toml. Do not edit.\n\n",
    );
    out.push_str("/// SHA-256 (hex) of the spec/states.toml the tables were generated from.\n");
    let _ = writeln!(out, "pub const SPEC_DIGEST: &str = {digest:?};\n");
    for spec in specs {
        let _ = writeln!(
            out,
            "pub(crate) static {}_TABLE: crate::table::Table = crate::table::Table {{",
            spec.kind.to_uppercase()
        );
        let _ = writeln!(out, "    kind: {:?},", spec.kind);
        let _ = writeln!(out, "    states: &{:?},", spec.states);
        let _ = writeln!(out, "    events: &{:?},", spec.events);
        let _ = writeln!(out, "    initial: {},", spec.initial);
        let _ = writeln!(out, "    terminal: {:#x},", mask(&spec.terminal));
        let _ = writeln!(out, "    satisfies: {:#x},", mask(&spec.satisfies));
        let triples: Vec<[u8; 3]> = spec
            .transitions
            .iter()
            .map(|&(e, f, t)| [code_u8(e), code_u8(f), code_u8(t)])
            .collect();
        let _ = writeln!(out, "    transitions: &{triples:?},");
        let _ = writeln!(out, "    pair_event: &{:?},", spec.pair_event());
        let _ = writeln!(out, "    event_target: &{:?},", spec.event_target());
        let _ = writeln!(out, "    targets: &{:?},", spec.targets());
        out.push_str("};\n\n");
    }
    out
}

/// Lower-case hex of a byte string (the digest's text form).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
