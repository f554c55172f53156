//! Fine-tuning end to end: a tiny pre-trained run, SFT on conversations from it, DPO on pairs
//! from the SFT model; each resumes exactly like pre-training, and bad data is a one-line error
//! naming the file and line.

use crate::common::*;
use serde_json::json;

/// Question-and-answer conversations made of the tiny corpus's sayings.
const SAYINGS: [(&str, &str); 4] = [
    (
        "What does the fox do?",
        "The quick brown fox jumps over the lazy dog.",
    ),
    ("What saves nine?", "A stitch in time saves nine."),
    (
        "What is the question?",
        "To be or not to be, that is the question.",
    ),
    (
        "Is all that glitters gold?",
        "All that glitters is not gold.",
    ),
];

fn conversation(q: &str, a: &str) -> serde_json::Value {
    json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
}

fn write_lines(path: &Path, lines: &[serde_json::Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// A pre-trained tiny run, and the data of both stages: (dir, base checkpoint).
fn base() -> (tempfile::TempDir, PathBuf) {
    let (dir, cfg) = setup(10);
    let run = dir.path().join("base");
    run_ok(&mut train_new(&cfg, &run));
    let d = dir.path();
    let convs: Vec<_> = (0..12)
        .map(|i| {
            let (q, a) = SAYINGS[i % 4];
            conversation(&format!("{q} ({i})"), a)
        })
        .collect();
    write_lines(&d.join("sft.jsonl"), &convs);
    write_lines(&d.join("sft-valid.jsonl"), &convs[..4]);
    let pairs: Vec<_> = (0..8)
        .map(|i| {
            let ((q, a), (_, other)) = (SAYINGS[i % 4], SAYINGS[(i + 1) % 4]);
            json!({"prompt": format!("{q} [{i}]"), "chosen": a, "rejected": other})
        })
        .collect();
    write_lines(&d.join("pairs.jsonl"), &pairs);
    write_lines(&d.join("pairs-valid.jsonl"), &pairs[..4]);
    (dir, run.join("checkpoints/step-0000010"))
}

fn finetune(kind: &str, model: &Path, data: &Path, valid: &Path, out: &Path) -> Command {
    let mut c = bin();
    c.args([kind, "--quiet", "--steps", "8", "--model"])
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--valid")
        .arg(valid)
        .arg("--out")
        .arg(out)
        .args([
            "--set",
            "train.checkpoint_every=4",
            "--set",
            "train.eval_every=4",
        ])
        // Rows long enough for a conversation in the tiny byte-level vocabulary.
        .args([
            "--set",
            "train.seq_len=64",
            "--set",
            "train.batch_tokens=256",
        ]);
    c
}

/// Removes the last checkpoint and resumes: losses, rates, norms and rewards must come out
/// bit-identical (the gradient cosine needs the update before, which no checkpoint keeps).
fn assert_resumes_exactly(run: &Path) {
    let numbers = || {
        let records = read(&run.join("metrics.jsonl")).unwrap();
        let rewards: Vec<String> = records
            .iter()
            .map(|r| format!("{:?} {:?}", r.rewards, r.eval_rewards))
            .collect();
        (losses(&records), rewards)
    };
    let whole = numbers();
    assert_eq!(whole.0.len(), 8);
    std::fs::remove_dir_all(run.join("checkpoints/step-0000008")).unwrap();
    run_ok(bin().args(["train", "--quiet", "--resume"]).arg(run));
    assert_eq!(numbers(), whole, "{}", run.display());
}

#[test]
fn sft_then_dpo_train_resume_exactly_and_leave_chat_models() {
    let (dir, base) = base();
    let d = dir.path();
    let sft = d.join("sft");
    run_ok(&mut finetune(
        "sft",
        &base,
        &d.join("sft.jsonl"),
        &d.join("sft-valid.jsonl"),
        &sft,
    ));
    let records = read(&sft.join("metrics.jsonl")).unwrap();
    let evals: Vec<f64> = records.iter().filter_map(|r| r.eval_loss).collect();
    assert_eq!(evals.len(), 2, "held-out answer loss after 4 and 8 updates");
    // The SFT peak is the rate the base run's WSD schedule had decayed to at update 10.
    let base_cfg = minicpm_train::RunConfig::load(&d.join("tiny.toml"), &[]).unwrap();
    let reached = base_cfg.optim.lr * base_cfg.schedule.resolve(10).unwrap().factor(9);
    assert!(records.iter().all(|r| r.lr <= reached * (1.0 + 1e-12)));
    assert!(records.iter().any(|r| r.lr == reached));
    let checkpoint = sft.join("checkpoints/step-0000008");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(checkpoint.join("tokenizer_config.json")).unwrap())
            .unwrap();
    assert!(config["chat_template"].as_str().unwrap().contains("<用户>"));
    assert_resumes_exactly(&sft);

    // On-policy pairs: each conversation's answer against the SFT model's own sample.
    let pairs = d.join("on-policy.jsonl");
    let mut c = bin();
    c.args(["data", "pairs", "--max-new-tokens", "6", "--conversations"])
        .arg(d.join("sft.jsonl"))
        .arg("--model")
        .arg(&sft)
        .arg("--out")
        .arg(&pairs);
    run_ok(&mut c);
    let text = std::fs::read_to_string(&pairs).unwrap();
    let made: Vec<_> = text
        .lines()
        .map(|l| minicpm_data::conversation::PreferencePair::parse(l).unwrap())
        .collect();
    assert_eq!(made.len(), 12);
    for (i, p) in made.iter().enumerate() {
        assert_eq!(p.chosen, SAYINGS[i % 4].1);
        assert_ne!(p.rejected, p.chosen);
    }

    let dpo = d.join("dpo");
    let mut c = finetune(
        "dpo",
        &sft,
        &d.join("pairs.jsonl"),
        &d.join("pairs-valid.jsonl"),
        &dpo,
    );
    run_ok(c.args(["--lr", "0.001"]));
    assert!(dpo.join("reference_logps.json").is_file());
    let records = read(&dpo.join("metrics.jsonl")).unwrap();
    assert!(records.iter().all(|r| r.rewards.is_some()));
    // At the first update the policy is the reference: every reward is zero, the loss log 2.
    // (Equal up to rounding: the reference pass pads its rows to another length.)
    let first = records[0].rewards.unwrap();
    assert!(
        first.chosen.abs() < 1e-5 && first.rejected.abs() < 1e-5,
        "{first:?}"
    );
    assert!((records[0].loss - std::f64::consts::LN_2).abs() < 1e-5);
    assert_eq!(
        records.iter().filter(|r| r.eval_rewards.is_some()).count(),
        2
    );
    let shared: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pairs.jsonl.reference-"))
        .collect();
    assert_eq!(shared.len(), 1, "{shared:?}");
    // Resumed without any stored reference log-probabilities, the run computes them again
    // from the model it started from (not from its checkpoint): the same numbers come out.
    std::fs::remove_file(dpo.join("reference_logps.json")).unwrap();
    std::fs::remove_file(d.join(&shared[0])).unwrap();
    assert_resumes_exactly(&dpo);

    // Another run from the same model on the same pairs reuses the reference log-probabilities
    // kept beside the pairs.
    let mut c = finetune(
        "dpo",
        &sft,
        &d.join("pairs.jsonl"),
        &d.join("pairs-valid.jsonl"),
        &d.join("dpo-b"),
    );
    let out = run_ok(c.args(["--lr", "0.001", "--beta", "0.3"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "reference log-probabilities from {}",
            d.join(&shared[0]).display()
        )),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dpo.join("reference_logps.json")).unwrap(),
        std::fs::read(d.join("dpo-b/reference_logps.json")).unwrap()
    );

    // Pairs changed under a run no longer match its stored reference log-probabilities.
    let text = std::fs::read_to_string(d.join("pairs.jsonl")).unwrap();
    std::fs::write(
        d.join("pairs.jsonl"),
        text.replacen("saves nine", "saves ten", 1),
    )
    .unwrap();
    let line = run_bad(bin().args(["train", "--quiet", "--resume"]).arg(&dpo));
    assert!(
        line.contains("reference_logps.json") && line.contains("changed"),
        "{line}"
    );

    // The DPO model chats with the template it was tuned on.
    let mut chat = bin();
    chat.args(["chat", "--max-new-tokens", "4", "--model"])
        .arg(&dpo);
    let out = chat
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    out.stdin
        .as_ref()
        .unwrap()
        .write_all(b"What saves nine?\n\n")
        .unwrap();
    let out = out.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("MiniCpm"), "{err}");
}

