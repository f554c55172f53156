//! The plan of a scaling-law study measured with WSD (docs/MODEL.md section 9): which runs to train,
//! how long, and where to branch, before any training starts.
//!
//! Cosine schedules need one run per (size, data) pair, O(m^2) runs, because a cosine run is only
//! finished at the length it was planned for. WSD needs one stable (constant-LR after warmup) run
//! per size and, for each data multiple k, a decay branch taken from its checkpoint that ends at
//! D = k N tokens: O(m) runs. The decay is a fixed fraction f of each branch's whole length, as
//! in the paper's comparison with Cosine(T = S), so the branch leaves the stable run at (1 - f) D.
//!
//! Everything is counted in optimizer updates of `batch_tokens`, the unit a trainer checkpoints
//! and branches in; token counts are the updates times the batch, so they are what training will
//! really consume, and `end_tokens` (not k N) is the D to fit the law with.
//!
//! Pure data: nothing here trains, and the plan is plain JSON a trainer or a person can read.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

/// Largest token count planned: beyond 2^53 an f64 no longer counts tokens exactly.
const MAX_TOKENS: f64 = 9_007_199_254_740_992.0;

/// One model size of the study, as the caller built it (e.g. a wind-tunnel proxy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeSpec {
    /// How the runs of this size are named.
    pub name: String,
    /// N: the non-embedding parameter count, the N of the law and of C = 6ND.
    pub non_embedding_params: u64,
}

/// The whole study: per size, its stable run and its decay branches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyPlan {
    /// Tokens per optimizer update; every length is a whole number of them.
    pub batch_tokens: u64,
    /// f: the decay's share of each branch's total length, in (0, 1).
    pub decay_fraction: f64,
    /// In the order the caller gave them.
    pub sizes: Vec<PlannedSize>,
}

/// One size: its stable run and its branches, by ascending data multiple.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedSize {
    pub name: String,
    pub non_embedding_params: u64,
    /// Length of the stable run: up to its last branch point and no further, since tokens past
    /// it feed no branch. A larger multiple later can still continue it (WSD's continuous
    /// training), from this stable checkpoint, never from a decayed one.
    pub stable_tokens: u64,
    /// The same in updates.
    pub stable_steps: u64,
    pub branches: Vec<PlannedBranch>,
}

/// One decay branch: leaves the stable run at `branch_at_step` and decays for `decay_steps`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedBranch {
    /// k in D = k N tokens.
    pub data_multiple: f64,
    /// Where the decay ends: k N rounded to the nearest whole update. The D of this data point.
    pub end_tokens: u64,
    /// The stable checkpoint the branch starts from, in tokens: (1 - f) k N, rounded to the
    /// nearest whole update.
    pub branch_at_tokens: u64,
    /// The same in updates: the stable run's step to checkpoint and branch from.
    pub branch_at_step: u64,
    /// Updates of decay, from the branch point to the end.
    pub decay_steps: u64,
}

impl PlannedBranch {
    /// The update the decay ends at (counted along the stable run's steps).
    pub fn end_step(&self) -> u64 {
        self.branch_at_step + self.decay_steps
    }
}

impl PlannedSize {
    /// Tokens trained for this size in all: the stable run plus every decay, what WSD costs
    /// instead of the sum of all `end_tokens` that separate cosine runs would.
    pub fn trained_tokens(&self, batch_tokens: u64) -> u64 {
        self.stable_tokens
            + self
                .branches
                .iter()
                .map(|b| b.decay_steps * batch_tokens)
                .sum::<u64>()
    }
}

