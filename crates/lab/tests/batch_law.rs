//! The batch-size law against independent references: loss curves built from a known law
//! bs_opt = a / L^b (the paper's a = 1.21e9, b = 6.24) must give that law back, exactly without
//! noise and inside its 95% intervals with it; the pieces are checked by hand-computed values and
//! published t tables; and every kind of unusable input gives its own one-line error.

use minicpm_lab::batch_law::{
    find_crossing, fit_batch_law, fit_batch_law_with, fit_log_parabola, fit_power_law,
    student_t_quantile, tokens_to_reach, BatchLawConfig, BatchLawError, BatchLawReport, BatchRun,
    Crossing, ParabolaShape, SkipReason,
};
use minicpm_lab::scaling::PointProblem;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TRUE_A: f64 = 1.21e9;
const TRUE_B: f64 = 6.24;

fn true_bs_opt(loss: f64) -> f64 {
    TRUE_A / loss.powf(TRUE_B)
}

fn close_rel(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        ((got - want) / want).abs() <= tol,
        "{what}: got {got}, want {want} (relative tolerance {tol})"
    );
}

/// A model size of the synthetic sweep. Tokens to reach loss L at batch bs:
/// ln T = ln T_min(L) + K (ln bs - ln bs_opt(L))^2, T_min(L) = d0 (L - e)^-3, so ln T is exactly
/// a parabola in ln bs with its vertex at the true bs_opt(L). Targets at or below `e + 0.1` are
/// never reached by this size.
struct Size {
    label: &'static str,
    params: f64,
    e: f64,
    d0: f64,
}

const SIZES: [Size; 3] = [
    Size {
        label: "9M",
        params: 9e6,
        e: 3.25,
        d0: 2e8,
    },
    Size {
        label: "30M",
        params: 3e7,
        e: 3.05,
        d0: 1.5e8,
    },
    Size {
        label: "170M",
        params: 1.7e8,
        e: 2.85,
        d0: 1e8,
    },
];

/// Target losses; the 9M size reaches the first three, 30M four, 170M all five.
const TARGETS: [f64; 5] = [3.8, 3.6, 3.4, 3.2, 3.0];

/// Curvature of the parabola in ln(bs).
const K: f64 = 0.1;

/// Six batch sizes per size, 2^15 to 2^23 tokens: around every true optimum (2.9e5 to 1.3e6).
fn batch_sizes() -> Vec<f64> {
    (0..6).map(|i| 2f64.powf(15.0 + 1.6 * i as f64)).collect()
}

fn tokens_to_reach_model(size: &Size, bs: f64, loss: f64) -> f64 {
    let t_min = size.d0 * (loss - size.e).powi(-3);
    t_min * (K * (bs.ln() - true_bs_opt(loss).ln()).powi(2)).exp()
}

/// A monotone curve through the crossings `knots` (tokens, target loss): around each, one
/// evaluation a little before and one a little after on a line in ln(tokens) through the knot,
/// unevenly placed so the interpolation is not a midpoint; plus a first and a last evaluation
/// that stay clear of every other target.
fn curve_through(knots: &[(f64, f64)]) -> Vec<(f64, f64)> {
    // Slope of the loss in ln(tokens), and the two offsets.
    let (slope, before, after) = (0.2, 1.03f64, 1.07f64);
    let mut curve = vec![(knots[0].0 / 8.0, 8.0)];
    for &(tokens, loss) in knots {
        curve.push((tokens / before, loss + slope * before.ln()));
        curve.push((tokens * after, loss - slope * after.ln()));
    }
    let &(last_tokens, last_loss) = curve.last().unwrap();
    curve.push((last_tokens * 2.0, last_loss - 0.03));
    for pair in curve.windows(2) {
        assert!(
            pair[1].0 > pair[0].0 && pair[1].1 < pair[0].1,
            "the generator built a non-monotone curve: {pair:?}"
        );
    }
    curve
}

