//! Learning-rate schedules as pure functions of the step (docs/MODEL.md section 5).
//!
//! A schedule returns the factor applied to every parameter group's peak rate, so the per-group
//! ratios of muP hold throughout. Step `s` is the 0-based index of the optimizer update.

use crate::error::InvalidSetting;
use serde::{Deserialize, Serialize};

/// The shape of the decay phase of WSD, `f(x)` for `x` steps into a decay of `D` steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecayFn {
    /// `0.5^(x / half_life)`: MiniCPM's choice.
    Exp,
    /// Linear from 1 to the floor.
    Linear,
    /// Half a cosine from 1 to the floor.
    Cosine,
    /// `1 - sqrt(x / D)` (Hägele et al. 2024), scaled to end at the floor.
    #[serde(rename = "1-sqrt")]
    OneMinusSqrt,
}

/// The schedule as written in a run config. Lengths are in optimizer steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ScheduleConfig {
    /// Warmup, stable at the peak, then a decay over the last `decay_fraction` of the run (or
    /// its last `decay_steps` updates, which is how a decay branch states its length).
    Wsd {
        #[serde(default)]
        warmup_steps: u64,
        /// Share of the run spent decaying; 0.1 when neither this nor `decay_steps` is given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        decay_fraction: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        decay_steps: Option<u64>,
        #[serde(default = "default_decay_fn")]
        decay: DecayFn,
        /// Half-life of the exponential decay in steps; by default the one that reaches 0.1 of
        /// the starting rate at the end of the decay.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        half_life: Option<f64>,
        /// Fraction of the peak the decay ends at (exp: never goes below it).
        #[serde(default)]
        floor: f64,
        /// Fraction of the peak the decay starts from: 1 (the peak) except for a branch forced
        /// from a checkpoint that was already below the peak, which decays on from where it was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        decay_from: Option<f64>,
    },
    /// The paper's Cosine(T): from the peak down to `floor` (0.1) over `period` steps (default:
    /// the run length), constant after.
    Cosine {
        #[serde(default)]
        warmup_steps: u64,
        #[serde(default)]
        period: Option<u64>,
        #[serde(default = "default_cosine_floor")]
        floor: f64,
    },
    Constant {
        #[serde(default)]
        warmup_steps: u64,
    },
}

const DEFAULT_DECAY_FRACTION: f64 = 0.1;
fn default_decay_fn() -> DecayFn {
    DecayFn::Exp
}
fn default_cosine_floor() -> f64 {
    0.1
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig::wsd(0, DEFAULT_DECAY_FRACTION, default_decay_fn())
    }
}

/// A schedule resolved against the run length: everything needed to evaluate it.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Wsd {
        warmup: u64,
        stable_end: u64,
        end: u64,
        decay: DecayFn,
        half_life: f64,
        floor: f64,
        /// The factor at the first decay update (1 unless the decay continues a lower rate).
        start: f64,
    },
    Cosine {
        warmup: u64,
        period: u64,
        floor: f64,
    },
    Constant {
        warmup: u64,
    },
}

impl ScheduleConfig {
    /// WSD with a decay over the last `decay_fraction` of the run, default half-life and no floor.
    pub fn wsd(warmup_steps: u64, decay_fraction: f64, decay: DecayFn) -> Self {
        ScheduleConfig::Wsd {
            warmup_steps,
            decay_fraction: Some(decay_fraction),
            decay_steps: None,
            decay,
            half_life: None,
            floor: 0.0,
            decay_from: None,
        }
    }

    /// Warmup steps of any schedule kind.
    pub fn warmup_steps(&self) -> u64 {
        match *self {
            ScheduleConfig::Wsd { warmup_steps, .. }
            | ScheduleConfig::Cosine { warmup_steps, .. }
            | ScheduleConfig::Constant { warmup_steps } => warmup_steps,
        }
    }

    /// Resolves against a run of `total_steps`; errors name the offending field.
    pub fn resolve(&self, total_steps: u64) -> Result<Schedule, InvalidSetting> {
        self.checked(total_steps)
            .map_err(|msg| InvalidSetting::new("schedule", msg))
    }

