//! A workflow's step graph: validation with precise errors, topological order and levels, the
//! full readiness solve, and incremental readiness through remaining-parent counters.
//!
//! Steps are indices into the graph's names. Everything is iterative (no recursion), so a
//! 100,000-step chain is as safe as a diamond.

mod error;
mod graph;
mod ready;
mod tracker;

pub use error::{GraphError, IndexError, ReadyError};
pub use graph::WorkflowGraph;
pub use ready::StepColumns;
pub use tracker::DependencyTracker;
