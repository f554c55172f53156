//! The tokenizer as llama.cpp's "llama" (SentencePiece) vocabulary, from an HF `tokenizer.json`.
//!
//! The project's tokenizers are SentencePiece-style BPE: "▁" for spaces and one prepended, byte
//! fallback through `<0xNN>` tokens, `<unk>` `<s>` `</s>` at 0, 1, 2. llama.cpp's SPM tokenizer
//! merges, among adjacent symbol pairs whose concatenation is a token, the pair whose token has
//! the highest score (the leftmost on ties). BPE instead applies its merges in rank order. Giving
//! the token a merge makes the score `-rank` makes the two agree (the pair SPM picks is the pair
//! of lowest merge rank), except where one token can be reached by two different splits. HF's
//! own conversion path in llama.cpp (`LlamaHfVocab`) scores every token -1000, which leaves SPM
//! merging left to right. A Unigram `tokenizer.json` keeps its own scores.
//!
//! Measured with llama.cpp 0c1e57098 (`scripts/bench/gguf_parity.sh`) on the demo's 4,096-token
//! tokenizer: 454 of 454 texts (English, Chinese, digits, code, emoji and 438 lines of the demo
//! corpus) give the same ids as the HF tokenizer; the same file with every score -1000, 80 of 438.
//!
//! The whole `tokenizer.json` also goes in as `tokenizer.huggingface.json`, so that this project
//! loads exactly the same tokenizer back.

use crate::chat_template::ChatTemplate;
use crate::gguf::{Value, ValueType};
use serde_json::Value as Json;
use std::collections::HashMap;

/// llama.cpp's token types.
pub const NORMAL: i32 = 1;
pub const UNKNOWN: i32 = 2;
pub const CONTROL: i32 = 3;
pub const USER_DEFINED: i32 = 4;
pub const UNUSED: i32 = 5;
pub const BYTE: i32 = 6;

/// A vocabulary in llama.cpp's arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocab {
    pub tokens: Vec<String>,
    pub scores: Vec<f32>,
    pub types: Vec<i32>,
    pub unk: Option<u32>,
}

fn is_byte_token(t: &str) -> bool {
    t.len() == 6
        && t.starts_with("<0x")
        && t.ends_with('>')
        && t[3..5]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
}

