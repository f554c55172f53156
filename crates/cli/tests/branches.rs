//! Decay branches end to end: independence from the parent, bitwise-identical twins, exact
//! resume inside a branch, automatic branches equal to manual ones, the run table, plots, and
//! bad input.

mod common;

use common::*;
use minicpm_data::test_support::files_under;
use minicpm_train::RunConfig;
use std::collections::BTreeMap;

/// The tiny config with a constant schedule (warmup 5): a pure stable run to branch from.
fn stable_config(dir: &Path, steps: u64, extra: &str) -> PathBuf {
    let cfg = write_config(dir, steps);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "kind = \"wsd\"\nwarmup_steps = 5\ndecay_fraction = 0.25\ndecay = \"exp\"",
        "kind = \"constant\"\nwarmup_steps = 5",
    );
    assert!(
        text.contains("\"constant\""),
        "the tiny config changed shape"
    );
    let p = dir.join("stable.toml");
    std::fs::write(&p, format!("{text}\n{extra}")).unwrap();
    p
}

/// Every file under `dir` (except `branches/`), by relative path.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    files_under(dir)
        .into_iter()
        .filter(|(rel, _)| !rel.starts_with("branches"))
        .collect()
}

fn weights(run: &Path, step: u64) -> Vec<u8> {
    std::fs::read(run.join(format!("checkpoints/step-{step:07}/model.safetensors"))).unwrap()
}

fn decay(from: &Path, args: &[&str]) -> Command {
    let mut c = bin();
    c.args(["decay", "--quiet", "--from"]).arg(from).args(args);
    c
}

#[test]
fn a_branch_starts_where_its_parent_stood_and_never_changes_it() {
    let dir = tempfile::tempdir().unwrap();
    make_data(dir.path());
    let cfg = stable_config(dir.path(), 20, "");
    let run = dir.path().join("run");
    run_ok(train_new(&cfg, &run).args(["--set", "train.keep_checkpoints=0"]));
    let parent_before = snapshot(&run);
    let from = run.join("checkpoints/step-0000010");

    // Two branches with the same settings, one more made but trained later.
    let args = ["--fraction", "0.5", "--fn", "linear"];
    run_ok(decay(&from, &args).args(["--name", "a"]));
    run_ok(decay(&from, &args).args(["--name", "b"]));
    run_ok(decay(&from, &args).args(["--name", "c", "--no-train"]));
    assert_eq!(
        snapshot(&run),
        parent_before,
        "branching changed the parent"
    );

    let (a, b) = (run.join("branches/a"), run.join("branches/b"));
    assert_eq!(trace(&a), trace(&b), "twin branches differ");
    assert_eq!(weights(&a, 20), weights(&b, 20));

    // Lineage.
    let branch_cfg = RunConfig::load(&a.join("run.toml"), &[]).unwrap();
    let origin = branch_cfg.branch.expect("the branch records its origin");
    assert_eq!(
        (origin.parent.as_str(), origin.step, origin.tokens),
        ("run", 10, 10 * 128)
    );

    // The decay: 10 updates (0.5 of the branch), linear from the peak to 0.
    let records = read(&a.join("metrics.jsonl")).unwrap();
    assert_eq!(records.first().unwrap().step, 10);
    assert_eq!(records.last().unwrap().step, 19);
    for r in &records {
        let want = 0.01 * (1.0 - (r.step - 10) as f64 / 10.0);
        assert!((r.lr - want).abs() < 1e-15, "update {}: {}", r.step, r.lr);
    }

    // Weights, optimizer state and data cursor all carried over: update 10 is taken at the same
    // rate as the parent's, so the losses of updates 10 and 11 match the parent's bit for bit,
    // and only then do they part.
    let parent: Vec<Record> = read(&run.join("metrics.jsonl")).unwrap();
    let at = |rs: &[Record], s: u64| rs.iter().find(|r| r.step == s).unwrap().clone();
    for s in [10, 11] {
        assert_eq!(
            at(&records, s).loss.to_bits(),
            at(&parent, s).loss.to_bits(),
            "update {s}"
        );
        assert_eq!(
            at(&records, s).grad_norm.to_bits(),
            at(&parent, s).grad_norm.to_bits()
        );
    }
    assert_ne!(at(&records, 12).loss, at(&parent, 12).loss);

    // Resume inside a branch is exact: kill -9 after its first checkpoint, resume.
    let c = run.join("branches/c");
    let mut child = bin()
        .args(["train", "--quiet", "--resume"])
        .arg(&c)
        .spawn()
        .unwrap();
    wait_for(&c.join("checkpoints/step-0000015/trainer_state.json"));
    child.kill().unwrap();
    child.wait().unwrap();
    run_ok(bin().args(["train", "--quiet", "--resume"]).arg(&c));
    // The gradient cosine needs the previous update's gradient, which checkpoints do not keep:
    // it is absent at the first update after the resume (update 15, unless the kill came too
    // late to interrupt anything), and everything else is identical.
    let without_first_cosine = |dir: &Path| -> Vec<String> {
        read(&dir.join("metrics.jsonl"))
            .unwrap()
            .into_iter()
            .map(|mut r| {
                r.tok_s = 0.0;
                if r.step == 15 {
                    r.grad_cos = None;
                }
                serde_json::to_string(&r).unwrap()
            })
            .collect()
    };
    assert_eq!(
        without_first_cosine(&c),
        without_first_cosine(&a),
        "resumed branch differs"
    );
    assert_eq!(weights(&c, 20), weights(&a, 20));
    assert_eq!(snapshot(&run), parent_before);
}

