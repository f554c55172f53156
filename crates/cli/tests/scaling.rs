//! A scaling-law study end to end: plan (one stable run per size with a decay branch ending at
//! each data size), run (resumable), fit from the branches, with the contour plot.

mod common;
use common::*;

fn plan(cfg: &Path, out: &Path, multiples: &str) -> Command {
    let mut c = bin();
    c.args(["scaling-law", "plan", "--config"])
        .arg(cfg)
        .args(["--widths", "16,24,32", "--head-dim", "8", "--layers", "2"])
        .args(["--data-multiples", multiples, "--decay-fraction", "0.25"])
        .args([
            "--set",
            "schedule.warmup_steps=2",
            "--set",
            "train.eval_every=0",
        ])
        .arg("--out")
        .arg(out);
    c
}

#[test]
fn a_study_is_planned_trained_and_fitted_from_its_branches() {
    let (dir, cfg) = setup(10);
    let study = dir.path().join("study");
    let planned = run_ok(&mut plan(&cfg, &study, "1,2,3,4"));
    let text = String::from_utf8_lossy(&planned.stdout);
    assert!(text.contains("scaling-law run"), "{text}");
    let plan_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(study.join("plan.json")).unwrap()).unwrap();
    let sizes = plan_json["sizes"].as_array().unwrap();
    assert_eq!(sizes.len(), 3);

    run_ok(bin().args(["scaling-law", "run"]).arg(&study).args([
        "--workers",
        "2",
        "--threads",
        "1",
    ]));
    // Every size has its four branches, each ending within one update of multiple x N tokens,
    // and branched from the stable run at the planned update.
    for size in sizes {
        let name = size["name"].as_str().unwrap();
        let n = size["non_embedding_params"].as_f64().unwrap();
        let trunk = study.join(name);
        let branches = minicpm_train::branch::list(&trunk);
        assert_eq!(branches.len(), 4, "{name}");
        for (b, planned) in branches.iter().zip(size["branches"].as_array().unwrap()) {
            let records = read(&b.join("metrics.jsonl")).unwrap();
            let end = records.last().unwrap();
            let multiple = planned["data_multiple"].as_f64().unwrap();
            assert!(
                (end.tokens as f64 - multiple * n).abs() <= 128.0,
                "{}: ended at {} tokens, planned {}",
                b.display(),
                end.tokens,
                multiple * n
            );
            assert!(end.eval_bpb.is_some());
            let toml = std::fs::read_to_string(b.join("run.toml")).unwrap();
            let at = planned["branch_at_step"].as_u64().unwrap();
            assert!(toml.contains(&format!("step = {at}")), "{toml}");
        }
    }
    // A second run trains nothing.
    let again = run_ok(bin().args(["scaling-law", "run"]).arg(&study));
    assert!(String::from_utf8_lossy(&again.stderr).contains("3 of 3 points already finished"));

    // The fit uses the twelve branches (not the stable runs), in bits per byte.
    let report_path = dir.path().join("fit.json");
    let fitted = run_ok(
        bin()
            .args(["scaling-law", "fit"])
            .arg(&study)
            .args(["--bootstrap", "5", "--out"])
            .arg(&report_path),
    );
    let log = String::from_utf8_lossy(&fitted.stderr);
    assert!(log.contains("12 points"), "{log}");
    assert_eq!(log.matches("envelope ").count(), 3, "{log}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    let residuals = report["residuals"].as_array().unwrap();
    assert_eq!(residuals.len(), 12);
    for r in residuals {
        // Each point's loss is a branch's final bits per byte.
        assert!(r["loss"].as_f64().unwrap() > 0.0 && r["loss"].as_f64().unwrap() < 10.0);
    }
    assert_eq!(report["envelopes"].as_array().unwrap().len(), 3);
    // Iso-FLOP profiles need three sizes covering one budget; these sizes' branches do not
    // overlap that much, so there are none (their arithmetic is tested in the lab's own tests).
    assert_eq!(report["iso_flop"].as_array().unwrap().len(), 0);
    // Two studies fit as one: a copy of this one (as a second seed would be) doubles the
    // points, and each size still gets one envelope, over the branches of both.
    let copy = dir.path().join("study-copy");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&study)
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    let both_path = dir.path().join("fit-both.json");
    let both = run_ok(
        bin()
            .args(["scaling-law", "fit"])
            .arg(&study)
            .arg(&copy)
            .args(["--bootstrap", "0", "--out"])
            .arg(&both_path),
    );
    let log_both = String::from_utf8_lossy(&both.stderr);
    assert!(log_both.contains("24 points"), "{log_both}");
    let both: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&both_path).unwrap()).unwrap();
    assert_eq!(both["residuals"].as_array().unwrap().len(), 24);
    let envelopes = both["envelopes"].as_array().unwrap();
    assert_eq!(envelopes.len(), 3);
    for e in envelopes {
        assert_eq!(e["envelope"]["n_points"].as_u64(), Some(8), "{e}");
    }
    if log.contains("no contour plot") {
        // A law fitted to so small a study may put its contours outside the window; that is
        // said in one line, the report still stands.
        assert!(!study.join("scaling-law.png").exists());
    } else {
        assert!(
            std::fs::metadata(study.join("scaling-law.png"))
                .unwrap()
                .len()
                > 10_000
        );
    }
}

