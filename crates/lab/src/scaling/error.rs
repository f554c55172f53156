//! One error type for the whole scaling-law toolkit, so a caller (the CLI) can print any failure
//! as a single line that names what was wrong and where.

use std::path::PathBuf;

/// Everything that can go wrong reading points or fitting them.
#[derive(Debug, thiserror::Error)]
pub enum ScalingError {
    /// The file could not be opened or read.
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The CSV itself is malformed (e.g. a row with the wrong number of fields).
    #[error("{path}: malformed CSV: {source}")]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    /// The header lacks a column the chosen format needs.
    #[error("{path}: missing column '{column}' (header has: {header})")]
    MissingColumn {
        path: PathBuf,
        column: String,
        header: String,
    },
    /// A data row has a field that is not a number.
    #[error("{path}: line {line}: column '{column}': '{value}' is not a number")]
    BadNumber {
        path: PathBuf,
        line: u64,
        column: String,
        value: String,
    },
    /// A data row holds a value the law cannot take (NaN, infinite, zero or negative).
    #[error("{path}: line {line}: {problem}")]
    BadRow {
        path: PathBuf,
        line: u64,
        problem: PointProblem,
    },
    /// A point handed to a fit directly (not from a file) is unusable.
    #[error("point {index}: {problem}")]
    BadPoint { index: usize, problem: PointProblem },
    /// There are not enough points to pin down the parameters.
    #[error("{what} needs at least {needed} points, got {got}")]
    TooFewPoints {
        what: &'static str,
        needed: usize,
        got: usize,
    },
    /// A fit option is out of range (e.g. a non-positive Huber delta or an empty start grid).
    #[error("invalid fit configuration: {0}")]
    InvalidConfig(String),
    /// The report could not be serialised.
    #[error("cannot write the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// No start of the optimiser reached a finite objective.
    #[error("{what}: no start of the optimiser reached a finite objective")]
    NoConvergence { what: &'static str },
}

/// Why one value of a point cannot be used; shared by file rows and in-memory points.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PointProblem {
    #[error("{field} is not finite ({value})")]
    NonFinite { field: &'static str, value: f64 },
    #[error("{field} must be positive, got {value}")]
    NonPositive { field: &'static str, value: f64 },
}
