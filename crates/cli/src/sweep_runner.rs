//! Runs many independent training runs (sweep points) as child processes, a few at a time, each
//! with its share of the cores. A point is an ordinary run directory, so a sweep resumes by
//! looking at what is on disk: finished runs are skipped, started ones continue with --resume.

use minicpm_train::trainer::RUN_CONFIG_FILE;
use minicpm_train::{branch, runs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// One run to bring to its end: its resolved config and its directory.
pub struct Job {
    pub name: String,
    pub config: PathBuf,
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Finished,
    Started,
    New,
}

/// Where a run stands. A run with automatic decay branches is finished only when each of them
/// is: a run killed inside its last branch has done all its own updates but not that branch's
/// (resuming it finishes the branch first).
pub fn state(dir: &Path) -> JobState {
    if !dir.join(RUN_CONFIG_FILE).is_file() {
        return JobState::New;
    }
    let finished = |d: &Path| runs::summarize(d).is_ok_and(|s| s.finished());
    let Ok(s) = runs::summarize(dir) else {
        return JobState::Started;
    };
    let expected = s.config.branches.as_ref().map_or(0, |b| b.at_tokens.len());
    let made = branch::list(dir);
    if s.finished() && made.len() >= expected && made.iter().all(|b| finished(b)) {
        JobState::Finished
    } else {
        JobState::Started
    }
}

/// How many cores a worker may use: `threads`, or the cores divided among the workers; more
/// threads than cores in all is refused (oversubscription only slows every point down).
pub fn threads_per_worker(workers: usize, threads: Option<usize>) -> anyhow::Result<usize> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if workers == 0 {
        anyhow::bail!("--workers must be at least 1");
    }
    let t = threads.unwrap_or((cores / workers).max(1));
    if t == 0 {
        anyhow::bail!("--threads must be at least 1");
    }
    if workers * t > cores {
        anyhow::bail!(
            "--workers {workers} x --threads {t} is more than the {cores} cores here; \
             lower one of them"
        );
    }
    Ok(t)
}

/// Brings every job to its end with at most `workers` children of `threads` threads each; a
/// child's output goes to `<logs>/<name>.log`. Returns the names of the jobs that failed.
/// Ctrl-C stops launching new jobs; the children, which get the same signal, checkpoint and exit.
pub fn run_all(
    jobs: &[Job],
    workers: usize,
    threads: usize,
    logs: &Path,
) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(logs)?;
    let stop = crate::util::stop_flag();
    let binary = std::env::current_exe()?;
    let mut pending: Vec<&Job> = jobs
        .iter()
        .filter(|j| state(&j.dir) != JobState::Finished)
        .collect();
    pending.reverse(); // pop() takes them in the given order
    let skipped = jobs.len() - pending.len();
    if skipped > 0 {
        eprintln!("{skipped} of {} points already finished", jobs.len());
    }
    let mut running: Vec<(&Job, Child)> = Vec::new();
    let mut failed = Vec::new();
    loop {
        while running.len() < workers && !stop.load(Ordering::SeqCst) {
            let Some(job) = pending.pop() else { break };
            // Appended to, so a resumed point keeps the log of its interrupted start.
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(logs.join(format!("{}.log", job.name)))?;
            let mut cmd = Command::new(&binary);
            cmd.arg("train").arg("--quiet");
            if state(&job.dir) == JobState::Started {
                eprintln!("resume: {}", job.name);
                cmd.arg("--resume").arg(&job.dir);
            } else {
                eprintln!("start:  {}", job.name);
                cmd.arg("--config")
                    .arg(&job.config)
                    .arg("--out")
                    .arg(&job.dir);
            }
            let child = cmd
                .env("RAYON_NUM_THREADS", threads.to_string())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?;
            running.push((job, child));
        }
        if running.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut i = 0;
        while i < running.len() {
            match running[i].1.try_wait()? {
                None => i += 1,
                Some(status) => {
                    let (job, _) = running.swap_remove(i);
                    if status.success() && state(&job.dir) == JobState::Finished {
                        eprintln!("done:   {}", job.name);
                    } else if stop.load(Ordering::SeqCst) {
                        eprintln!("paused: {}", job.name);
                    } else {
                        eprintln!(
                            "failed: {} (see {})",
                            job.name,
                            logs.join(format!("{}.log", job.name)).display()
                        );
                        failed.push(job.name.clone());
                    }
                }
            }
        }
    }
    if stop.load(Ordering::SeqCst) {
        anyhow::bail!("interrupted; run the same command again to continue the sweep");
    }
    Ok(failed)
}

/// Writes `text` to `path` unless it is already there; a different existing file is an error,
/// so rerunning a sweep with other settings cannot silently mix two sweeps in one directory.
pub fn write_once(path: &Path, text: &str) -> anyhow::Result<()> {
    match std::fs::read_to_string(path) {
        Ok(existing) if existing == text => Ok(()),
        Ok(_) => anyhow::bail!(
            "{}: already there with different settings; use another --out or remove it",
            path.display()
        ),
        // Only a missing file is written: one that cannot be read is not ours to replace.
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            anyhow::bail!("{}: {e}", path.display())
        }
        Err(_) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, path)?;
            Ok(())
        }
    }
}
