//! Print the tables the build script would generate from a states.toml, as JSON.
//!
//! `cargo run -p tasker-fsm --example spec_tables -- PATH` (PATH defaults to the repo's spec).
//! tests/native/test_spec_drift.py runs it on an edited copy of the spec to show that the
//! generated tables follow the file. Names, not codes, so the output is easy to compare.

#[allow(dead_code)]
#[path = "../codegen/tables.rs"]
mod tables;

use serde_json::{json, Map, Value};

fn main() {
    let default = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../spec/states.toml").to_owned();
    let path = std::env::args().nth(1).unwrap_or(default);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        eprintln!("cannot read {path}: {e}");
        std::process::exit(2)
    });
    let specs = tables::parse(&text).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(1)
    });
    let mut out = Map::new();
    for spec in &specs {
        let names = |codes: &[usize]| -> Vec<&str> {
            codes.iter().map(|&c| spec.states[c].as_str()).collect()
        };
        let transitions: Vec<[&str; 3]> = spec
            .transitions
            .iter()
            .map(|&(e, f, t)| [spec.events[e].as_str(), &spec.states[f], &spec.states[t]])
            .collect();
        out.insert(
            spec.kind.clone(),
            json!({
                "states": spec.states,
                "events": spec.events,
                "initial": spec.states[spec.initial],
                "terminal": names(&spec.terminal),
                "satisfies_dependency": names(&spec.satisfies),
                "transitions": transitions,
            }),
        );
    }
    println!("{}", Value::Object(out));
}
