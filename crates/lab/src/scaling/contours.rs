//! The picture of a fitted law that Hoffmann et al. (2022, Fig. 4) and Besiroglu et al. (2024,
//! Fig. 1) draw: training compute C = 6ND across, model size N up, both logarithmic; lines of
//! equal predicted loss L(N, C / (6N)); the efficient frontier N_opt(C) through their leftmost
//! points; and the measured runs on top, so one sees at once where the runs sit relative to the
//! optimum and how well the law's contours follow them.
//!
//! Each contour is one line: the level's small-model branch from the right edge in to the
//! frontier, then its large-model branch back out. On a contour every N has a single C (for a
//! fixed model more data only lowers the loss), so ordering a contour's points by N is ordering
//! them along the curve, and clipping it to the window keeps one unbroken piece.

use std::path::{Path, PathBuf};

use super::allocation::allocate;
use super::error::ScalingError;
use super::iso_loss::{compute_at_size, compute_to_reach, frontier, frontier_loss, iso_loss_n};
use super::law::LawParams;
use super::point::{validate, Point};
use crate::number_format::coefficient;
use crate::plot::{self, Chart, PlotError, Series};

/// Contour levels [`render_contours`] draws: enough to read the surface, few enough to label.
pub const CONTOUR_LEVELS: usize = 8;

/// Compute samples per contour across the FLOP range (evenly spaced in log C).
const GRID: usize = 200;

/// Extra samples just right of each contour's leftmost point, where its two branches part as
/// the square root of the distance and an even grid would leave a visible corner.
const VERTEX_SAMPLES: usize = 24;

/// How far the window extends above and below the frontier (and the runs), as a factor on N.
const SIZE_MARGIN: f64 = 10.0;

/// Colours of the levels, lowest loss first: viridis, stopped before its pale yellow end, which
/// would vanish on white. A sequential map makes the order of the levels visible without the
/// legend.
const VIRIDIS_END: f64 = 0.85;

/// Why a contour plot cannot be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ContourError {
    /// The law or a point is unusable (the same one-line errors as the fit's).
    #[error(transparent)]
    Scaling(#[from] ScalingError),
    #[error("FLOP range {lo:e}..{hi:e}: {why}")]
    BadFlopsRange { lo: f64, hi: f64, why: &'static str },
    #[error("no loss levels to draw")]
    NoLevels,
    /// A requested level draws nothing in the window. Refused rather than left out: a legend
    /// entry without a line, or a silently missing level, would misreport the figure.
    #[error(
        "loss level {level} has no contour in the plotted window (its losses span {lowest:.4} to {highest:.4})"
    )]
    LevelOutsideWindow {
        level: f64,
        lowest: f64,
        highest: f64,
    },
    /// The law's optimum barely moves over the FLOP range, so no distinct levels can be chosen.
    #[error(
        "the frontier's loss only spans {lowest} to {highest} over the FLOP range: too flat for distinct contour levels"
    )]
    FlatLaw { lowest: f64, highest: f64 },
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// Draws the contour plot of `law` over `flops_range` (FLOPs, low to high) with the runs in
/// `points` whose C = 6ND falls inside it, at [`CONTOUR_LEVELS`] levels from
/// [`contour_levels`]. Writes `<stem>.png` and `<stem>.svg` and returns their paths.
pub fn render_contours(
    law: &LawParams,
    points: &[Point],
    flops_range: (f64, f64),
    stem: &Path,
) -> Result<Vec<PathBuf>, ContourError> {
    let levels = contour_levels(law, flops_range, CONTOUR_LEVELS)?;
    let chart = contour_chart(law, points, flops_range, &levels)?;
    Ok(plot::render(&chart, stem)?)
}

