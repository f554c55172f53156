//! Data mixtures with phases: several token-shard sources, each with a weight per phase
//! (`stable`, `decay`, and any later phase such as `sft`). MiniCPM's two-stage pre-training is a
//! mixture whose `decay` phase adds high-quality and instruction-style data.
//!
//! Every row of every batch picks its source by a draw that is a pure function of (seed, row
//! index), and each source keeps its own cursor into its shuffled windows, so the whole position
//! is a handful of integers that a checkpoint stores and a resume restores exactly.

use crate::batches::{Batch, BatchStream};
use crate::error::DataError;
use crate::shards::TokenDataset;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Weights per phase, per source name: `weights[phase][source]`.
pub type PhaseWeights = BTreeMap<String, BTreeMap<String, f64>>;

/// Where a mixture stands: rows drawn so far and the windows consumed in each source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixtureCursor {
    pub rows: u64,
    pub sources: BTreeMap<String, u64>,
    /// The row length these positions are in, where a run's length schedule trains shorter rows
    /// than its `seq_len` (none: the run's `seq_len`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_len: Option<usize>,
}

pub struct Mixture<'a> {
    names: Vec<String>,
    streams: Vec<BatchStream<'a>>,
    /// Per phase, cumulative weights over `names` (normalised to end at 1).
    phases: BTreeMap<String, Vec<f64>>,
    seed: u64,
    rows: u64,
}

