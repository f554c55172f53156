//! The runtime against its oracle, the training forward (`minicpm_model::MiniCpm`), on small
//! random models of every shape variant: MHA and GQA, tied and untied heads, linear, dynamic and
//! YaRN RoPE scaling.

use super::*;
use crate::gguf::TensorType;
use burn::tensor::{Device, Int, Tensor, TensorData};
use minicpm_model::init::init_model;
use minicpm_model::{strict, MiniCpm, ModelConfig, Parametrization};

pub(crate) const VOCAB: usize = 64;

/// A small model whose attention matters: large weights and no embedding multiplier, so a
/// wrong position or a wrong cache changes the text (as in the training forward's tests).
pub(crate) fn config(kv_heads: usize, tied: bool, rope_scaling: &str) -> ModelConfig {
    let text = format!(
        "vocab_size = {VOCAB}\nhidden_size = 64\nintermediate_size = 96\n\
         num_hidden_layers = 2\nnum_attention_heads = 4\nnum_key_value_heads = {kv_heads}\n\
         tie_word_embeddings = {tied}\nmax_position_embeddings = 32\nscale_emb = 1.0\n\
         scale_depth = 1.4\ndim_model_base = 16.0\ninitializer_range = 0.5\n{rope_scaling}"
    );
    let value = strict::toml_to_value(&text, "test config").unwrap();
    let cfg: ModelConfig = strict::from_value(value, "test config").unwrap();
    cfg.validate("test config").unwrap();
    cfg
}

fn variants() -> Vec<(&'static str, ModelConfig)> {
    vec![
        ("mha tied", config(4, true, "")),
        ("gqa untied", config(2, false, "")),
        (
            "dynamic ntk",
            config(
                2,
                true,
                "rope_scaling = { type = \"dynamic\", factor = 2.0 }\n",
            ),
        ),
        (
            "linear",
            config(
                4,
                false,
                "rope_scaling = { type = \"linear\", factor = 2.0 }\n",
            ),
        ),
        (
            "yarn",
            config(
                2,
                false,
                "rope_scaling = { type = \"yarn\", factor = 4.0, \
                 original_max_position_embeddings = 16 }\n",
            ),
        ),
        (
            "moe 4 experts top-2",
            config(2, true, "num_experts = 4\nnum_experts_per_tok = 2\n"),
        ),
    ]
}

/// A random model of `cfg`. An MoE model's routers are scaled up from their N(0, 0.01^2) start,
/// so that each token's choice of experts is decided by a margin far above f32 rounding and the
/// runtime and the training forward, summing in different orders, choose alike.
pub(crate) fn random_model(cfg: &ModelConfig, device: &Device) -> MiniCpm {
    use burn::module::Param;
    use minicpm_model::named::{map_named, NamedMapper};
    use minicpm_model::TensorRole;
    struct Scale;
    impl NamedMapper for Scale {
        fn map<const D: usize>(&mut self, name: &str, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
            match TensorRole::of(name) {
                TensorRole::Router => p.map(|t| t.mul_scalar(300.0)),
                _ => p,
            }
        }
    }
    map_named(init_model(cfg, Parametrization::Mup, 3, device), &mut Scale)
}

fn reference_logits(model: &MiniCpm, tokens: &[u32]) -> Vec<f32> {
    let device = Device::flex();
    let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, tokens.len()]), &device);
    model
        .forward(ids, None)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap()
}

pub(crate) fn runtime_of(model: &MiniCpm, threads: usize) -> InferenceModel {
    let src = MemorySource::of_model(model, TensorType::F32);
    InferenceModel::load(&src, model.config.clone(), threads).unwrap()
}

/// Logits of every position of `tokens`, prefilled at once into a fresh cache.
pub(crate) fn all_logits(rt: &InferenceModel, tokens: &[u32]) -> Vec<f32> {
    let mut cache = rt.new_cache(1, tokens.len());
    let seq = Sequence { slot: 0, tokens };
    rt.forward(&mut cache, &[seq], Logits::All).unwrap()
}