/// The sweep: every size at every batch size, with crossings multiplied by exp(noise * z),
/// z standard normal and independent per run and target (noise = 0 gives exact crossings).
fn synthetic_runs(noise: f64, seed: u64, sizes: &[f64]) -> Vec<BatchRun> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut runs = Vec::new();
    for size in &SIZES {
        for &bs in sizes {
            let knots: Vec<(f64, f64)> = TARGETS
                .iter()
                .filter(|&&loss| loss > size.e + 0.1)
                .map(|&loss| {
                    let jitter = (noise * standard_normal(&mut rng)).exp();
                    (tokens_to_reach_model(size, bs, loss) * jitter, loss)
                })
                .collect();
            runs.push(BatchRun {
                size_label: size.label.into(),
                params: size.params,
                batch_tokens: bs,
                curve: curve_through(&knots),
            });
        }
    }
    runs
}

/// Box-Muller, so the test needs no distribution crate.
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[test]
fn exact_sweep_recovers_the_known_law() {
    let runs = synthetic_runs(0.0, 0, &batch_sizes());
    let report = fit_batch_law(&runs, &TARGETS).expect("the sweep fits");

    // Every reachable (size, target) gives an interior minimum at the true optimum, and the
    // crossings are exactly the constructed tokens.
    assert_eq!(report.law_points.len(), 3 + 4 + 5);
    for (size, model) in report.sizes.iter().zip(&SIZES) {
        assert_eq!(size.batch_sizes.len(), 6);
        for cell in &size.cells {
            if cell.target > model.e + 0.1 {
                assert_eq!(cell.skipped, None, "{} at {}", size.size_label, cell.target);
                for p in &cell.reached {
                    let want = tokens_to_reach_model(model, p.batch_tokens, cell.target);
                    close_rel("crossing", p.tokens, want, 1e-12);
                }
                let optimum = cell.optimum.unwrap();
                close_rel(
                    "bs_opt",
                    optimum.batch_tokens,
                    true_bs_opt(cell.target),
                    1e-9,
                );
                let t_min = model.d0 * (cell.target - model.e).powi(-3);
                close_rel("tokens_min", optimum.tokens, t_min, 1e-9);
            } else {
                assert!(cell.reached.is_empty() && cell.missed.len() == 6);
                assert!(cell
                    .missed
                    .iter()
                    .all(|m| matches!(m.crossing, Crossing::NeverReached { .. })));
                assert_eq!(
                    cell.skipped,
                    Some(SkipReason::TooFewBatchSizesReached { got: 0, needed: 3 })
                );
            }
        }
    }

    let law = &report.law;
    close_rel("b", law.b.value, TRUE_B, 1e-9);
    close_rel("a", law.a, TRUE_A, 1e-8);
    assert!(law.r_squared > 1.0 - 1e-12);
    assert!(law.b.std_error < 1e-8);
    assert_eq!((law.n_points, law.dof), (12, 10));
    // The paper's worked examples: L = 3.0 -> 1.3M tokens, L = 2.5 -> 4.0M.
    close_rel("bs_opt(3.0)", law.predict(3.0), 1.28e6, 0.01);
    close_rel("bs_opt(2.5)", law.predict(2.5), 4.0e6, 0.02);

    // The report survives a JSON round trip unchanged.
    let json = report.to_json().unwrap();
    let back: BatchLawReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
}

#[test]
fn noisy_sweep_keeps_the_true_law_inside_its_interval() {
    let runs = synthetic_runs(0.03, 11, &batch_sizes());
    let report = fit_batch_law(&runs, &TARGETS).expect("the sweep fits");
    let law = &report.law;
    // The noise is real (the estimate moved) but the interval still holds the truth and is
    // narrow enough to say something.
    assert!((law.b.value - TRUE_B).abs() > 1e-4, "b = {}", law.b.value);
    assert!(law.b.contains(TRUE_B), "b interval {:?}", law.b);
    assert!(
        law.ln_a.contains(TRUE_A.ln()),
        "ln a interval {:?}",
        law.ln_a
    );
    assert!(law.a_interval.0 < TRUE_A && TRUE_A < law.a_interval.1);
    assert!(law.b.high - law.b.low < 2.0, "b interval {:?}", law.b);
    close_rel("b", law.b.value, TRUE_B, 0.1);
}

