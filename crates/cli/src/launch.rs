//! Whether this process was started as one of several ranks (`mpirun -np N`, `srun -n N`), and
//! joining them.
//!
//! `minicpm train` started as N ranks trains one run across them (docs/MODEL.md section 14) when
//! minicpm is built with `--features mpi`, and `minicpm bench train` measures that. Any other command, or a build without MPI, refuses: N
//! copies of one process would each do the same work and write the same files over each other.
//! Rank 0 says why in one line, and every rank exits with status 2.

use minicpm_train::{Collective, TrainError};
use std::process::ExitCode;
use std::rc::Rc;

/// The launchers' variables for (world size, this process's rank): Open MPI's, the PMI ones
/// (MPICH, Intel MPI, Slurm's PMI), and Slurm's own for the job step `srun` started.
const LAUNCHERS: [(&str, &str); 3] = [
    ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
    ("PMI_SIZE", "PMI_RANK"),
    ("SLURM_STEP_NUM_TASKS", "SLURM_PROCID"),
];

/// One rank of a multi-process launch, as its environment tells.
#[derive(Debug, PartialEq, Eq)]
pub struct Rank {
    pub rank: usize,
    pub size: usize,
    /// The variable that gave the world size.
    pub variable: &'static str,
}

/// The launch this process belongs to, when a launcher started it with more than one rank.
pub fn detect(var: impl Fn(&str) -> Option<String>) -> Option<Rank> {
    LAUNCHERS.iter().find_map(|&(size_var, rank_var)| {
        let size: usize = var(size_var)?.trim().parse().ok()?;
        let rank = var(rank_var)
            .and_then(|r| r.trim().parse().ok())
            .unwrap_or(0);
        (size > 1).then_some(Rank {
            rank,
            size,
            variable: size_var,
        })
    })
}

/// This process's launch: alone, or one rank of several that train together.
pub struct Launch {
    rank: Option<Rank>,
    #[cfg(feature = "mpi")]
    world: Option<Rc<crate::mpi_world::MpiWorld>>,
}

impl Launch {
    /// The launch as the environment tells; a process started as one rank of several joins
    /// the others when `command` (its name, for the error) can run across ranks, and refuses
    /// otherwise with `Err(exit status)`.
    pub fn join(command: &str, across_ranks: bool) -> Result<Launch, ExitCode> {
        let Some(rank) = detect(|name| std::env::var(name).ok()) else {
            return Ok(Launch {
                rank: None,
                #[cfg(feature = "mpi")]
                world: None,
            });
        };
        let refuse = |why: String| {
            if rank.rank == 0 {
                eprintln!(
                    "error: started as rank 0 of {} ({}={}): {why}",
                    rank.size, rank.variable, rank.size
                );
            }
            Err(ExitCode::from(2))
        };
        if !across_ranks {
            return refuse(format!(
                "only `minicpm train` (and `bench train`) runs across ranks; run `minicpm \
                 {command}` once, without mpirun or srun -n"
            ));
        }
        #[cfg(not(feature = "mpi"))]
        return refuse(
            "this minicpm was built without MPI and trains as one process; build it with \
             `cargo build --release --features mpi` to train across ranks"
                .into(),
        );
        #[cfg(feature = "mpi")]
        match crate::mpi_world::MpiWorld::join() {
            Ok(world) => Ok(Launch {
                rank: Some(rank),
                world: Some(Rc::new(world)),
            }),
            Err(e) => refuse(format!("{e:#}")),
        }
    }

    /// The ranks as the trainer's collective; `None` alone.
    pub fn world(&self) -> Option<Rc<dyn Collective>> {
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.world {
            return Some(w.clone() as Rc<dyn Collective>);
        }
        None
    }

    /// Ends the command after `error` (one line). Alone, or after a failure every rank agreed on
    /// (the trainer's [`TrainError::OnRank`]), rank 0 prints it and every rank exits 2; a failure
    /// of this rank alone is printed by it and ends every rank of the launch.
    pub fn fail(&self, error: &anyhow::Error, line: &str) -> ExitCode {
        let Some(rank) = &self.rank else {
            eprintln!("error: {line}");
            return ExitCode::from(2);
        };
        let agreed = matches!(
            error.downcast_ref::<TrainError>(),
            Some(TrainError::OnRank { .. } | TrainError::Distribution(_))
        );
        if agreed {
            if rank.rank == 0 {
                eprintln!("error: {line}");
            }
            return ExitCode::from(2);
        }
        eprintln!("error: rank {} of {}: {line}", rank.rank, rank.size);
        #[cfg(feature = "mpi")]
        if let Some(w) = &self.world {
            w.abort(2);
        }
        ExitCode::from(2)
    }
}

/// Whether the environment says this process is a rank other than 0 of a launch (read before
/// the command line, to keep the other ranks' logs quiet).
pub fn is_other_rank() -> bool {
    detect(|name| std::env::var(name).ok()).is_some_and(|r| r.rank != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn each_launcher_names_its_world() {
        let open_mpi = env(&[("OMPI_COMM_WORLD_SIZE", "4"), ("OMPI_COMM_WORLD_RANK", "3")]);
        let rank = |rank, size, variable| {
            Some(Rank {
                rank,
                size,
                variable,
            })
        };
        assert_eq!(detect(open_mpi), rank(3, 4, "OMPI_COMM_WORLD_SIZE"));
        let pmi = env(&[("PMI_SIZE", "2"), ("PMI_RANK", "1")]);
        assert_eq!(detect(pmi), rank(1, 2, "PMI_SIZE"));
        let srun = env(&[("SLURM_STEP_NUM_TASKS", "8"), ("SLURM_PROCID", "0")]);
        assert_eq!(detect(srun), rank(0, 8, "SLURM_STEP_NUM_TASKS"));
    }

    #[test]
    fn one_process_is_not_a_launch() {
        assert_eq!(detect(env(&[])), None);
        // One task of a Slurm step, and a batch script's allocation of several tasks that runs
        // minicpm once (SLURM_NTASKS is the allocation's, not the step's).
        let single = env(&[("SLURM_STEP_NUM_TASKS", "1"), ("SLURM_NTASKS", "4")]);
        assert_eq!(detect(single), None);
        assert_eq!(detect(env(&[("OMPI_COMM_WORLD_SIZE", "1")])), None);
        assert_eq!(detect(env(&[("PMI_SIZE", "not a number")])), None);
    }
}