fn argmax(v: &[f32]) -> (usize, f32) {
    v.iter().enumerate().fold(
        (0, f32::NEG_INFINITY),
        |b, (i, &x)| if x > b.1 { (i, x) } else { b },
    )
}

/// Top-1 minus top-2.
fn margin(v: &[f32]) -> f32 {
    let (best, top) = argmax(v);
    let second = v
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != best)
        .fold(f32::NEG_INFINITY, |m, (_, &x)| m.max(x));
    top - second
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub(crate) fn prompt(len: usize, seed: u32) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (i * 7 + seed * 13 + 3) % VOCAB as u32)
        .collect()
}

/// Logits of a whole prompt at once, then a prefill of 20 and token by token through the cache,
/// equal the training forward's (f32 sums in a different order: 1e-4 of the logits' scale).
#[test]
fn logits_equal_the_training_forward_for_every_variant() {
    let device = Device::flex();
    for (name, cfg) in variants() {
        let model = random_model(&cfg, &device);
        let rt = runtime_of(&model, 2);
        // 150 tokens: past max_position_embeddings (32), where dynamic NTK changes the base, and
        // more than two of attention's 64-token blocks.
        let text = prompt(150, 1);
        let want = reference_logits(&model, &text);
        let scale = want.iter().fold(0f32, |m, x| m.max(x.abs())).max(1.0);

        let all = all_logits(&rt, &text);
        let err = max_abs_diff(&all, &want);
        assert!(
            err <= 1e-4 * scale,
            "{name}: prefill logits off by {err} (scale {scale})"
        );

        // Split into a prefill of 20 and single tokens: positions and cache are used right.
        let mut cache = rt.new_cache(1, 160);
        let mut stepwise = rt
            .forward(
                &mut cache,
                &[Sequence {
                    slot: 0,
                    tokens: &text[..20],
                }],
                Logits::All,
            )
            .unwrap();
        for t in 20..text.len() {
            let seq = Sequence {
                slot: 0,
                tokens: &text[t..t + 1],
            };
            stepwise.extend(rt.forward(&mut cache, &[seq], Logits::Last).unwrap());
        }
        assert_eq!(cache.len(0), text.len());
        if minicpm_model::rope::depends_on_length(&cfg) {
            continue; // tested on its own below: past the context, earlier positions' hidden
                      // states depend on the base too
        }
        // Each step against the training forward over the whole sequence at that length.
        let want_stepwise = recomputed_at_each_length(&model, &text, 20);
        let err = max_abs_diff(&stepwise, &want_stepwise);
        assert!(
            err <= 1e-4 * scale,
            "{name}: cached logits off by {err} (scale {scale})"
        );
    }
}

/// The training forward over `text[..first]` (every row), then for each later length `len` the
/// last row of the forward over `text[..len]`: what decoding through a cache must give.
fn recomputed_at_each_length(model: &MiniCpm, text: &[u32], first: usize) -> Vec<f32> {
    let mut out = reference_logits(model, &text[..first]);
    for len in first + 1..=text.len() {
        out.extend_from_slice(&reference_logits(model, &text[..len])[(len - 1) * VOCAB..]);
    }
    out
}

