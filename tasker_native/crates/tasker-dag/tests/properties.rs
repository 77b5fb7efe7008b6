//! Randomised checks against brute force, and the large shapes (100k-step chains) that must not
//! recurse or go quadratic.

use tasker_dag::{
    DependencyTracker, GraphError, IndexError, ReadyError, StepColumns, WorkflowGraph,
};

/// splitmix64: a tiny deterministic generator, so failures reproduce from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("s{i}")).collect()
}

/// A random DAG; `shuffle` lays it over a random permutation of positions (so edges point both
/// ways by index), else every dependency comes before its step (the builder's fast path).
fn random_dag(rng: &mut Rng, n: usize, shuffle: bool) -> (Vec<String>, Vec<Vec<String>>) {
    let mut rank: Vec<usize> = (0..n).collect();
    if shuffle {
        for i in (1..n).rev() {
            rank.swap(i, rng.below(i + 1));
        }
    }
    let names = names(n);
    let mut deps = vec![Vec::new(); n];
    for (i, dep) in deps.iter_mut().enumerate() {
        for _ in 0..rng.below(4) {
            let j = rng.below(n);
            if rank[j] < rank[i] {
                dep.push(names[j].clone());
            }
        }
    }
    (names, deps)
}

#[test]
fn random_dags_order_levels_and_tracker_agree_with_brute_force() {
    for seed in 0..300 {
        let mut rng = Rng(seed);
        let n = 1 + rng.below(40);
        let (names, deps) = random_dag(&mut rng, n, seed % 3 != 0);
        let graph = WorkflowGraph::new(names.clone(), &deps).unwrap();
        let parents: Vec<Vec<usize>> = deps
            .iter()
            .map(|d| {
                let mut p: Vec<usize> = d.iter().map(|x| graph.index(x).unwrap()).collect();
                p.sort_unstable();
                p.dedup();
                p
            })
            .collect();

        // Order: a permutation, parents first, and at each point the smallest ready index.
        let order: Vec<usize> = graph
            .topological_order()
            .iter()
            .map(|&i| i as usize)
            .collect();
        let mut done = vec![false; n];
        for &step in &order {
            let smallest = (0..n)
                .find(|&i| !done[i] && parents[i].iter().all(|&p| done[p]))
                .unwrap();
            assert_eq!(step, smallest, "seed {seed}");
            done[step] = true;
        }
        assert!(done.iter().all(|&d| d));

        // Levels: longest path from a root, by fixpoint.
        let mut levels = vec![0u32; n];
        for _ in 0..n {
            for i in 0..n {
                levels[i] = parents[i].iter().map(|&p| levels[p] + 1).max().unwrap_or(0);
            }
        }
        assert_eq!(graph.levels(), levels, "seed {seed}");
        for i in 0..n {
            let kids: Vec<u32> = (0..n)
                .filter(|&c| parents[c].contains(&i))
                .map(|c| c as u32)
                .collect();
            assert_eq!(graph.children(i).unwrap(), kids.as_slice());
        }

        // Tracker: satisfying steps in a random order unblocks exactly the steps whose parents
        // are then all satisfied, each once, and agrees with a full readiness solve.
        let mut tracker = DependencyTracker::new(graph.dag().clone(), &[]).unwrap();
        let mut sat = vec![false; n];
        let mut seen: Vec<u32> = tracker.unblocked();
        let mut remaining: Vec<usize> = (0..n).collect();
        while !remaining.is_empty() {
            let step = remaining.swap_remove(rng.below(remaining.len()));
            let got = tracker.mark_satisfied(step).unwrap();
            sat[step] = true;
            let want: Vec<u32> = graph
                .children(step)
                .unwrap()
                .iter()
                .copied()
                .filter(|&c| !sat[c as usize] && parents[c as usize].iter().all(|&p| sat[p]))
                .collect();
            assert_eq!(got, want, "seed {seed}");
            seen.extend(got);
            assert_eq!(tracker.mark_satisfied(step).unwrap(), Vec::<u32>::new());
            let states: Vec<i64> = sat.iter().map(|&s| if s { 3 } else { 0 }).collect();
            let (zeros, flags, times) = (vec![0i64; n], vec![false; n], vec![0.0f64; n]);
            let ones = vec![1i64; n];
            let columns = StepColumns {
                states: &states,
                attempts: &zeros,
                max_attempts: &ones,
                retryable: &flags,
                next_retry_at: &times,
                leased: &flags,
            };
            assert_eq!(graph.ready(&columns, 0.0).unwrap(), tracker.unblocked());
        }
        assert!(tracker.all_satisfied());
        assert_eq!(tracker.satisfied_count(), n);
        seen.sort_unstable();
        seen.dedup();
        assert!(seen.len() <= n);
    }
}

