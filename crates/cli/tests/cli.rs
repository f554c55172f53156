//! End-to-end tests of the `minicpm` binary: info, exact resume after kill -9, the logged LR
//! against the schedule, generation, shard preparation, and bad input.

mod common;

use common::*;
use minicpm_data::test_support::files_under;
use minicpm_train::RunConfig;

#[test]
fn info_reports_the_published_non_embedding_counts() {
    for (preset, count) in [
        ("minicpm-2b", "2,442,057,984"),
        ("minicpm-1b", "1,247,442,432"),
    ] {
        let out = run_ok(
            bin()
                .arg("info")
                .arg(repo().join(format!("configs/{preset}.toml"))),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("non-embedding parameters: {count}")),
            "{preset}: {text}"
        );
    }
}

#[test]
fn resume_after_kill_is_bit_exact_and_lr_follows_the_schedule() {
    let steps = 60;
    let (dir, cfg) = setup(steps);
    let straight = dir.path().join("straight");
    run_ok(&mut train_new(&cfg, &straight));
    let reference = read(&straight.join("metrics.jsonl")).unwrap();
    assert_eq!(reference.len() as u64, steps);

    // The WSD learning rate logged at every update is the schedule function's.
    let run_cfg = RunConfig::load(&cfg, &[]).unwrap();
    let schedule = run_cfg.schedule.resolve(steps).unwrap();
    for r in &reference {
        assert_eq!(
            r.lr,
            run_cfg.optim.lr * schedule.factor(r.step),
            "update {}",
            r.step
        );
    }
    assert!(
        reference.last().unwrap().lr < 0.2 * run_cfg.optim.lr,
        "the decay ran"
    );

    // Kill -9 once a mid-run checkpoint exists, then resume.
    let killed = dir.path().join("killed");
    let mut child = train_new(&cfg, &killed).spawn().unwrap();
    let marker = killed.join("checkpoints/step-0000020/trainer_state.json");
    wait_for(&marker);
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run was killed before it finished");
    let partial = read(&killed.join("metrics.jsonl")).unwrap();
    assert!((partial.len() as u64) < steps, "killed mid-run");

    let mut resume = bin();
    resume.args(["train", "--quiet", "--resume"]).arg(&killed);
    run_ok(&mut resume);
    let resumed = read(&killed.join("metrics.jsonl")).unwrap();
    assert_eq!(
        losses(&resumed),
        losses(&reference),
        "every loss after the resume is bit-identical"
    );

    // Retention kept the newest two checkpoints.
    let kept: Vec<String> = std::fs::read_dir(killed.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");

    // The final checkpoint is an HF directory that generates text.
    let out = run_ok(
        bin()
            .args([
                "generate",
                "--max-new-tokens",
                "8",
                "--temperature",
                "0",
                "--prompt",
                "The quick",
            ])
            .arg("--model")
            .arg(&killed),
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("The quick"));
}

#[test]
fn resuming_with_a_changed_model_is_refused_and_nothing_is_overwritten() {
    let (dir, cfg) = setup(10);
    let run = dir.path().join("run");
    run_ok(&mut train_new(&cfg, &run));
    let snapshot = |p: &Path| std::fs::read(p).unwrap();
    let ckpt = run.join("checkpoints/step-0000010/model.safetensors");
    let (toml_before, model_before, metrics_before) = (
        snapshot(&run.join("run.toml")),
        snapshot(&ckpt),
        snapshot(&run.join("metrics.jsonl")),
    );

    let mut c = bin();
    c.args(["train", "--quiet", "--resume"])
        .arg(&run)
        .args(["--set", "model.intermediate_size=96"]);
    let e = run_bad(&mut c);
    assert!(
        e.contains("config.json") && e.contains("intermediate_size"),
        "{e}"
    );

    // A new run into an existing directory is refused too.
    let e = run_bad(&mut train_new(&cfg, &run));
    assert!(e.contains("--resume"), "{e}");

    assert_eq!(snapshot(&run.join("run.toml")), toml_before);
    assert_eq!(snapshot(&ckpt), model_before);
    assert_eq!(snapshot(&run.join("metrics.jsonl")), metrics_before);
}

#[test]
fn bad_configs_exit_2_naming_the_field() {
    let (dir, cfg) = setup(10);
    let out = dir.path().join("never");
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["optim.learning_rate=0.1"],
            &["tiny.toml", "optim.learning_rate", "unknown"],
        ),
        (
            &["model.hidden_size=\"wide\""],
            &["tiny.toml", "model.hidden_size", "invalid type"],
        ),
        (
            &["model.num_attention_heads=3"],
            &["num_attention_heads", "not divisible"],
        ),
        (
            &["model.num_key_value_heads=2", "model.num_attention_heads=1"],
            &["num_key_value_heads"],
        ),
        (
            &["train.batch_tokens=100"],
            &["train.batch_tokens", "multiple"],
        ),
        (&["train.seq_len=0"], &["train.seq_len", "positive"]),
        (&["train.micro_batch=0"], &["train.micro_batch", "positive"]),
        (
            &["data.train=\"/nonexistent/shards\""],
            &["/nonexistent/shards/index.json"],
        ),
    ];
    for (sets, needles) in cases {
        let mut c = train_new(&cfg, &out);
        for s in *sets {
            c.args(["--set", s]);
        }
        let e = run_bad(&mut c);
        for n in *needles {
            assert!(e.contains(n), "{sets:?}: missing {n:?} in {e}");
        }
    }
    assert!(!out.join("checkpoints").exists(), "nothing was trained");
    let e = run_bad(bin().arg("info").arg(dir.path().join("missing.toml")));
    assert!(e.contains("missing.toml"), "{e}");
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_the_run_continues_from_it() {
    let (dir, cfg) = setup(200);
    let run = dir.path().join("run");
    let mut child = train_new(&cfg, &run).spawn().unwrap();
    let first = run.join("checkpoints/step-0000005/trainer_state.json");
    wait_for(&first);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "interrupted runs exit 130");
    let records = read(&run.join("metrics.jsonl")).unwrap();
    let stopped_at = records.last().unwrap().step + 1;
    assert!(stopped_at < 200, "stopped early");
    let saved = run.join(format!(
        "checkpoints/step-{stopped_at:07}/trainer_state.json"
    ));
    assert!(
        saved.exists(),
        "a checkpoint at the update where it stopped: {}",
        saved.display()
    );

    let mut resume = bin();
    resume.args(["train", "--quiet", "--resume"]).arg(&run);
    run_ok(&mut resume);
    let steps: Vec<u64> = read(&run.join("metrics.jsonl"))
        .unwrap()
        .iter()
        .map(|r| r.step)
        .collect();
    assert_eq!(
        steps,
        (0..200).collect::<Vec<u64>>(),
        "one record per update, none lost or repeated"
    );
}

