//! Scaling laws: reading runs, fitting L(N, D) = E + A / N^alpha + B / D^beta (Chinchilla form,
//! fitted as in Besiroglu et al. 2024), bootstrap intervals, compute-optimal allocation under
//! C = 6ND, single-run loss-versus-compute envelopes, and a serialisable report.

mod allocation;
mod bootstrap;
mod csv_input;
mod envelope;
mod error;
mod fit;
mod law;
mod objective;
mod parallel;
mod point;
mod report;

pub use allocation::{allocate, Allocation, BillionsUnits, BudgetAllocation};
pub use bootstrap::{bootstrap, BootstrapConfig, BootstrapIntervals, Interval};
pub use csv_input::{parse_points, read_points, read_points_as, CsvFormat};
pub use envelope::{
    fit_envelope, fit_envelope_form, CurvePoint, EnvelopeComparison, EnvelopeFit, EnvelopeForm,
    ENVELOPE_MIN_POINTS,
};
pub use error::{PointProblem, ScalingError};
pub use fit::{fit_law, FitConfig, LawFit, StartGrid, LAW_PARAMS};
pub use law::{LawParams, PerParam};
pub use point::{exclude_highest_loss, validate, Point};
pub use report::{residuals, study, Residual, ScalingReport};