/// Why a study cannot be planned (or a plan read back); always one line.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("a study needs at least one model size")]
    NoSizes,
    #[error("a study needs at least one data multiple")]
    NoMultiples,
    #[error("size {index}: {why}")]
    BadSize { index: usize, why: String },
    #[error("size '{0}' is listed twice")]
    DuplicateSize(String),
    #[error("data multiple {0} must be a positive number")]
    BadMultiple(f64),
    #[error("data multiple {0} is listed twice")]
    DuplicateMultiple(f64),
    #[error("decay fraction {0} must lie strictly between 0 and 1")]
    BadDecayFraction(f64),
    #[error("the batch must hold at least one token")]
    ZeroBatch,
    #[error("size '{size}', {multiple}x: {tokens:.0} tokens is too many to count exactly")]
    TooManyTokens {
        size: String,
        multiple: f64,
        tokens: f64,
    },
    #[error(
        "size '{size}', {multiple}x: the branch point ({tokens:.0} tokens) rounds to update 0 of {batch_tokens} tokens; use more data or a smaller batch"
    )]
    BranchAtZero {
        size: String,
        multiple: f64,
        tokens: f64,
        batch_tokens: u64,
    },
    #[error("size '{size}', {multiple}x: the decay rounds to 0 updates; use a larger decay fraction or a smaller batch")]
    NoDecay { size: String, multiple: f64 },
    #[error(
        "size '{size}': multiples {first}x and {second}x both round to {what} at update {step}"
    )]
    SameStep {
        size: String,
        first: f64,
        second: f64,
        what: &'static str,
        step: u64,
    },
    #[error("size '{size}': {detail}")]
    Mismatch { size: String, detail: String },
    #[error("study plan JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Plans a study: for each of `sizes`, a stable run and one decay branch per data multiple,
/// with updates of `batch_tokens` and decays of `decay_fraction` of each branch's length.
pub fn plan_study(
    sizes: &[SizeSpec],
    data_multiples: &[f64],
    batch_tokens: u64,
    decay_fraction: f64,
) -> Result<StudyPlan, PlanError> {
    check_common(batch_tokens, decay_fraction)?;
    check_sizes(sizes)?;
    if data_multiples.is_empty() {
        return Err(PlanError::NoMultiples);
    }
    let sizes = sizes
        .iter()
        .map(|spec| plan_size(spec, data_multiples, batch_tokens, decay_fraction))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(StudyPlan {
        batch_tokens,
        decay_fraction,
        sizes,
    })
}

impl StudyPlan {
    pub fn to_json(&self) -> Result<String, PlanError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Reads a plan and [`StudyPlan::check`]s it, so a hand-edited step count cannot slip
    /// through and train a branch that ends somewhere other than where its multiple says.
    pub fn from_json(text: &str) -> Result<Self, PlanError> {
        let plan: StudyPlan = serde_json::from_str(text)?;
        plan.check()?;
        Ok(plan)
    }

    /// Re-derives every size from its name, parameter count and its branches' multiples (which
    /// may differ between sizes) and compares: the first difference is the error.
    pub fn check(&self) -> Result<(), PlanError> {
        check_common(self.batch_tokens, self.decay_fraction)?;
        let specs: Vec<SizeSpec> = self
            .sizes
            .iter()
            .map(|s| SizeSpec {
                name: s.name.clone(),
                non_embedding_params: s.non_embedding_params,
            })
            .collect();
        check_sizes(&specs)?;
        for (size, spec) in self.sizes.iter().zip(&specs) {
            let multiples: Vec<f64> = size.branches.iter().map(|b| b.data_multiple).collect();
            if multiples.is_empty() {
                return Err(PlanError::NoMultiples);
            }
            let expected = plan_size(spec, &multiples, self.batch_tokens, self.decay_fraction)?;
            if let Some(detail) = first_difference(size, &expected) {
                return Err(PlanError::Mismatch {
                    size: size.name.clone(),
                    detail,
                });
            }
        }
        Ok(())
    }
}

fn check_common(batch_tokens: u64, decay_fraction: f64) -> Result<(), PlanError> {
    if batch_tokens == 0 {
        return Err(PlanError::ZeroBatch);
    }
    if !(decay_fraction > 0.0 && decay_fraction < 1.0) {
        return Err(PlanError::BadDecayFraction(decay_fraction));
    }
    Ok(())
}

