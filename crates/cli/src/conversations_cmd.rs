//! `minicpm data conversations`: supervised fine-tuning conversations from a demo corpus's
//! question-and-answer sources (docs/FINETUNE.md), split as pre-training split the documents, so
//! the held-out file shares its documents with the evaluation tasks and none with training.
//! The training conversations are also written rendered by the chat template as plain
//! documents (source `sft`), ready for `data prepare`: SFT-format data for a decay phase.

use clap::Args;
use minicpm_data::chat_template::ChatTemplate;
use minicpm_data::conversation::write_jsonl;
use minicpm_data::conversation_sets::conversation_sets;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ConversationsArgs {
    /// The demo data directory (its `corpus/` is read).
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Where `train.jsonl` and `valid.jsonl` go.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// The documents per thousand `data prepare` held out (the demo's default).
    #[arg(long, default_value_t = 10)]
    pub(crate) valid_permille: u64,
}

pub fn run(a: ConversationsArgs) -> anyhow::Result<ExitCode> {
    let sets = conversation_sets(&a.data.join("corpus"), a.valid_permille)?;
    std::fs::create_dir_all(&a.out).map_err(|e| anyhow::anyhow!("{}: {e}", a.out.display()))?;
    for (name, records) in [("train", &sets.train), ("valid", &sets.held_out)] {
        let path = a.out.join(format!("{name}.jsonl"));
        write_jsonl(&path, records)?;
        eprintln!("{}: {} conversations", path.display(), records.len());
    }
    let rendered: Vec<serde_json::Value> = sets
        .train
        .iter()
        .map(|c| {
            let text = ChatTemplate::MiniCpm.render(&c.messages, false);
            serde_json::json!({"text": text, "source": "sft"})
        })
        .collect();
    let path = a.out.join("train.text.jsonl");
    write_jsonl(&path, &rendered)?;
    eprintln!("{}: the same, rendered as documents", path.display());
    for (source, train, held_out) in &sets.sources {
        eprintln!("  {source}: {train} for training, {held_out} held out");
    }
    Ok(ExitCode::SUCCESS)
}