/// The vocabulary of `tokenizer_json` padded to `vocab_size` entries (the embedding's rows), as
/// llama.cpp's converter pads: `[PAD{id}]`, unused, score -10000.
pub fn vocab(tokenizer_json: &str, vocab_size: usize) -> Result<Vocab, String> {
    let json: Json = serde_json::from_str(tokenizer_json).map_err(|e| format!("not JSON: {e}"))?;
    let model = &json["model"];
    for part in ["normalizer", "pre_tokenizer"] {
        if json[part].to_string().contains("ByteLevel") {
            return Err(format!(
                "a byte-level {part} is GPT-2 style, not SentencePiece: llama.cpp's \"llama\" vocabulary cannot express it"
            ));
        }
    }
    let mut tokens: Vec<Option<String>> = vec![None; vocab_size];
    let mut scores = vec![0f32; vocab_size];
    let mut types = vec![NORMAL; vocab_size];
    let mut put = |id: usize, text: &str| -> Result<(), String> {
        let slot = tokens.get_mut(id).ok_or_else(|| {
            format!("token {text:?} has id {id}, beyond the model's vocabulary of {vocab_size}")
        })?;
        *slot = Some(text.to_string());
        Ok(())
    };
    let unk_text = model["unk_token"].as_str().map(String::from);
    let mut unk;
    match model["type"].as_str() {
        Some("BPE") => {
            let vocab = model["vocab"]
                .as_object()
                .ok_or("the BPE model has no vocab")?;
            let mut by_text = HashMap::new();
            for (text, id) in vocab {
                let id = id
                    .as_u64()
                    .ok_or_else(|| format!("token {text:?}: bad id"))?
                    as usize;
                put(id, text)?;
                by_text.insert(text.as_str(), id);
            }
            let byte_fallback = model["byte_fallback"].as_bool().unwrap_or(false);
            let merges = model["merges"]
                .as_array()
                .ok_or("the BPE model has no merges")?;
            let mut scored = vec![false; vocab_size];
            for (rank, m) in merges.iter().enumerate() {
                let (a, b) = match m {
                    Json::String(s) => s.split_once(' ').ok_or_else(|| format!("merge {s:?}"))?,
                    Json::Array(p) if p.len() == 2 => (
                        p[0].as_str().ok_or("bad merge")?,
                        p[1].as_str().ok_or("bad merge")?,
                    ),
                    other => return Err(format!("merge {other}")),
                };
                if let Some(&id) = by_text.get(format!("{a}{b}").as_str()) {
                    if !scored[id] {
                        scored[id] = true;
                        scores[id] = 0.0 - rank as f32; // never -0.0
                    }
                }
            }
            for (text, &id) in &by_text {
                if byte_fallback && is_byte_token(text) {
                    types[id] = BYTE;
                }
            }
            unk = unk_text
                .as_deref()
                .and_then(|u| by_text.get(u))
                .map(|&id| id as u32);
        }
        Some("Unigram") => {
            let vocab = model["vocab"]
                .as_array()
                .ok_or("the Unigram model has no vocab")?;
            for (id, entry) in vocab.iter().enumerate() {
                let text = entry[0]
                    .as_str()
                    .ok_or_else(|| format!("token {id}: no text"))?;
                put(id, text)?;
                scores[id] = entry[1].as_f64().unwrap_or(0.0) as f32;
                if model["byte_fallback"].as_bool().unwrap_or(false) && is_byte_token(text) {
                    types[id] = BYTE;
                }
            }
            unk = model["unk_id"].as_u64().map(|u| u as u32);
        }
        other => {
            let kind = other.unwrap_or("missing");
            return Err(format!(
                "a {kind} model: only BPE and Unigram map to llama.cpp's \"llama\" vocabulary"
            ));
        }
    }
    for added in json["added_tokens"].as_array().into_iter().flatten() {
        let id = added["id"].as_u64().ok_or("an added token without an id")? as usize;
        let text = added["content"]
            .as_str()
            .ok_or("an added token without content")?;
        put(id, text)?;
        let special = added["special"].as_bool().unwrap_or(false);
        types[id] = if Some(text) == unk_text.as_deref() {
            unk = Some(id as u32);
            UNKNOWN
        } else if special {
            CONTROL
        } else {
            USER_DEFINED
        };
        scores[id] = 0.0;
    }
    if let Some(u) = unk {
        types[u as usize] = UNKNOWN;
    }
    let tokens = tokens
        .into_iter()
        .enumerate()
        .map(|(id, t)| {
            t.unwrap_or_else(|| {
                types[id] = UNUSED;
                scores[id] = -10000.0;
                format!("[PAD{id}]")
            })
        })
        .collect();
    Ok(Vocab {
        tokens,
        scores,
        types,
        unk,
    })
}

/// `tokenizer_config.json`'s chat template: a string, or a list of named ones (the "default").
pub fn config_chat_template(tokenizer_config: &Json) -> Option<String> {
    match &tokenizer_config["chat_template"] {
        Json::String(s) => Some(s.clone()),
        Json::Array(list) => list
            .iter()
            .find(|t| t["name"] == "default")
            .and_then(|t| t["template"].as_str().map(String::from)),
        _ => None,
    }
}