/// `count` loss levels, ascending, spread over the losses the window shows where it matters:
/// the frontier's loss at `count` budgets evenly spaced in log C across the range. The
/// frontier's reducible loss is a power law in C, so these are evenly spaced in log(L - E) and
/// each contour's leftmost point lands at its own evenly spaced C: the contours tile the figure
/// instead of crowding near E. Levels are rounded to the fewest decimals (at least two) that
/// keep them distinct and strictly inside the frontier's loss range, so the legend reads
/// "L = 2.10" and means exactly that.
pub fn contour_levels(
    law: &LawParams,
    flops_range: (f64, f64),
    count: usize,
) -> Result<Vec<f64>, ContourError> {
    check(law, flops_range)?;
    if count == 0 {
        return Err(ContourError::NoLevels);
    }
    let (lo, hi) = (flops_range.0.ln(), flops_range.1.ln());
    let raw: Vec<f64> = (0..count)
        .rev()
        .map(|i| {
            frontier_loss(
                law,
                (lo + (hi - lo) * (i as f64 + 0.5) / count as f64).exp(),
            )
        })
        .collect();
    let (lowest, highest) = (
        frontier_loss(law, flops_range.1),
        frontier_loss(law, flops_range.0),
    );
    (2..=9)
        .map(|decimals| {
            let scale = 10f64.powi(decimals);
            raw.iter()
                .map(|l| (l * scale).round() / scale)
                .collect::<Vec<f64>>()
        })
        .find(|levels| {
            levels.windows(2).all(|w| w[0] < w[1])
                && levels[0] > lowest
                && levels[levels.len() - 1] < highest
        })
        .ok_or(ContourError::FlatLaw { lowest, highest })
}

/// The chart [`render_contours`] draws, at the given `levels` (in any order). Every level must
/// have a contour inside the window, or this is [`ContourError::LevelOutsideWindow`].
///
/// The runs are coloured as the contour level nearest their measured loss, with one legend
/// entry for all of them: a run whose colour matches the contours around it is predicted well,
/// one that does not shows its residual at a glance, which a single colour cannot. Runs whose
/// C = 6ND lies outside the FLOP range are left out (the legend counts them).
pub fn contour_chart(
    law: &LawParams,
    points: &[Point],
    flops_range: (f64, f64),
    levels: &[f64],
) -> Result<Chart, ContourError> {
    check(law, flops_range)?;
    validate(points, 0, "a contour plot")?;
    if levels.is_empty() {
        return Err(ContourError::NoLevels);
    }
    let mut levels = levels.to_vec();
    levels.sort_by(f64::total_cmp);
    let (lo, hi) = flops_range;
    let shown: Vec<Point> = points
        .iter()
        .filter(|p| (lo..=hi).contains(&(6.0 * p.n * p.d)))
        .copied()
        .collect();
    let window = Window::new(law, &shown, flops_range);
    let colours: Vec<(u8, u8, u8)> = (0..levels.len())
        .map(|i| level_colour(i, levels.len()))
        .collect();

    let mut series = Vec::new();
    for ((level, label), &rgb) in levels.iter().zip(level_labels(&levels)).zip(&colours) {
        let path = contour_path(law, *level, &window);
        if path.len() < 2 {
            let (lowest, highest) = window.loss_range(law);
            return Err(ContourError::LevelOutsideWindow {
                level: *level,
                lowest,
                highest,
            });
        }
        series.push(Series {
            rgb: Some(rgb),
            ..Series::line(format!("L = {label}"), path, 0)
        });
    }

    let n_exponent = law.beta / (law.alpha + law.beta);
    let g = frontier(law, 6.0); // N_opt at C/6 = 1: the frontier's coefficient
    series.push(Series {
        dashed: true,
        rgb: Some((0, 0, 0)),
        ..Series::line(
            format!(
                "efficient frontier N_opt = {} (C/6)^{n_exponent:.3}",
                coefficient(g)
            ),
            log_grid(flops_range, 32)
                .map(|c| (c, frontier(law, c)))
                .collect(),
            0,
        )
    });

    if !points.is_empty() {
        for (i, &rgb) in colours.iter().enumerate() {
            let bucket: Vec<(f64, f64)> = shown
                .iter()
                .filter(|p| nearest(&levels, p.loss) == i)
                .map(|p| (6.0 * p.n * p.d, p.n))
                .collect();
            if !bucket.is_empty() {
                series.push(Series {
                    markers_only: true,
                    in_legend: false,
                    rgb: Some(rgb),
                    ..Series::line("", bucket, 0)
                });
            }
        }
        let hidden = points.len() - shown.len();
        let note = if hidden > 0 {
            format!(", {hidden} outside the FLOP range not shown")
        } else {
            String::new()
        };
        series.push(Series {
            markers_only: true,
            rgb: Some((127, 127, 127)),
            ..Series::line(
                format!("{} runs, coloured as the nearest level{note}", shown.len()),
                Vec::new(),
                0,
            )
        });
    }

    Ok(Chart {
        title: format!(
            "Iso-loss contours: L = {} + {}/N^{:.3} + {}/D^{:.3}",
            coefficient(law.e),
            coefficient(law.a),
            law.alpha,
            coefficient(law.b),
            law.beta
        ),
        x_label: "training compute C = 6ND (FLOPs)".into(),
        y_label: "model size N (parameters)".into(),
        log_x: true,
        log_y: true,
        series,
    })
}

