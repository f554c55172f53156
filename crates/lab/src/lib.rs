//! The lab: fits over many runs (scaling laws), plots and reports.
