//! `minicpm train` across the ranks of `mpirun` (built with `--features mpi`; docs/MODEL.md
//! section 14): the same numbers as one process, resumes across world sizes, agreed errors, and
//! no hang when a rank stalls. Each rank and each single process uses one thread, so the two
//! compute every micro-batch alike.

use crate::common::*;
use minicpm_lab::windtunnel::job_list;
use std::time::{Duration, Instant};

/// `mpirun -np N minicpm ...`, one thread per rank; root and more ranks than cores are allowed,
/// as on a CI machine.
fn mpirun(ranks: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "--bind-to",
        "none",
    ])
    .args(["-x", "RAYON_NUM_THREADS=1", "-np", &ranks.to_string()])
    .arg(env!("CARGO_BIN_EXE_minicpm"));
    c
}

fn train_on(ranks: usize, cfg: &Path, out: &Path, set: &[&str]) -> Command {
    let mut c = mpirun(ranks);
    c.args(["train", "--quiet", "--config"])
        .arg(cfg)
        .arg("--out")
        .arg(out);
    for s in set {
        c.args(["--set", s]);
    }
    c
}

fn train_alone(cfg: &Path, out: &Path, set: &[&str]) -> Command {
    let mut c = train_new(cfg, out);
    c.env("RAYON_NUM_THREADS", "1");
    for s in set {
        c.args(["--set", s]);
    }
    c
}

fn resume_on(ranks: usize, run: &Path) -> Command {
    let mut c = match ranks {
        1 => {
            let mut c = bin();
            c.env("RAYON_NUM_THREADS", "1");
            c
        }
        n => mpirun(n),
    };
    c.args(["train", "--quiet", "--resume"]).arg(run);
    c
}

fn checkpoint_bytes(run: &Path, step: u64) -> Vec<u8> {
    std::fs::read(run.join(format!("checkpoints/step-{step:07}/model.safetensors"))).unwrap()
}

#[test]
fn two_ranks_train_bit_for_bit_what_one_process_trains() {
    let steps = 50;
    let (dir, cfg) = setup(steps);
    // 128 tokens per update in micro-batches of 4 x 16: two micro-batches, one per rank.
    let alone = dir.path().join("alone");
    run_ok(&mut train_alone(&cfg, &alone, &[]));
    let two = dir.path().join("two");
    run_ok(&mut train_on(2, &cfg, &two, &[]));
    assert_eq!(
        trace(&two),
        trace(&alone),
        "every logged number bit-identical"
    );
    assert_eq!(trace(&alone).len(), steps as usize);
    assert_eq!(
        checkpoint_bytes(&two, steps),
        checkpoint_bytes(&alone, steps)
    );
    let records = read(&two.join("metrics.jsonl")).unwrap();
    assert!(records.iter().all(|r| r.reduce_s.is_some_and(|s| s > 0.0)));

    // With the optimizer state sharded, the same numbers and the same checkpoint files,
    // optimizer state included.
    let sharded = dir.path().join("sharded");
    run_ok(train_on(2, &cfg, &sharded, &[]).arg("--shard-optimizer"));
    assert_eq!(trace(&sharded), trace(&alone));
    for file in ["model.safetensors", "optimizer.safetensors"] {
        let path = |run: &Path| run.join(format!("checkpoints/step-{steps:07}/{file}"));
        assert!(
            std::fs::read(path(&sharded)).unwrap() == std::fs::read(path(&alone)).unwrap(),
            "{file}"
        );
    }

    // Four ranks of one micro-batch each: the engine's order of adding four partial sums is
    // not one process's, so equal to rounding.
    let set = ["train.micro_batch=1", "train.steps=20"];
    let alone = dir.path().join("alone-4");
    run_ok(&mut train_alone(&cfg, &alone, &set));
    let four = dir.path().join("four");
    run_ok(&mut train_on(4, &cfg, &four, &set));
    let (a, b) = (
        read(&alone.join("metrics.jsonl")).unwrap(),
        read(&four.join("metrics.jsonl")).unwrap(),
    );
    assert_eq!(a.len(), 20);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        let rel = (x.loss - y.loss).abs() / x.loss;
        assert!(
            rel < 1e-6,
            "update {}: {} vs {} ({rel:e})",
            x.step,
            x.loss,
            y.loss
        );
    }
}

