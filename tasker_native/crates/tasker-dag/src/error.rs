//! Errors of graph construction and queries; messages match tasker_core.errors.

use std::fmt;

/// Why a workflow graph is not a valid DAG (or could not be built).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphError {
    /// `names` and `dependencies` differ in length.
    LengthMismatch {
        /// Number of names.
        names: usize,
        /// Number of dependency lists.
        dependencies: usize,
    },
    /// More steps than a `u32` can index.
    TooLarge {
        /// Number of steps given.
        steps: usize,
    },
    /// The first name that occurs twice, by position.
    DuplicateStep {
        /// The repeated name.
        step: String,
    },
    /// The first step (by position) naming a step that does not exist, and the first such name.
    UnknownDependency {
        /// The step that lists the dependency.
        step: String,
        /// The missing name.
        dependency: String,
    },
    /// The first step (by position) that lists itself.
    SelfDependency {
        /// The step.
        step: String,
    },
    /// A dependency cycle, the re-entered step first and last, along dependency edges.
    Cycle {
        /// Step names: `[a, b, a]` means a depends on b and b on a.
        path: Vec<String>,
    },
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GraphError::LengthMismatch {
                names,
                dependencies,
            } => write!(
                f,
                "{names} step names but {dependencies} dependency lists: need one list per step"
            ),
            GraphError::TooLarge { steps } => {
                write!(f, "{steps} steps is more than a workflow graph can hold")
            }
            GraphError::DuplicateStep { step } => write!(f, "duplicate step name {step:?}"),
            GraphError::UnknownDependency { step, dependency } => {
                write!(f, "step {step:?} depends on unknown step {dependency:?}")
            }
            GraphError::SelfDependency { step } => write!(f, "step {step:?} depends on itself"),
            GraphError::Cycle { path } => write!(f, "dependency cycle: {}", path.join(" -> ")),
        }
    }
}

impl std::error::Error for GraphError {}

/// Why resolved dependencies do not form a DAG; [`GraphError`] is the same with names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DagError {
    /// The first step (by position) that lists itself.
    SelfDependency {
        /// The step's index.
        step: usize,
    },
    /// A dependency cycle, the re-entered step first and last, along dependency edges.
    Cycle {
        /// Step indices: `[a, b, a]` means a depends on b and b on a.
        path: Vec<u32>,
    },
}

impl fmt::Display for DagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DagError::SelfDependency { step } => write!(f, "step {step} depends on itself"),
            DagError::Cycle { path } => {
                let steps: Vec<String> = path.iter().map(u32::to_string).collect();
                write!(f, "dependency cycle: {}", steps.join(" -> "))
            }
        }
    }
}

impl std::error::Error for DagError {}

/// A step index outside the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexError {
    /// The index given.
    pub step: usize,
    /// Number of steps in the graph.
    pub len: usize,
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step index {} out of range for a graph of {} steps",
            self.step, self.len
        )
    }
}

impl std::error::Error for IndexError {}

/// Why a readiness solve was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyError {
    /// An input column does not have one entry per step.
    LengthMismatch {
        /// The column's name (`states`, `attempts`, ...).
        field: &'static str,
        /// Its length.
        len: usize,
        /// The number of steps.
        expected: usize,
    },
    /// A state code that is not a step state.
    UnknownState {
        /// The step's index.
        step: usize,
        /// The code given.
        code: i64,
    },
}

impl fmt::Display for ReadyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadyError::LengthMismatch {
                field,
                len,
                expected,
            } => write!(
                f,
                "{field} has {len} entries, expected one per step ({expected})"
            ),
            ReadyError::UnknownState { step, code } => {
                write!(f, "step {step} has unknown step state {code}")
            }
        }
    }
}

impl std::error::Error for ReadyError {}
