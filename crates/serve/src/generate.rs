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