/// Dynamic NTK changes the RoPE base at every length past the trained context (32 here). The
/// runtime then rotates every cached key again with the new base, so that queries and keys turn
/// with the same frequencies (docs/MODEL.md section 13). For a one-layer model, whose keys
/// depend on the tokens alone, decoding through the cache then equals the forward over the whole
/// sequence at each length. Keeping each key at the base it arrived with, as the model's own
/// cache and transformers' generate do, is off by far more than rounding.
#[test]
fn dynamic_ntk_decoding_rotates_cached_keys_with_the_current_base() {
    let device = Device::flex();
    let mut cfg = config(
        2,
        true,
        "rope_scaling = { type = \"dynamic\", factor = 2.0 }\n",
    );
    cfg.num_hidden_layers = 1;
    let model = random_model(&cfg, &device);
    let rt = runtime_of(&model, 2);
    let text = prompt(100, 5);
    let mut cache = rt.new_cache(1, text.len());
    let mut stepwise = rt
        .forward(
            &mut cache,
            &[Sequence {
                slot: 0,
                tokens: &text[..10],
            }],
            Logits::All,
        )
        .unwrap();
    for t in 10..text.len() {
        let seq = Sequence {
            slot: 0,
            tokens: &text[t..t + 1],
        };
        stepwise.extend(rt.forward(&mut cache, &[seq], Logits::Last).unwrap());
    }
    let want = recomputed_at_each_length(&model, &text, 10);
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs())).max(1.0);
    let err = max_abs_diff(&stepwise, &want);
    assert!(err <= 1e-4 * scale, "off by {err} (scale {scale})");

    let kept = first_rotation_reference(&model, &text);
    let within = 32 * VOCAB;
    assert!(max_abs_diff(&kept[..within], &want[..within]) <= 1e-4 * scale);
    let past = max_abs_diff(&kept[within..], &want[within..]);
    assert!(
        past > 1e-2 * scale,
        "keys kept at their first base: only {past} off"
    );
}

/// The training forward through its own cache, one token at a time.
fn first_rotation_reference(model: &MiniCpm, text: &[u32]) -> Vec<f32> {
    let device = Device::flex();
    let mut cache = model.new_cache();
    let mut out = Vec::new();
    for &token in text {
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![token as i64], [1, 1]), &device);
        let logits = model.forward(ids, Some(&mut cache));
        out.extend(
            logits
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap(),
        );
    }
    out
}

/// Greedy decoding with the runtime chooses the training forward's argmax at every step, 40
/// tokens past a 12-token prompt, the runtime through its cache and the reference over the whole
/// text each time; where the reference's top two logits are within 1e-4 (a near-tie that
/// summation order may flip) the logits are compared instead of the tokens.
#[test]
fn greedy_tokens_equal_the_training_forward() {
    let device = Device::flex();
    // Dynamic NTK past the context: see the test above.
    let static_rope = variants()
        .into_iter()
        .filter(|(_, cfg)| !minicpm_model::rope::depends_on_length(cfg));
    for (name, cfg) in static_rope {
        let model = init_model(&cfg, Parametrization::Mup, 9, &device);
        let rt = runtime_of(&model, 2);
        let mut cache = rt.new_cache(1, 64);
        let mut text = prompt(12, 2);
        let mut input = text.clone();
        let mut distinct = std::collections::BTreeSet::new();
        for step in 0..40 {
            let logits = rt
                .forward(
                    &mut cache,
                    &[Sequence {
                        slot: 0,
                        tokens: &input,
                    }],
                    Logits::Last,
                )
                .unwrap();
            let want = reference_logits(&model, &text);
            let last = &want[(text.len() - 1) * VOCAB..];
            let next = argmax(&logits).0 as u32;
            let (best, _) = argmax(last);
            if best != next as usize {
                assert!(
                    margin(last) < 1e-4,
                    "{name}, step {step}: chose {next}, reference argmax {best} by a margin of {}",
                    margin(last)
                );
                assert!(
                    max_abs_diff(&logits, last) < 1e-4,
                    "{name}: near-tie logits differ"
                );
            }
            distinct.insert(next);
            text.push(next);
            input = vec![next];
        }
        assert!(distinct.len() >= 5, "{name}: degenerate text");
    }
}