fn check_sizes(sizes: &[SizeSpec]) -> Result<(), PlanError> {
    if sizes.is_empty() {
        return Err(PlanError::NoSizes);
    }
    let mut names = HashSet::new();
    for (index, spec) in sizes.iter().enumerate() {
        let why = if spec.name.trim().is_empty() {
            Some("the name is empty".to_string())
        } else if spec.non_embedding_params == 0 {
            Some(format!(
                "'{}': the non-embedding parameter count must be positive",
                spec.name
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(PlanError::BadSize { index, why });
        }
        if !names.insert(spec.name.as_str()) {
            return Err(PlanError::DuplicateSize(spec.name.clone()));
        }
    }
    Ok(())
}

/// One size's stable run and branches, by ascending multiple.
fn plan_size(
    spec: &SizeSpec,
    data_multiples: &[f64],
    batch_tokens: u64,
    decay_fraction: f64,
) -> Result<PlannedSize, PlanError> {
    let mut multiples = data_multiples.to_vec();
    if let Some(&bad) = multiples.iter().find(|m| !(m.is_finite() && **m > 0.0)) {
        return Err(PlanError::BadMultiple(bad));
    }
    multiples.sort_by(f64::total_cmp);
    if let Some(w) = multiples.windows(2).find(|w| w[0] == w[1]) {
        return Err(PlanError::DuplicateMultiple(w[0]));
    }
    let batch = batch_tokens as f64;
    let updates = |tokens: f64| (tokens / batch).round() as u64;
    let mut branches = Vec::with_capacity(multiples.len());
    for &multiple in &multiples {
        let end = multiple * spec.non_embedding_params as f64;
        if end > MAX_TOKENS {
            return Err(PlanError::TooManyTokens {
                size: spec.name.clone(),
                multiple,
                tokens: end,
            });
        }
        let branch_at = (1.0 - decay_fraction) * end;
        let (end_step, branch_at_step) = (updates(end), updates(branch_at));
        if branch_at_step == 0 {
            return Err(PlanError::BranchAtZero {
                size: spec.name.clone(),
                multiple,
                tokens: branch_at,
                batch_tokens,
            });
        }
        if end_step <= branch_at_step {
            return Err(PlanError::NoDecay {
                size: spec.name.clone(),
                multiple,
            });
        }
        branches.push(PlannedBranch {
            data_multiple: multiple,
            end_tokens: end_step * batch_tokens,
            branch_at_tokens: branch_at_step * batch_tokens,
            branch_at_step,
            decay_steps: end_step - branch_at_step,
        });
    }
    // Two branches from one checkpoint, or ending at one step, would be one data point twice.
    for w in branches.windows(2) {
        for (what, first, second) in [
            (
                "the same branch point",
                w[0].branch_at_step,
                w[1].branch_at_step,
            ),
            ("the same end", w[0].end_step(), w[1].end_step()),
        ] {
            if first == second {
                return Err(PlanError::SameStep {
                    size: spec.name.clone(),
                    first: w[0].data_multiple,
                    second: w[1].data_multiple,
                    what,
                    step: first,
                });
            }
        }
    }
    let stable_steps = branches.last().map_or(0, |b| b.branch_at_step);
    Ok(PlannedSize {
        name: spec.name.clone(),
        non_embedding_params: spec.non_embedding_params,
        stable_tokens: stable_steps * batch_tokens,
        stable_steps,
        branches,
    })
}

/// The first field where `got` departs from `want`, in words; None when they agree.
fn first_difference(got: &PlannedSize, want: &PlannedSize) -> Option<String> {
    if got.branches.len() != want.branches.len()
        || got
            .branches
            .iter()
            .zip(&want.branches)
            .any(|(g, w)| g.data_multiple != w.data_multiple)
    {
        return Some("its branches are not in ascending order of data multiple".into());
    }
    let stable = [
        ("stable_steps", got.stable_steps, want.stable_steps),
        ("stable_tokens", got.stable_tokens, want.stable_tokens),
    ];
    if let Some((field, g, w)) = stable.into_iter().find(|(_, g, w)| g != w) {
        return Some(format!("{field} is {g}, its parameters give {w}"));
    }
    got.branches.iter().zip(&want.branches).find_map(|(g, w)| {
        [
            ("end_tokens", g.end_tokens, w.end_tokens),
            ("branch_at_tokens", g.branch_at_tokens, w.branch_at_tokens),
            ("branch_at_step", g.branch_at_step, w.branch_at_step),
            ("decay_steps", g.decay_steps, w.decay_steps),
        ]
        .into_iter()
        .find(|(_, a, b)| a != b)
        .map(|(field, a, b)| {
            format!(
                "branch {}x: {field} is {a}, its parameters give {b}",
                g.data_multiple
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(name: &str, n: u64) -> SizeSpec {
        SizeSpec {
            name: name.into(),
            non_embedding_params: n,
        }
    }

    const BATCH: u64 = 65_536;
    const MULTIPLES: [f64; 4] = [60.0, 10.0, 40.0, 20.0];

    /// (multiple, end_tokens, branch_at_tokens, branch_at_step, decay_steps)
    fn rows(size: &PlannedSize) -> Vec<(f64, u64, u64, u64, u64)> {
        size.branches
            .iter()
            .map(|b| {
                (
                    b.data_multiple,
                    b.end_tokens,
                    b.branch_at_tokens,
                    b.branch_at_step,
                    b.decay_steps,
                )
            })
            .collect()
    }

    #[test]
    fn branches_end_at_k_n_and_decay_the_last_tenth() {
        let plan = plan_study(
            &[size("pow2", 1 << 20), size("1M", 1_000_000)],
            &MULTIPLES,
            BATCH,
            0.1,
        )
        .unwrap();
        assert_eq!((plan.batch_tokens, plan.decay_fraction), (BATCH, 0.1));
        // N = 2^20 with 2^16-token updates: D = k N is 16 k updates, the branch 0.9 of that.
        let pow2 = &plan.sizes[0];
        assert_eq!(
            rows(pow2),
            [
                (10.0, 160 * BATCH, 144 * BATCH, 144, 16),
                (20.0, 320 * BATCH, 288 * BATCH, 288, 32),
                (40.0, 640 * BATCH, 576 * BATCH, 576, 64),
                (60.0, 960 * BATCH, 864 * BATCH, 864, 96),
            ]
        );
        assert_eq!((pow2.stable_steps, pow2.stable_tokens), (864, 864 * BATCH));
        // N = 1e6: 1e7 / 65536 = 152.59 -> 153 updates, 9e6 / 65536 = 137.33 -> 137;
        // 2e7 -> 305.18 -> 305, 1.8e7 -> 274.66 -> 275; 4e7 -> 610.35 -> 610,
        // 3.6e7 -> 549.32 -> 549; 6e7 -> 915.53 -> 916, 5.4e7 -> 823.97 -> 824.
        let m = &plan.sizes[1];
        assert_eq!(
            rows(m),
            [
                (10.0, 10_027_008, 8_978_432, 137, 16),
                (20.0, 19_988_480, 18_022_400, 275, 30),
                (40.0, 39_976_960, 35_979_264, 549, 61),
                (60.0, 60_030_976, 54_001_664, 824, 92),
            ]
        );
        assert_eq!((m.stable_steps, m.stable_tokens), (824, 54_001_664));
        assert_eq!(m.branches[3].end_step(), 916);
        // One stable run plus the decays: 824 + 16 + 30 + 61 + 92 = 1023 updates, where four
        // cosine runs would take 153 + 305 + 610 + 916 = 1984.
        assert_eq!(m.trained_tokens(BATCH), 1023 * BATCH);
    }

    #[test]
    fn the_json_round_trips_and_edits_are_caught() {
        let plan = plan_study(
            &[size("a", 1 << 20), size("b", 1 << 22)],
            &[10.0, 20.0],
            BATCH,
            0.2,
        )
        .unwrap();
        let text = plan.to_json().unwrap();
        assert_eq!(StudyPlan::from_json(&text).unwrap(), plan);
        assert!(text.contains("\"branch_at_step\": 128"), "{text}");

        let mut edited = plan.clone();
        edited.sizes[1].branches[0].decay_steps += 1;
        let err = StudyPlan::from_json(&edited.to_json().unwrap()).unwrap_err();
        assert!(
            err.to_string()
                .contains("size 'b': branch 10x: decay_steps is 129, its parameters give 128"),
            "{err}"
        );
        edited = plan.clone();
        edited.sizes[0].branches.reverse();
        assert!(matches!(edited.check(), Err(PlanError::Mismatch { .. })));
        edited = plan.clone();
        edited.decay_fraction = 1.0;
        assert!(matches!(
            edited.check(),
            Err(PlanError::BadDecayFraction(_))
        ));
        assert!(matches!(StudyPlan::from_json("{"), Err(PlanError::Json(_))));
    }

    #[test]
    fn bad_inputs_are_one_line_errors() {
        let one = [size("tiny", 1_000_000)];
        let cases: Vec<(Result<StudyPlan, PlanError>, &str)> = vec![
            (
                plan_study(&[], &[10.0], BATCH, 0.1),
                "at least one model size",
            ),
            (
                plan_study(&one, &[], BATCH, 0.1),
                "at least one data multiple",
            ),
            (
                plan_study(&[size("z", 0)], &[10.0], BATCH, 0.1),
                "size 0: 'z'",
            ),
            (
                plan_study(&[size(" ", 5)], &[10.0], BATCH, 0.1),
                "name is empty",
            ),
            (
                plan_study(&[size("a", 5), size("a", 6)], &[10.0], BATCH, 0.1),
                "'a' is listed twice",
            ),
            (
                plan_study(&one, &[10.0, 0.0], BATCH, 0.1),
                "multiple 0 must",
            ),
            (plan_study(&one, &[-20.0], BATCH, 0.1), "multiple -20 must"),
            (
                plan_study(&one, &[f64::NAN], BATCH, 0.1),
                "multiple NaN must",
            ),
            (
                plan_study(&one, &[20.0, 10.0, 20.0], BATCH, 0.1),
                "20 is listed twice",
            ),
            (plan_study(&one, &[10.0], BATCH, 0.0), "fraction 0 must"),
            (plan_study(&one, &[10.0], BATCH, 1.0), "fraction 1 must"),
            (
                plan_study(&one, &[10.0], BATCH, f64::NAN),
                "fraction NaN must",
            ),
            (plan_study(&one, &[10.0], 0, 0.1), "at least one token"),
            // 0.9 x 10 x 1000 = 9000 tokens is 0.14 of an update.
            (
                plan_study(&[size("mini", 1000)], &[10.0], BATCH, 0.1),
                "size 'mini', 10x: the branch point (9000 tokens) rounds to update 0",
            ),
            // N = 1e4: 0.9 x 1e5 / 65536 = 1.37 and 0.9 x 1.05e5 / 65536 = 1.44, both update 1.
            (
                plan_study(&[size("s", 10_000)], &[10.0, 10.5], BATCH, 0.1),
                "multiples 10x and 10.5x both round to the same branch point at update 1",
            ),
            // 2^20 x 10 is 160 updates; a 0.1% decay is 0.16 of one.
            (
                plan_study(&[size("p", 1 << 20)], &[10.0], BATCH, 0.001),
                "size 'p', 10x: the decay rounds to 0 updates",
            ),
            (
                plan_study(&[size("huge", u64::MAX / 2)], &[10.0], BATCH, 0.1),
                "too many to count exactly",
            ),
        ];
        for (result, expected) in cases {
            let text = result.unwrap_err().to_string();
            assert!(text.contains(expected), "{text:?} lacks {expected:?}");
            assert!(!text.contains('\n'), "{text}");
        }
    }
}
