//! Iso-FLOP profiles (Chinchilla's second approach) read straight from a study's points: at a
//! fixed compute C, each model size that was trained on about C / 6N tokens gives one loss, and a
//! parabola through (N, loss) in log space puts the compute-optimal size at its minimum. Unlike
//! the fitted law this assumes no functional form for L(N, D), so when the two disagree the law's
//! extrapolation is the suspect; and it only reports an optimum that the sizes bracket.
//!
//! A WSD study measures each size at a handful of data sizes (its decay branches), not at the
//! exact C / 6N of every budget, so the loss at that token count is interpolated between the two
//! nearest branches, linearly in log tokens and log loss (exact for a pure power law in D), and
//! never extrapolated: a size counts at a budget only if its branches cover C / 6N.

use serde::{Deserialize, Serialize};

use super::point::Point;
use crate::log_parabola::{self, ParabolaShape, MIN_DISTINCT_X};
use crate::plot::{Chart, Series};

/// A parabola needs three sizes at the same budget.
pub const ISO_FLOP_MIN_SIZES: usize = MIN_DISTINCT_X;

/// One model size at one budget. Units: `n` in parameters, `d` in tokens, `loss` as measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IsoFlopPoint {
    pub n: f64,
    /// C / 6n: the tokens this size trains on at the budget.
    pub d: f64,
    /// Interpolated between the size's two nearest measurements (or measured, when one is at d).
    pub loss: f64,
}

/// The parabola's minimum, when it lies among the sizes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IsoFlopOptimum {
    pub n: f64,
    pub d: f64,
    /// d / n.
    pub tokens_per_param: f64,
    /// The parabola's loss at the minimum.
    pub loss: f64,
}

/// Every size that covers one budget, and where the loss is lowest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsoFlopProfile {
    /// Training compute in FLOPs (C = 6ND).
    pub flops: f64,
    /// The sizes whose measurements cover C / 6N, smallest first.
    pub sizes: Vec<IsoFlopPoint>,
    /// The size with the lowest loss among `sizes`, read without any fit.
    pub best_measured: IsoFlopPoint,
    /// Where the parabola through the sizes has its minimum, if anywhere.
    pub shape: ParabolaShape,
    /// Present only when the minimum lies within the sizes (`shape` is interior).
    pub optimum: Option<IsoFlopOptimum>,
}

/// Budgets (FLOPs) on a grid of `per_decade` steps per decade at which at least
/// [`ISO_FLOP_MIN_SIZES`] sizes' measurements cover C / 6N; the points must be valid (finite,
/// positive).
pub fn covered_budgets(points: &[Point], per_decade: usize) -> Vec<f64> {
    let ranges: Vec<(f64, f64)> = by_size(points)
        .iter()
        .map(|(n, curve)| (6.0 * n * curve[0].0, 6.0 * n * curve[curve.len() - 1].0))
        .collect();
    let (Some(lo), Some(hi)) = (
        ranges.iter().map(|r| r.0).min_by(f64::total_cmp),
        ranges.iter().map(|r| r.1).max_by(f64::total_cmp),
    ) else {
        return Vec::new();
    };
    let step = 1.0 / per_decade.max(1) as f64;
    let first = (lo.log10() / step).ceil() as i64;
    let last = (hi.log10() / step).floor() as i64;
    (first..=last)
        .map(|k| 10f64.powf(k as f64 * step))
        .filter(|&c| {
            let covering = ranges
                .iter()
                .filter(|(a, b)| *a <= c * (1.0 + 1e-12) && c <= *b * (1.0 + 1e-12))
                .count();
            covering >= ISO_FLOP_MIN_SIZES
        })
        .collect()
}

/// The profile at each of `budgets` (FLOPs) that at least [`ISO_FLOP_MIN_SIZES`] sizes cover;
/// budgets with fewer are left out. The points must be valid (finite, positive); sizes are told
/// apart by their exact parameter count.
pub fn iso_flop_profiles(points: &[Point], budgets: &[f64]) -> Vec<IsoFlopProfile> {
    let sizes = by_size(points);
    budgets
        .iter()
        .filter_map(|&flops| profile(&sizes, flops))
        .collect()
}

fn profile(sizes: &[(f64, Vec<(f64, f64)>)], flops: f64) -> Option<IsoFlopProfile> {
    let covering: Vec<IsoFlopPoint> = sizes
        .iter()
        .filter_map(|(n, curve)| {
            let d = flops / (6.0 * n);
            loss_at(curve, d).map(|loss| IsoFlopPoint { n: *n, d, loss })
        })
        .collect();
    if covering.len() < ISO_FLOP_MIN_SIZES {
        return None;
    }
    let best_measured = *covering.iter().min_by(|a, b| a.loss.total_cmp(&b.loss))?;
    let xy: Vec<(f64, f64)> = covering.iter().map(|p| (p.n, p.loss)).collect();
    let parabola = log_parabola::fit(&xy);
    let optimum = match (parabola.shape, parabola.vertex) {
        (ParabolaShape::Interior, Some((n, loss))) => Some(IsoFlopOptimum {
            n,
            d: flops / (6.0 * n),
            tokens_per_param: flops / (6.0 * n * n),
            loss,
        }),
        _ => None,
    };
    Some(IsoFlopProfile {
        flops,
        sizes: covering,
        best_measured,
        shape: parabola.shape,
        optimum,
    })
}