#[test]
fn automatic_branches_equal_manual_ones_and_are_listed_and_plotted() {
    let dir = tempfile::tempdir().unwrap();
    make_data(dir.path());
    let cfg = stable_config(
        dir.path(),
        20,
        "[branches]\nat_tokens = [1280, 768]\ndecay_fraction = 0.5\ndecay = \"linear\"\n",
    );
    let run = dir.path().join("run");
    run_ok(&mut train_new(&cfg, &run));

    // Retention keeps the newest two and, whatever their age, the branch points.
    let mut kept: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        [
            "step-0000006",
            "step-0000010",
            "step-0000015",
            "step-0000020"
        ]
    );
    let auto = run.join("branches/step-0000010-linear-10");
    assert_eq!(
        read(&auto.join("metrics.jsonl"))
            .unwrap()
            .last()
            .unwrap()
            .step,
        19
    );
    let early = run.join("branches/step-0000006-linear-6");
    assert_eq!(
        read(&early.join("metrics.jsonl"))
            .unwrap()
            .last()
            .unwrap()
            .step,
        11
    );

    run_ok(&mut decay(
        &run.join("checkpoints/step-0000010"),
        &["--fraction", "0.5", "--fn", "linear", "--name", "manual"],
    ));
    let manual = run.join("branches/manual");
    assert_eq!(trace(&manual), trace(&auto));
    assert_eq!(weights(&manual, 20), weights(&auto, 20));

    // The table: the trunk and its three branches with their origins.
    let out = run_ok(bin().arg("runs").arg(dir.path()));
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    assert!(
        lines[0].starts_with("run") && lines[0].contains("eval"),
        "{table}"
    );
    assert_eq!(table.matches("run@10").count(), 2, "{table}");
    assert_eq!(table.matches("run@6").count(), 1, "{table}");
    assert!(table.contains("20/20"), "{table}");

    // Plots of the trunk with its branches.
    for what in ["loss", "lr"] {
        let stem = dir.path().join(format!("plots/{what}"));
        run_ok(bin().args(["plot", what]).arg(&run).arg("--out").arg(&stem));
        let png = std::fs::read(stem.with_extension("png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert!(png.len() > 10_000, "{what}: {} bytes", png.len());
        let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
        assert!(svg.contains("step-0000010-linear-10") && svg.contains("manual"));
        assert!(
            svg.matches("<polyline").count() >= 4,
            "{what}: a curve per run"
        );
    }
}

#[test]
fn bad_branch_requests_are_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    make_data(dir.path());
    let cfg = write_config(dir.path(), 20); // WSD: decays over updates 15..20
    let run = dir.path().join("run");
    run_ok(train_new(&cfg, &run).args(["--set", "train.keep_checkpoints=0"]));
    let before = snapshot(&run);

    let e = run_bad(&mut decay(
        &run.join("checkpoints/step-0000012"),
        &["--fraction", "0.1"],
    ));
    assert!(
        e.contains("step-0000012") && e.contains("no such checkpoint"),
        "{e}"
    );

    let decayed = run.join("checkpoints/step-0000020");
    let e = run_bad(&mut decay(&decayed, &["--fraction", "0.1"]));
    assert!(
        e.contains("--force") && e.contains("already decaying"),
        "{e}"
    );
    let e = run_bad(&mut decay(
        &run.join("checkpoints/step-0000010"),
        &["--fraction", "1.5"],
    ));
    assert!(e.contains("(0, 1)"), "{e}");
    let e = run_bad(&mut decay(
        &run.join("checkpoints/step-0000010"),
        &["--fn", "square", "--fraction", "0.1"],
    ));
    assert!(e.contains("square"), "{e}");
    let e = run_bad(&mut decay(
        &run.join("checkpoints/step-0000010"),
        &["--fraction", "0.1", "--tokens", "128"],
    ));
    assert!(e.contains("cannot be used with"), "{e}");
    assert_eq!(snapshot(&run), before, "a refused branch touched the run");
    assert!(
        !run.join("branches").exists()
            || std::fs::read_dir(run.join("branches"))
                .unwrap()
                .next()
                .is_none()
    );

    // Forced: a warning, and the decay continues from the rate the parent was at.
    let out = run_ok(&mut decay(
        &decayed,
        &["--tokens", "256", "--force", "--name", "more"],
    ));
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning:"));
    let parent = read(&run.join("metrics.jsonl")).unwrap();
    let last_lr = parent.last().unwrap().lr;
    let branch = read(&run.join("branches/more/metrics.jsonl")).unwrap();
    assert!(
        branch[0].lr <= last_lr * (1.0 + 1e-12),
        "{} > {last_lr}",
        branch[0].lr
    );
    assert!(branch[1].lr < branch[0].lr);
}