    fn checked(&self, total_steps: u64) -> Result<Schedule, String> {
        let check_floor = |floor: f64| {
            if (0.0..=1.0).contains(&floor) {
                Ok(())
            } else {
                Err(format!("schedule.floor must be in [0, 1], got {floor}"))
            }
        };
        match *self {
            ScheduleConfig::Wsd {
                warmup_steps,
                decay_fraction,
                decay_steps,
                decay,
                half_life,
                floor,
                decay_from,
            } => {
                check_floor(floor)?;
                let decay_steps = match (decay_fraction, decay_steps) {
                    (Some(_), Some(_)) => {
                        return Err("schedule: give decay_fraction or decay_steps, not both".into())
                    }
                    (_, Some(d)) if d > total_steps => {
                        return Err(format!(
                        "schedule.decay_steps ({d}) is longer than the run ({total_steps} steps)"
                    ))
                    }
                    (_, Some(d)) => d,
                    (f, None) => {
                        let f = f.unwrap_or(DEFAULT_DECAY_FRACTION);
                        if !(0.0..=1.0).contains(&f) {
                            return Err(format!(
                                "schedule.decay_fraction must be in [0, 1], got {f}"
                            ));
                        }
                        (total_steps as f64 * f).round() as u64
                    }
                };
                let start = decay_from.unwrap_or(1.0);
                if !(floor..=1.0).contains(&start) {
                    return Err(format!(
                        "schedule.decay_from must be in [floor, 1] = [{floor}, 1], got {start}"
                    ));
                }
                let stable_end = total_steps - decay_steps;
                if warmup_steps > stable_end {
                    return Err(format!(
                        "schedule.warmup_steps ({warmup_steps}) runs past the start of the decay (step {stable_end})"
                    ));
                }
                let half_life = match half_life {
                    Some(h) if h > 0.0 => h,
                    Some(h) => return Err(format!("schedule.half_life must be positive, got {h}")),
                    None => (decay_steps.max(1) as f64) / 10f64.log2(),
                };
                Ok(Schedule::Wsd {
                    warmup: warmup_steps,
                    stable_end,
                    end: total_steps,
                    decay,
                    half_life,
                    floor,
                    start,
                })
            }
            ScheduleConfig::Cosine {
                warmup_steps,
                period,
                floor,
            } => {
                check_floor(floor)?;
                let period = period.unwrap_or(total_steps);
                if warmup_steps >= period.max(1) && period > 0 {
                    return Err(format!("schedule.warmup_steps ({warmup_steps}) must be shorter than the period ({period})"));
                }
                Ok(Schedule::Cosine {
                    warmup: warmup_steps,
                    period,
                    floor,
                })
            }
            ScheduleConfig::Constant { warmup_steps } => Ok(Schedule::Constant {
                warmup: warmup_steps,
            }),
        }
    }
}