/// Sequences of different lengths decoded together (prompts prefilled in one pass, then one
/// token each per pass) give each sequence the tokens and logits it gets alone.
#[test]
fn batched_decoding_equals_decoding_each_sequence_alone() {
    let device = Device::flex();
    let cfg = config(2, true, "");
    let model = init_model(&cfg, Parametrization::Mup, 4, &device);
    let rt = runtime_of(&model, 2);
    let prompts: Vec<Vec<u32>> = [3, 17, 9, 1, 30]
        .iter()
        .map(|&n| prompt(n, n as u32))
        .collect();
    let steps = 24;
    let alone: Vec<(Vec<u32>, Vec<f32>)> = prompts
        .iter()
        .map(|p| {
            let mut cache = rt.new_cache(1, 64);
            let (mut input, mut out, mut logits) = (p.clone(), vec![], vec![]);
            for _ in 0..steps {
                let l = rt
                    .forward(
                        &mut cache,
                        &[Sequence {
                            slot: 0,
                            tokens: &input,
                        }],
                        Logits::Last,
                    )
                    .unwrap();
                let next = argmax(&l).0 as u32;
                out.push(next);
                logits.extend(l);
                input = vec![next];
            }
            (out, logits)
        })
        .collect();

    let mut cache = rt.new_cache(prompts.len(), 64);
    let mut inputs = prompts.clone();
    let mut outs = vec![vec![]; prompts.len()];
    let mut logits = vec![vec![]; prompts.len()];
    for _ in 0..steps {
        let seqs: Vec<Sequence> = inputs
            .iter()
            .enumerate()
            .map(|(slot, tokens)| Sequence { slot, tokens })
            .collect();
        let l = rt.forward(&mut cache, &seqs, Logits::Last).unwrap();
        for (i, row) in l.chunks(VOCAB).enumerate() {
            let next = argmax(row).0 as u32;
            outs[i].push(next);
            logits[i].extend_from_slice(row);
            inputs[i] = vec![next];
        }
    }
    for (i, (want, want_logits)) in alone.iter().enumerate() {
        assert_eq!(&outs[i], want, "sequence {i}");
        let err = max_abs_diff(&logits[i], want_logits);
        assert!(err <= 1e-5, "sequence {i}: logits off by {err}");
    }
}

#[test]
fn one_and_two_threads_agree() {
    let device = Device::flex();
    let model = init_model(&config(2, false, ""), Parametrization::Mup, 5, &device);
    let text = prompt(30, 4);
    let run = |threads| all_logits(&runtime_of(&model, threads), &text);
    assert!(max_abs_diff(&run(1), &run(2)) <= 1e-6);
}

#[test]
fn an_hf_directory_loads_as_the_model_in_memory_in_its_stored_type() {
    let device = Device::flex();
    let cfg = config(2, false, "");
    let model = init_model(&cfg, Parametrization::Mup, 6, &device);
    let dir = tempfile::tempdir().unwrap();
    minicpm_model::hf::save(&model, dir.path()).unwrap();
    let src = SafetensorsSource::open(dir.path()).unwrap();
    let from_dir = InferenceModel::load(&src, cfg.clone(), 2).unwrap();
    assert_eq!(from_dir.weights.layers[0].q.ty(), TensorType::F32);
    let in_memory = runtime_of(&model, 2);
    let text = prompt(10, 5);
    assert_eq!(all_logits(&from_dir, &text), all_logits(&in_memory, &text));
}