/// The plotted region: the FLOP range across; up the frontier's sizes over that range and the
/// shown runs' sizes, widened by [`SIZE_MARGIN`] each way so the contours' branches show.
struct Window {
    flops: (f64, f64),
    params: (f64, f64),
}

impl Window {
    fn new(law: &LawParams, shown: &[Point], flops: (f64, f64)) -> Self {
        let sizes = shown.iter().map(|p| p.n);
        let smallest = sizes.clone().fold(frontier(law, flops.0), f64::min);
        let largest = sizes.fold(frontier(law, flops.1), f64::max);
        Window {
            flops,
            params: (smallest / SIZE_MARGIN, largest * SIZE_MARGIN),
        }
    }

    fn contains(&self, (c, n): (f64, f64)) -> bool {
        (self.flops.0..=self.flops.1).contains(&c) && (self.params.0..=self.params.1).contains(&n)
    }

    /// The lowest and highest predicted loss inside the window. Loss falls with C at fixed N,
    /// and along an iso-FLOP line it is convex in log N, so the highest is at a left corner and
    /// the lowest on the right edge, at N_opt or the nearer corner.
    fn loss_range(&self, law: &LawParams) -> (f64, f64) {
        let at = |c: f64, n: f64| law.predict(n, c / (6.0 * n));
        let (c0, c1) = self.flops;
        let (n0, n1) = self.params;
        let n_opt = frontier(law, c1).clamp(n0, n1);
        (at(c1, n_opt), at(c0, n0).max(at(c0, n1)))
    }
}

/// One level's contour inside the window, ordered along the curve (by N): both branches on a
/// log grid of C, its leftmost point, and where it leaves through the top or bottom edge.
fn contour_path(law: &LawParams, level: f64, window: &Window) -> Vec<(f64, f64)> {
    let (lo, hi) = window.flops;
    let mut flops: Vec<f64> = log_grid(window.flops, GRID).collect();
    let mut path = Vec::new();
    if let Some(leftmost) = compute_to_reach(law, level) {
        path.push((leftmost, frontier(law, leftmost)));
        let reach = (hi / lo).ln() / 8.0;
        flops.extend(
            (1..=VERTEX_SAMPLES)
                .map(|j| (leftmost.ln() + reach * (j as f64 / VERTEX_SAMPLES as f64).powi(2)).exp())
                .filter(|c| (lo..=hi).contains(c)),
        );
    }
    for c in flops {
        path.extend(iso_loss_n(law, level, c).into_iter().map(|n| (c, n)));
    }
    for edge in [window.params.0, window.params.1] {
        if let Some(c) = compute_at_size(law, level, edge) {
            path.push((c, edge));
        }
    }
    path.retain(|&p| window.contains(p));
    path.sort_by(|a, b| a.1.total_cmp(&b.1));
    path
}

/// `count + 1` budgets from `range.0` to `range.1` inclusive, evenly spaced in log C, with the
/// ends exact so they survive the window's bounds check.
fn log_grid(range: (f64, f64), count: usize) -> impl Iterator<Item = f64> {
    let (lo, hi) = (range.0.ln(), range.1.ln());
    (0..=count).map(move |i| match i {
        0 => range.0,
        i if i == count => range.1,
        i => (lo + (hi - lo) * i as f64 / count as f64).exp(),
    })
}

/// Index of the level nearest `loss`.
fn nearest(levels: &[f64], loss: f64) -> usize {
    (0..levels.len())
        .min_by(|&i, &j| {
            (levels[i] - loss)
                .abs()
                .total_cmp(&(levels[j] - loss).abs())
        })
        .unwrap_or(0)
}

/// The levels as the legend writes them: the fewest decimals (at least two) that give each its
/// exact value back and tell them apart.
fn level_labels(levels: &[f64]) -> Vec<String> {
    (2..=9usize)
        .map(|d| {
            levels
                .iter()
                .map(|l| format!("{l:.d$}"))
                .collect::<Vec<_>>()
        })
        .find(|labels| {
            let exact = labels.iter().zip(levels).all(|(t, l)| {
                t.parse::<f64>()
                    .is_ok_and(|v| (v - l).abs() <= 1e-12 * l.abs())
            });
            exact && labels.windows(2).all(|w| w[0] != w[1])
        })
        .unwrap_or_else(|| levels.iter().map(|l| l.to_string()).collect())
}

