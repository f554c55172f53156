//! The Chinchilla loss law L(N, D) = E + A / N^alpha + B / D^beta and its log parametrisation.

use serde::{Deserialize, Serialize};

/// Parameters of L(N, D) = E + A / N^alpha + B / D^beta, with N in parameters and D in tokens.
///
/// A and B carry those units: the same law written with N and D in billions has
/// A' = A * 1e-9^alpha and B' = B * 1e-9^beta (see [`LawParams::in_billions`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LawParams {
    /// Irreducible loss (the loss of an infinite model on infinite data).
    pub e: f64,
    /// Model-size coefficient.
    pub a: f64,
    /// Data coefficient.
    pub b: f64,
    /// Model-size exponent.
    pub alpha: f64,
    /// Data exponent.
    pub beta: f64,
}

/// Besiroglu et al.'s (2024) refit of Chinchilla's law (docs/MODEL.md section 9), N in parameters
/// and D in tokens: the published reference a fit of the same data must reproduce, and a
/// realistic law for tests.
pub const CHINCHILLA_REFIT: LawParams = LawParams {
    e: 1.8172,
    a: 482.01,
    b: 2085.43,
    alpha: 0.3478,
    beta: 0.3658,
};

impl LawParams {
    /// Predicted loss for `n` parameters trained on `d` tokens.
    pub fn predict(&self, n: f64, d: f64) -> f64 {
        self.e + self.a / n.powf(self.alpha) + self.b / d.powf(self.beta)
    }

    /// The same law with N and D measured in billions, the units MiniCPM reports its fit in.
    pub fn in_billions(&self) -> Self {
        Self {
            a: self.a * 1e9f64.powf(-self.alpha),
            b: self.b * 1e9f64.powf(-self.beta),
            ..*self
        }
    }

    /// The optimiser's coordinates `[ln A, ln B, ln E, alpha, beta]`: logs keep A, B, E positive
    /// without constraints and turn the law into a log-sum-exp (Besiroglu et al. 2024).
    pub(crate) fn to_theta(self) -> [f64; 5] {
        [self.a.ln(), self.b.ln(), self.e.ln(), self.alpha, self.beta]
    }

    /// Inverse of [`LawParams::to_theta`].
    pub(crate) fn from_theta(theta: &[f64]) -> Self {
        Self {
            a: theta[0].exp(),
            b: theta[1].exp(),
            e: theta[2].exp(),
            alpha: theta[3],
            beta: theta[4],
        }
    }
}

/// The five fitted quantities by name, used wherever a per-parameter value is reported.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PerParam<T> {
    pub e: T,
    pub a: T,
    pub b: T,
    pub alpha: T,
    pub beta: T,
}

impl<T> PerParam<T> {
    /// Builds each field by handing `f` the accessor of that parameter, so per-parameter
    /// summaries (e.g. bootstrap percentiles) are written once.
    pub(crate) fn from_fn(mut f: impl FnMut(fn(&LawParams) -> f64) -> T) -> Self {
        Self {
            e: f(|p| p.e),
            a: f(|p| p.a),
            b: f(|p| p.b),
            alpha: f(|p| p.alpha),
            beta: f(|p| p.beta),
        }
    }
}
