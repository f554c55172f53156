//! Whether this process was started as one of several ranks (`mpirun -np N`, `srun -n N`).
//!
//! minicpm runs as one process: N copies of one `train` would each train the same run and write
//! the same checkpoints and metrics over each other. So a process that finds itself one rank of
//! several refuses to start, rank 0 saying why in one line and every rank exiting with status 2.

use std::process::ExitCode;

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

/// `Some(exit status)` when this process is one rank of several: rank 0 prints the reason.
pub fn refuse_several_ranks() -> Option<ExitCode> {
    let r = detect(|name| std::env::var(name).ok())?;
    if r.rank == 0 {
        eprintln!(
            "error: started as rank 0 of {} ({}={}); minicpm runs as one process and does not \
             train across processes: launch it once, without mpirun or srun -n",
            r.size, r.variable, r.size
        );
    }
    Some(ExitCode::from(2))
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
