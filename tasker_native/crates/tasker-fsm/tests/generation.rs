//! The table generator (codegen/tables.rs) on the real spec and on edited copies of it.
//!
//! The build script and these tests compile the same source file, so an edited spec string shows
//! exactly what the build would generate from it, without rebuilding the crate.

#[allow(dead_code)]
#[path = "../codegen/tables.rs"]
mod tables;

use tasker_fsm::{StateMachine, SPEC_DIGEST, SPEC_STATES_TOML, STEP, TASK};

fn assert_matches_machine(spec: &tables::MachineSpec, m: StateMachine) {
    assert_eq!(spec.kind, m.kind());
    assert_eq!(spec.states, m.states());
    assert_eq!(spec.events, m.events());
    assert_eq!(spec.initial, m.initial());
    let compiled: Vec<_> = m.transitions().collect();
    assert_eq!(spec.transitions, compiled);
    for s in 0..m.states().len() {
        assert_eq!(spec.terminal.contains(&s), m.is_terminal(s).unwrap());
        assert_eq!(
            spec.satisfies.contains(&s),
            m.satisfies_dependency(s).unwrap()
        );
    }
}

#[test]
fn compiled_tables_are_the_generated_ones() {
    let specs = tables::parse(SPEC_STATES_TOML).unwrap();
    assert_matches_machine(&specs[0], TASK);
    assert_matches_machine(&specs[1], STEP);
}

#[test]
fn digest_is_sha256_of_the_embedded_spec() {
    use sha2::{Digest, Sha256};
    assert_eq!(
        SPEC_DIGEST,
        tables::hex(&Sha256::digest(SPEC_STATES_TOML.as_bytes()))
    );
    assert_eq!(SPEC_DIGEST.len(), 64);
}

/// Move the step `retry` transition (error -> enqueued) to land in `pending` instead.
fn edited_spec() -> String {
    let original = "event = \"retry\"\nfrom = [\"error\"]\nto = \"enqueued\"";
    assert_eq!(SPEC_STATES_TOML.matches(original).count(), 1);
    SPEC_STATES_TOML.replace(
        original,
        "event = \"retry\"\nfrom = [\"error\"]\nto = \"pending\"",
    )
}

#[test]
fn editing_one_transition_changes_exactly_that_entry() {
    let before = tables::parse(SPEC_STATES_TOML).unwrap();
    let after = tables::parse(&edited_spec()).unwrap();
    assert_eq!(before[0], after[0], "the task table is untouched");
    let (retry, error, enqueued, pending) = (4, 4, 1, 0);
    assert!(before[1].transitions.contains(&(retry, error, enqueued)));
    assert!(after[1].transitions.contains(&(retry, error, pending)));
    let removed: Vec<_> = before[1]
        .transitions
        .iter()
        .filter(|t| !after[1].transitions.contains(t))
        .collect();
    assert_eq!(removed, [&(retry, error, enqueued)]);

    let n = before[1].states.len();
    let (old_pairs, new_pairs) = (before[1].pair_event(), after[1].pair_event());
    assert_eq!(old_pairs[error * n + enqueued], 4);
    assert_eq!(new_pairs[error * n + enqueued], tables::NONE);
    assert_eq!(new_pairs[error * n + pending], 4);
    let rendered = tables::render(&after, "digest");
    assert_ne!(rendered, tables::render(&before, "digest"));
    assert!(rendered.contains("[4, 4, 0]") && !rendered.contains("[4, 4, 1]"));
}

fn parse_error(from: &str, to: &str) -> String {
    assert!(SPEC_STATES_TOML.contains(from), "{from}");
    tables::parse(&SPEC_STATES_TOML.replacen(from, to, 1)).unwrap_err()
}

#[test]
fn malformed_specs_fail_with_a_message_naming_the_entry() {
    let err = parse_error("to = \"enqueued\"", "to = \"queued\"");
    assert!(
        err.contains("[step] transition #1") && err.contains("\"queued\""),
        "{err}"
    );
    let err = parse_error(
        "event = \"start\"\nfrom = [\"enqueued\"]",
        "event = \"begin\"\nfrom = [\"enqueued\"]",
    );
    assert!(err.contains("unknown event \"begin\""), "{err}");
    let err = parse_error(
        "event = \"cancel\"\nfrom = [\"pending\", \"in_progress\"]",
        "event = \"cancel\"\nfrom = [\"pending\", \"complete\"]",
    );
    assert!(err.contains("leaves terminal state \"complete\""), "{err}");
    let err = parse_error(
        "to = \"resolved_manually\"\nwhy = \"an operator declared",
        "to = \"pending\"\nwhy = \"an operator declared",
    );
    assert!(
        err.contains("\"error\" -> \"pending\" is already event \"retry\""),
        "{err}"
    );
    let err = parse_error("initial = \"pending\"", "initial = \"nowhere\"");
    assert!(
        err.contains("[task] initial: unknown state \"nowhere\""),
        "{err}"
    );
    let err = parse_error("[step]", "[stepp]");
    assert!(err.contains("unknown top-level table [stepp]"), "{err}");
    let err = parse_error("why = \"an operator cancelled the task\"", "");
    assert!(err.contains("`why` must be a string"), "{err}");
    let err = parse_error(
        "terminal = [\"complete\"",
        "terminal = [\"complete\", \"complete\"",
    );
    assert!(
        err.contains("[task] terminal: \"complete\" is listed twice"),
        "{err}"
    );
}