/// A uniform number in [0, 1) from (seed, index): SplitMix64 finalisation.
fn unit(seed: u64, index: u64) -> f64 {
    let mut z = seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Checks a mixture's weights against the source names; errors name the phase and source.
pub fn validate(weights: &PhaseWeights, sources: &[String]) -> Result<(), DataError> {
    if weights.is_empty() {
        return Err(DataError::Invalid(
            "data.mixture: no phase defined (need at least `stable`)".into(),
        ));
    }
    for (phase, ws) in weights {
        for (name, &w) in ws {
            if !sources.contains(name) {
                return Err(DataError::Invalid(format!(
                    "data.mixture.{phase}.{name}: unknown source (sources: {})",
                    sources.join(", ")
                )));
            }
            if !(w.is_finite() && w >= 0.0) {
                return Err(DataError::Invalid(format!(
                    "data.mixture.{phase}.{name}: weight must be >= 0, got {w}"
                )));
            }
        }
        if ws.values().sum::<f64>() <= 0.0 {
            return Err(DataError::Invalid(format!(
                "data.mixture.{phase}: weights sum to zero"
            )));
        }
    }
    Ok(())
}

impl<'a> Mixture<'a> {
    /// `sources` in a fixed order; `cursor` from a checkpoint, or the default to start.
    pub fn new(
        sources: Vec<(String, &'a TokenDataset)>,
        weights: &PhaseWeights,
        seq_len: usize,
        seed: u64,
        cursor: &MixtureCursor,
    ) -> Result<Self, DataError> {
        let names: Vec<String> = sources.iter().map(|(n, _)| n.clone()).collect();
        validate(weights, &names)?;
        let mut streams = Vec::with_capacity(sources.len());
        for (i, (name, data)) in sources.into_iter().enumerate() {
            if data.tokens.len() <= seq_len {
                return Err(DataError::Invalid(format!(
                    "data source `{name}`: {} tokens is too few for sequences of {seq_len}",
                    data.tokens.len()
                )));
            }
            let start = cursor.sources.get(&name).copied().unwrap_or(0);
            // Each source gets its own shuffle so sources sharing a file stay independent.
            streams.push(BatchStream::new(
                data,
                seq_len,
                seed.wrapping_add(i as u64 + 1),
                start,
            ));
        }
        let phases = weights
            .iter()
            .map(|(phase, ws)| {
                let total: f64 = ws.values().sum();
                let mut acc = 0.0;
                let cdf = names
                    .iter()
                    .map(|n| {
                        acc += ws.get(n).copied().unwrap_or(0.0) / total;
                        acc
                    })
                    .collect();
                (phase.clone(), cdf)
            })
            .collect();
        Ok(Mixture {
            names,
            streams,
            phases,
            seed,
            rows: cursor.rows,
        })
    }

    pub fn cursor(&self) -> MixtureCursor {
        MixtureCursor {
            rows: self.rows,
            sources: self
                .names
                .iter()
                .cloned()
                .zip(self.streams.iter().map(|s| s.cursor()))
                .collect(),
            seq_len: None,
        }
    }

    /// The phase actually used for `phase`: itself if defined, else `stable`.
    fn phase_cdf(&self, phase: &str) -> &[f64] {
        self.phases
            .get(phase)
            .or_else(|| self.phases.get("stable"))
            .or_else(|| self.phases.values().next())
            .expect("validated: at least one phase")
    }

    /// Index of the source row `row` draws in `phase`.
    fn pick(&self, phase: &str, row: u64) -> usize {
        let u = unit(self.seed, row);
        let cdf = self.phase_cdf(phase);
        cdf.iter().position(|&c| u < c).unwrap_or(cdf.len() - 1)
    }

    /// The next `rows` sequences under `phase`'s weights, and the source of each row.
    pub fn next_batch(&mut self, phase: &str, rows: usize) -> (Batch, Vec<usize>) {
        let mut picks = Vec::with_capacity(rows);
        let mut inputs = Vec::new();
        let mut targets = Vec::new();
        let mut seq_len = 0;
        for _ in 0..rows {
            let src = self.pick(phase, self.rows);
            self.rows += 1;
            let one = self.streams[src].next_batch(1);
            seq_len = one.seq_len;
            inputs.extend(one.inputs);
            targets.extend(one.targets);
            picks.push(src);
        }
        (
            Batch {
                inputs,
                targets,
                rows,
                seq_len,
                positions: None,
            },
            picks,
        )
    }

    pub fn source_names(&self) -> &[String] {
        &self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::{DatasetIndex, TokenWidth};
    use std::path::PathBuf;

    fn dataset(first_token: u32, n: usize) -> TokenDataset {
        TokenDataset {
            dir: PathBuf::new(),
            index: DatasetIndex {
                version: 1,
                width: TokenWidth::U16,
                vocab_size: 1000,
                eos_id: 2,
                shards: vec![],
            },
            tokens: (0..n as u32).map(|i| first_token + i % 100).collect(),
        }
    }

    fn weights(spec: &[(&str, &[(&str, f64)])]) -> PhaseWeights {
        spec.iter()
            .map(|(p, ws)| {
                (
                    p.to_string(),
                    ws.iter().map(|(n, w)| (n.to_string(), *w)).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn proportions_follow_the_weights_and_switch_at_decay() {
        let (a, b, c) = (dataset(0, 5000), dataset(200, 5000), dataset(400, 5000));
        let w = weights(&[
            ("stable", &[("web", 0.7), ("code", 0.3)]),
            ("decay", &[("web", 0.4), ("code", 0.2), ("hq", 0.4)]),
        ]);
        let sources = vec![
            ("web".to_string(), &a),
            ("code".to_string(), &b),
            ("hq".to_string(), &c),
        ];
        let mut m = Mixture::new(sources, &w, 16, 9, &MixtureCursor::default()).unwrap();
        let n = 20_000usize;
        let count = |m: &mut Mixture, phase: &str| {
            let mut counts = [0usize; 3];
            for _ in 0..n / 100 {
                let (batch, picks) = m.next_batch(phase, 100);
                for (r, &p) in picks.iter().enumerate() {
                    counts[p] += 1;
                    // The row's tokens really come from the picked source.
                    assert_eq!(batch.inputs[r * 16] / 200, p as u32);
                }
            }
            counts.map(|c| c as f64 / n as f64)
        };
        // Binomial standard error at n = 20,000 is at most 0.0035; allow 4 sigma.
        let stable = count(&mut m, "stable");
        for (got, want) in stable.iter().zip([0.7, 0.3, 0.0]) {
            assert!((got - want).abs() < 0.014, "stable {stable:?}");
        }
        let decay = count(&mut m, "decay");
        for (got, want) in decay.iter().zip([0.4, 0.2, 0.4]) {
            assert!((got - want).abs() < 0.014, "decay {decay:?}");
        }
        // A phase without weights of its own uses the stable ones.
        let sft = count(&mut m, "sft");
        assert!((sft[0] - 0.7).abs() < 0.014 && sft[2] == 0.0, "{sft:?}");
    }

    #[test]
    fn resuming_from_a_cursor_continues_the_same_sequence() {
        let (a, b) = (dataset(0, 3000), dataset(200, 3000));
        let w = weights(&[
            ("stable", &[("a", 0.5), ("b", 0.5)]),
            ("decay", &[("b", 1.0)]),
        ]);
        let src = || vec![("a".to_string(), &a), ("b".to_string(), &b)];
        let mut straight = Mixture::new(src(), &w, 8, 3, &MixtureCursor::default()).unwrap();
        let mut first = Mixture::new(src(), &w, 8, 3, &MixtureCursor::default()).unwrap();
        for _ in 0..7 {
            assert_eq!(
                straight.next_batch("stable", 5).0.inputs,
                first.next_batch("stable", 5).0.inputs
            );
        }
        let saved = serde_json::to_string(&first.cursor()).unwrap();
        let mut resumed =
            Mixture::new(src(), &w, 8, 3, &serde_json::from_str(&saved).unwrap()).unwrap();
        for phase in ["stable", "stable", "decay", "decay"] {
            assert_eq!(
                straight.next_batch(phase, 5).0.inputs,
                resumed.next_batch(phase, 5).0.inputs
            );
        }
    }

    #[test]
    fn bad_weights_are_named() {
        let a = dataset(0, 100);
        let bad = |w: PhaseWeights| {
            Mixture::new(
                vec![("web".to_string(), &a)],
                &w,
                8,
                0,
                &MixtureCursor::default(),
            )
            .err()
            .unwrap()
            .to_string()
        };
        let e = bad(weights(&[("stable", &[("web", -1.0)])]));
        assert!(
            e.contains("data.mixture.stable.web") && e.contains(">= 0"),
            "{e}"
        );
        let e = bad(weights(&[("decay", &[("wiki", 1.0)])]));
        assert!(
            e.contains("data.mixture.decay.wiki") && e.contains("unknown source"),
            "{e}"
        );
        let e = bad(weights(&[("stable", &[("web", 0.0)])]));
        assert!(e.contains("sum to zero"), "{e}");
    }
}
