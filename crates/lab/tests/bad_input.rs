//! Every kind of unusable input gives a specific, one-line error naming what was wrong.

use std::io::Cursor;
use std::path::Path;

use minicpm_lab::scaling::{
    allocate, fit_envelope, fit_law, parse_points, read_points, CsvFormat, CurvePoint, FitConfig,
    LawParams, Point, PointProblem, ScalingError, StartGrid,
};

/// A small grid keeps these fits instant; the inputs are rejected before it matters anyway.
fn quick() -> FitConfig {
    FitConfig {
        grid: StartGrid {
            alpha: vec![0.5],
            beta: vec![0.5],
            e: vec![0.5],
            a: vec![5.0],
            b: vec![5.0],
        },
        ..FitConfig::default()
    }
}

/// Six points on the law E = 2, A = 100, B = 300, alpha = beta = 0.3.
fn good_points() -> Vec<Point> {
    (0..6)
        .map(|i| {
            let n = 1e8 * (i + 1) as f64;
            let d = 2e9 * (6 - i) as f64;
            Point::new(n, d, 2.0 + 100.0 / n.powf(0.3) + 300.0 / d.powf(0.3))
        })
        .collect()
}

fn parse(text: &str) -> Result<Vec<Point>, ScalingError> {
    parse_points(Cursor::new(text), Path::new("runs.csv"), None)
}

/// The law `good_points` are drawn from, exactly.
const GOOD_LAW: LawParams = LawParams {
    e: 2.0,
    a: 100.0,
    b: 300.0,
    alpha: 0.3,
    beta: 0.3,
};

#[test]
fn good_points_fit() {
    let points = good_points();
    for p in &points {
        assert!((GOOD_LAW.predict(p.n, p.d) - p.loss).abs() < 1e-12);
    }
    // From the single start of the quick grid: six points along one diagonal of (N, D) leave
    // the five parameters loosely tied (A trades off against alpha), but the objective's
    // minimum is zero, so whatever law the fit lands on must pass through every point.
    let fit = fit_law(&points, &quick()).unwrap();
    assert_eq!(
        (fit.n_points, fit.starts, fit.finite_starts, fit.huber_delta),
        (6, 1, 1, 1e-3)
    );
    for p in &points {
        let relative = fit.params.predict(p.n, p.d) / p.loss - 1.0;
        assert!(relative.abs() < 1e-4, "{p:?}: {relative} off with {fit:?}");
    }
    assert!(fit.objective < 1e-8, "{fit:?}");
    // From the full grid of starts, the fit finds the generating law itself.
    let full = fit_law(&points, &FitConfig::default()).unwrap();
    let p = full.params;
    for (name, got, want) in [
        ("E", p.e, GOOD_LAW.e),
        ("A", p.a, GOOD_LAW.a),
        ("B", p.b, GOOD_LAW.b),
        ("alpha", p.alpha, GOOD_LAW.alpha),
        ("beta", p.beta, GOOD_LAW.beta),
    ] {
        assert!((got / want - 1.0).abs() < 1e-5, "{name}: {got} vs {want}");
    }
}