/// Kill -9 (of one rank: the launcher then ends the others) at update 20 under one world size,
/// resume under the other: the same run as one uninterrupted process, bit for bit.
#[test]
fn a_run_resumes_exactly_at_another_world_size() {
    let steps = 40;
    let (dir, cfg) = setup(steps);
    let straight = dir.path().join("straight");
    run_ok(&mut train_alone(&cfg, &straight, &[]));
    for (first, then) in [(2, 1), (1, 2)] {
        let run = dir.path().join(format!("from-{first}-to-{then}"));
        let mut child = match first {
            1 => train_alone(&cfg, &run, &[]),
            n => train_on(n, &cfg, &run, &[]),
        }
        .spawn()
        .unwrap();
        wait_for(&run.join("checkpoints/step-0000020/trainer_state.json"));
        let victim = match first {
            1 => child.id(),
            _ => rank_pid(child.id(), 1).expect("rank 1 among mpirun's children"),
        };
        run_ok(Command::new("kill").args(["-9", &victim.to_string()]));
        assert!(!child.wait().unwrap().success());
        run_ok(&mut resume_on(then, &run));
        // Every loss, gradient norm, learning rate and held-out loss (the update after a
        // resume has no gradient cosine, as in one process).
        let numbers = |run: &Path| losses(&read(&run.join("metrics.jsonl")).unwrap());
        assert_eq!(
            numbers(&run),
            numbers(&straight),
            "{first} ranks, then {then}"
        );
        assert_eq!(numbers(&run).len(), steps as usize);
    }
}

#[test]
fn ranks_that_disagree_stop_with_one_line_from_rank_0() {
    let errors = |out: &Output| -> Vec<String> {
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        err.lines()
            .filter(|l| l.starts_with("error:"))
            .map(String::from)
            .collect()
    };
    // A bad config (warm-up past the decay's start) is every rank's error, said once.
    let (bad, bad_cfg) = setup(4);
    let out = train_on(2, &bad_cfg, &bad.path().join("run"), &[])
        .output()
        .unwrap();
    let lines = errors(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("schedule.warmup_steps"), "{lines:?}");

    let (dir, cfg) = setup(12);
    // Three ranks cannot share two micro-batches.
    let run = dir.path().join("three");
    let out = train_on(3, &cfg, &run, &[]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(ours.len(), 1, "{err}");
    assert!(
        ours[0].contains("3 ranks cannot share the 2 micro-batches"),
        "{err}"
    );
    assert!(!run.exists(), "nothing written");

    // Rank 1 was given another config (mpirun's colon syntax starts different commands).
    let other = dir.path().join("other.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("lr = 0.01", "lr = 0.02");
    std::fs::write(&other, text).unwrap();
    let run = dir.path().join("mixed");
    let mut c = mpirun(1);
    c.args(["train", "--quiet", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&run);
    c.args([":", "-x", "RAYON_NUM_THREADS=1", "-np", "1"])
        .arg(env!("CARGO_BIN_EXE_minicpm"));
    c.args(["train", "--quiet", "--config"])
        .arg(&other)
        .arg("--out")
        .arg(&run);
    let out = c.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        ours,
        ["error: rank 1 of 2: runs a different config than rank 0"],
        "{err}"
    );
    assert!(!run.exists(), "nothing written");

    // Only training runs across ranks.
    let out = mpirun(2).arg("info").arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(
        err.matches("only `minicpm train` (and `bench train`) runs across ranks")
            .count(),
        1,
        "{err}"
    );
}

/// A rank that stops answering (SIGSTOP) ends the launch: the other rank gives up waiting in
/// its collective after MINICPM_COLLECTIVE_TIMEOUT seconds, says so, and mpirun ends the rest.
#[test]
fn a_stalled_rank_ends_the_launch_instead_of_hanging_it() {
    let (dir, cfg) = setup(100_000);
    let run = dir.path().join("run");
    let mut cmd = train_on(2, &cfg, &run, &[]);
    cmd.env("MINICPM_COLLECTIVE_TIMEOUT", "3");
    cmd.stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    wait_for(&run.join("checkpoints/step-0000005/trainer_state.json"));
    let rank1 = rank_pid(child.id(), 1).expect("rank 1 among mpirun's children");
    run_ok(Command::new("kill").args(["-STOP", &rank1.to_string()]));
    let t0 = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(60));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: rank 0 waited") && err.contains("a rank has failed or stalled"),
        "{err}"
    );
    // The stopped rank does not outlive the launch.
    let _ = Command::new("kill")
        .args(["-9", &rank1.to_string()])
        .output();
}

