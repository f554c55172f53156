//! Scaling laws: reading runs, fitting L(N, D) = E + A / N^alpha + B / D^beta (Chinchilla form,
//! fitted as in Besiroglu et al. 2024), bootstrap intervals, compute-optimal allocation under
//! C = 6ND, iso-FLOP profiles read from the points without any law, single-run
//! loss-versus-compute envelopes, a serialisable report, the iso-loss contour figure of a fitted
//! law, and the plan of a WSD scaling-law study (which runs to train).

mod allocation;
mod bootstrap;
mod contours;
mod csv_input;
mod envelope;
mod error;
mod fit;
mod iso_flop;
mod iso_loss;
mod law;
mod objective;
mod plan;
mod point;
mod report;
pub(crate) mod univariate;

pub use allocation::{allocate, Allocation, BillionsUnits, BudgetAllocation};
pub use bootstrap::{bootstrap, BootstrapConfig, BootstrapIntervals, Interval};
pub use contours::{contour_chart, contour_levels, render_contours, ContourError, CONTOUR_LEVELS};
pub use csv_input::{parse_points, read_points, read_points_as, CsvFormat};
pub use envelope::{
    fit_envelope, fit_envelope_form, CurvePoint, EnvelopeComparison, EnvelopeFit, EnvelopeForm,
    ENVELOPE_MIN_POINTS,
};
pub use error::{PointProblem, ScalingError};
pub use fit::{fit_law, FitConfig, LawFit, StartGrid, LAW_PARAMS};
pub use iso_flop::{
    covered_budgets, iso_flop_chart, iso_flop_profiles, IsoFlopOptimum, IsoFlopPoint,
    IsoFlopProfile, ISO_FLOP_MIN_SIZES,
};
pub use iso_loss::{compute_at_size, compute_to_reach, frontier, frontier_loss, iso_loss_n};
pub use law::{LawParams, PerParam, CHINCHILLA_REFIT};
pub use plan::{plan_study, PlanError, PlannedBranch, PlannedSize, SizeSpec, StudyPlan};
pub(crate) use point::value_problem;
pub use point::{exclude_highest_loss, validate, Point};
pub use report::{residuals, study, Residual, ScalingReport};