/// Besiroglu et al.'s refit of Chinchilla (docs/MODEL.md section 9), written out here rather than
/// taken from the library under test: (E, A, B, alpha, beta), N in parameters, D in tokens.
const KNOWN_LAW: (f64, f64, f64, f64, f64) = (1.8172, 482.01, 2085.43, 0.3478, 0.3658);

fn known_loss(n: f64, d: f64) -> f64 {
    let (e, a, b, alpha, beta) = KNOWN_LAW;
    e + a / n.powf(alpha) + b / d.powf(beta)
}

#[test]
fn a_study_drawn_from_a_known_law_gives_that_law_back() {
    use rand::{Rng, SeedableRng};
    // Six sizes from 1M to 1B parameters, each trained to 5 .. 160 tokens per parameter, as a
    // WSD study's decay branches would be, with a multiplicative noise of up to 0.3%.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut csv = String::from("params,tokens,loss\n");
    for i in 0..6 {
        let n = 1e6 * 10f64.powf(i as f64 * 0.6);
        for multiple in [5.0, 10.0, 20.0, 40.0, 80.0, 160.0] {
            let d = n * multiple;
            let loss = known_loss(n, d) * (1.0 + 0.003 * rng.random_range(-1.0..=1.0));
            csv += &format!("{n:e},{d:e},{loss}\n");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let points = dir.path().join("points.csv");
    std::fs::write(&points, csv).unwrap();
    let report_path = dir.path().join("fit.json");
    let fitted = run_ok(
        bin()
            .args(["scaling-law", "fit"])
            .arg(&points)
            .args(["--bootstrap", "40", "--out"])
            .arg(&report_path),
    );
    let log = String::from_utf8_lossy(&fitted.stderr);
    assert!(log.contains("36 points"), "{log}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    let fit = &report["fit"]["params"];
    let intervals = &report["intervals"]["intervals"];
    let (e, a, b, alpha, beta) = KNOWN_LAW;
    // What 0.3% noise on 36 points leaves of each parameter (a few times the spread of the
    // bootstrap): the exponents to a hundredth, E to two, A and B (which trade off against
    // their exponents) to 15%.
    let identified = [("e", e, 0.02), ("alpha", alpha, 0.01), ("beta", beta, 0.01)];
    for (name, truth, tolerance) in identified {
        let got = fit[name].as_f64().unwrap();
        let (low, high) = (
            intervals[name]["low"].as_f64().unwrap(),
            intervals[name]["high"].as_f64().unwrap(),
        );
        eprintln!("{name}: {got:.4} (95% [{low:.4}, {high:.4}]), truth {truth}");
        assert!(
            (got - truth).abs() <= tolerance,
            "{name}: {got} vs {truth}\n{log}"
        );
        // The bootstrap interval holds the estimate and is informative.
        assert!(
            low <= got && got <= high,
            "{name}: [{low}, {high}] misses {got}"
        );
        assert!(
            high - low < 2.0 * tolerance,
            "{name}: [{low}, {high}] says little"
        );
    }
    for (name, truth) in [("a", a), ("b", b)] {
        let got = fit[name].as_f64().unwrap();
        eprintln!("{name}: {got:.1}, truth {truth}");
        assert!((got / truth - 1.0).abs() < 0.15, "{name}: {got} vs {truth}");
    }
    assert_eq!(report["intervals"]["resamples"], 40);
    // Every point is predicted within the noise it was drawn with (plus the fit's slack).
    let residuals = report["residuals"].as_array().unwrap();
    assert_eq!(residuals.len(), 36);
    for r in residuals {
        let res = r["log_residual"].as_f64().unwrap();
        assert!(res.abs() < 0.006, "{r}");
    }
}

#[test]
fn bad_studies_are_refused_with_one_line() {
    let (dir, cfg) = setup(10);
    let study = dir.path().join("study");
    let err = run_bad(&mut plan(&cfg, &study, "0,2"));
    assert!(err.contains("multiple"), "{err}");
    assert!(!study.join("plan.json").exists());
    let err = run_bad(bin().args(["scaling-law", "run"]).arg(dir.path()));
    assert!(err.contains("plan.json"), "{err}");
    let err = run_bad(
        bin()
            .args(["scaling-law", "fit"])
            .arg(dir.path().join("none.csv")),
    );
    assert!(err.contains("none.csv"), "{err}");
    // Several inputs must all be studies, each given once.
    let csv = dir.path().join("points.csv");
    std::fs::write(&csv, "params,tokens,loss\n1e6,2e7,3.0\n").unwrap();
    std::fs::create_dir_all(&study).unwrap();
    for (inputs, culprit) in [
        (vec![csv.clone(), study.clone()], "points.csv"),
        (vec![study.clone(), csv.clone()], "points.csv"),
        (vec![study.clone(), study.clone()], "listed twice"),
    ] {
        let err = run_bad(bin().args(["scaling-law", "fit"]).args(&inputs));
        assert!(err.contains(culprit), "{inputs:?}: {err}");
    }
}
