//! A workflow's step graph: validation with precise errors, topological order and levels, the
//! full readiness solve, and incremental readiness through remaining-parent counters.
//!
//! Steps are indices. [`Dag`] is the name-free graph, built through [`DagBuilder`] from resolved
//! indices; [`WorkflowGraph`] adds the names (and resolves dependency names itself). Everything
//! is iterative (no recursion), so a 100,000-step chain is as safe as a diamond.

mod dag;
mod error;
mod graph;
mod ready;
mod tracker;

pub use dag::{Dag, DagBuilder};
pub use error::{DagError, GraphError, IndexError, ReadyError};
pub use graph::{NameIndex, WorkflowGraph};
pub use ready::{StepColumns, StepInputs};
pub use tracker::DependencyTracker;