#[test]
fn input_the_cache_cannot_take_is_refused_and_leaves_the_cache_as_it_was() {
    let device = Device::flex();
    let model = init_model(&config(2, true, ""), Parametrization::Mup, 7, &device);
    let rt = runtime_of(&model, 1);
    let mut cache = rt.new_cache(2, 16);
    let ten = prompt(10, 1);
    rt.forward(
        &mut cache,
        &[Sequence {
            slot: 0,
            tokens: &ten,
        }],
        Logits::Last,
    )
    .unwrap();
    let cases: Vec<(Vec<Sequence>, String)> = vec![
        (
            vec![Sequence {
                slot: 0,
                tokens: &ten[..7],
            }],
            "the sequence in slot 0 would hold 17 tokens, more than the context of 16".into(),
        ),
        (
            vec![Sequence {
                slot: 1,
                tokens: &[VOCAB as u32],
            }],
            format!("token id {VOCAB} is outside the vocabulary of {VOCAB}"),
        ),
        (
            vec![Sequence {
                slot: 2,
                tokens: &ten[..1],
            }],
            "slot 2 does not exist (the cache has 2)".into(),
        ),
        (
            vec![
                Sequence {
                    slot: 1,
                    tokens: &ten[..1],
                },
                Sequence {
                    slot: 1,
                    tokens: &ten[..1],
                },
            ],
            "slot 1 appears twice in one forward pass".into(),
        ),
    ];
    for (seqs, msg) in cases {
        let e = rt.forward(&mut cache, &seqs, Logits::Last).unwrap_err();
        assert_eq!(e.to_string(), msg);
        assert_eq!((cache.len(0), cache.len(1)), (10, 0));
    }
}

#[test]
fn generation_stops_at_the_first_eos_of_a_list_and_returns_it() {
    use minicpm_model::config::TokenIds;
    let device = Device::flex();
    let mut cfg = config(2, false, "");
    cfg.eos_token_id = TokenIds::One(VOCAB as u32); // never generated
    let model = init_model(&cfg, Parametrization::Mup, 5, &device);
    let request = Request {
        prompt: vec![1, 2, 3],
        max_new_tokens: 25,
        sampling: crate::SamplingParams::greedy(),
    };
    let free = runtime_of(&model, 1);
    let long = free
        .generate(std::slice::from_ref(&request), |_, _| true)
        .unwrap()
        .remove(0);
    assert_eq!(long.len(), 25);
    // The first token that appears late for the first time becomes an EOS.
    let k = (10..long.len())
        .find(|&k| !long[..k].contains(&long[k]))
        .expect("a token first seen after position 10");
    let mut stopping = runtime_of(&model, 1);
    stopping.config.eos_token_id = TokenIds::Many(vec![VOCAB as u32 + 1, long[k]]);
    let mut calls = 0;
    let short = stopping
        .generate(&[request], |_, _| {
            calls += 1;
            true
        })
        .unwrap()
        .remove(0);
    assert_eq!(
        short,
        long[..=k].to_vec(),
        "stops at the EOS, which is returned"
    );
    assert_eq!(calls, k, "on_token is not called for the EOS");
}

/// Requests of different prompt lengths and budgets generated together get what each gets
/// alone, and a request stopped by `on_token` does not disturb the others.
#[test]
fn generating_requests_together_equals_generating_them_alone() {
    let device = Device::flex();
    let model = init_model(&config(2, true, ""), Parametrization::Mup, 8, &device);
    let rt = runtime_of(&model, 2);
    let sampled = crate::SamplingParams {
        temperature: 1.0,
        seed: 11,
        ..crate::SamplingParams::default()
    };
    let requests: Vec<Request> = [
        (5, 20, sampled),
        (19, 7, crate::SamplingParams::greedy()),
        (1, 30, sampled),
    ]
    .into_iter()
    .map(|(len, max_new_tokens, sampling)| Request {
        prompt: prompt(len, len as u32),
        max_new_tokens,
        sampling,
    })
    .collect();
    let alone: Vec<Vec<u32>> = requests
        .iter()
        .map(|r| {
            rt.generate(std::slice::from_ref(r), |_, _| true)
                .unwrap()
                .remove(0)
        })
        .collect();
    let together = rt.generate(&requests, |_, _| true).unwrap();
    assert_eq!(together, alone);
    assert_eq!(
        together.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![20, 7, 30]
    );
    // Stopping request 0 after 3 tokens leaves the others as they were.
    let mut seen = 0;
    let stopped = rt
        .generate(&requests, |i, _| {
            seen += (i == 0) as usize;
            i != 0 || seen < 3
        })
        .unwrap();
    assert_eq!(stopped[0], alone[0][..3].to_vec());
    assert_eq!(stopped[1..], alone[1..]);
}

