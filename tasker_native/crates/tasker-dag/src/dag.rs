//! The name-free step graph: steps are indices, built one step at a time from resolved
//! dependency indices, so that callers holding names elsewhere (Python strings) never copy them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::OnceLock;

use crate::error::{DagError, GraphError, IndexError};

/// A validated DAG of steps `0..len()` in compressed-sparse-row form.
///
/// Parents (the steps `i` depends on) and children (the steps depending on `i`) are each one flat
/// array sliced by an offsets array, ascending within a step. The children are built on first
/// use when validation did not need them (a graph whose dependencies all come before their
/// steps is validated, ordered and solved from its parents alone).
#[derive(Debug, Clone)]
pub struct Dag {
    parent_offsets: Vec<u32>,
    parents: Vec<u32>,
    children: OnceLock<Csr>,
    order: Vec<u32>,
}

/// One compressed-sparse-row adjacency: row `i` is `targets[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone)]
struct Csr {
    offsets: Vec<u32>,
    targets: Vec<u32>,
}

impl Csr {
    #[inline]
    fn row(&self, step: usize) -> &[u32] {
        &self.targets[self.offsets[step] as usize..self.offsets[step + 1] as usize]
    }
}

pub(crate) fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("graphs are limited to u32::MAX steps and edges")
}

/// Rows shorter than this are searched for repeats; longer ones use per-step markers.
const SHORT_ROW: usize = 16;

/// Collects each step's dependencies, in step order, then validates them into a [`Dag`].
///
/// Call [`depend`](Self::depend) for each dependency of the current step and
/// [`end_step`](Self::end_step) after its last one, for every step in order, then
/// [`build`](Self::build). A parent listed twice by one step counts once.
#[derive(Debug)]
pub struct DagBuilder {
    steps: usize,
    /// Row starts of the dependencies in listed order (repeats dropped); grows by one per step.
    offsets: Vec<u32>,
    targets: Vec<u32>,
    /// For long rows only (allocated on the first): `last_seen[p] == step + 1` when the current
    /// step already listed `p`. Short rows are searched instead, sparing a per-step array.
    last_seen: Vec<u32>,
    first_self: Option<usize>,
    /// Every edge so far goes from a lower index to a higher one.
    forward: bool,
}

impl DagBuilder {
    /// A builder for `steps` steps, with room for about `edges` dependencies.
    pub fn new(steps: usize, edges: usize) -> Result<Self, GraphError> {
        if u32::try_from(steps).is_err() {
            return Err(GraphError::TooLarge { steps });
        }
        let mut offsets = Vec::with_capacity(steps + 1);
        offsets.push(0);
        Ok(DagBuilder {
            steps,
            offsets,
            targets: Vec::with_capacity(edges),
            last_seen: Vec::new(),
            first_self: None,
            forward: true,
        })
    }

