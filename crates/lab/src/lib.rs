//! The lab: fits over many runs (scaling laws), plots and reports.

pub mod plot;
pub mod scaling;
pub mod windtunnel;