/// Over many noisy sweeps the 95% intervals must hold the true b and ln a most of the time:
/// standard errors off by a factor would not. The nominal 95% is not quite reached here (about
/// 92% over 3000 sweeps): an optimum's uncertainty grows with its distance from the middle of the
/// batch grid, and the optima of the extreme losses, which steer the slope most, lie farthest
/// from it, so the errors are not of equal variance as the t interval assumes. The line fit
/// itself is held to its nominal coverage by `line_intervals_have_their_nominal_coverage`.
#[test]
fn sweep_intervals_nearly_have_their_nominal_coverage() {
    let trials = 200;
    let (mut b_in, mut ln_a_in) = (0, 0);
    for seed in 0..trials {
        let runs = synthetic_runs(0.03, 1000 + seed, &batch_sizes());
        let law = fit_batch_law(&runs, &TARGETS).expect("the sweep fits").law;
        b_in += usize::from(law.b.contains(TRUE_B));
        ln_a_in += usize::from(law.ln_a.contains(TRUE_A.ln()));
    }
    let b_rate = b_in as f64 / trials as f64;
    let ln_a_rate = ln_a_in as f64 / trials as f64;
    // Binomial standard deviation near 92% over 200 trials is 1.9%.
    assert!((0.87..=0.99).contains(&b_rate), "b coverage {b_rate}");
    assert!(
        (0.87..=0.99).contains(&ln_a_rate),
        "ln a coverage {ln_a_rate}"
    );
}

/// With the textbook assumptions (independent normal errors of equal variance in ln bs_opt), the
/// 95% intervals must hold the truth 95% of the time. Five points leave 3 degrees of freedom,
/// where the normal quantile 1.96 in place of t = 3.18 would give about 86%.
#[test]
fn line_intervals_have_their_nominal_coverage() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let losses = [3.0, 3.2, 3.4, 3.6, 3.8];
    let trials = 4000;
    let (mut b_in, mut ln_a_in) = (0, 0);
    for _ in 0..trials {
        let points: Vec<(f64, f64)> = losses
            .iter()
            .map(|&l| (l, true_bs_opt(l) * (0.05 * standard_normal(&mut rng)).exp()))
            .collect();
        let fit = fit_power_law(&points).unwrap();
        b_in += usize::from(fit.b.contains(TRUE_B));
        ln_a_in += usize::from(fit.ln_a.contains(TRUE_A.ln()));
    }
    let b_rate = b_in as f64 / trials as f64;
    let ln_a_rate = ln_a_in as f64 / trials as f64;
    // Binomial standard deviation at 95% over 4000 trials is 0.34%.
    assert!((0.94..=0.96).contains(&b_rate), "b coverage {b_rate}");
    assert!(
        (0.94..=0.96).contains(&ln_a_rate),
        "ln a coverage {ln_a_rate}"
    );
}