/// Colour of level `i` of `count`, lowest loss darkest.
fn level_colour(i: usize, count: usize) -> (u8, u8, u8) {
    let t = if count > 1 {
        VIRIDIS_END * i as f64 / (count - 1) as f64
    } else {
        VIRIDIS_END / 2.0
    };
    plot::viridis(t)
}

/// A law the contours can be drawn for (what `allocate` needs, and a finite E) and a FLOP range
/// that is one.
fn check(law: &LawParams, (lo, hi): (f64, f64)) -> Result<(), ContourError> {
    allocate(law, &[])?;
    if !law.e.is_finite() {
        return Err(ScalingError::InvalidConfig(format!(
            "no contours: E is not finite ({})",
            law.e
        ))
        .into());
    }
    let bad = |why| Err(ContourError::BadFlopsRange { lo, hi, why });
    if !(lo.is_finite() && hi.is_finite() && lo > 0.0) {
        return bad("both ends must be finite and positive");
    }
    if lo >= hi {
        return bad("the low end must be below the high end");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::scaling::law::CHINCHILLA_REFIT as CHINCHILLA;
    const RANGE: (f64, f64) = (1e18, 1e24);

    /// Runs on a grid of sizes and budgets, with the law's own loss scaled by `1 + noise_k`.
    fn runs(law: &LawParams) -> Vec<Point> {
        let mut points = Vec::new();
        for (i, n) in [4e7, 1.6e8, 6.4e8, 2.6e9, 1e10].into_iter().enumerate() {
            for (j, c) in [1e18, 1e19, 1e20, 1e21, 1e22].into_iter().enumerate() {
                let d = c / (6.0 * n);
                let wobble = 1.0 + 0.01 * (((i * 5 + j) % 3) as f64 - 1.0);
                points.push(Point::new(n, d, law.predict(n, d) * wobble));
            }
        }
        points
    }

    #[test]
    fn levels_are_rounded_distinct_and_inside_the_frontier_range() {
        let levels = contour_levels(&CHINCHILLA, RANGE, CONTOUR_LEVELS).unwrap();
        assert_eq!(levels.len(), CONTOUR_LEVELS);
        let lowest = frontier_loss(&CHINCHILLA, RANGE.1);
        let highest = frontier_loss(&CHINCHILLA, RANGE.0);
        assert!(levels[0] > lowest && levels[CONTOUR_LEVELS - 1] < highest);
        assert!(levels.windows(2).all(|w| w[0] < w[1]), "{levels:?}");
        for l in &levels {
            assert!(((l * 100.0).round() / 100.0 - l).abs() < 1e-12, "{l}");
        }
        // Evenly spread in log C: each level's leftmost point is ~0.75 decades from the next.
        let lefts: Vec<f64> = levels
            .iter()
            .map(|l| compute_to_reach(&CHINCHILLA, *l).unwrap().log10())
            .collect();
        for w in lefts.windows(2) {
            assert!((0.5..1.0).contains(&(w[0] - w[1])), "{lefts:?}");
        }
    }

    #[test]
    fn every_contour_point_is_on_its_level_inside_the_window() {
        let levels = contour_levels(&CHINCHILLA, RANGE, CONTOUR_LEVELS).unwrap();
        let chart = contour_chart(&CHINCHILLA, &runs(&CHINCHILLA), RANGE, &levels).unwrap();
        for (series, level) in chart.series.iter().zip(&levels) {
            assert!(series.label.starts_with("L = "), "{}", series.label);
            assert!(series.points.len() > 20, "{}", series.label);
            let (mut below, mut above) = (false, false);
            for w in series.points.windows(2) {
                assert!(w[0].1 <= w[1].1, "{}: not ordered by N", series.label);
            }
            for &(c, n) in &series.points {
                let loss = CHINCHILLA.predict(n, c / (6.0 * n));
                assert!((loss - level).abs() <= 1e-9 * level, "{c:e} {n:e}: {loss}");
                assert!((RANGE.0..=RANGE.1).contains(&c));
                let n_opt = frontier(&CHINCHILLA, c);
                below |= n < n_opt * (1.0 - 1e-9);
                above |= n > n_opt * (1.0 + 1e-9);
            }
            assert!(below && above, "{}: one branch missing", series.label);
        }
        let front = &chart.series[levels.len()];
        assert!(front.dashed && front.label.starts_with("efficient frontier"));
        for &(c, n) in &front.points {
            assert_eq!(n, frontier(&CHINCHILLA, c));
        }
    }

    #[test]
    fn runs_take_the_colour_of_the_nearest_level() {
        let levels = [2.0, 2.5, 3.0];
        let points = [
            Point::new(1e9, 2e10, 2.45),
            Point::new(1e8, 2e9, 3.9),
            // C = 6e16, below the range: left out and counted.
            Point::new(1e6, 1e10, 4.0),
        ];
        let chart = contour_chart(&CHINCHILLA, &points, RANGE, &levels).unwrap();
        let colour_of = |x: f64| {
            chart
                .series
                .iter()
                .find(|s| s.markers_only && s.points.iter().any(|p| p.0 == x))
                .and_then(|s| s.rgb)
        };
        assert_eq!(colour_of(1.2e20), chart.series[1].rgb);
        assert_eq!(colour_of(1.2e18), chart.series[2].rgb);
        assert_eq!(colour_of(6e16), None);
        let legend: Vec<&str> = chart
            .series
            .iter()
            .filter(|s| s.in_legend)
            .map(|s| s.label.as_str())
            .collect();
        assert_eq!(legend.len(), 5, "{legend:?}");
        assert!(legend[4].starts_with("2 runs") && legend[4].contains("1 outside"));
    }

    #[test]
    fn renders_a_png_and_an_svg_with_axes_and_legend() {
        let dir = tempfile::tempdir().unwrap();
        let files = render_contours(
            &CHINCHILLA,
            &runs(&CHINCHILLA),
            RANGE,
            &dir.path().join("c"),
        )
        .unwrap();
        assert_eq!(files.len(), 2);
        let png = std::fs::read(&files[0]).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert!(png.len() > 10_000, "{} bytes", png.len());
        let svg = std::fs::read_to_string(&files[1]).unwrap();
        let levels = contour_levels(&CHINCHILLA, RANGE, CONTOUR_LEVELS).unwrap();
        let mut texts = vec![
            "training compute C = 6ND (FLOPs)".to_string(),
            "model size N (parameters)".into(),
            "efficient frontier".into(),
            "25 runs, coloured as the nearest level".into(),
        ];
        texts.extend(level_labels(&levels).iter().map(|l| format!("L = {l}")));
        for text in texts {
            assert!(svg.contains(&text), "{text} missing from the SVG");
        }
        assert!(svg.matches("<circle").count() >= 25);
    }

    #[test]
    fn levels_outside_the_window_are_refused() {
        // Below the loss the largest budget reaches, and above anything the window shows.
        for level in [1.9, 1e3] {
            let err = contour_chart(&CHINCHILLA, &[], RANGE, &[2.5, level]).unwrap_err();
            assert!(
                matches!(err, ContourError::LevelOutsideWindow { level: l, .. } if l == level),
                "{err}"
            );
            assert!(!err.to_string().contains('\n'));
        }
        assert!(matches!(
            contour_chart(&CHINCHILLA, &[], RANGE, &[]),
            Err(ContourError::NoLevels)
        ));
        // A law whose optimum does not move over the range has no levels to spread, and no
        // files are written for it.
        let flat = LawParams {
            a: 1e-300,
            b: 1e-300,
            ..CHINCHILLA
        };
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("flat");
        let err = render_contours(&flat, &[], RANGE, &stem).unwrap_err();
        assert!(matches!(err, ContourError::FlatLaw { .. }), "{err}");
        assert!(!stem.with_extension("png").exists());
    }

    #[test]
    fn bad_laws_ranges_and_points_are_one_line_errors() {
        let no_slope = LawParams {
            alpha: 0.0,
            ..CHINCHILLA
        };
        let bad_point = [Point::new(1e9, -1.0, 2.0)];
        for err in [
            contour_levels(&no_slope, RANGE, 4).unwrap_err(),
            contour_levels(&CHINCHILLA, (1e24, 1e18), 4).unwrap_err(),
            contour_levels(&CHINCHILLA, (0.0, 1e18), 4).unwrap_err(),
            contour_levels(&CHINCHILLA, RANGE, 0).unwrap_err(),
            contour_chart(&CHINCHILLA, &bad_point, RANGE, &[2.5]).unwrap_err(),
        ] {
            let text = err.to_string();
            assert!(!text.is_empty() && !text.contains('\n'), "{text}");
        }
    }

    #[test]
    fn labels_and_colours_read_well() {
        assert_eq!(level_labels(&[2.1, 2.25]), ["2.10", "2.25"]);
        assert_eq!(level_labels(&[2.1234, 2.5]), ["2.1234", "2.5000"]);
        assert_eq!(level_colour(0, 3), (68, 1, 84));
        assert_eq!(nearest(&[2.0, 2.5, 3.0], 2.7), 1);
    }
}
