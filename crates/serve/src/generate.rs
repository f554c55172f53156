//! Autoregressive generation: one forward pass over the prompt fills the KV cache, then one
//! token at a time.

use crate::sampling::{Sampler, SamplingParams};
use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};
use minicpm_model::MiniCpm;

/// Generates up to `max_new_tokens` after `prompt`, stopping at an EOS id. `on_token` sees each
/// new token as it is chosen and can stop generation by returning false.
pub fn generate(
    model: &MiniCpm,
    prompt: &[u32],
    max_new_tokens: usize,
    params: SamplingParams,
    mut on_token: impl FnMut(u32) -> bool,
) -> Vec<u32> {
    let device = model
        .devices()
        .into_iter()
        .next()
        .expect("model has a device");
    let mut sampler = Sampler::new(params);
    let mut cache = model.new_cache();
    let mut out = Vec::new();
    let mut input: Vec<u32> = if prompt.is_empty() {
        vec![model.config.bos_token_id]
    } else {
        prompt.to_vec()
    };
    for _ in 0..max_new_tokens {
        if cache.len() + input.len() > model.config.max_position_embeddings
            && model.config.rope_scaling.is_none()
        {
            break;
        }
        let ids: Vec<i64> = input.iter().map(|&x| x as i64).collect();
        let n = ids.len();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &device);
        let logits = model.forward(ids, Some(&mut cache));
        let vocab = logits.dims()[2];
        let last = logits.narrow(1, n - 1, 1).reshape([vocab]);
        let values = last
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32 logits");
        let next = sampler.sample(&values);
        out.push(next);
        if model.config.eos_token_id.contains(next) || !on_token(next) {
            break;
        }
        input = vec![next];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use minicpm_model::config::TokenIds;
    use minicpm_model::init::init_model;
    use minicpm_model::{strict, ModelConfig, Parametrization};

    const VOCAB: usize = 48;

    fn config(kv_heads: usize, tied: bool, eos: TokenIds) -> ModelConfig {
        // Larger weights and no embedding multiplier (unlike MiniCPM's), so that attention, not
        // the current token's embedding, decides the next token: a wrong cache changes the text.
        let text = format!(
            "vocab_size = {VOCAB}\nhidden_size = 32\nintermediate_size = 64\n\
             num_hidden_layers = 2\nnum_attention_heads = 4\nnum_key_value_heads = {kv_heads}\n\
             tie_word_embeddings = {tied}\nmax_position_embeddings = 256\nscale_emb = 1.0\n\
             scale_depth = 1.4\ndim_model_base = 16.0\ninitializer_range = 0.5\n"
        );
        let value = strict::toml_to_value(&text, "test config").unwrap();
        let mut cfg: ModelConfig = strict::from_value(value, "test config").unwrap();
        cfg.validate("test config").unwrap();
        cfg.eos_token_id = eos;
        cfg
    }

    fn greedy() -> SamplingParams {
        SamplingParams {
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
        }
    }

    fn ids(tokens: &[u32], device: &Device) -> Tensor<2, Int> {
        let v: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        Tensor::from_data(TensorData::new(v, [1, tokens.len()]), device)
    }

    fn to_vec(t: Tensor<3>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    /// Logits `[len, vocab]` of a whole sequence, recomputed from scratch without a cache.
    fn full_logits(model: &MiniCpm, tokens: &[u32], device: &Device) -> Vec<f32> {
        to_vec(model.forward(ids(tokens, device), None))
    }

    /// Greedy decoding through the cache against an argmax of a full recomputation after every
    /// token, past the attention kernel's 64-row block; the cache's logits against the full ones.
    fn check_greedy_matches_recomputation(kv_heads: usize, tied: bool) {
        let device = Device::flex();
        // An EOS outside the vocabulary: the model can never stop early.
        let cfg = config(kv_heads, tied, TokenIds::One(VOCAB as u32));
        let model = init_model(&cfg, Parametrization::Mup, 11, &device);
        let prompt: Vec<u32> = (0..20).map(|i| (i * 7 + 3) % VOCAB as u32).collect();
        let new_tokens = 80; // positions 20..100
        let mut seen = 0;
        let out = generate(&model, &prompt, new_tokens, greedy(), |_| {
            seen += 1;
            true
        });
        assert_eq!(out.len(), new_tokens);
        assert_eq!(seen, new_tokens, "on_token sees every token");
        let distinct: std::collections::BTreeSet<u32> = out.iter().copied().collect();
        assert!(distinct.len() >= 5, "degenerate text: {out:?}");

        let mut text = prompt.clone();
        for &next in &out {
            let logits = full_logits(&model, &text, &device);
            let last = &logits[(text.len() - 1) * VOCAB..];
            let (best, &top) =
                last.iter()
                    .enumerate()
                    .fold(
                        (0, &f32::NEG_INFINITY),
                        |b, (j, v)| if *v > *b.1 { (j, v) } else { b },
                    );
            assert_eq!(
                next as usize,
                best,
                "kv {kv_heads}, position {}: generated {next} (logit {}), full argmax {best} ({top})",
                text.len(),
                last[next as usize],
            );
            text.push(next);
        }
        // The text depends on its context: the argmax from the previous token alone (what a
        // decoder that lost its cache would see) differs at many positions.
        let context_free = out
            .iter()
            .enumerate()
            .filter(|&(i, &next)| {
                let previous = text[prompt.len() + i - 1];
                let logits = full_logits(&model, &[previous], &device);
                let best = (0..VOCAB).fold(0, |b, j| if logits[j] > logits[b] { j } else { b });
                best != next as usize
            })
            .count();
        assert!(
            context_free >= new_tokens / 2,
            "kv {kv_heads}: only {context_free} of {new_tokens} tokens need their context"
        );

        // The same sequence one token at a time through a cache gives the full forward's logits.
        let full = full_logits(&model, &text, &device);
        let mut cache = model.new_cache();
        let mut stepwise =
            to_vec(model.forward(ids(&text[..prompt.len()], &device), Some(&mut cache)));
        for t in prompt.len()..text.len() {
            stepwise.extend(to_vec(
                model.forward(ids(&text[t..t + 1], &device), Some(&mut cache)),
            ));
        }
        assert_eq!(cache.len(), text.len());
        let err = full
            .iter()
            .zip(&stepwise)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let scale = full.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(
            err <= 1e-5 * scale.max(1.0),
            "kv {kv_heads}: cached logits off by {err} (scale {scale})"
        );
    }

    #[test]
    fn greedy_with_the_cache_equals_full_recomputation_mha() {
        check_greedy_matches_recomputation(4, true);
    }

    #[test]
    fn greedy_with_the_cache_equals_full_recomputation_gqa() {
        check_greedy_matches_recomputation(2, false);
    }

    #[test]
    fn generation_stops_at_the_first_eos_of_a_list_and_returns_it() {
        let device = Device::flex();
        let never = TokenIds::One(VOCAB as u32);
        let free = init_model(&config(2, false, never), Parametrization::Mup, 5, &device);
        let prompt = [1, 2, 3];
        let long = generate(&free, &prompt, 70, greedy(), |_| true);
        assert_eq!(long.len(), 70);
        // The first token that appears late for the first time becomes an EOS.
        let k = (10..long.len())
            .find(|&k| !long[..k].contains(&long[k]))
            .expect("a token first seen after position 10");
        let eos = TokenIds::Many(vec![VOCAB as u32 + 1, long[k]]);
        let stopping = init_model(&config(2, false, eos), Parametrization::Mup, 5, &device);
        let mut calls = 0;
        let short = generate(&stopping, &prompt, 70, greedy(), |_| {
            calls += 1;
            true
        });
        assert_eq!(
            short,
            long[..=k].to_vec(),
            "stops at the EOS, which is returned"
        );
        assert_eq!(calls, k, "on_token is not called for the EOS");
    }
}
