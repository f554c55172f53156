//! The lab: fits over many runs (scaling laws, the batch-size law), plots and reports.

pub mod batch_law;
pub mod heatmap;
pub mod log_parabola;
pub mod plot;
pub mod scaling;
pub mod si_format;
pub mod windtunnel;