#[test]
fn bad_fine_tuning_data_exits_2_naming_the_file_and_line() {
    let (dir, base) = base();
    let d = dir.path();
    let good = conversation("Q", "A");
    let cases: [(&str, serde_json::Value, &str); 5] = [
        (
            "sft",
            json!({"messages": [{"role": "user", "content": "Q"}]}),
            "no assistant turn",
        ),
        (
            "sft",
            json!({"messages": [{"role": "bot", "content": "Q"}]}),
            "unknown role \"bot\"",
        ),
        (
            "dpo",
            json!({"prompt": "Q", "chosen": "A", "rejected": "A"}),
            "identical",
        ),
        (
            "dpo",
            json!({"prompt": "Q", "chosen": "A", "rejected": " A\n"}),
            "same tokens",
        ),
        (
            "dpo",
            json!({"prompt": "Q", "chosen": "A"}),
            "missing \"rejected\"",
        ),
    ];
    for (i, (kind, bad, want)) in cases.into_iter().enumerate() {
        let file = d.join(format!("bad{i}.jsonl"));
        let first = match kind {
            "sft" => good.clone(),
            _ => json!({"prompt": "Q", "chosen": "A", "rejected": "B"}),
        };
        write_lines(&file, &[first, bad]);
        let out = d.join(format!("run{i}"));
        let line = run_bad(&mut finetune(kind, &base, &file, &file, &out));
        let at = format!("{}:2:", file.display());
        assert!(line.contains(&at) && line.contains(want), "{line}");
        assert!(!out.exists(), "nothing is written for bad data");
    }
    // A template whose markers the tokenizer cannot hold.
    let mut c = finetune(
        "sft",
        &base,
        &d.join("sft.jsonl"),
        &d.join("sft.jsonl"),
        &d.join("x"),
    );
    let line = run_bad(c.args(["--template", "chatml"]));
    assert!(
        line.contains("tokenizer.json") && line.contains("<|im_start|>"),
        "{line}"
    );
}
