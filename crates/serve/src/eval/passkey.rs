//! Passkey retrieval on the inference runtime (docs/EVAL.md, "Passkey retrieval"): for each
//! length and depth, prompts that hide a random key at that depth, answered by greedy decoding;
//! a cell's accuracy is the share answered with the key.

use super::EvalError;
use crate::runtime::generate::Request;
use crate::runtime::InferenceModel;
use crate::sampling::SamplingParams;
use minicpm_data::passkey::{self, Passkey};
use minicpm_data::TextTokenizer;
use serde::Serialize;

#[derive(Debug, Clone, Copy)]
pub struct PasskeyOptions {
    /// Prompts per (length, depth) cell.
    pub trials: usize,
    /// Digits of each key.
    pub digits: usize,
    pub seed: u64,
    /// Prompt tokens per generation call (prompts are prefilled together up to this many).
    pub batch_tokens: usize,
}

/// One (length, depth) cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PasskeyCell {
    /// The prompts' length in tokens, at most (BOS included).
    pub length: usize,
    /// Where the key sits in the filler: 0 first, 1 last.
    pub depth: f64,
    /// The keys and what the model answered (None: the prompt is beyond the model's context).
    pub answers: Vec<(String, Option<String>)>,
}

impl PasskeyCell {
    /// The share of prompts answered with their key; None beyond the model's context.
    pub fn accuracy(&self) -> Option<f64> {
        let answered: Vec<bool> = self
            .answers
            .iter()
            .map(|(key, got)| got.as_deref().map(|g| passkey::answers(key, g)))
            .collect::<Option<_>>()?;
        Some(answered.iter().filter(|&&a| a).count() as f64 / answered.len().max(1) as f64)
    }
}

/// Every cell of `lengths` x `depths` (depths spread evenly over 0..1), in that order.
pub fn run(
    model: &InferenceModel,
    tokenizer: &TextTokenizer,
    lengths: &[usize],
    depths: usize,
    opts: PasskeyOptions,
) -> Result<Vec<PasskeyCell>, EvalError> {
    let bos = model.config.bos_token_id;
    let count = |text: &str| Ok(tokenizer.encode(text)?.len() + 1);
    let mut cells = Vec::new();
    for (li, &length) in lengths.iter().enumerate() {
        for di in 0..depths {
            let depth = passkey::spread(di, depths);
            let seed = opts.seed ^ ((li as u64) << 32 | di as u64).wrapping_mul(0x9e37_79b9);
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
            let prompts: Vec<Passkey> = (0..opts.trials)
                .map(|_| {
                    let key = passkey::random_key(&mut rng, opts.digits);
                    passkey::prompt(&key, depth, length, count)
                })
                .collect::<Result<_, _>>()?;
            let answers = answer(model, tokenizer, bos, &prompts, opts)?;
            cells.push(PasskeyCell {
                length,
                depth,
                answers: prompts.into_iter().map(|p| p.key).zip(answers).collect(),
            });
        }
    }
    Ok(cells)
}

/// Greedy answers to `prompts`, decoded; None for every prompt when they are longer than the
/// model's context.
fn answer(
    model: &InferenceModel,
    tokenizer: &TextTokenizer,
    bos: u32,
    prompts: &[Passkey],
    opts: PasskeyOptions,
) -> Result<Vec<Option<String>>, EvalError> {
    let mut requests = Vec::with_capacity(prompts.len());
    for p in prompts {
        let mut ids = vec![bos];
        ids.extend(tokenizer.encode(&p.prompt)?);
        requests.push(Request {
            prompt: ids,
            // Digits may take a token each, and the check needs the one after them.
            max_new_tokens: opts.digits + 2,
            sampling: SamplingParams::greedy(),
        });
    }
    let longest = requests.iter().map(|r| r.prompt.len()).max().unwrap_or(0);
    if longest > model.context_limit() {
        return Ok(vec![None; prompts.len()]);
    }
    let per_call = (opts.batch_tokens / longest.max(1)).max(1);
    let mut answers = Vec::with_capacity(prompts.len());
    for group in requests.chunks(per_call) {
        for ids in model.generate(group, |_, _| true)? {
            answers.push(Some(tokenizer.decode(&ids)?));
        }
    }
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::TensorType;
    use crate::runtime::MemorySource;
    use burn::tensor::Device;
    use minicpm_model::init::init_model;
    use minicpm_model::{strict, ModelConfig, Parametrization};

    /// A random model retrieves nothing, but every cell is filled, keys follow the seed, and a
    /// length beyond the context is reported as such, not as a failure.
    #[test]
    fn cells_cover_the_grid_and_lengths_beyond_the_context_are_marked() {
        let p = passkey::prompt("12345", 0.5, 400, |t| Ok(t.len() / 3)).unwrap();
        let tok = TextTokenizer::train_bpe(std::iter::repeat_n(p.document(), 10), 400).unwrap();
        let text = format!(
            "vocab_size = {}\nhidden_size = 32\nintermediate_size = 64\nnum_hidden_layers = 1\n\
             num_attention_heads = 2\nmax_position_embeddings = 160\n",
            tok.vocab_size()
        );
        let cfg: ModelConfig =
            strict::from_value(strict::toml_to_value(&text, "test").unwrap(), "test").unwrap();
        let model = init_model(&cfg, Parametrization::Mup, 5, &Device::flex());
        let rt =
            InferenceModel::load(&MemorySource::of_model(&model, TensorType::F32), cfg, 2).unwrap();
        let opts = PasskeyOptions {
            trials: 3,
            digits: 3,
            seed: 1,
            batch_tokens: 128,
        };
        let cells = run(&rt, &tok, &[120, 400], 2, opts).unwrap();
        assert_eq!(cells.len(), 4);
        assert_eq!(cells, run(&rt, &tok, &[120, 400], 2, opts).unwrap());
        assert_eq!((cells[0].depth, cells[1].depth), (0.0, 1.0));
        assert!(cells[..2].iter().all(|c| c.accuracy().is_some()));
        assert!(cells[..2].iter().all(|c| c.answers.len() == 3));
        assert!(
            cells[2..].iter().all(|c| c.accuracy().is_none()),
            "400 > 160 positions"
        );
    }
}
