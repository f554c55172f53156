//! Fits on data generated from known laws: the law's parameters, the compute-optimal identity and
//! the envelope verdict must come back.

use minicpm_lab::scaling::{
    allocate, bootstrap, fit_envelope, fit_law, BootstrapConfig, CurvePoint, EnvelopeForm,
    FitConfig, LawParams, Point,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TRUTH: LawParams = LawParams {
    e: 1.7,
    a: 400.0,
    b: 1500.0,
    alpha: 0.34,
    beta: 0.28,
};

/// A 7 x 7 grid of sizes 1e7..1e10 parameters and 1e8..1e12 tokens, with multiplicative noise
/// uniform in +-`noise`.
fn synthetic_points(noise: f64, seed: u64) -> Vec<Point> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut points = Vec::new();
    for i in 0..7 {
        for j in 0..7 {
            let n = 1e7 * 10f64.powf(i as f64 * 0.5);
            let d = 1e8 * 10f64.powf(j as f64 * 4.0 / 6.0);
            let jitter = 1.0 + noise * rng.random_range(-1.0..=1.0);
            points.push(Point::new(n, d, TRUTH.predict(n, d) * jitter));
        }
    }
    points
}

fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, want {want} +- {tol}"
    );
}

#[test]
fn recovers_known_law_from_noisy_grid() {
    let points = synthetic_points(0.002, 7);
    let fit = fit_law(&points, &FitConfig::default()).expect("fit succeeds");
    let p = fit.params;
    close("E", p.e, TRUTH.e, 0.01);
    close("alpha", p.alpha, TRUTH.alpha, 0.005);
    close("beta", p.beta, TRUTH.beta, 0.005);
    close("A", p.a / TRUTH.a, 1.0, 0.05);
    close("B", p.b / TRUTH.b, 1.0, 0.03);

    let cheap = BootstrapConfig {
        resamples: 20,
        ..BootstrapConfig::default()
    };
    let ci = bootstrap(&points, &fit, &FitConfig::default(), &cheap).expect("bootstrap runs");
    assert!(ci.intervals.alpha.contains(p.alpha) && ci.intervals.beta.contains(p.beta));
}

#[test]
fn recovers_noiseless_law_exactly() {
    let points = synthetic_points(0.0, 0);
    let fit = fit_law(&points, &FitConfig::default()).expect("fit succeeds");
    let p = fit.params;
    close("E", p.e, TRUTH.e, 1e-3);
    close("alpha", p.alpha, TRUTH.alpha, 1e-3);
    close("beta", p.beta, TRUTH.beta, 1e-3);
    close("A", p.a / TRUTH.a, 1.0, 0.01);
    close("B", p.b / TRUTH.b, 1.0, 0.01);
}

#[test]
fn allocation_satisfies_its_identities() {
    let budgets = [1e18, 1e20, 5.76e23, 1e26];
    let alloc = allocate(&TRUTH, &budgets).expect("valid law");
    close("eta", alloc.eta, (0.28 - 0.34) / (0.34 + 0.28), 1e-12);
    close("k^2", alloc.k_squared, alloc.k * alloc.k, 1e-15);
    for b in &alloc.budgets {
        let c6 = b.flops / 6.0;
        // C = 6 N D holds on the optimum ...
        close("6ND/C", 6.0 * b.n_opt * b.d_opt / b.flops, 1.0, 1e-12);
        // ... and N_opt / D_opt = K^2 (C/6)^eta, in raw units ...
        let ratio = b.n_opt / b.d_opt;
        close(
            "identity",
            ratio / (alloc.k_squared * c6.powf(alloc.eta)),
            1.0,
            1e-12,
        );
        // ... and with N and D in billions (C/6 in billions squared).
        let c6_billions = c6 / 1e18;
        close(
            "identity in billions",
            ratio / (alloc.billions.k_squared * c6_billions.powf(alloc.eta)),
            1.0,
            1e-12,
        );
        // The split really is optimal: moving along C = 6ND in either direction costs loss.
        for factor in [0.97, 1.03] {
            let n = b.n_opt * factor;
            let d = b.flops / (6.0 * n);
            assert!(TRUTH.predict(n, d) > b.loss, "not a minimum at {}", b.flops);
        }
    }
    close(
        "unit-budget ratio",
        alloc.billions.tokens_per_param_at_unit_budget * alloc.billions.k_squared,
        1.0,
        1e-12,
    );
}

fn curve(f: impl Fn(f64) -> f64, from: f64, to: f64, count: usize, noise: f64) -> Vec<CurvePoint> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    (0..count)
        .map(|i| {
            let compute = from * (to / from).powf(i as f64 / (count - 1) as f64);
            let jitter = 1.0 + noise * rng.random_range(-1.0..=1.0);
            CurvePoint {
                compute,
                loss: f(compute) * jitter,
            }
        })
        .collect()
}

#[test]
fn envelope_prefers_power_law_on_power_law_data() {
    let points = curve(|c| 1e3 * c.powf(-0.15) + 2.0, 1e15, 1e19, 40, 1e-4);
    let cmp = fit_envelope(&points).expect("fits");
    assert_eq!(cmp.better, EnvelopeForm::PowerLaw, "{cmp:?}");
    assert!(cmp.power_law.rss < cmp.exponential.rss);
    close("b", cmp.power_law.b, 0.15, 0.01);
    close("c", cmp.power_law.c, 2.0, 0.05);
}

#[test]
fn envelope_prefers_exponential_on_exponential_data() {
    let points = curve(|c| 2.0 * (-c / 3e18).exp() + 2.5, 1e17, 1e19, 40, 1e-4);
    let cmp = fit_envelope(&points).expect("fits");
    assert_eq!(cmp.better, EnvelopeForm::Exponential, "{cmp:?}");
    close("a", cmp.exponential.a, 2.0, 0.02);
    close("b * 3e18", cmp.exponential.b * 3e18, 1.0, 0.02);
    close("c", cmp.exponential.c, 2.5, 0.02);
    let last = points[points.len() - 1];
    close(
        "predict",
        cmp.exponential.predict(last.compute),
        last.loss,
        1e-3,
    );
}