/// SIGINT to one rank stops both after the same update: rank 0 writes the checkpoint of that
/// update, and the run resumes from it.
#[test]
fn a_stop_asked_of_one_rank_stops_every_rank_after_the_same_update() {
    let (dir, cfg) = setup(100_000);
    let run = dir.path().join("run");
    let mut cmd = train_on(2, &cfg, &run, &[]);
    cmd.stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    wait_for(&run.join("checkpoints/step-0000005/trainer_state.json"));
    let rank1 = rank_pid(child.id(), 1).expect("rank 1 among mpirun's children");
    run_ok(Command::new("kill").args(["-INT", &rank1.to_string()]));
    let t0 = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    let stopped: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("stopped after update"))
        .collect();
    assert_eq!(stopped.len(), 1, "rank 0 alone reports: {err}");
    let at: u64 = stopped[0].rsplit(' ').next().unwrap().parse().unwrap();
    let records = read(&run.join("metrics.jsonl")).unwrap();
    assert_eq!(records.last().unwrap().step + 1, at, "every update logged");
    let last = run.join(format!("checkpoints/step-{at:07}/trainer_state.json"));
    assert!(last.is_file(), "the checkpoint of update {at}");
}

/// The process id of rank `rank` among the processes `mpirun` (process `launcher`) started.
fn rank_pid(launcher: u32, rank: usize) -> Option<u32> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // The parent's pid is the fourth field, after the parenthesised command name.
            let parent = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().nth(1));
            if parent != Some(&launcher.to_string()) {
                continue;
            }
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
            if environ.split(|&b| b == 0).any(|v| v == wanted.as_bytes()) {
                return Some(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The sbatch templates on a Slurm cluster (CI makes one of its machine with
/// scripts/slurm/one_node_cluster.sh and sets MINICPM_TEST_SLURM): scripts/slurm/train.sbatch
/// with two tasks trains the run one process trains, bit for bit, and submitted again resumes it
/// (here already finished); scripts/slurm/sweep.sbatch runs a sweep's job-list line whose run
/// spans two ranks, with the same result.
#[test]
fn the_sbatch_templates_train_what_one_process_trains() {
    if std::env::var_os("MINICPM_TEST_SLURM").is_none() {
        eprintln!("skipped: set MINICPM_TEST_SLURM on a machine with a Slurm cluster");
        return;
    }
    let (dir, cfg) = setup(20);
    let alone = dir.path().join("alone");
    run_ok(&mut train_alone(&cfg, &alone, &[]));
    let run = dir.path().join("slurm");
    let submit = |submission: u32, template: &str, args: &[&Path]| {
        let log = dir.path().join(format!("slurm-{submission}.out"));
        let mut sbatch = Command::new("sbatch");
        if template == "sweep.sbatch" {
            sbatch.arg("--array=0-0");
        }
        let out = sbatch
            .args(["--wait", "--nodes=1", "--ntasks-per-node=2"])
            .arg("--cpus-per-task=1")
            .arg(format!("--output={}", log.display()))
            .arg(repo().join("scripts/slurm").join(template))
            .args(args)
            .env("MINICPM", env!("CARGO_BIN_EXE_minicpm"))
            .output()
            .unwrap();
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            out.status.success(),
            "{}\n{log}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    submit(1, "train.sbatch", &[&cfg, &run]);
    let numbers = |run: &Path| losses(&read(&run.join("metrics.jsonl")).unwrap());
    // Trained across ranks (only they time an all-reduce), to the same numbers.
    let across = |run: &Path| {
        let records = read(&run.join("metrics.jsonl")).unwrap();
        records.iter().all(|r| r.reduce_s.is_some())
    };
    assert_eq!(numbers(&run), numbers(&alone));
    assert!(across(&run));
    // Submitted again, it resumes the finished run: nothing more to train, nothing changed.
    submit(2, "train.sbatch", &[&cfg, &run]);
    assert_eq!(numbers(&run), numbers(&alone));

    // A sweep's job list whose points span two ranks each, as an array of one task.
    let point = dir.path().join("point");
    let binary = Path::new(env!("CARGO_BIN_EXE_minicpm"));
    let jobs = dir.path().join("jobs.txt");
    std::fs::write(
        &jobs,
        job_list(binary, &[(cfg.as_path(), point.as_path())], 2),
    )
    .unwrap();
    submit(3, "sweep.sbatch", &[&jobs]);
    assert_eq!(numbers(&point), numbers(&alone));
    assert!(across(&point));
}
