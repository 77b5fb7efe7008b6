//! Run spec/cases/transitions.json against the generated machines.

use serde_json::Value;
use tasker_fsm::{FsmError, StateMachine, STEP, TASK};

fn load() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../spec/cases/transitions.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn machine(kind: &str) -> StateMachine {
    match kind {
        "task" => TASK,
        "step" => STEP,
        other => panic!("unknown kind {other:?}"),
    }
}

fn error_type(err: &FsmError) -> &'static str {
    match err {
        FsmError::UnknownName { .. } | FsmError::UnknownCode { .. } => "UnknownStateError",
        FsmError::IllegalTransition { .. } | FsmError::IllegalEvent { .. } => {
            "InvalidTransitionError"
        }
    }
}

#[test]
fn sequences() {
    let cases = load();
    let cases = cases["sequences"].as_array().expect("sequences");
    assert!(cases.len() > 40);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let m = machine(case["kind"].as_str().unwrap());
        let mut state = m.state_code(case["start"].as_str().unwrap()).unwrap();
        let mut seen: Vec<&str> = Vec::new();
        let mut failure = None;
        for (i, event) in case["events"].as_array().unwrap().iter().enumerate() {
            let result = m
                .event_code(event.as_str().unwrap())
                .and_then(|e| m.apply(state, e));
            match result {
                Ok(next) => {
                    state = next;
                    seen.push(m.states()[next]);
                }
                Err(err) => {
                    failure = Some((error_type(&err), i));
                    break;
                }
            }
        }
        let expect: Vec<&str> = case["expect"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(seen, expect, "{name}");
        let want = case.get("error").map(|e| {
            (
                e["type"].as_str().unwrap(),
                usize::try_from(e["at"].as_u64().unwrap()).unwrap(),
            )
        });
        assert_eq!(failure, want, "{name}");
    }
}

#[test]
fn checks_cover_every_pair() {
    let cases = load();
    let cases = cases["checks"].as_array().expect("checks");
    let pairs: usize = [TASK, STEP].iter().map(|m| m.states().len().pow(2)).sum();
    assert_eq!(cases.len(), pairs);
    for case in cases {
        let m = machine(case["kind"].as_str().unwrap());
        let from = m.state_code(case["from"].as_str().unwrap()).unwrap();
        let to = m.state_code(case["to"].as_str().unwrap()).unwrap();
        let got = m.check(from, to).map(|e| m.events()[e]);
        match case["event"].as_str() {
            Some(event) => assert_eq!(got, Ok(event), "{case}"),
            None => assert!(
                matches!(got, Err(FsmError::IllegalTransition { .. })),
                "{case}: {got:?}"
            ),
        }
        assert_eq!(
            m.can(from, to).unwrap(),
            case["event"].is_string(),
            "{case}"
        );
    }
}
