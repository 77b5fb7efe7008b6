//! Incremental readiness: remaining-parent counters updated in O(out-degree) per step.

use std::sync::Arc;

use crate::dag::Dag;
use crate::error::IndexError;

/// Counts each step's unsatisfied parents, so running an N-step DAG costs O(N + E) in total.
#[derive(Debug, Clone)]
pub struct DependencyTracker {
    graph: Arc<Dag>,
    remaining: Vec<u32>,
    satisfied: Vec<bool>,
    satisfied_count: usize,
}

impl DependencyTracker {
    /// A tracker over `graph` in which the steps of `satisfied` are already satisfied.
    pub fn new(graph: Arc<Dag>, satisfied: &[usize]) -> Result<Self, IndexError> {
        for &step in satisfied {
            graph.check_index(step)?;
        }
        let n = graph.len();
        let remaining = (0..n).map(|i| graph.parent_count(i)).collect();
        let mut tracker = DependencyTracker {
            graph,
            remaining,
            satisfied: vec![false; n],
            satisfied_count: 0,
        };
        for &step in satisfied {
            tracker.satisfy(step, |_| {});
        }
        Ok(tracker)
    }

    /// The graph this tracker counts over.
    pub fn graph(&self) -> &Arc<Dag> {
        &self.graph
    }

    /// Record that `step` is satisfied; return its children, not themselves satisfied, whose last
    /// unsatisfied parent this was, ascending. Marking a satisfied step again returns nothing.
    pub fn mark_satisfied(&mut self, step: usize) -> Result<Vec<u32>, IndexError> {
        self.graph.check_index(step)?;
        let mut unblocked = Vec::new();
        self.satisfy(step, |child| unblocked.push(child));
        Ok(unblocked)
    }

    /// Whether `step` has been marked satisfied.
    pub fn is_satisfied(&self, step: usize) -> Result<bool, IndexError> {
        self.graph.check_index(step)?;
        Ok(self.satisfied[step])
    }

    /// How many of `step`'s parents are not yet satisfied.
    pub fn remaining_parents(&self, step: usize) -> Result<u32, IndexError> {
        self.graph.check_index(step)?;
        Ok(self.remaining[step])
    }

    /// Steps not yet satisfied whose parents all are, ascending (O(N); for start-up).
    pub fn unblocked(&self) -> Vec<u32> {
        (0..self.satisfied.len())
            .filter(|&i| !self.satisfied[i] && self.remaining[i] == 0)
            .map(|i| u32::try_from(i).expect("graphs hold at most u32::MAX steps"))
            .collect()
    }

    /// Number of satisfied steps.
    pub fn satisfied_count(&self) -> usize {
        self.satisfied_count
    }

    /// Whether every step is satisfied.
    pub fn all_satisfied(&self) -> bool {
        self.satisfied_count == self.satisfied.len()
    }

    fn satisfy(&mut self, step: usize, mut on_unblocked: impl FnMut(u32)) {
        if self.satisfied[step] {
            return;
        }
        self.satisfied[step] = true;
        self.satisfied_count += 1;
        for &child in self.graph.children_of(step) {
            let left = &mut self.remaining[child as usize];
            *left -= 1;
            if *left == 0 && !self.satisfied[child as usize] {
                on_unblocked(child);
            }
        }
    }
}