/// Loss against model size at each budget (Chinchilla's figure 3, left), one line per budget
/// through the sizes that cover it, with each bracketed parabola minimum marked.
pub fn iso_flop_chart(profiles: &[IsoFlopProfile], loss_label: &str) -> Chart {
    let mut series: Vec<Series> = profiles
        .iter()
        .enumerate()
        .map(|(i, p)| Series {
            markers: true,
            ..Series::line(
                format!("C = {:.1e} FLOPs", p.flops),
                p.sizes.iter().map(|s| (s.n, s.loss)).collect(),
                i,
            )
        })
        .collect();
    let minima: Vec<(f64, f64)> = profiles
        .iter()
        .filter_map(|p| p.optimum.map(|o| (o.n, o.loss)))
        .collect();
    if !minima.is_empty() {
        series.push(Series {
            markers_only: true,
            rgb: Some((0, 0, 0)),
            ..Series::line("parabola minimum", minima, 0)
        });
    }
    Chart {
        title: "Iso-FLOP profiles".into(),
        x_label: "non-embedding parameters".into(),
        y_label: loss_label.into(),
        log_x: true,
        log_y: false,
        series,
    }
}

/// The points grouped by size, smallest first, each size's (tokens, loss) sorted by tokens with
/// repeated token counts (several seeds) merged by their geometric mean loss.
fn by_size(points: &[Point]) -> Vec<(f64, Vec<(f64, f64)>)> {
    let mut sorted: Vec<Point> = points.to_vec();
    sorted.sort_by(|a, b| a.n.total_cmp(&b.n).then(a.d.total_cmp(&b.d)));
    // Per size: (tokens, sum of ln loss, count) while gathering.
    let mut sizes: Vec<(f64, Vec<(f64, f64, f64)>)> = Vec::new();
    for p in sorted {
        if sizes.last().map(|s| s.0) != Some(p.n) {
            sizes.push((p.n, Vec::new()));
        }
        let curve = &mut sizes.last_mut().expect("pushed above").1;
        match curve.last_mut() {
            Some(last) if last.0 == p.d => {
                last.1 += p.loss.ln();
                last.2 += 1.0;
            }
            _ => curve.push((p.d, p.loss.ln(), 1.0)),
        }
    }
    sizes
        .into_iter()
        .map(|(n, curve)| {
            let merged = curve
                .into_iter()
                .map(|(d, ln_sum, count)| (d, (ln_sum / count).exp()))
                .collect();
            (n, merged)
        })
        .collect()
}

/// The loss at `d` tokens on one size's sorted curve, interpolated linearly in (ln d, ln loss)
/// between its neighbours; `None` outside the measured range.
fn loss_at(curve: &[(f64, f64)], d: f64) -> Option<f64> {
    // A relative tolerance so that a budget computed from a measured point lands on it.
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(b.abs());
    if let Some(&(_, loss)) = curve.iter().find(|(di, _)| close(*di, d)) {
        return Some(loss);
    }
    let upper = curve.iter().position(|&(di, _)| di > d)?;
    let (d0, l0) = *curve.get(upper.checked_sub(1)?)?;
    let (d1, l1) = curve[upper];
    let t = (d.ln() - d0.ln()) / (d1.ln() - d0.ln());
    Some(((1.0 - t) * l0.ln() + t * l1.ln()).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_is_exact_for_a_power_law_in_tokens_and_refuses_to_extrapolate() {
        let curve: Vec<(f64, f64)> = [1e5, 2e5, 8e5]
            .iter()
            .map(|&d: &f64| (d, 30.0 * d.powf(-0.25)))
            .collect();
        for d in [1e5, 1.3e5, 2e5, 5e5, 8e5] {
            let got = loss_at(&curve, d).unwrap();
            assert!(
                (got / (30.0 * d.powf(-0.25)) - 1.0).abs() < 1e-12,
                "{d}: {got}"
            );
        }
        assert_eq!(loss_at(&curve, 9.9e4), None);
        assert_eq!(loss_at(&curve, 8.1e5), None);
    }

    #[test]
    fn repeated_token_counts_are_merged_by_geometric_mean() {
        let points = [
            Point::new(10.0, 100.0, 2.0),
            Point::new(10.0, 100.0, 8.0),
            Point::new(10.0, 50.0, 3.0),
            Point::new(20.0, 100.0, 1.0),
        ];
        let sizes = by_size(&points);
        assert_eq!(sizes.len(), 2);
        assert_eq!(sizes[0].0, 10.0);
        assert_eq!(sizes[0].1.len(), 2);
        assert!((sizes[0].1[0].1 - 3.0).abs() < 1e-12);
        assert!((sizes[0].1[1].1 - 4.0).abs() < 1e-12);
        assert_eq!(sizes[1].1, vec![(100.0, 1.0)]);
    }
}