/// The tokenizer's metadata in the order llama.cpp's converter writes it
/// (`_set_vocab_llama_hf` then `SpecialVocab.add_to_gguf`), plus `tokenizer.huggingface.json`.
/// `tokenizer_config` is the model directory's `tokenizer_config.json`, if it has one.
pub fn metadata(
    tokenizer_json: &str,
    tokenizer_config: Option<&Json>,
    vocab_size: usize,
    bos: u32,
    eos: u32,
) -> Result<Vec<(String, Value)>, String> {
    let v = vocab(tokenizer_json, vocab_size)?;
    let flag = |key: &str, default: bool| {
        tokenizer_config
            .and_then(|c| c[key].as_bool())
            .unwrap_or(default)
    };
    let template = tokenizer_config
        .and_then(config_chat_template)
        .unwrap_or_else(|| ChatTemplate::MiniCpm.jinja().to_string());
    let s = |x: &str| Value::String(x.to_string());
    let mut out = vec![
        ("tokenizer.ggml.model".into(), s("llama")),
        ("tokenizer.ggml.pre".into(), s("default")),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(ValueType::String, v.tokens.iter().map(|t| s(t)).collect()),
        ),
        (
            "tokenizer.ggml.scores".into(),
            Value::Array(
                ValueType::F32,
                v.scores.into_iter().map(Value::F32).collect(),
            ),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(
                ValueType::I32,
                v.types.into_iter().map(Value::I32).collect(),
            ),
        ),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(bos)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(eos)),
    ];
    if let Some(unk) = v.unk {
        out.push(("tokenizer.ggml.unknown_token_id".into(), Value::U32(unk)));
    }
    out.extend([
        (
            "tokenizer.ggml.add_bos_token".into(),
            Value::Bool(flag("add_bos_token", true)),
        ),
        (
            "tokenizer.ggml.add_eos_token".into(),
            Value::Bool(flag("add_eos_token", false)),
        ),
        ("tokenizer.chat_template".into(), Value::String(template)),
        ("tokenizer.huggingface.json".into(), s(tokenizer_json)),
    ]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = r#"{
      "added_tokens": [
        {"id": 0, "content": "<unk>", "special": true},
        {"id": 1, "content": "<s>", "special": true},
        {"id": 2, "content": "</s>", "special": true}
      ],
      "normalizer": null, "pre_tokenizer": null,
      "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true,
        "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x41>": 3, "▁": 4, "t": 5, "h": 6,
                  "▁t": 7, "▁th": 8, "<0x0a>": 9},
        "merges": [["▁", "t"], "▁t h"]}
    }"#;

    #[test]
    fn types_scores_and_padding() {
        let v = vocab(TINY, 12).unwrap();
        assert_eq!(v.tokens[7], "▁t");
        assert_eq!(v.tokens[11], "[PAD11]");
        assert_eq!(
            v.types,
            vec![
                UNKNOWN, CONTROL, CONTROL, BYTE, NORMAL, NORMAL, NORMAL, NORMAL, NORMAL, NORMAL,
                UNUSED, UNUSED
            ]
        );
        // Earlier merges score higher; tokens that no merge makes score 0.
        assert_eq!(v.scores[7], 0.0);
        assert_eq!(v.scores[8], -1.0);
        assert_eq!(v.scores[5], 0.0);
        assert_eq!(v.scores[10], -10000.0);
        assert_eq!(v.unk, Some(0));
    }

    /// llama.cpp's SPM tokenizer (`llm_tokenizer_spm_session`) over a vocabulary: "▁" for each
    /// space and one prepended, then from single characters, merge the adjacent pair whose
    /// concatenation is a token of the highest score (the leftmost on ties) until none is;
    /// a character that is no token becomes its UTF-8 bytes' `<0xNN>` tokens.
    fn spm(v: &Vocab, text: &str) -> Vec<u32> {
        let ids: HashMap<&str, usize> = v
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i))
            .collect();
        let text = format!("▁{}", text.replace(' ', "▁"));
        let mut symbols: Vec<String> = text.chars().map(String::from).collect();
        loop {
            let best = (0..symbols.len().saturating_sub(1))
                .filter_map(|i| {
                    let id = *ids.get(format!("{}{}", symbols[i], symbols[i + 1]).as_str())?;
                    Some((i, v.scores[id]))
                })
                .fold(None, |b: Option<(usize, f32)>, (i, s)| match b {
                    Some((_, bs)) if bs >= s => b,
                    _ => Some((i, s)),
                });
            let Some((i, _)) = best else { break };
            let right = symbols.remove(i + 1);
            symbols[i].push_str(&right);
        }
        symbols
            .iter()
            .flat_map(|s| match ids.get(s.as_str()) {
                Some(&id) => vec![id as u32],
                None => s
                    .bytes()
                    .map(|b| ids[format!("<0x{b:02X}>").as_str()] as u32)
                    .collect(),
            })
            .collect()
    }

    /// The property the scores are chosen for, on a tokenizer trained as the project trains
    /// them: llama.cpp's merging gives the BPE's ids (scripts/bench/gguf_parity.sh checks the
    /// real llama.cpp).
    #[test]
    fn spm_merging_under_these_scores_gives_the_bpes_ids() {
        let corpus = [
            "The quick brown fox jumps over the lazy dog, then the dog sleeps.",
            "Scaling laws relate the loss to the parameters and the tokens seen in training.",
            "def tokenize(text): return [ord(c) for c in text if c.isalnum()]",
            "小型语言模型的潜力：可扩展的训练策略。模型训练需要数据。",
            "In 2024 the model had 2,442,057,984 non-embedding parameters.",
        ];
        let texts = corpus.iter().cycle().take(400).map(|s| s.to_string());
        let tok = minicpm_data::TextTokenizer::train_bpe(texts, 600).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        tok.save(&path).unwrap();
        let v = vocab(&std::fs::read_to_string(&path).unwrap(), tok.vocab_size()).unwrap();
        let probes = corpus.iter().copied().chain([
            "the thesis: then these threads thicken",
            "unseen words like zyxwvut and ÜBER",
            "emoji 😀 and tabs\tand newlines\n",
            "训练策略的模型潜力",
            "x = [ord(c) for c in 'dog']",
        ]);
        // The converter's LlamaHfVocab scores every token -1000: merging then runs left to right.
        let flat = Vocab {
            scores: vec![-1000.0; v.scores.len()],
            ..v.clone()
        };
        let (mut agree, mut agree_flat, mut total) = (0, 0, 0);
        for text in probes {
            total += 1;
            let want = tok.encode(text).unwrap();
            let got = spm(&v, text);
            if got == want {
                agree += 1;
            } else {
                eprintln!("differ on {text:?}: bpe {want:?} spm {got:?}");
            }
            agree_flat += (spm(&flat, text) == want) as usize;
        }
        assert_eq!(agree, total);
        assert!(
            agree_flat < total,
            "flat scores agree on all {total}: the probes test nothing"
        );
    }

    #[test]
    fn a_vocabulary_larger_than_the_model_is_refused() {
        let e = vocab(TINY, 8).unwrap_err();
        assert!(e.contains("beyond the model's vocabulary of 8"), "{e}");
    }

    #[test]
    fn the_chat_template_comes_from_tokenizer_config_or_is_minicpms() {
        let m = metadata(TINY, None, 10, 1, 2).unwrap();
        let get =
            |m: &[(String, Value)], k: &str| m.iter().find(|(key, _)| key == k).unwrap().1.clone();
        assert_eq!(
            get(&m, "tokenizer.chat_template"),
            Value::String(ChatTemplate::MiniCpm.jinja().into())
        );
        assert_eq!(
            get(&m, "tokenizer.huggingface.json"),
            Value::String(TINY.into())
        );
        assert_eq!(get(&m, "tokenizer.ggml.add_bos_token"), Value::Bool(true));
        let cfg = serde_json::json!({"chat_template": "{{x}}", "add_bos_token": false});
        let m = metadata(TINY, Some(&cfg), 10, 1, 2).unwrap();
        assert_eq!(
            get(&m, "tokenizer.chat_template"),
            Value::String("{{x}}".into())
        );
        assert_eq!(get(&m, "tokenizer.ggml.add_bos_token"), Value::Bool(false));
    }
}
