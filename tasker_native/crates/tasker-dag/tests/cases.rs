//! Run spec/cases/graphs.json and spec/cases/readiness.json against the crate.

use serde_json::Value;
use tasker_dag::{GraphError, StepColumns, WorkflowGraph};
use tasker_fsm::STEP;

fn load(file: &str) -> Vec<Value> {
    let path = format!("{}/../../../spec/cases/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    doc["cases"].as_array().expect("cases").clone()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn build(case: &Value) -> Result<WorkflowGraph, GraphError> {
    let steps = case["steps"].as_array().unwrap();
    let names = steps
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    let deps: Vec<Vec<String>> = steps.iter().map(|s| strings(&s["depends_on"])).collect();
    WorkflowGraph::new(names, &deps)
}

fn error_json(err: &GraphError) -> Value {
    match err {
        GraphError::DuplicateStep { step } => {
            serde_json::json!({"type": "DuplicateStepError", "step": step})
        }
        GraphError::UnknownDependency { step, dependency } => serde_json::json!(
            {"type": "UnknownDependencyError", "step": step, "dependency": dependency}
        ),
        GraphError::SelfDependency { step } => {
            serde_json::json!({"type": "SelfDependencyError", "step": step})
        }
        GraphError::Cycle { path } => serde_json::json!({"type": "CycleError", "path": path}),
        other => panic!("not a case error: {other}"),
    }
}

#[test]
fn graphs() {
    let cases = load("graphs.json");
    assert!(cases.len() >= 20);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        match (build(case), case.get("error")) {
            (Err(err), Some(want)) => assert_eq!(&error_json(&err), want, "{name}"),
            (Err(err), None) => panic!("{name}: unexpected {err}"),
            (Ok(_), Some(want)) => panic!("{name}: expected {want}"),
            (Ok(g), None) => {
                let names = |idx: &[u32]| -> Vec<String> {
                    idx.iter().map(|&i| g.names()[i as usize].clone()).collect()
                };
                assert_eq!(
                    names(g.topological_order()),
                    strings(&case["order"]),
                    "{name}"
                );
                assert_eq!(names(&g.roots()), strings(&case["roots"]), "{name}");
                assert_eq!(names(&g.leaves()), strings(&case["leaves"]), "{name}");
                let levels: Vec<u64> = g.levels().iter().map(|&l| u64::from(l)).collect();
                let want: Vec<u64> = case["levels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect();
                assert_eq!(levels, want, "{name}");
                assert_eq!(
                    Some(g.edge_count() as u64),
                    case["edge_count"].as_u64(),
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn readiness() {
    let cases = load("readiness.json");
    assert!(cases.len() >= 20);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let graph = build(case).unwrap_or_else(|e| panic!("{name}: {e}"));
        let steps = case["steps"].as_array().unwrap();
        let int = |f: &str| -> Vec<i64> { steps.iter().map(|s| s[f].as_i64().unwrap()).collect() };
        let flag =
            |f: &str| -> Vec<bool> { steps.iter().map(|s| s[f].as_bool().unwrap()).collect() };
        let states: Vec<i64> = steps
            .iter()
            .map(|s| STEP.state_code(s["state"].as_str().unwrap()).unwrap() as i64)
            .collect();
        let next: Vec<f64> = steps
            .iter()
            .map(|s| s["next_retry_at"].as_f64().unwrap())
            .collect();
        let (attempts, max_attempts) = (int("attempts"), int("max_attempts"));
        let (retryable, leased) = (flag("retryable"), flag("leased"));
        let columns = StepColumns {
            states: &states,
            attempts: &attempts,
            max_attempts: &max_attempts,
            retryable: &retryable,
            next_retry_at: &next,
            leased: &leased,
        };
        let ready = graph
            .ready(&columns, case["now"].as_f64().unwrap())
            .unwrap();
        let got: Vec<String> = ready
            .iter()
            .map(|&i| graph.names()[i as usize].clone())
            .collect();
        assert_eq!(got, strings(&case["ready"]), "{name}");
    }
}