    /// The step whose dependencies are being listed.
    pub fn current_step(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The current step depends on step `parent` (which must be below the step count).
    #[inline]
    pub fn depend(&mut self, parent: u32) {
        let step = self.current_step();
        assert!(step < self.steps, "every step has already been ended");
        assert!(
            (parent as usize) < self.steps,
            "step {parent} is out of range"
        );
        if parent as usize == step {
            self.first_self.get_or_insert(step);
            return;
        }
        let start = self.offsets[step] as usize;
        let repeated = if self.targets.len() - start < SHORT_ROW {
            self.targets[start..].contains(&parent)
        } else {
            self.seen_in_long_row(start, parent)
        };
        if !repeated {
            self.forward &= (parent as usize) < step;
            self.targets.push(parent);
        }
    }

    /// Whether the current (long) row, starting at `start`, already lists `parent`; marks it.
    fn seen_in_long_row(&mut self, start: usize, parent: u32) -> bool {
        if self.last_seen.is_empty() {
            self.last_seen = vec![0; self.steps];
        }
        let marker = (self.current_step() + 1) as u32;
        if self.targets.len() - start == SHORT_ROW {
            // The row just got long: mark what it listed while short (again if need be).
            for &p in &self.targets[start..] {
                self.last_seen[p as usize] = marker;
            }
        }
        let seen = &mut self.last_seen[parent as usize];
        let repeated = *seen == marker;
        *seen = marker;
        repeated
    }

    /// The current step's dependencies are all listed; the next ones belong to the next step.
    #[inline]
    pub fn end_step(&mut self) {
        assert!(
            self.current_step() < self.steps,
            "every step has already been ended"
        );
        self.offsets.push(to_u32(self.targets.len()));
    }

    /// Validate: the first self-dependency by position, then cycles (see [`DagError`]).
    pub fn build(self) -> Result<Dag, DagError> {
        let n = self.steps;
        assert_eq!(
            self.current_step(),
            n,
            "every step must be ended before build"
        );
        if let Some(step) = self.first_self {
            return Err(DagError::SelfDependency { step });
        }
        let children = OnceLock::new();
        // With every edge pointing forward, the smallest-ready-first order is 0, 1, 2, ...: step
        // k's parents all come before it, and it is the smallest step not yet taken.
        let order = if self.forward {
            (0..n).map(to_u32).collect()
        } else {
            let csr = transpose(n, &self.offsets, &self.targets);
            let order = kahn(&self.offsets, &csr);
            if order.len() < n {
                let path = find_cycle(&self.offsets, &self.targets)
                    .expect("Kahn's algorithm left steps unordered, so the graph has a cycle");
                return Err(DagError::Cycle { path });
            }
            // Transposing visits steps in order, so child rows are ascending already.
            let _ = children.set(csr);
            order
        };
        let (parent_offsets, mut parents) = (self.offsets, self.targets);
        for step in 0..n {
            sort_row(
                &mut parents[parent_offsets[step] as usize..parent_offsets[step + 1] as usize],
            );
        }
        Ok(Dag {
            parent_offsets,
            parents,
            children,
            order,
        })
    }
}

impl Dag {
    /// Number of steps.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the graph has no steps.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Number of distinct (step, parent) edges.
    pub fn edge_count(&self) -> usize {
        self.parents.len()
    }

    /// The steps `step` depends on, ascending.
    pub fn parents(&self, step: usize) -> Result<&[u32], IndexError> {
        self.check_index(step)?;
        Ok(self.parents_of(step))
    }

    /// The steps that depend on `step`, ascending.
    pub fn children(&self, step: usize) -> Result<&[u32], IndexError> {
        self.check_index(step)?;
        Ok(self.children_of(step))
    }

    /// Kahn's topological order, smallest ready index first.
    pub fn topological_order(&self) -> &[u32] {
        &self.order
    }

    /// Per step: 0 for a root, else 1 + the largest level among its parents.
    pub fn levels(&self) -> Vec<u32> {
        let mut levels = vec![0u32; self.len()];
        for &step in &self.order {
            let step = step as usize;
            levels[step] = self
                .parents_of(step)
                .iter()
                .map(|&p| levels[p as usize] + 1)
                .max()
                .unwrap_or(0);
        }
        levels
    }

    /// Steps without parents, ascending.
    pub fn roots(&self) -> Vec<u32> {
        (0..self.len())
            .filter(|&i| self.parent_offsets[i] == self.parent_offsets[i + 1])
            .map(to_u32)
            .collect()
    }

    /// Steps without children, ascending.
    pub fn leaves(&self) -> Vec<u32> {
        let offsets = &self.child_csr().offsets;
        (0..self.len())
            .filter(|&i| offsets[i] == offsets[i + 1])
            .map(to_u32)
            .collect()
    }

    /// `Ok` when `step` is a step of this graph.
    pub fn check_index(&self, step: usize) -> Result<(), IndexError> {
        if step < self.len() {
            Ok(())
        } else {
            Err(IndexError {
                step,
                len: self.len(),
            })
        }
    }

