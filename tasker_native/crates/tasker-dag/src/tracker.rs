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

    /// [`mark_satisfied`](Self::mark_satisfied) of each of `steps` in order, the unblocked
    /// children of every call concatenated in call order. Every index is checked before any is
    /// marked, so an error (the first bad index by position) leaves the tracker unchanged.
    pub fn mark_satisfied_many(&mut self, steps: &[usize]) -> Result<Vec<u32>, IndexError> {
        for &step in steps {
            self.graph.check_index(step)?;
        }
        let mut unblocked = Vec::new();
        for &step in steps {
            self.satisfy(step, |child| unblocked.push(child));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::DagBuilder;

    /// Step 0 is the parent of 1, 2 and 4; 3 depends on 2 and 1: a diamond and one more leaf.
    fn diamond() -> Arc<Dag> {
        let parents: [&[u32]; 5] = [&[], &[0], &[0], &[2, 1], &[0]];
        let mut builder = DagBuilder::new(parents.len(), 5).unwrap();
        for row in parents {
            for &parent in row {
                builder.depend(parent);
            }
            builder.end_step();
        }
        Arc::new(builder.build().unwrap())
    }

    #[test]
    fn a_batch_answers_like_one_call_per_step() {
        let batch = [0, 2, 0, 1, 3, 3, 4];
        let mut one_by_one = DependencyTracker::new(diamond(), &[]).unwrap();
        let expected: Vec<u32> = batch
            .iter()
            .flat_map(|&step| one_by_one.mark_satisfied(step).unwrap())
            .collect();
        // 0 frees 1, 2 and 4 (ascending); 1 then frees 3; the repeats and leaves free nothing.
        assert_eq!(expected, vec![1, 2, 4, 3]);
        let mut batched = DependencyTracker::new(diamond(), &[]).unwrap();
        assert_eq!(batched.mark_satisfied_many(&batch).unwrap(), expected);
        assert_eq!(batched.satisfied_count(), one_by_one.satisfied_count());
        assert!(batched.all_satisfied());
        assert_eq!(batched.mark_satisfied_many(&[]).unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn a_bad_index_anywhere_in_a_batch_changes_nothing() {
        let mut tracker = DependencyTracker::new(diamond(), &[1]).unwrap();
        let err = tracker.mark_satisfied_many(&[0, 2, 7, 9]).unwrap_err();
        assert_eq!((err.step, err.len), (7, 5));
        assert_eq!(tracker.satisfied_count(), 1);
        assert!(!tracker.is_satisfied(0).unwrap());
        assert_eq!(tracker.remaining_parents(2).unwrap(), 1);
        assert_eq!(tracker.unblocked(), vec![0]);
    }
}
