//! Reproduces Besiroglu et al. (2024)'s refit of Chinchilla's Approach 3 on the Epoch AI
//! extraction of Figure 4, and checks the full report built from it.

use minicpm_lab::scaling::{
    exclude_highest_loss, read_points, study, BootstrapConfig, FitConfig, ScalingReport,
};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/chinchilla_fig4_points.csv"
);

fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, want {want} +- {tol}"
    );
}

#[test]
fn refit_matches_besiroglu_et_al_with_bootstrap_intervals() {
    let all = read_points(FIXTURE).expect("fixture reads");
    assert_eq!(all.len(), 245);
    let points = exclude_highest_loss(&all, 5);
    assert_eq!(points.len(), 240);

    let budgets = [1e21, 5.76e23, 1e25];
    let report = study(
        &points,
        &FitConfig::default(),
        Some(&BootstrapConfig::default()),
        &budgets,
    )
    .expect("fit succeeds");

    // Besiroglu et al.: E = 1.8172, A = 482.01, B = 2085.43, alpha = 0.3478, beta = 0.3658.
    let p = report.fit.params;
    close("E", p.e, 1.8172, 0.02);
    close("alpha", p.alpha, 0.3478, 0.01);
    close("beta", p.beta, 0.3658, 0.01);
    // A and B trade off against the exponents along a flat valley; only loosely pinned.
    close("A", p.a, 482.01, 0.1 * 482.01);
    close("B", p.b, 2085.43, 0.1 * 2085.43);
    assert_eq!(report.fit.n_points, 240);
    assert_eq!(report.fit.starts, 5400);

    let ci = report.intervals.as_ref().expect("bootstrap was requested");
    assert_eq!(ci.resamples, 100);
    assert!(ci.failed < 5, "{} resamples failed", ci.failed);
    for (name, interval, value) in [
        ("E", ci.intervals.e, p.e),
        ("A", ci.intervals.a, p.a),
        ("B", ci.intervals.b, p.b),
        ("alpha", ci.intervals.alpha, p.alpha),
        ("beta", ci.intervals.beta, p.beta),
    ] {
        assert!(
            interval.low < interval.high && interval.contains(value),
            "{name}: {value} outside {interval:?}"
        );
    }

    // At Chinchilla's own budget (5.76e23 FLOPs) the refit implies roughly 20 tokens per
    // parameter, the paper's headline.
    let chinchilla = report.allocation.as_ref().expect("an allocation").budgets[1];
    assert!(
        (15.0..30.0).contains(&chinchilla.tokens_per_param),
        "tokens per parameter {}",
        chinchilla.tokens_per_param
    );
    close(
        "6ND",
        6.0 * chinchilla.n_opt * chinchilla.d_opt,
        5.76e23,
        1e-6 * 5.76e23,
    );

    assert_eq!(report.residuals.len(), 240);
    let json = report.to_json().expect("serialises");
    let back: ScalingReport = serde_json::from_str(&json).expect("deserialises");
    assert_eq!(back.fit, report.fit);
}