#[test]
fn too_few_points() {
    let err = fit_law(&good_points()[..4], &quick()).unwrap_err();
    assert!(matches!(
        err,
        ScalingError::TooFewPoints {
            needed: 5,
            got: 4,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "fitting L(N, D) needs at least 5 points, got 4"
    );
}

#[test]
fn non_positive_values() {
    for (field, value, edit) in [
        ("params", 0.0, (|p: &mut Point| p.n = 0.0) as fn(&mut Point)),
        ("tokens", -1e9, |p: &mut Point| p.d = -1e9),
        ("loss", 0.0, |p: &mut Point| p.loss = 0.0),
    ] {
        let mut points = good_points();
        edit(&mut points[2]);
        let err = fit_law(&points, &quick()).unwrap_err();
        match &err {
            ScalingError::BadPoint { index: 2, problem } => assert_eq!(
                *problem,
                PointProblem::NonPositive { field, value },
                "{err}"
            ),
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().starts_with("point 2: "), "{err}");
    }
}

#[test]
fn nan_and_infinite_values() {
    for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut points = good_points();
        points[3].loss = value;
        let err = fit_law(&points, &quick()).unwrap_err();
        assert!(
            matches!(
                err,
                ScalingError::BadPoint {
                    index: 3,
                    problem: PointProblem::NonFinite { field: "loss", .. }
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn bad_huber_delta() {
    let config = FitConfig {
        huber_delta: 0.0,
        ..quick()
    };
    let err = fit_law(&good_points(), &config).unwrap_err();
    assert!(matches!(err, ScalingError::InvalidConfig(_)), "{err}");
}

#[test]
fn empty_start_grid() {
    let config = FitConfig {
        grid: StartGrid::empty(),
        ..quick()
    };
    assert!(matches!(
        fit_law(&good_points(), &config),
        Err(ScalingError::InvalidConfig(_))
    ));
}

#[test]
fn csv_native_and_epoch_formats() {
    let native = parse("params,tokens,loss\n1e8,2e9,3.1\n2e8,4e9,2.9\n").expect("parses");
    assert_eq!(
        native,
        vec![Point::new(1e8, 2e9, 3.1), Point::new(2e8, 4e9, 2.9)]
    );

    // Epoch's file: extra columns, tokens from FLOP / (6 N).
    let epoch = parse("x,Model Size,Training FLOP,loss\n1,1e8,1.2e18,3.0\n").expect("parses");
    assert_eq!(epoch.len(), 1);
    assert!((epoch[0].d - 2e9).abs() < 1.0);
    assert_eq!(
        CsvFormat::detect(["Model Size", "loss"]),
        CsvFormat::EpochChinchilla
    );
}

#[test]
fn csv_missing_column() {
    let err = parse("params,loss\n1e8,3.1\n").unwrap_err();
    assert!(
        matches!(&err, ScalingError::MissingColumn { column, .. } if column == "tokens"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "runs.csv: missing column 'tokens' (header has: params,loss)"
    );

    let err = parse("Model Size,loss\n1e8,3.1\n").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("runs.csv: missing column 'Training FLOP'"),
        "{err}"
    );
}

#[test]
fn csv_bad_rows() {
    let err = parse("params,tokens,loss\n1e8,2e9,3.1\n1e8,lots,3.0\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "runs.csv: line 3: column 'tokens': 'lots' is not a number"
    );

    let err = parse("params,tokens,loss\n1e8,2e9,NaN\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "runs.csv: line 2: loss is not finite (NaN)"
    );

    let err = parse("params,tokens,loss\n-5,2e9,3\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "runs.csv: line 2: params must be positive, got -5"
    );

    let err = parse("params,tokens,loss\n1e8,2e9\n").unwrap_err();
    assert!(matches!(err, ScalingError::Csv { .. }), "{err}");
    assert!(
        err.to_string().starts_with("runs.csv: malformed CSV"),
        "{err}"
    );
}

#[test]
fn missing_file() {
    let err = read_points("/nonexistent/points.csv").unwrap_err();
    assert!(matches!(err, ScalingError::Io { .. }));
    assert!(err
        .to_string()
        .starts_with("/nonexistent/points.csv: cannot read"));
}

#[test]
fn envelope_bad_input() {
    let pts: Vec<CurvePoint> = (1..=3)
        .map(|i| CurvePoint {
            compute: 1e18 * i as f64,
            loss: 3.0 / i as f64,
        })
        .collect();
    assert!(matches!(
        fit_envelope(&pts),
        Err(ScalingError::TooFewPoints {
            needed: 4,
            got: 3,
            ..
        })
    ));
    let mut more = pts.clone();
    more.push(CurvePoint {
        compute: -1.0,
        loss: 1.0,
    });
    assert!(matches!(
        fit_envelope(&more),
        Err(ScalingError::BadPoint { index: 3, .. })
    ));
}

#[test]
fn allocation_needs_positive_exponents_and_budgets() {
    let law = LawParams {
        e: 1.7,
        a: 400.0,
        b: 1500.0,
        alpha: 0.0,
        beta: 0.3,
    };
    assert!(matches!(
        allocate(&law, &[1e20]),
        Err(ScalingError::InvalidConfig(_))
    ));
    let law = LawParams { alpha: 0.3, ..law };
    assert!(matches!(
        allocate(&law, &[f64::NAN]),
        Err(ScalingError::InvalidConfig(_))
    ));
    assert!(allocate(&law, &[1e20]).is_ok());
}