#[test]
fn a_prompt_longer_than_the_context_is_refused() {
    let device = Device::flex();
    let model = init_model(&config(2, true, ""), Parametrization::Mup, 8, &device);
    let rt = runtime_of(&model, 1);
    let request = Request {
        prompt: prompt(33, 1),
        max_new_tokens: 4,
        sampling: crate::SamplingParams::greedy(),
    };
    let e = rt.generate(&[request], |_, _| true).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the prompt has 33 tokens, more than the model's context of 32"
    );
}

/// Speculative greedy decoding gives plain greedy decoding's tokens, with a draft that always
/// agrees (the model itself: every proposal accepted) and with an unrelated draft (most
/// rejected), for several draft lengths and up to the context limit.
#[test]
fn speculative_decoding_gives_the_greedy_tokens() {
    use super::speculative::generate_speculative;
    let device = Device::flex();
    let cfg = config(2, true, "");
    let target = runtime_of(&init_model(&cfg, Parametrization::Mup, 21, &device), 2);
    let mut small = config(2, true, "");
    small.num_hidden_layers = 1;
    let other = runtime_of(&init_model(&small, Parametrization::Mup, 22, &device), 2);
    for (len, max_new) in [(5, 20), (12, 40)] {
        let p = prompt(len, 3);
        let request = Request {
            prompt: p.clone(),
            max_new_tokens: max_new,
            sampling: crate::SamplingParams::greedy(),
        };
        let plain = target.generate(&[request], |_, _| true).unwrap().remove(0);
        for k in [1, 3, 5] {
            let (same, stats) =
                generate_speculative(&target, &target, &p, max_new, k, |_| true).unwrap();
            assert_eq!(same, plain, "self-draft, k={k}");
            assert_eq!(stats.accepted, stats.proposed, "a model agrees with itself");
            assert!(stats.target_passes < plain.len(), "{stats:?}");
            let (spec, stats) =
                generate_speculative(&target, &other, &p, max_new, k, |_| true).unwrap();
            assert_eq!(spec, plain, "other draft, k={k}");
            assert!(stats.acceptance_rate() < 0.9, "{stats:?}");
        }
    }
}

/// The runtime's score of a text is the training forward's cross-entropy on the same windows.
#[test]
fn scoring_equals_the_training_forward_cross_entropy() {
    let device = Device::flex();
    let model = init_model(&config(2, false, ""), Parametrization::Mup, 12, &device);
    let rt = runtime_of(&model, 2);
    let text = prompt(3 * 17 + 5, 6);
    let nll = rt.score(&text, 16, 2).unwrap();
    assert_eq!(nll.tokens, 3 * 16, "three whole windows, the tail dropped");
    let mut want = 0.0;
    for w in text.chunks_exact(17) {
        let logits = reference_logits(&model, &w[..16]);
        for (row, &t) in logits.chunks(VOCAB).zip(&w[1..]) {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
            let z: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
            want += max + z.ln() - row[t as usize] as f64;
        }
    }
    assert!(
        (nll.sum - want).abs() < 1e-4 * want,
        "{} vs {want}",
        nll.sum
    );
}

