//! Choosing the next token from logits, as transformers' generation does it, in its order:
//! repetition penalty on the tokens already in the text, then temperature, top-k and top-p
//! (nucleus) filtering, then a draw from a seeded generator. Temperature 0 is greedy.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f64,
    /// Keep the smallest set of most likely tokens whose probability reaches this (1 = all).
    pub top_p: f64,
    /// Keep the `top_k` most likely tokens (0 = all).
    pub top_k: usize,
    /// CTRL's penalty (Keskar et al. 2019) as transformers applies it: a token already in the
    /// text has a positive logit divided by it and a negative one multiplied (1 = none).
    pub repetition_penalty: f64,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_p: 0.95,
            top_k: 0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }

    /// A one-line complaint about a value out of range, naming the setting.
    pub fn check(&self) -> Result<(), String> {
        let bad = |name: &str, v: f64, range: &str| Err(format!("{name} {v} is not {range}"));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature", self.temperature, "a finite number >= 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", self.top_p, "in (0, 1]");
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(
                "repetition_penalty",
                self.repetition_penalty,
                "a finite number > 0",
            );
        }
        Ok(())
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        Sampler {
            params,
            rng: ChaCha8Rng::seed_from_u64(params.seed),
        }
    }

    /// The next token after `history` (prompt and generated tokens so far).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let p = self.params;
        let mut logits = std::borrow::Cow::Borrowed(logits);
        if p.repetition_penalty != 1.0 {
            let penalty = p.repetition_penalty as f32;
            let l = logits.to_mut();
            let mut seen = vec![false; l.len()];
            for &t in history {
                if let Some(s) = seen.get_mut(t as usize).filter(|s| !**s) {
                    *s = true;
                    let v = &mut l[t as usize];
                    *v = if *v > 0.0 { *v / penalty } else { *v * penalty };
                }
            }
        }
        if p.temperature <= 0.0 {
            return argmax(&logits);
        }
        let inv_t = 1.0 / p.temperature;
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let mut probs: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as u32, ((v as f64 - max) * inv_t).exp()))
            .collect();
        // Most likely first; ties by token id, so the order is reproducible.
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if p.top_k > 0 {
            probs.truncate(p.top_k);
        }
        let total: f64 = probs.iter().map(|p| p.1).sum();
        // Keep the smallest prefix whose mass reaches top_p.
        let mut mass = 0.0;
        let mut keep = probs.len();
        for (i, q) in probs.iter().enumerate() {
            mass += q.1 / total;
            if mass >= p.top_p {
                keep = i + 1;
                break;
            }
        }
        let kept = &probs[..keep];
        let kept_total: f64 = kept.iter().map(|p| p.1).sum();
        let mut r = self.rng.random::<f64>() * kept_total;
        for q in kept {
            r -= q.1;
            if r <= 0.0 {
                return q.0;
            }
        }
        kept[kept.len() - 1].0
    }
}

/// The first index of the largest logit.
pub fn argmax(logits: &[f32]) -> u32 {
    logits
        .iter()
        .enumerate()
        .fold((0usize, f32::NEG_INFINITY), |b, (i, &v)| {
            if v > b.1 {
                (i, v)
            } else {
                b
            }
        })
        .0 as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut SamplingParams)) -> Sampler {
        let mut p = SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            repetition_penalty: 1.0,
            seed: 7,
        };
        f(&mut p);
        Sampler::new(p)
    }

    fn frequencies(s: &mut Sampler, logits: &[f32], history: &[u32], n: usize) -> Vec<f64> {
        let mut counts = vec![0usize; logits.len()];
        for _ in 0..n {
            counts[s.sample(logits, history) as usize] += 1;
        }
        counts.iter().map(|&c| c as f64 / n as f64).collect()
    }

    fn softmax(logits: &[f64]) -> Vec<f64> {
        let z: f64 = logits.iter().map(|x| x.exp()).sum();
        logits.iter().map(|x| x.exp() / z).collect()
    }

    const LOGITS: [f32; 4] = [0.0, 5.0, 1.0, 4.9];

    #[test]
    fn greedy_takes_the_argmax() {
        assert_eq!(
            Sampler::new(SamplingParams::greedy()).sample(&LOGITS, &[]),
            1
        );
    }

    /// Frequencies follow the softmax of the logits divided by the temperature.
    #[test]
    fn frequencies_follow_the_tempered_softmax() {
        let n = 40_000;
        for t in [1.0, 2.0] {
            let got = frequencies(&mut with(|p| p.temperature = t), &LOGITS, &[], n);
            let want = softmax(&LOGITS.map(|x| x as f64 / t));
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 0.012, "T={t}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn top_p_and_top_k_restrict_the_choice() {
        // top_p small: only the most likely token survives.
        let mut s = with(|p| p.top_p = 0.01);
        assert!((0..50).all(|_| s.sample(&LOGITS, &[]) == 1));
        // top_k 2: tokens 1 and 3 in the ratio of their probabilities, the others never.
        let got = frequencies(&mut with(|p| p.top_k = 2), &LOGITS, &[], 20_000);
        assert_eq!((got[0], got[2]), (0.0, 0.0));
        let want = softmax(&[5.0, 4.9]);
        assert!((got[1] - want[0]).abs() < 0.015, "{got:?}");
    }

    /// transformers' rule: a seen token's positive logit is divided by the penalty, a negative
    /// one multiplied; each token once, however often it occurs.
    #[test]
    fn the_repetition_penalty_scales_seen_tokens_once() {
        let logits = [2.0f32, -1.0, 1.5];
        let mut s = Sampler::new(SamplingParams {
            repetition_penalty: 2.0,
            ..SamplingParams::greedy()
        });
        // Token 0 (2.0 -> 1.0) falls below token 2 (1.5), however often it was seen.
        assert_eq!(s.sample(&logits, &[0, 0, 0]), 2);
        assert_eq!(s.sample(&logits, &[]), 0);
        // With temperature 1: token 1 (-1 -> -2) and token 0 (2 -> 1).
        let got = frequencies(
            &mut with(|p| p.repetition_penalty = 2.0),
            &logits,
            &[0, 1, 1],
            40_000,
        );
        let want = softmax(&[1.0, -2.0, 1.5]);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 0.012, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_tokens() {
        let draw = |seed| {
            let mut s = with(|p| p.seed = seed);
            (0..64).map(|_| s.sample(&LOGITS, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    #[test]
    fn out_of_range_settings_are_named() {
        let bad = SamplingParams {
            top_p: 0.0,
            ..SamplingParams::default()
        };
        assert_eq!(bad.check().unwrap_err(), "top_p 0 is not in (0, 1]");
    }
}