#[test]
fn generate_with_a_corrupt_checkpoint_exits_2_naming_the_file() {
    let (dir, cfg) = setup(10);
    let run = dir.path().join("run");
    run_ok(&mut train_new(&cfg, &run));
    let ckpt = run.join("checkpoints/step-0000010");
    let weights = ckpt.join("model.safetensors");
    let len = std::fs::metadata(&weights).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&weights)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let e = run_bad(
        bin()
            .args(["generate", "--prompt", "The"])
            .arg("--model")
            .arg(&ckpt),
    );
    assert!(
        e.contains("model.safetensors") && e.contains("truncated"),
        "{e}"
    );
}

#[test]
fn data_prepare_writes_the_same_shards_with_either_encoder() {
    let dir = tempfile::tempdir().unwrap();
    make_data(dir.path());
    let corpus = dir.path().join("corpus.jsonl");
    let lines: String = (0..50)
        .map(|i| {
            serde_json::json!({"text": format!("{i}: {TEXT}\n\tindented  </s> 汉字")}).to_string()
                + "\n"
        })
        .collect();
    std::fs::write(&corpus, lines).unwrap();
    let prepare = |out: &str, extra: &[&str]| {
        let out = dir.path().join(out);
        let run = run_ok(
            bin()
                .args(["data", "prepare", "--tokenizer"])
                .arg(dir.path().join("tokenizer.json"))
                .arg("--input")
                .arg(&corpus)
                .arg("--out")
                .arg(&out)
                .args(extra),
        );
        (
            String::from_utf8_lossy(&run.stderr).into_owned(),
            files_under(&out),
        )
    };
    let (fast_log, fast) = prepare("fast", &[]);
    let (generic_log, generic) = prepare("generic", &["--generic-encoder"]);
    assert!(fast_log.contains("encoder: fast"), "{fast_log}");
    assert!(generic_log.contains("encoder: generic"), "{generic_log}");
    assert!(fast.keys().any(|p| p.ends_with("index.json")));
    assert_eq!(fast, generic);
}

#[test]
fn data_prepare_with_a_corrupt_parquet_file_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    make_data(dir.path());
    let bad = dir.path().join("broken.parquet");
    std::fs::write(&bad, b"PAR1 this is not the rest of a parquet file").unwrap();
    let e = run_bad(
        bin()
            .args(["data", "prepare", "--tokenizer"])
            .arg(dir.path().join("tokenizer.json"))
            .arg("--input")
            .arg(&bad)
            .arg("--out")
            .arg(dir.path().join("out")),
    );
    assert!(e.contains("broken.parquet"), "{e}");
    assert!(!dir.path().join("out/broken/train/index.json").exists());
}

#[test]
fn a_bare_command_prints_its_help() {
    let out = bin().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let help = String::from_utf8_lossy(&out.stderr);
    for cmd in ["train", "decay", "windtunnel", "scaling-law", "demo"] {
        assert!(help.contains(cmd), "{cmd} missing from: {help}");
    }
    let out = bin().arg("windtunnel").output().unwrap();
    let help = String::from_utf8_lossy(&out.stderr);
    for cmd in ["lr", "coord-check", "batch", "search"] {
        assert!(help.contains(cmd), "{cmd} missing from: {help}");
    }
}