/// A model exported to GGUF runs on the runtime as the HF directory does: f32 to within f32
/// summation order (q/k rows in llama.cpp's layout, RoPE applied in that layout), f16 and q8_0
/// within their rounding of the weights (and, for q8_0, of the activations, quantised to 8 bits
/// as llama.cpp does). Tolerances are relative to the logits' largest magnitude, on models with
/// MiniCPM's init and multipliers (measured: f16 1.1-3.0e-4, q8_0 0.5-1.5e-3); a trained
/// model's figures are in docs/PERFORMANCE.md.
#[test]
fn gguf_files_give_the_logits_of_the_hf_directory() {
    use crate::gguf_model::{export, FileType, GgufSource};
    let device = Device::flex();
    // Dynamic NTK is refused by the export (gguf_model's tests).
    let exportable = variants()
        .into_iter()
        .filter(|(_, cfg)| !minicpm_model::rope::depends_on_length(cfg));
    for (name, mut cfg) in exportable {
        // MiniCPM's own multipliers and init, not the sensitive test ones.
        (cfg.initializer_range, cfg.scale_emb) = (0.1, 12.0);
        let model = random_model(&cfg, &device);
        let tmp = tempfile::tempdir().unwrap();
        minicpm_model::hf::save(&model, tmp.path()).unwrap();
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/gguf/model/tokenizer.json"),
            tmp.path().join("tokenizer.json"),
        )
        .unwrap();
        let text = prompt(40, 7);
        let logits = |rt: &InferenceModel| all_logits(rt, &text);
        let want = logits(&runtime_of(&model, 2));
        let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
        for (ty, tolerance) in [
            (FileType::F32, 1e-5),
            (FileType::F16, 1e-3),
            (FileType::Q8_0, 5e-3),
        ] {
            let file = tmp.path().join(format!("m-{}.gguf", ty.name()));
            export::export(tmp.path(), &file, "m", ty).unwrap();
            let src = GgufSource::open(&file).unwrap();
            assert_eq!(src.rope_layout(), RopeLayout::Interleaved);
            let rt = InferenceModel::load(&src, src.config().clone(), 2).unwrap();
            let err = max_abs_diff(&logits(&rt), &want) / scale;
            assert!(err <= tolerance, "{name} {ty:?}: relative error {err}");
        }
    }
}

/// The reference log-likelihood of `continuation` after `context`: the training forward over the
/// whole sequence at once, log-softmax in f64 at the positions that predict the continuation,
/// and whether each continuation token is the first maximum of its row.
fn reference_loglikelihood(model: &MiniCpm, context: &[u32], continuation: &[u32]) -> (f64, bool) {
    let whole: Vec<u32> = context.iter().chain(continuation).copied().collect();
    let logits = reference_logits(model, &whole[..whole.len() - 1]);
    let rows = logits.chunks(VOCAB).skip(context.len() - 1);
    let (mut sum, mut greedy) = (0.0, true);
    for (row, &t) in rows.zip(continuation) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
        let z: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
        sum += row[t as usize] as f64 - max - z.ln();
        greedy &= row.iter().position(|&x| x as f64 == max) == Some(t as usize);
    }
    (sum, greedy)
}

/// Requests of many lengths: (context, continuation) pairs, some sharing a context.
fn scoring_requests() -> Vec<(Vec<u32>, Vec<u32>)> {
    [(1, 1), (7, 3), (30, 1), (2, 12), (7, 4), (19, 9), (1, 20)]
        .iter()
        .enumerate()
        .map(|(i, &(c, n))| (prompt(c, 3 + i as u32 % 2), prompt(n, 20 + i as u32)))
        .collect()
}

