//! Run spec/cases/backoff.json against the crate.

use serde_json::Value;
use tasker_backoff::{backoff_delay, jitter_fraction, Backoff};

fn load() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../spec/cases/backoff.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn close(got: f64, want: f64) -> bool {
    let tolerance = if want == 0.0 {
        1e-12
    } else {
        1e-12 * want.abs()
    };
    (got - want).abs() <= tolerance
}

#[test]
fn jitter_fractions_match_exactly() {
    let doc = load();
    let cases = doc["jitter_fraction"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let arg = |f: &str| case[f].as_u64().unwrap();
        let got = jitter_fraction(arg("key"), arg("attempt"), arg("seed"));
        assert_eq!(got, case["expect"].as_f64().unwrap(), "{case}");
    }
}

#[test]
fn delays_match_within_tolerance() {
    let doc = load();
    let cases = doc["backoff_delay"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let policy = Backoff {
            base: case["base"].as_f64().unwrap(),
            max_delay: case["max_delay"].as_f64().unwrap(),
            jitter: case["jitter"].as_f64().unwrap(),
            seed: case["seed"].as_u64().unwrap(),
        };
        let got = backoff_delay(
            case["attempt"].as_i64().unwrap(),
            &policy,
            case["key"].as_u64().unwrap(),
            case["retry_after"].as_f64(),
        );
        match (got, case.get("expect").and_then(Value::as_f64)) {
            (Ok(got), Some(want)) => assert!(close(got, want), "{name}: {got} != {want}"),
            (Err(_), None) => assert_eq!(case["error"], "ValueError", "{name}"),
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}
