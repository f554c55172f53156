//! Choosing the next token from logits: greedy at temperature 0, otherwise temperature-scaled
//! softmax restricted to the top-p nucleus, drawn from a seeded generator.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, Copy)]
pub struct SamplingParams {
    pub temperature: f64,
    pub top_p: f64,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_p: 0.95,
            seed: 0,
        }
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

    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let argmax = || {
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
        };
        if self.params.temperature <= 0.0 {
            return argmax();
        }
        let inv_t = 1.0 / self.params.temperature;
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let mut probs: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as u32, ((v as f64 - max) * inv_t).exp()))
            .collect();
        let total: f64 = probs.iter().map(|p| p.1).sum();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1));
        // Keep the smallest prefix whose mass reaches top_p.
        let mut mass = 0.0;
        let mut keep = probs.len();
        for (i, p) in probs.iter().enumerate() {
            mass += p.1 / total;
            if mass >= self.params.top_p {
                keep = i + 1;
                break;
            }
        }
        let kept = &probs[..keep];
        let kept_total: f64 = kept.iter().map(|p| p.1).sum();
        let mut r = self.rng.random::<f64>() * kept_total;
        for p in kept {
            r -= p.1;
            if r <= 0.0 {
                return p.0;
            }
        }
        kept[kept.len() - 1].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_nucleus() {
        let logits = [0.0f32, 5.0, 1.0, 4.9];
        assert_eq!(
            Sampler::new(SamplingParams {
                temperature: 0.0,
                top_p: 1.0,
                seed: 0
            })
            .sample(&logits),
            1
        );
        // top_p small: only the most likely token survives.
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_p: 0.01,
            seed: 3,
        });
        assert!((0..50).all(|_| s.sample(&logits) == 1));
        // With the full nucleus, frequencies follow the softmax.
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            seed: 7,
        });
        let n = 20_000;
        let ones = (0..n).filter(|_| s.sample(&logits) == 1).count() as f64 / n as f64;
        let z: f64 = logits.iter().map(|&x| (x as f64).exp()).sum();
        let p1 = 5f64.exp() / z;
        assert!((ones - p1).abs() < 0.015, "{ones} vs {p1}");
    }
}