/// `minicpm upcycle` (docs/MODEL.md section 12): the upcycled run leaves its parent alone, starts
/// where the parent stood (same update, tokens and batch: its first loss is the parent's plus
/// the load-balancing term, 0.01 x about 1 for an untrained router), trains to the parent's end,
/// logs its routing, and bad requests are refused with one line and nothing written.
#[test]
fn an_upcycled_run_continues_on_the_parents_tokens() {
    let dir = tempfile::tempdir().unwrap();
    make_data(dir.path());
    let cfg = stable_config(dir.path(), 20, "");
    let run = dir.path().join("run");
    run_ok(train_new(&cfg, &run).args(["--set", "train.keep_checkpoints=0"]));
    let parent_before = snapshot(&run);
    let from = run.join("checkpoints/step-0000010");
    let moe = dir.path().join("moe");
    let upcycle = |out: &Path, args: &[&str]| {
        let mut c = bin();
        c.args(["upcycle", "--quiet", "--from"])
            .arg(&from)
            .arg("--out")
            .arg(out)
            .args(args);
        c
    };
    run_ok(&mut upcycle(&moe, &["--experts", "4", "--top-k", "2"]));
    assert_eq!(
        snapshot(&run),
        parent_before,
        "upcycling changed the parent"
    );

    let cfg = RunConfig::load(&moe.join("run.toml"), &[]).unwrap();
    assert_eq!(cfg.model.moe(), Some((4, 2)));
    let origin = cfg.upcycled.expect("the run records its origin");
    assert_eq!((origin.step, origin.tokens), (10, 10 * 128));
    let parent = read(&run.join("metrics.jsonl")).unwrap();
    let records = read(&moe.join("metrics.jsonl")).unwrap();
    assert_eq!(records.first().map(|r| r.step), Some(10));
    assert_eq!(records.last().map(|r| r.step), Some(19));
    let extra = records[0].loss - parent[10].loss;
    assert!(
        (0.0095..0.0125).contains(&extra),
        "first loss {} against the parent's {}",
        records[0].loss,
        parent[10].loss
    );
    let evaluated = records.iter().filter(|r| r.eval_loss.is_some()).count();
    let routed: Vec<&Vec<Vec<f32>>> = records
        .iter()
        .filter_map(|r| r.expert_load.as_ref())
        .collect();
    assert_eq!(routed.len(), evaluated);
    for load in routed {
        assert_eq!(load.len(), 2, "one per layer");
        for layer in load {
            assert_eq!(layer.len(), 4, "one share per expert");
            assert!((layer.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }

    let e = run_bad(&mut upcycle(
        &dir.path().join("x"),
        &["--experts", "4", "--top-k", "5"],
    ));
    assert!(
        e.contains("num_experts_per_tok") && e.contains("between 1 and num_experts (4)"),
        "{e}"
    );
    let e = run_bad(&mut upcycle(&moe, &[]));
    assert!(e.contains("exists"), "{e}");
    let e = run_bad(
        bin()
            .args(["upcycle", "--quiet", "--out"])
            .arg(dir.path().join("y"))
            .arg("--from")
            .arg(moe.join("checkpoints/step-0000020")),
    );
    assert!(e.contains("already a mixture of experts"), "{e}");
    assert!(!dir.path().join("x").exists() && !dir.path().join("y").exists());
}

/// The held-out loss `minicpm perplexity` reports for `model` in rows of `seq_len`.
fn held_out_loss(model: &Path, valid: &Path, seq_len: usize) -> f64 {
    let out = run_ok(
        bin()
            .args(["perplexity", "--json", "--seq-len", &seq_len.to_string()])
            .arg("--model")
            .arg(model)
            .arg("--data")
            .arg(valid),
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["loss"].as_f64().unwrap()
}

/// MiniCPM-128K's second stage as one run: ABF with dynamic NTK on top, and a length schedule
/// (rows of 16, then 32, then 64 tokens) that keeps each update's tokens; a resume at a stage's
/// first update and one inside a stage draw what the uninterrupted run drew.
#[test]
fn a_length_curriculum_trains_shorter_rows_first_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    make_data(dir.path());
    let cfg = stable_config(dir.path(), 10, "");
    let run = dir.path().join("run");
    run_ok(train_new(&cfg, &run).args(["--set", "train.keep_checkpoints=0"]));
    let from = run.join("checkpoints/step-0000010");
    let extend = |out: &Path, rope: &str, curriculum: &str| {
        let mut c = bin();
        c.args(["extend", "--quiet", "--from"])
            .arg(&from)
            .arg("--out")
            .arg(out)
            .args(["--length", "64", "--rope", rope, "--tokens", "1024"])
            .args(["--curriculum", curriculum]);
        c
    };
    let straight = dir.path().join("straight");
    run_ok(
        extend(&straight, "abf:theta=1e6,ntk:factor=4", "16:0.25,32:0.5")
            .args(["--set", "train.checkpoint_every=1", "--set"])
            .args(["train.keep_checkpoints=0", "--set", "train.log_every=1"]),
    );
    let cfg = RunConfig::load(&straight.join("run.toml"), &[]).unwrap();
    let t = &cfg.train;
    assert_eq!((t.steps, t.micro_batch, t.batch_tokens), (8, 1, 128));
    let stages: Vec<(usize, u64)> = t
        .length_schedule
        .iter()
        .map(|s| (s.seq_len, s.until))
        .collect();
    assert_eq!(stages, [(16, 2), (32, 4)]);
    // NTK grows the base past 64 / 4 = 16 tokens, the parent's length: rows of 16 train ABF
    // alone.
    let m = &cfg.model;
    let scaling = m.rope_scaling.as_ref().unwrap();
    assert_eq!(
        (m.rope_theta, m.max_position_embeddings, scaling.factor),
        (1e6, 16, 4.0)
    );
    assert_eq!(cfg.extended.unwrap().curriculum, "16:0.25,32:0.5");

    let records = read(&straight.join("metrics.jsonl")).unwrap();
    let lengths: Vec<Option<usize>> = records.iter().map(|r| r.seq_len).collect();
    let expected = [16, 16, 32, 32, 64, 64, 64, 64].map(Some);
    assert_eq!(lengths, expected);
    // Each update draws 128 tokens: 8 rows of 16, 4 of 32, then 2 of 64; the cursor after
    // update k counts the rows of k's stage only, and names a length shorter than the run's.
    let cursor = |run: &Path, k: u64| -> (u64, Option<u64>) {
        let state = run.join(format!("checkpoints/step-{k:07}/trainer_state.json"));
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
        let c = &state["data_cursor"];
        (c["rows"].as_u64().unwrap(), c["seq_len"].as_u64())
    };
    let drawn: Vec<(u64, Option<u64>)> = (1..=8).map(|k| cursor(&straight, k)).collect();
    assert_eq!(
        drawn,
        [
            (8, Some(16)),
            (16, Some(16)),
            (4, Some(32)),
            (8, Some(32)),
            (2, None),
            (4, None),
            (6, None),
            (8, None)
        ]
    );

    // Resumed after update 2 (its next update starts the stage of 32) and after update 3.
    for k in [2, 3] {
        let resumed = dir.path().join(format!("resumed-{k}"));
        for (rel, bytes) in files_under(&straight) {
            let to = resumed.join(rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::write(to, bytes).unwrap();
        }
        for later in k + 1..=8 {
            std::fs::remove_dir_all(resumed.join(format!("checkpoints/step-{later:07}"))).unwrap();
        }
        run_ok(bin().args(["train", "--quiet", "--resume"]).arg(&resumed));
        assert_eq!(
            losses(&read(&resumed.join("metrics.jsonl")).unwrap()),
            losses(&records),
            "resumed after update {k}"
        );
        assert_eq!(
            weights(&resumed, 8),
            weights(&straight, 8),
            "after update {k}"
        );
    }

    // A schedule the run cannot keep is refused in one line, before anything is written.
    let bad = dir.path().join("bad");
    let e = run_bad(&mut extend(&bad, "none", "48:0.5"));
    assert!(
        e.contains("train.length_schedule") && e.contains("48"),
        "{e}"
    );
    assert!(!bad.exists());
    let e = run_bad(&mut extend(&bad, "none", "16:1.5"));
    assert!(e.contains("--curriculum") && e.contains("(0, 1)"), "{e}");
}

/// A context extension starts from its parent's weights (an untied head that copies the
/// embedding, with RoPE unchanged, is the same model), trains rows of the new length with the
/// new RoPE, chains into a curriculum (ABF, then NTK on top), is measured by the passkey test,
/// and refuses what it cannot do.
#[test]
fn an_extended_run_starts_from_its_parent_and_trains_longer_rows() {
    let dir = tempfile::tempdir().unwrap();
    make_data(dir.path());
    let cfg = stable_config(dir.path(), 10, "");
    let run = dir.path().join("run");
    run_ok(train_new(&cfg, &run).args(["--set", "train.keep_checkpoints=0"]));
    let from = run.join("checkpoints/step-0000010");
    let extend = |from: &Path, out: &Path, args: &[&str]| {
        let mut c = bin();
        c.args(["extend", "--quiet", "--from"])
            .arg(from)
            .arg("--out")
            .arg(out)
            .args(args);
        c
    };

    let same = dir.path().join("same");
    let args = [
        "--length", "64", "--rope", "none", "--untie", "--tokens", "512",
    ];
    run_ok(extend(&from, &same, &args).arg("--no-train"));
    let start = same.join("checkpoints/step-0000000");
    let cfg = RunConfig::load(&same.join("run.toml"), &[]).unwrap();
    assert!(!cfg.model.tie_word_embeddings);
    let valid = dir.path().join("valid");
    let (parent, untied) = (
        held_out_loss(&from, &valid, 16),
        held_out_loss(&start, &valid, 16),
    );
    assert!((parent - untied).abs() < 1e-6, "{parent} vs {untied}");

    let abf = dir.path().join("abf");
    let args = [
        "--length",
        "64",
        "--rope",
        "abf:theta=1e6",
        "--tokens",
        "1024",
    ];
    let long_data = ["--long-data", "long", "--long-share", "0.25"].map(str::to_string);
    let long_data = long_data.map(|a| match a.as_str() {
        "long" => dir.path().join("valid").display().to_string(),
        _ => a,
    });
    run_ok(extend(&from, &abf, &args).args(&long_data));
    let cfg = RunConfig::load(&abf.join("run.toml"), &[]).unwrap();
    let mixture = &cfg.data.mixture["stable"];
    assert_eq!((mixture["long"], mixture["train"]), (0.25, 0.75));
    let t = &cfg.train;
    assert_eq!(
        (t.seq_len, t.micro_batch, t.batch_tokens, t.steps),
        (64, 1, 128, 8)
    );
    assert_eq!(cfg.model.rope_theta, 1e6);
    let origin = cfg.extended.expect("the run records its origin");
    assert_eq!(
        (origin.step, origin.from_length, origin.length),
        (10, 16, 64)
    );
    assert_eq!(origin.rope, "abf:theta=1000000");
    let records = read(&abf.join("metrics.jsonl")).unwrap();
    assert_eq!(records.last().map(|r| r.step), Some(7), "updates 0..8");
    let trained = abf.join("checkpoints/step-0000008");
    assert!(held_out_loss(&trained, &valid, 64).is_finite());

    let ntk = dir.path().join("ntk");
    let args = [
        "--length",
        "256",
        "--rope",
        "ntk:factor=4",
        "--tokens",
        "256",
    ];
    // The curriculum's second stage draws on the same long documents, at a new share.
    let mut half = long_data.clone();
    half[3] = "0.5".into();
    run_ok(extend(&trained, &ntk, &args).args(&half).arg("--no-train"));
    let cfg = RunConfig::load(&ntk.join("run.toml"), &[]).unwrap();
    let mixture = &cfg.data.mixture["stable"];
    assert_eq!((mixture["long"], mixture["train"]), (0.5, 0.5));
    let scaling = cfg.model.rope_scaling.as_ref().unwrap();
    assert_eq!((scaling.kind.as_str(), scaling.factor), ("dynamic", 4.0));
    assert_eq!(
        (cfg.model.max_position_embeddings, cfg.model.rope_theta),
        (64, 1e6)
    );

    // Several long sources (say whole books and passkey documents) share the long share evenly.
    let books = dir.path().join("books");
    std::fs::create_dir(&books).unwrap();
    for f in std::fs::read_dir(&valid).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, books.join(f.file_name().unwrap())).unwrap();
    }
    let two = dir.path().join("two");
    let args = ["--length", "64", "--rope", "none", "--tokens", "128"];
    let long = [&long_data[1], "--long-data", &books.display().to_string()];
    let long = [
        "--long-data",
        long[0],
        long[1],
        long[2],
        "--long-share",
        "0.5",
    ];
    run_ok(extend(&from, &two, &args).args(long).arg("--no-train"));
    let cfg = RunConfig::load(&two.join("run.toml"), &[]).unwrap();
    let mixture = &cfg.data.mixture["stable"];
    let shares = (mixture["long"], mixture["long-2"], mixture["train"]);
    assert_eq!(shares, (0.25, 0.25, 0.5));
    assert_eq!(cfg.data.sources["long-2"], books);
    let twice = ["--long-data", long[1], "--long-data", long[1]];
    let e = run_bad(extend(&from, &dir.path().join("w"), &args).args(twice));
    assert!(e.contains("given twice"), "{e}");
    assert!(!dir.path().join("w").exists());
    let missing = dir.path().join("no-such-shards");
    let e = run_bad(
        extend(&from, &dir.path().join("w"), &args)
            .arg("--long-data")
            .arg(&missing),
    );
    assert!(e.contains("no-such-shards"), "{e}");
    assert!(!dir.path().join("w").exists());

    let pk = dir.path().join("passkey");
    let out = run_ok(
        bin()
            .args(["eval", "passkey", "--lengths", "250,300", "--depths", "2"])
            .args(["--trials", "2", "--digits", "3", "--model"])
            .arg(&ntk)
            .arg("--out")
            .arg(&pk),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("passkey retrieval"));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pk.join("passkey.json")).unwrap()).unwrap();
    let cells = report["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 4);
    // Dynamic NTK has no context limit: every cell is measured.
    assert!(cells.iter().all(|c| c["accuracy"].is_number()), "{cells:?}");
    assert!(pk.join("passkey.png").is_file());

    let ntk_start = ntk.join("checkpoints/step-0000000");
    let args = [
        "--length",
        "512",
        "--rope",
        "yarn:factor=2",
        "--tokens",
        "512",
    ];
    let e = run_bad(&mut extend(&ntk_start, &dir.path().join("x"), &args));
    assert!(e.contains("already scales RoPE"), "{e}");
    let e = run_bad(&mut extend(&from, &abf, &args));
    assert!(e.contains("exists"), "{e}");
    let other = ["--long-data", "elsewhere"];
    let e = run_bad(extend(&trained, &dir.path().join("x"), &args).args(other));
    assert!(e.contains("has a source `long` of its own"), "{e}");
    let args = ["--length", "64", "--rope", "ntk", "--tokens", "64"];
    let e = run_bad(&mut extend(&from, &dir.path().join("y"), &args));
    assert!(e.contains("ntk:factor=VALUE"), "{e}");
    let args = ["--length", "64", "--rope", "none", "--tokens", "64"];
    let e = run_bad(extend(&from, &dir.path().join("z"), &args).args(["--set", "train.nope=1"]));
    assert!(e.contains("nope"), "{e}");
    for left in ["x", "y", "z"] {
        assert!(!dir.path().join(left).exists(), "{left} was written");
    }
}