/// Batched log-likelihoods equal the training forward's log-softmax over each whole sequence,
/// on every model variant, and with a budget so small that most requests run alone (and the
/// cache is reallocated as passes change shape) the numbers are those of one large batch.
#[test]
fn loglikelihoods_equal_the_training_forward_and_do_not_depend_on_batching() {
    let device = Device::flex();
    let requests = scoring_requests();
    for (name, cfg) in variants() {
        let model = init_model(&cfg, Parametrization::Mup, 14, &device);
        let rt = runtime_of(&model, 2);
        let together = rt.loglikelihoods(&requests, 1 << 12, |_| {}).unwrap();
        let (mut passes, mut scored) = (0, 0);
        let small_passes = rt
            .loglikelihoods(&requests, 24, |n| {
                passes += 1;
                scored += n;
            })
            .unwrap();
        assert_eq!(scored, requests.len());
        assert!(passes > 3, "{passes} passes");
        for (i, (context, continuation)) in requests.iter().enumerate() {
            let (want, _) = reference_loglikelihood(&model, context, continuation);
            let got = together[i].logprob;
            assert!(
                (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{name}, request {i}: {got} vs {want}"
            );
            let alone = rt
                .loglikelihoods(&[(context.clone(), continuation.clone())], 1 << 12, |_| {})
                .unwrap()[0];
            for other in [small_passes[i], alone] {
                assert!((other.logprob - got).abs() <= 1e-5, "{name}, request {i}");
                assert_eq!(other.greedy, together[i].greedy, "{name}, request {i}");
            }
        }
    }
}

/// A continuation the model generates greedily is greedy; changing one of its tokens makes it
/// not greedy and less likely; and greedy agrees with the reference's argmax on other requests.
#[test]
fn greedy_is_true_exactly_for_the_argmax_continuation() {
    let device = Device::flex();
    let model = init_model(&config(2, true, ""), Parametrization::Mup, 15, &device);
    let rt = runtime_of(&model, 2);
    let context = prompt(9, 5);
    let request = Request {
        prompt: context.clone(),
        max_new_tokens: 6,
        sampling: crate::SamplingParams::greedy(),
    };
    let best = rt.generate(&[request], |_, _| true).unwrap().remove(0);
    assert_eq!(best.len(), 6, "no EOS in this model's greedy text");
    let mut changed = best.clone();
    changed[3] = (changed[3] + 1) % VOCAB as u32;
    let r = rt
        .loglikelihoods(
            &[(context.clone(), best.clone()), (context.clone(), changed)],
            1 << 12,
            |_| {},
        )
        .unwrap();
    assert!(r[0].greedy && !r[1].greedy, "{r:?}");
    assert!(r[0].logprob > r[1].logprob, "{r:?}");
    for (context, continuation) in scoring_requests() {
        let (_, want) = reference_loglikelihood(&model, &context, &continuation);
        let got = rt
            .loglikelihoods(&[(context, continuation)], 64, |_| {})
            .unwrap()[0];
        assert_eq!(got.greedy, want);
    }
}

#[test]
fn requests_the_model_cannot_score_are_refused_naming_the_request() {
    let device = Device::flex();
    let model = init_model(&config(2, true, ""), Parametrization::Mup, 16, &device);
    let rt = runtime_of(&model, 1);
    let ok = (vec![1, 2], vec![3]);
    let cases = [
        ((vec![], vec![3]), "request 1: no context tokens"),
        ((vec![1], vec![]), "request 1: no continuation tokens"),
        (
            (vec![1], vec![VOCAB as u32]),
            "request 1: token id 64 is outside",
        ),
    ];
    for (bad, want) in cases {
        let e = rt
            .loglikelihoods(&[ok.clone(), bad], 64, |_| {})
            .unwrap_err();
        assert!(e.to_string().starts_with(want), "{e}");
    }
    // Dynamic NTK has no limit; a plain model's is max_position_embeddings (32).
    let e = rt
        .loglikelihoods(&[(prompt(30, 1), prompt(4, 2))], 64, |_| {})
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "request 0: 33 tokens to read, more than the model's context of 32"
    );
    // Logits of a position the pass does not have: refused before the cache changes.
    let mut cache = rt.new_cache(1, 8);
    let seq = Sequence {
        slot: 0,
        tokens: &[1, 2, 3],
    };
    let e = rt.forward_rows(&mut cache, &[seq], &[0, 3]).unwrap_err();
    assert_eq!(e, RuntimeError::NoSuchRow { row: 3, tokens: 3 });
    assert_eq!(cache.len(0), 0);
}
