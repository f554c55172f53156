//! The lab: fits over many runs (scaling laws, the batch-size law), plots and reports.

pub mod batch_law;
pub mod heatmap;
pub mod log_parabola;
pub mod number_format;
pub mod plot;
pub mod scaling;
pub mod windtunnel;