#[test]
fn a_random_back_edge_is_reported_as_a_cycle_along_dependency_edges() {
    for seed in 0..200 {
        let mut rng = Rng(seed);
        let n = 2 + rng.below(30);
        let (names, mut deps) = random_dag(&mut rng, n, seed % 3 != 0);
        let graph = WorkflowGraph::new(names.clone(), &deps).unwrap();
        // Walk from a random step down random children to a leaf, then make the start depend on
        // where the walk ended: that closes a cycle of one or more dependency hops.
        let start = rng.below(n);
        let mut end = start;
        while let Some(kids) = graph.children(end).ok().filter(|k| !k.is_empty()) {
            end = kids[rng.below(kids.len())] as usize;
        }
        if end == start {
            continue;
        }
        deps[start].push(names[end].clone());
        let Err(GraphError::Cycle { path }) = WorkflowGraph::new(names.clone(), &deps) else {
            panic!("seed {seed}: no cycle reported");
        };
        assert!(
            path.len() >= 3 && path.first() == path.last(),
            "seed {seed}: {path:?}"
        );
        for pair in path.windows(2) {
            let from = names.iter().position(|x| *x == pair[0]).unwrap();
            assert!(
                deps[from].contains(&pair[1]),
                "seed {seed}: {path:?} is not a path"
            );
        }
    }
}

#[test]
fn long_chains_do_not_recurse() {
    let n = 100_000;
    let names = names(n);
    let mut deps: Vec<Vec<String>> = (0..n)
        .map(|i| {
            if i == 0 {
                vec![]
            } else {
                vec![names[i - 1].clone()]
            }
        })
        .collect();
    let graph = WorkflowGraph::new(names.clone(), &deps).unwrap();
    assert_eq!(graph.levels()[n - 1], (n - 1) as u32);
    assert_eq!(graph.topological_order()[n - 1], (n - 1) as u32);

    deps[0].push(names[n - 1].clone());
    let Err(GraphError::Cycle { path }) = WorkflowGraph::new(names, &deps) else {
        panic!("a closed chain is a cycle");
    };
    assert_eq!(path.len(), n + 1);
    assert_eq!((path[0].as_str(), path[1].as_str()), ("s0", "s99999"));
}

#[test]
fn bad_inputs_are_named() {
    let err = WorkflowGraph::new(names(2), &[vec!["s1"]]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "2 step names but 1 dependency lists: need one list per step"
    );
    let graph = WorkflowGraph::new(names(2), &[vec![], vec!["s0"]]).unwrap();
    assert_eq!(
        graph.parents(2).unwrap_err(),
        IndexError { step: 2, len: 2 }
    );
    assert_eq!(
        graph.children(5).unwrap_err().to_string(),
        "step index 5 out of range for a graph of 2 steps"
    );
    assert!(DependencyTracker::new(graph.dag().clone(), &[0, 2]).is_err());
    let mut tracker = DependencyTracker::new(graph.dag().clone(), &[0]).unwrap();
    assert!(tracker.mark_satisfied(9).is_err());
    assert_eq!(tracker.remaining_parents(1).unwrap(), 0);
    assert_eq!(tracker.unblocked(), vec![1]);
    let (s, i, b, f) = ([0i64, 0], [0i64, 0], [false, false], [0.0, 0.0]);
    let mut columns = StepColumns {
        states: &s,
        attempts: &i,
        max_attempts: &i,
        retryable: &b,
        next_retry_at: &f,
        leased: &b[..1],
    };
    assert_eq!(
        graph.ready(&columns, 0.0).unwrap_err(),
        ReadyError::LengthMismatch {
            field: "leased",
            len: 1,
            expected: 2
        }
    );
    columns.leased = &b;
    let bad = [0i64, 99];
    columns.states = &bad;
    assert_eq!(
        graph.ready(&columns, 0.0).unwrap_err().to_string(),
        "step 1 has unknown step state 99"
    );
    let err = WorkflowGraph::new(names(1), &[vec!["s0"]]).unwrap_err();
    assert_eq!(err.to_string(), "step \"s0\" depends on itself");
}
