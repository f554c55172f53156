//! When a run first reaches a target loss: the raw measurement behind every point of the fit.
//!
//! Two choices, both deliberate:
//!
//! * **Interpolation in log tokens.** Between the two evaluations that bracket the crossing, the
//!   loss is taken as linear in ln(tokens), not in tokens. Loss curves fall roughly as a power of
//!   the tokens seen, so over one interval they are far closer to straight in ln(tokens); a chord
//!   in plain tokens lies above such a convex curve and puts the crossing late, most of all where
//!   evaluations are sparse (often early, or for runs evaluated every fixed number of steps,
//!   whose token spacing grows with the batch size). The parabola is fitted to ln(tokens) as well,
//!   so the interpolation and the fit share one scale.
//! * **First crossing, no smoothing.** Curves are noisy, and a dip can cross the target before the
//!   trend does. The paper's quantity is the tokens consumed to reach the loss, which is the first
//!   crossing; a smoothing window would be one more knob, and its shift of the crossing depends on
//!   how noisy each curve is, which differs between batch sizes and would tilt the parabola. A
//!   caller who wants smoothed crossings smooths the curve before handing it over.

use serde::{Deserialize, Serialize};

/// Where a curve first reaches a target loss, or why that cannot be said.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Crossing {
    /// First at or below the target here, in tokens (interpolated, or an evaluation itself).
    Reached { tokens: f64 },
    /// The first evaluation is already below the target: the crossing happened earlier, at an
    /// unknown point, and the first evaluation's tokens would only be an upper bound.
    BeforeFirstEvaluation { first_tokens: f64, first_loss: f64 },
    /// No evaluation is at or below the target; `lowest_loss` is how close the run came
    /// (infinite for an empty curve).
    NeverReached { lowest_loss: f64 },
}

impl Crossing {
    /// The tokens to reach the target, when known.
    pub fn tokens(&self) -> Option<f64> {
        match *self {
            Crossing::Reached { tokens } => Some(tokens),
            _ => None,
        }
    }
}

/// The tokens at which `curve` (pairs of tokens consumed and held-out loss, in increasing order of
/// tokens) first reaches `target`, or `None` when it never does or already had before its first
/// evaluation. See [`find_crossing`] for the method and the reason when there is none.
pub fn tokens_to_reach(curve: &[(f64, f64)], target: f64) -> Option<f64> {
    find_crossing(curve, target).tokens()
}

/// Finds the first evaluation whose loss is at or below `target` and interpolates between it and
/// the evaluation before, linearly in ln(tokens) (see the module notes for why).
///
/// The curve must have positive, finite tokens in strictly increasing order and finite losses;
/// [`super::fit_batch_law`] checks this before calling.
pub fn find_crossing(curve: &[(f64, f64)], target: f64) -> Crossing {
    let Some(first) = curve.iter().position(|&(_, loss)| loss <= target) else {
        let lowest_loss = curve
            .iter()
            .map(|&(_, loss)| loss)
            .fold(f64::INFINITY, f64::min);
        return Crossing::NeverReached { lowest_loss };
    };
    let (t1, l1) = curve[first];
    if l1 == target {
        // Exactly on an evaluation: return its tokens as given, with no round trip through logs.
        return Crossing::Reached { tokens: t1 };
    }
    if first == 0 {
        return Crossing::BeforeFirstEvaluation {
            first_tokens: t1,
            first_loss: l1,
        };
    }
    let (t0, l0) = curve[first - 1];
    // l0 > target > l1, so the fraction lies strictly inside (0, 1).
    let fraction = (l0 - target) / (l0 - l1);
    let tokens = (t0.ln() + fraction * (t1.ln() - t0.ln())).exp();
    Crossing::Reached { tokens }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_in_log_tokens() {
        // Half-way in loss between 100 and 400 tokens is their geometric mean, 200 (not 250).
        let curve = [(100.0, 4.0), (400.0, 3.0), (900.0, 2.5)];
        assert!((tokens_to_reach(&curve, 3.5).unwrap() - 200.0).abs() < 1e-12);
        // A quarter of the way: 100 * 4^0.25 = 100 sqrt(2).
        let quarter = tokens_to_reach(&curve, 3.75).unwrap();
        assert!((quarter - 100.0 * 2f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn exact_hit_returns_the_evaluation() {
        let curve = [(100.0, 4.0), (400.0, 3.0), (900.0, 2.5)];
        assert_eq!(tokens_to_reach(&curve, 3.0), Some(400.0));
        assert_eq!(tokens_to_reach(&curve, 4.0), Some(100.0));
    }

    #[test]
    fn reports_why_there_is_no_crossing() {
        let curve = [(100.0, 4.0), (400.0, 3.0)];
        assert_eq!(
            find_crossing(&curve, 2.0),
            Crossing::NeverReached { lowest_loss: 3.0 }
        );
        assert_eq!(
            find_crossing(&curve, 5.0),
            Crossing::BeforeFirstEvaluation {
                first_tokens: 100.0,
                first_loss: 4.0
            }
        );
        assert_eq!(tokens_to_reach(&[], 3.0), None);
    }
}