impl Schedule {
    /// The factor on the peak learning rate at update `s`.
    pub fn factor(&self, s: u64) -> f64 {
        let warmup = match *self {
            Schedule::Wsd { warmup, .. }
            | Schedule::Cosine { warmup, .. }
            | Schedule::Constant { warmup } => warmup,
        };
        if s < warmup {
            return s as f64 / warmup as f64;
        }
        match *self {
            Schedule::Constant { .. } => 1.0,
            Schedule::Wsd {
                stable_end,
                end,
                decay,
                half_life,
                floor,
                start,
                ..
            } => {
                if s < stable_end {
                    return 1.0;
                }
                let x = (s - stable_end) as f64;
                let d = (end - stable_end) as f64;
                match decay {
                    DecayFn::Exp => (start * 0.5f64.powf(x / half_life)).max(floor),
                    DecayFn::Linear => start - (start - floor) * x / d,
                    DecayFn::Cosine => {
                        floor + (start - floor) * 0.5 * (1.0 + (std::f64::consts::PI * x / d).cos())
                    }
                    DecayFn::OneMinusSqrt => floor + (start - floor) * (1.0 - (x / d).sqrt()),
                }
            }
            Schedule::Cosine {
                warmup,
                period,
                floor,
            } => {
                if s >= period {
                    return floor;
                }
                let p = (s - warmup) as f64 / (period - warmup) as f64;
                floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
        }
    }

    /// Whether update `s` lies in the decay phase (WSD only).
    pub fn in_decay(&self, s: u64) -> bool {
        matches!(*self, Schedule::Wsd { stable_end, .. } if s >= stable_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn wsd_follows_the_formulas() {
        let mut cfg = ScheduleConfig::wsd(10, 0.2, DecayFn::Exp);
        if let ScheduleConfig::Wsd { half_life, .. } = &mut cfg {
            *half_life = Some(5.0);
        }
        let s = cfg.resolve(100).unwrap();
        assert!(close(s.factor(0), 0.0));
        assert!(close(s.factor(5), 0.5));
        assert!(close(s.factor(10), 1.0));
        assert!(close(s.factor(79), 1.0));
        assert!(!s.in_decay(79) && s.in_decay(80));
        assert!(close(s.factor(80), 1.0));
        assert!(close(s.factor(85), 0.5));
        assert!(close(s.factor(90), 0.25));
        // Defaults: the half-life that reaches 0.1 at the end of the decay.
        let d = ScheduleConfig::wsd(0, 0.1, DecayFn::Exp);
        assert!((d.resolve(1000).unwrap().factor(1000) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn decay_shapes_end_at_the_floor() {
        for (decay, mid) in [
            (DecayFn::Linear, 0.1 + 0.9 * 0.5),
            (DecayFn::Cosine, 0.1 + 0.9 * 0.5),
            (DecayFn::OneMinusSqrt, 0.1 + 0.9 * (1.0 - 0.5f64.sqrt())),
        ] {
            let mut cfg = ScheduleConfig::wsd(0, 0.5, decay);
            if let ScheduleConfig::Wsd { floor, .. } = &mut cfg {
                *floor = 0.1;
            }
            let s = cfg.resolve(100).unwrap();
            assert!(close(s.factor(50), 1.0), "{decay:?}");
            assert!(close(s.factor(75), mid), "{decay:?}");
            assert!(close(s.factor(100), 0.1), "{decay:?}");
        }
    }

    #[test]
    fn cosine_is_the_papers() {
        let s = ScheduleConfig::Cosine {
            warmup_steps: 0,
            period: Some(200),
            floor: 0.1,
        }
        .resolve(300)
        .unwrap();
        for step in [0u64, 37, 100, 150, 199] {
            let want = 0.1 + 0.45 * (1.0 + (std::f64::consts::PI * step as f64 / 200.0).cos());
            assert!(close(s.factor(step), want));
        }
        assert!(close(s.factor(250), 0.1));
    }

    #[test]
    fn bad_values_are_named() {
        let e = ScheduleConfig::wsd(95, 0.1, DecayFn::Exp)
            .resolve(100)
            .unwrap_err();
        assert!(e.msg.contains("warmup_steps") && e.key == "schedule", "{e}");
        let e = ScheduleConfig::wsd(0, 1.5, DecayFn::Exp)
            .resolve(100)
            .unwrap_err();
        assert!(
            e.msg.contains("decay_fraction") && e.key == "schedule",
            "{e}"
        );
        let mut both = ScheduleConfig::wsd(0, 0.1, DecayFn::Exp);
        if let ScheduleConfig::Wsd { decay_steps, .. } = &mut both {
            *decay_steps = Some(10);
        }
        let e = both.resolve(100).unwrap_err();
        assert!(e.msg.contains("not both") && e.key == "schedule", "{e}");
    }

    #[test]
    fn a_decay_of_fixed_length_can_start_below_the_peak() {
        // A branch from update 400: 100 decay updates, linear from 0.6 of the peak to 0.
        let cfg = ScheduleConfig::Wsd {
            warmup_steps: 10,
            decay_fraction: None,
            decay_steps: Some(100),
            decay: DecayFn::Linear,
            half_life: None,
            floor: 0.0,
            decay_from: Some(0.6),
        };
        let s = cfg.resolve(500).unwrap();
        assert!(!s.in_decay(399) && s.in_decay(400));
        assert!(close(s.factor(400), 0.6));
        assert!(close(s.factor(450), 0.3));
        assert!(close(s.factor(500), 0.0));
    }
}