#[test]
fn minima_outside_the_range_enter_only_when_asked() {
    // Batch sizes from 2^21 up: every optimum below 2^21 (2.1M) lies under the range.
    let high: Vec<f64> = (0..6).map(|i| 2f64.powf(21.0 + 0.6 * i as f64)).collect();
    let runs = synthetic_runs(0.0, 0, &high);
    let err = fit_batch_law(&runs, &TARGETS).unwrap_err();
    assert!(
        matches!(err, BatchLawError::TooFewOptima { got: 0, .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "the batch-size law needs at least 3 optimum points, got 0 (of 15 (size, target) pairs, \
         0 usable, 3 reached by fewer than 3 batch sizes, 12 with the minimum outside the batch \
         sizes tried)"
    );

    let config = BatchLawConfig {
        use_minima_outside_range: true,
    };
    let report = fit_batch_law_with(&runs, &TARGETS, &config).expect("extrapolated minima fit");
    assert_eq!(report.law_points.len(), 12);
    assert!(report.law_points.iter().all(|p| p.extrapolated));
    let shapes = report.sizes[0].cells[0].parabola.unwrap().shape;
    assert_eq!(shapes, ParabolaShape::MinimumBelowRange);
    // Exact parabolas extrapolate exactly.
    close_rel("b", report.law.b.value, TRUE_B, 1e-8);
}

// ---- crossings --------------------------------------------------------------------------------

#[test]
fn crossing_is_interpolated_in_log_tokens() {
    let curve = [(1e8, 4.0), (2e8, 3.4), (4e8, 3.6), (8e8, 3.2)];
    // 3.5 lies 5/6 of the way from 4.0 to 3.4: 1e8 * 2^(5/6), not the 1.8333e8 of a chord in
    // plain tokens.
    let got = tokens_to_reach(&curve, 3.5).unwrap();
    close_rel("crossing", got, 178_179_743.628_067_85, 1e-14);
    // Between 4e8 (3.6) and 8e8 (3.2), a quarter of the way: 4e8 * 2^0.25.
    let got = tokens_to_reach(&curve, 3.3).unwrap();
    close_rel("crossing", got, 4e8 * 2f64.powf(0.75), 1e-14);
}

#[test]
fn a_noisy_dip_counts_as_the_first_crossing() {
    // The curve dips to 3.4 at 2e8, climbs back to 3.6, and only settles below 3.45 after 4e8.
    let curve = [(1e8, 4.0), (2e8, 3.4), (4e8, 3.6), (8e8, 3.2)];
    let first = tokens_to_reach(&curve, 3.45).unwrap();
    assert!(first < 2e8, "{first}");
}

#[test]
fn unreached_targets_give_none() {
    let curve = [(1e8, 4.0), (2e8, 3.4), (4e8, 3.6), (8e8, 3.2)];
    assert_eq!(tokens_to_reach(&curve, 3.19), None);
    assert_eq!(
        find_crossing(&curve, 3.19),
        Crossing::NeverReached { lowest_loss: 3.2 }
    );
    // Below the target from the first evaluation on: when it was crossed is unknown.
    assert_eq!(tokens_to_reach(&curve, 4.5), None);
    assert!(matches!(
        find_crossing(&curve, 4.5),
        Crossing::BeforeFirstEvaluation { .. }
    ));
}

// ---- parabola ---------------------------------------------------------------------------------

/// Points on ln T = ln t_min + c (ln bs - ln bs_opt)^2 at the given batch sizes.
fn parabola_points(bs_opt: f64, t_min: f64, c: f64, sizes: &[f64]) -> Vec<(f64, f64)> {
    sizes
        .iter()
        .map(|&bs| (bs, t_min * (c * (bs / bs_opt).ln().powi(2)).exp()))
        .collect()
}

#[test]
fn parabola_recovers_an_exact_vertex() {
    // Out of order, with a repeated batch size as from a second seed.
    let mut sizes = batch_sizes();
    sizes.reverse();
    sizes.push(sizes[2]);
    let points = parabola_points(1.3e6, 5e9, 0.15, &sizes);
    let fit = fit_log_parabola(&points).unwrap();
    assert_eq!(fit.shape, ParabolaShape::Interior);
    assert_eq!((fit.n_points, fit.n_batch_sizes), (7, 6));
    let v = fit.interior_minimum().unwrap();
    close_rel("bs_opt", v.batch_tokens, 1.3e6, 1e-9);
    close_rel("tokens_min", v.tokens, 5e9, 1e-9);
    close_rel("c", fit.c, 0.15, 1e-9);
    assert!(fit.rss < 1e-18);
}

#[test]
fn downward_parabola_is_reported() {
    let points = parabola_points(1.3e6, 5e9, -0.15, &batch_sizes());
    let fit = fit_log_parabola(&points).unwrap();
    assert_eq!(fit.shape, ParabolaShape::OpensDownward);
    assert!(fit.c < 0.0);
    assert_eq!(fit.minimum(), None);
    assert_eq!(fit.interior_minimum(), None);
    // The stationary point is still given, as a maximum.
    close_rel("maximum", fit.vertex.unwrap().batch_tokens, 1.3e6, 1e-9);
}

#[test]
fn minimum_outside_the_range_is_reported_with_its_place() {
    let above = fit_log_parabola(&parabola_points(1e8, 5e9, 0.15, &batch_sizes())).unwrap();
    assert_eq!(above.shape, ParabolaShape::MinimumAboveRange);
    assert_eq!(above.interior_minimum(), None);
    close_rel("bs_opt", above.minimum().unwrap().batch_tokens, 1e8, 1e-9);

    let below = fit_log_parabola(&parabola_points(1e3, 5e9, 0.15, &batch_sizes())).unwrap();
    assert_eq!(below.shape, ParabolaShape::MinimumBelowRange);
    close_rel("bs_opt", below.minimum().unwrap().batch_tokens, 1e3, 1e-9);
}

// ---- t quantile and the line ------------------------------------------------------------------

#[test]
fn t_quantile_matches_published_tables() {
    // Two-sided 95%, 90%, 99% and 99.8% columns of a standard t table.
    let table = [
        (0.975, 1.0, 12.706),
        (0.975, 2.0, 4.303),
        (0.975, 5.0, 2.571),
        (0.975, 10.0, 2.228),
        (0.975, 30.0, 2.042),
        (0.975, 120.0, 1.980),
        (0.95, 1.0, 6.314),
        (0.95, 10.0, 1.812),
        (0.995, 4.0, 4.604),
        (0.999, 3.0, 10.215),
    ];
    for (p, df, want) in table {
        let got = student_t_quantile(p, df).unwrap();
        assert!(
            (got - want).abs() < 5e-4,
            "t({p}, {df}) = {got}, table {want}"
        );
        let lower = student_t_quantile(1.0 - p, df).unwrap();
        assert!((lower + got).abs() < 1e-9, "symmetry at ({p}, {df})");
    }
}

#[test]
fn t_quantile_matches_closed_forms_and_the_normal_limit() {
    for &p in &[0.6, 0.9, 0.975, 0.999] {
        // One degree of freedom is the Cauchy distribution; two has a closed form too.
        let cauchy = (std::f64::consts::PI * (p - 0.5)).tan();
        close_rel("df 1", student_t_quantile(p, 1.0).unwrap(), cauchy, 1e-10);
        let two = (2.0 * p - 1.0) / (2.0 * p * (1.0 - p)).sqrt();
        close_rel("df 2", student_t_quantile(p, 2.0).unwrap(), two, 1e-10);
    }
    // Cornish-Fisher expansion around z = 1.959964 to 1/df^2, for df = 1e6.
    let got = student_t_quantile(0.975, 1e6).unwrap();
    assert!((got - 1.959_966_356_814_106_8).abs() < 1e-9, "{got}");
    assert_eq!(student_t_quantile(0.5, 7.0), Some(0.0));
    for (p, df) in [
        (0.0, 3.0),
        (1.0, 3.0),
        (f64::NAN, 3.0),
        (0.9, 0.0),
        (0.9, -1.0),
    ] {
        assert_eq!(student_t_quantile(p, df), None, "({p}, {df})");
    }
}

#[test]
fn power_law_matches_hand_computed_regression() {
    // ln L = 1, 2, 3 and ln bs = 1, 3, 2: slope 1/2, intercept 1, residuals (-1/2, 1, -1/2),
    // RSS 3/2 on 1 degree of freedom, Sxx = 2, Syy = 2.
    let e = std::f64::consts::E;
    let points = [(e, e), (e * e, e.powi(3)), (e.powi(3), e * e)];
    let fit = fit_power_law(&points).unwrap();
    let t = 12.706_204_736_174_696; // tan(0.475 pi), t_{0.975, 1}
    let tol = 1e-12;
    assert!((fit.b.value + 0.5).abs() < tol);
    assert!((fit.ln_a.value - 1.0).abs() < tol);
    assert!((fit.a - e).abs() < tol);
    assert!((fit.b.std_error - 0.75f64.sqrt()).abs() < tol);
    assert!((fit.ln_a.std_error - 3.5f64.sqrt()).abs() < tol);
    assert!((fit.t_quantile - t).abs() < 1e-9);
    assert!((fit.b.high - (-0.5 + t * 0.75f64.sqrt())).abs() < 1e-9);
    assert!((fit.ln_a.low - (1.0 - t * 3.5f64.sqrt())).abs() < 1e-9);
    assert!((fit.a_interval.1 - fit.ln_a.high.exp()).abs() < 1e-9 * fit.a_interval.1);
    assert!((fit.r_squared - 0.25).abs() < tol);
    assert!((fit.residual_std - 1.5f64.sqrt()).abs() < tol);
    // cov(intercept, slope) = -mean(x) s^2 / Sxx = -1.5, and b = -slope.
    assert!((fit.cov_ln_a_b - 1.5).abs() < tol);
    assert_eq!((fit.n_points, fit.dof), (3, 1));
}

// ---- bad input --------------------------------------------------------------------------------

fn one_line(err: &BatchLawError) -> String {
    let text = err.to_string();
    assert!(!text.contains('\n'), "{text}");
    text
}

fn good_runs() -> Vec<BatchRun> {
    synthetic_runs(0.0, 0, &batch_sizes())
}

#[test]
fn empty_inputs() {
    let err = fit_batch_law(&[], &TARGETS).unwrap_err();
    assert!(matches!(err, BatchLawError::NoRuns));
    assert_eq!(one_line(&err), "no runs given");
    let err = fit_batch_law(&good_runs(), &[]).unwrap_err();
    assert!(matches!(err, BatchLawError::NoTargets));
}

#[test]
fn bad_batch_size_or_params() {
    let mut runs = good_runs();
    runs[2].batch_tokens = -1.0;
    let err = fit_batch_law(&runs, &TARGETS).unwrap_err();
    assert!(matches!(
        err,
        BatchLawError::BadRun {
            run: 2,
            problem: PointProblem::NonPositive {
                field: "batch_tokens",
                ..
            },
            ..
        }
    ));
    assert_eq!(
        one_line(&err),
        "run 2 (size '9M'): batch_tokens must be positive, got -1"
    );

    let mut runs = good_runs();
    runs[7].params = f64::NAN;
    let err = fit_batch_law(&runs, &TARGETS).unwrap_err();
    assert_eq!(
        one_line(&err),
        "run 7 (size '30M'): params is not finite (NaN)"
    );
}

#[test]
fn bad_curve_points() {
    let mut runs = good_runs();
    runs[0].curve[3].1 = f64::NAN;
    let err = fit_batch_law(&runs, &TARGETS).unwrap_err();
    assert!(matches!(
        err,
        BatchLawError::BadCurvePoint {
            run: 0,
            point: 3,
            problem: PointProblem::NonFinite { field: "loss", .. },
            ..
        }
    ));
    assert_eq!(
        one_line(&err),
        "run 0 (size '9M', batch 32768 tokens): curve point 3: loss is not finite (NaN)"
    );

    let mut runs = good_runs();
    runs[1].curve[0].0 = 0.0;
    let err = fit_batch_law(&runs, &TARGETS).unwrap_err();
    assert!(matches!(
        err,
        BatchLawError::BadCurvePoint {
            run: 1,
            point: 0,
            problem: PointProblem::NonPositive {
                field: "tokens",
                ..
            },
            ..
        }
    ));

    let mut runs = good_runs();
    runs[4].curve[2].0 = runs[4].curve[1].0;
    let err = fit_batch_law(&runs, &TARGETS).unwrap_err();
    assert!(matches!(
        err,
        BatchLawError::CurveNotIncreasing {
            run: 4,
            point: 2,
            ..
        }
    ));

    let mut runs = good_runs();
    runs[5].curve.clear();
    let err = fit_batch_law(&runs, &TARGETS).unwrap_err();
    assert!(matches!(err, BatchLawError::EmptyCurve { run: 5, .. }));
}

#[test]
fn bad_targets() {
    let err = fit_batch_law(&good_runs(), &[3.8, 0.0]).unwrap_err();
    assert!(matches!(
        err,
        BatchLawError::BadTarget {
            index: 1,
            problem: PointProblem::NonPositive { .. }
        }
    ));
    assert_eq!(
        one_line(&err),
        "target 1: target loss must be positive, got 0"
    );
    let err = fit_batch_law(&good_runs(), &[f64::NAN]).unwrap_err();
    assert!(matches!(err, BatchLawError::BadTarget { index: 0, .. }));
    let err = fit_batch_law(&good_runs(), &[3.8, 3.6, 3.8]).unwrap_err();
    assert!(matches!(
        err,
        BatchLawError::DuplicateTarget {
            index: 2,
            first: 0,
            ..
        }
    ));
}

#[test]
fn inconsistent_params_within_a_size() {
    let mut runs = good_runs();
    runs[3].params = 1e7;
    let err = fit_batch_law(&runs, &TARGETS).unwrap_err();
    assert_eq!(
        one_line(&err),
        "size '9M': runs disagree on the parameter count (9000000 vs 10000000)"
    );
}

#[test]
fn too_few_batch_sizes_for_a_size() {
    // The 30M size keeps only two batch sizes (one of them twice).
    let mut runs = good_runs();
    runs.retain(|r| r.size_label != "30M" || r.batch_tokens < 2e5);
    let extra = runs.iter().find(|r| r.size_label == "30M").unwrap().clone();
    runs.push(extra);
    let err = fit_batch_law(&runs, &TARGETS).unwrap_err();
    assert!(matches!(
        err,
        BatchLawError::TooFewBatchSizes {
            needed: 3,
            got: 2,
            ..
        }
    ));
    assert_eq!(
        one_line(&err),
        "size '30M' has 2 distinct batch sizes; a parabola needs at least 3"
    );
}

#[test]
fn no_target_reached() {
    let err = fit_batch_law(&good_runs(), &[2.0, 2.5]).unwrap_err();
    assert!(matches!(err, BatchLawError::NoTargetReached { needed: 3 }));
    assert_eq!(
        one_line(&err),
        "no target loss was reached by runs of at least 3 distinct batch sizes of any one model size"
    );
}

#[test]
fn too_few_optima_for_the_law() {
    // The 9M size alone reaches 3.8 and 3.6 but not 3.0: two optima.
    let runs: Vec<BatchRun> = good_runs()
        .into_iter()
        .filter(|r| r.size_label == "9M")
        .collect();
    let err = fit_batch_law(&runs, &[3.8, 3.6, 3.0]).unwrap_err();
    assert!(matches!(
        err,
        BatchLawError::TooFewOptima {
            needed: 3,
            got: 2,
            ..
        }
    ));
    assert_eq!(
        one_line(&err),
        "the batch-size law needs at least 3 optimum points, got 2 (of 3 (size, target) pairs, \
         2 usable, 1 reached by fewer than 3 batch sizes)"
    );
}

#[test]
fn one_target_leaves_the_slope_undefined() {
    // Three sizes, one target: three optima at the same loss.
    let err = fit_batch_law(&good_runs(), &[3.8]).unwrap_err();
    assert!(matches!(
        err,
        BatchLawError::TooFewDistinct {
            of: "losses",
            needed: 2,
            got: 1,
            ..
        }
    ));
    assert_eq!(
        one_line(&err),
        "fitting bs_opt = a / L^b needs at least 2 distinct losses, got 1"
    );
}

#[test]
fn direct_fits_reject_bad_points() {
    let err = fit_log_parabola(&[(1e5, 1e9), (2e5, 1e9), (2e5, 1.1e9), (1e5, 1.2e9)]).unwrap_err();
    assert_eq!(
        one_line(&err),
        "fitting the batch parabola needs at least 3 distinct batch sizes, got 2"
    );
    let err = fit_log_parabola(&[(1e5, 1e9), (2e5, f64::INFINITY), (4e5, 1e9)]).unwrap_err();
    assert_eq!(
        one_line(&err),
        "fitting the batch parabola: point 1: tokens is not finite (inf)"
    );
    let err = fit_power_law(&[(3.0, 1e6), (2.9, 1.2e6)]).unwrap_err();
    assert_eq!(
        one_line(&err),
        "fitting bs_opt = a / L^b needs at least 3 points, got 2"
    );
    let err = fit_power_law(&[(3.0, 1e6), (-2.9, 1.2e6), (2.8, 1.5e6)]).unwrap_err();
    assert!(matches!(
        err,
        BatchLawError::BadPoint {
            index: 1,
            problem: PointProblem::NonPositive { field: "loss", .. },
            ..
        }
    ));
}
