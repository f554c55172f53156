//! The ranks of an `mpirun` or `srun` launch as the trainer's [`Collective`], on Open MPI (or any
//! MPI the `mpi` crate builds against): built with `--features mpi`.
//!
//! A collective waits for every rank. When a rank dies, the launcher ends the others (mpirun
//! does; `srun` does with `--kill-on-bad-exit`); when one stalls without dying, a watchdog
//! ends this rank after MINICPM_COLLECTIVE_TIMEOUT seconds (default 600) with a one-line error,
//! and the launcher then ends the rest. Nothing waits forever.

use minicpm_train::Collective;
use mpi::collective::SystemOperation;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::{CommunicatorCollectives, Root};
use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a collective may wait before this rank gives up, unless the variable says.
const DEFAULT_TIMEOUT_S: u64 = 600;
const TIMEOUT_VARIABLE: &str = "MINICPM_COLLECTIVE_TIMEOUT";

pub struct MpiWorld {
    comm: SimpleCommunicator,
    /// The all-reduce's send buffer, kept between calls (MPI's in-place form is not in the
    /// `mpi` crate): a fresh one would take its page faults at every bucket.
    send: RefCell<Vec<f32>>,
    /// What this rank waits in now, and since when; read by the watchdog.
    waiting: Arc<Mutex<Option<(Instant, &'static str)>>>,
    /// Finalises MPI when dropped, after the communicator.
    _universe: mpi::environment::Universe,
}

impl MpiWorld {
    /// Joins the launch this process was started in.
    pub fn join() -> anyhow::Result<MpiWorld> {
        let timeout = match std::env::var(TIMEOUT_VARIABLE) {
            Err(_) => DEFAULT_TIMEOUT_S,
            Ok(v) => v.trim().parse().ok().filter(|&s| s > 0).ok_or_else(|| {
                anyhow::anyhow!(
                    "{TIMEOUT_VARIABLE}={v}: expected a whole number of seconds above 0"
                )
            })?,
        };
        let universe =
            mpi::initialize().ok_or_else(|| anyhow::anyhow!("MPI was already initialised"))?;
        let comm = universe.world();
        let waiting = Arc::new(Mutex::new(None));
        watch(waiting.clone(), comm.rank(), Duration::from_secs(timeout));
        Ok(MpiWorld {
            comm,
            send: RefCell::new(Vec::new()),
            waiting,
            _universe: universe,
        })
    }

    /// Ends every rank of the launch now, with `code` as the exit status.
    pub fn abort(&self, code: i32) -> ! {
        self.comm.abort(code)
    }

    /// Runs the collective `f`, watched by the watchdog as `what`.
    fn waiting_in<T>(&self, what: &'static str, f: impl FnOnce() -> T) -> T {
        *self.waiting.lock().unwrap() = Some((Instant::now(), what));
        let out = f();
        *self.waiting.lock().unwrap() = None;
        out
    }
}

/// Ends the process when it has waited in one collective longer than `timeout`.
fn watch(waiting: Arc<Mutex<Option<(Instant, &'static str)>>>, rank: i32, timeout: Duration) {
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(500));
        let since = *waiting.lock().unwrap();
        if let Some((start, what)) = since.filter(|(start, _)| start.elapsed() > timeout) {
            eprintln!(
                "error: rank {rank} waited {:.0} s for the other ranks in {what} \
                 ({TIMEOUT_VARIABLE}={}): a rank has failed or stalled; ending this rank",
                start.elapsed().as_secs_f64(),
                timeout.as_secs()
            );
            std::process::exit(3);
        }
    });
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.comm.rank() as usize
    }

    fn size(&self) -> usize {
        self.comm.size() as usize
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) {
        let mut send = self.send.borrow_mut();
        send.clear();
        send.extend_from_slice(buf);
        self.waiting_in("the gradient all-reduce", || {
            self.comm
                .all_reduce_into(&send[..], buf, SystemOperation::sum())
        });
    }

    fn broadcast(&self, buf: &mut [f32], root: usize) {
        self.waiting_in("a broadcast of weights or optimizer state", || {
            self.comm.process_at_rank(root as i32).broadcast_into(buf)
        });
    }

    fn all_gather(&self, mine: &[u8]) -> Vec<Vec<u8>> {
        if mine.is_empty() {
            return vec![vec![]; self.size()];
        }
        let mut all = vec![0u8; mine.len() * self.size()];
        self.waiting_in("an all-gather", || {
            self.comm.all_gather_into(mine, &mut all[..])
        });
        all.chunks(mine.len()).map(<[u8]>::to_vec).collect()
    }
}
