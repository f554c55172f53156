//! The model wind tunnel (docs/MODEL.md section 8): proxy shapes derived from a width, the grid of
//! points a sweep trains, the job list for an external scheduler, the loss table with the best
//! learning rate per width, and the sweep's index file. Training the points is the caller's
//! business (each point is an ordinary run), so this module is plain data and arithmetic.

mod lr_index;
mod proxy;
mod sweep;
mod table;

pub use lr_index::{LrSweepIndex, LrSweepKind, LrSweepPoint};
pub use proxy::{ProxyShape, PAPER_PROXIES};
pub use sweep::{job_list, parse_grid_values, slurm_array_script, Point, SweepGrid};
pub use table::{LrTable, LrTableRow};