    #[inline]
    pub(crate) fn parents_of(&self, step: usize) -> &[u32] {
        &self.parents[self.parent_offsets[step] as usize..self.parent_offsets[step + 1] as usize]
    }

    #[inline]
    pub(crate) fn children_of(&self, step: usize) -> &[u32] {
        self.child_csr().row(step)
    }

    fn child_csr(&self) -> &Csr {
        self.children
            .get_or_init(|| transpose(self.len(), &self.parent_offsets, &self.parents))
    }

    pub(crate) fn parent_count(&self, step: usize) -> u32 {
        self.parent_offsets[step + 1] - self.parent_offsets[step]
    }
}

/// Sort one row of parents; the short rows most steps have go through a branch-free sorting
/// network (their order is random, so compare-and-branch would mispredict half the time).
#[inline]
fn sort_row(row: &mut [u32]) {
    match row {
        [] | [_] => {}
        [a, b] => (*a, *b) = ordered(*a, *b),
        [a, b, c] => {
            let (x, y) = ordered(*a, *b);
            let (y, z) = ordered(y, *c);
            let (x, y) = ordered(x, y);
            (*a, *b, *c) = (x, y, z);
        }
        _ => row.sort_unstable(),
    }
}

#[inline]
fn ordered(a: u32, b: u32) -> (u32, u32) {
    (a.min(b), a.max(b))
}

/// Children CSR from parents CSR (rows in any order); rows come out ascending because steps are
/// visited in order.
fn transpose(n: usize, parent_offsets: &[u32], parents: &[u32]) -> Csr {
    let mut offsets = vec![0u32; n + 1];
    for &p in parents {
        offsets[p as usize + 1] += 1;
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    let mut fill = offsets.clone();
    let mut children = vec![0u32; parents.len()];
    for step in 0..n {
        let row = &parents[parent_offsets[step] as usize..parent_offsets[step + 1] as usize];
        for &p in row {
            let slot = &mut fill[p as usize];
            children[*slot as usize] = to_u32(step);
            *slot += 1;
        }
    }
    Csr {
        offsets,
        targets: children,
    }
}

/// Kahn's algorithm, smallest ready index first; shorter than the step count when there is a
/// cycle.
fn kahn(parent_offsets: &[u32], children: &Csr) -> Vec<u32> {
    let n = parent_offsets.len() - 1;
    let mut pending: Vec<u32> = parent_offsets.windows(2).map(|w| w[1] - w[0]).collect();
    let mut ready: BinaryHeap<Reverse<u32>> = (0..n)
        .filter(|&i| pending[i] == 0)
        .map(|i| Reverse(to_u32(i)))
        .collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(step)) = ready.pop() {
        order.push(step);
        let step = step as usize;
        for &child in children.row(step) {
            let left = &mut pending[child as usize];
            *left -= 1;
            if *left == 0 {
                ready.push(Reverse(child));
            }
        }
    }
    order
}

const UNVISITED: u8 = 0;
const ON_PATH: u8 = 1;
const FINISHED: u8 = 2;

/// The cycle the documented depth-first search meets first, as step indices, re-entered step
/// first and last; rows are followed in listed order. Iterative, so a 100k-step chain cannot
/// overflow the stack.
fn find_cycle(offsets: &[u32], targets: &[u32]) -> Option<Vec<u32>> {
    let n = offsets.len() - 1;
    let row = |step: usize| &targets[offsets[step] as usize..offsets[step + 1] as usize];
    let mut color = vec![UNVISITED; n];
    let mut depth = vec![0u32; n];
    // The search path: (step, position of the next dependency to follow).
    let mut path: Vec<(u32, usize)> = Vec::new();
    for start in 0..n {
        if color[start] != UNVISITED {
            continue;
        }
        color[start] = ON_PATH;
        path.push((to_u32(start), 0));
        while let Some(top) = path.last_mut() {
            let (step, next) = (top.0 as usize, top.1);
            let deps = row(step);
            if next == deps.len() {
                color[step] = FINISHED;
                path.pop();
                continue;
            }
            top.1 += 1;
            let dep = deps[next] as usize;
            match color[dep] {
                ON_PATH => {
                    let from = depth[dep] as usize;
                    let mut cycle: Vec<u32> = path[from..].iter().map(|&(s, _)| s).collect();
                    cycle.push(to_u32(dep));
                    return Some(cycle);
                }
                UNVISITED => {
                    color[dep] = ON_PATH;
                    depth[dep] = to_u32(path.len());
                    path.push((to_u32(dep), 0));
                }
                _ => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(deps: &[&[u32]]) -> Result<Dag, DagError> {
        let mut builder = DagBuilder::new(deps.len(), 0).unwrap();
        for row in deps {
            for &p in *row {
                builder.depend(p);
            }
            builder.end_step();
        }
        builder.build()
    }

    #[test]
    fn forward_and_general_orders_agree() {
        // Forward edges only: the fast path; the same graph through Kahn must give 0..n.
        let deps: &[&[u32]] = &[&[], &[0], &[0, 1], &[], &[3, 2, 3]];
        let dag = build(deps).unwrap();
        assert_eq!(dag.topological_order(), &[0, 1, 2, 3, 4]);
        assert_eq!(
            kahn(&dag.parent_offsets, dag.child_csr()),
            vec![0, 1, 2, 3, 4]
        );
        assert_eq!(dag.children(0).unwrap(), &[1, 2]);
        assert_eq!(dag.leaves(), vec![4]);
        assert_eq!(dag.parents(4).unwrap(), &[2, 3]);
        assert_eq!(dag.edge_count(), 5);
        // One backward edge: Kahn, smallest ready first.
        let dag = build(&[&[2], &[], &[1]]).unwrap();
        assert_eq!(dag.topological_order(), &[1, 2, 0]);
    }

    #[test]
    fn rows_of_every_short_length_come_out_sorted() {
        let mut rows: Vec<Vec<u32>> =
            vec![vec![], vec![1], vec![2, 1], vec![1, 2], vec![4, 1, 3, 2]];
        for a in 1..=3 {
            for b in 1..=3 {
                for c in 1..=3 {
                    rows.push(vec![a, b, c]);
                }
            }
        }
        for row in rows {
            let mut sorted = row.clone();
            sort_row(&mut sorted);
            let mut want = row.clone();
            want.sort_unstable();
            assert_eq!(sorted, want, "{row:?}");
        }
    }

    #[test]
    fn repeats_are_dropped_in_short_and_long_rows() {
        let long: Vec<u32> = (0..40).chain(0..40).chain([39, 3, 17]).collect();
        let short: &[u32] = &[3, 1, 3, 1, 2];
        let mut deps: Vec<&[u32]> = vec![&[]; 40];
        deps.push(&long);
        deps.push(short);
        let dag = build(&deps).unwrap();
        assert_eq!(
            dag.parents(40).unwrap(),
            (0..40).collect::<Vec<u32>>().as_slice()
        );
        assert_eq!(dag.parents(41).unwrap(), &[1, 2, 3]);
        assert_eq!(dag.edge_count(), 43);
    }

    #[test]
    fn self_dependency_wins_over_a_cycle_and_the_first_is_named() {
        let err = build(&[&[1], &[0], &[2], &[3]]).unwrap_err();
        assert_eq!(err, DagError::SelfDependency { step: 2 });
        let err = build(&[&[1], &[2], &[0, 1]]).unwrap_err();
        assert_eq!(
            err,
            DagError::Cycle {
                path: vec![0, 1, 2, 0]
            }
        );
    }

    #[test]
    #[should_panic(expected = "every step must be ended")]
    fn building_before_every_step_is_ended_is_a_bug() {
        let mut builder = DagBuilder::new(2, 0).unwrap();
        builder.end_step();
        let _ = builder.build();
    }
}
