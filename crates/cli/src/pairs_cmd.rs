//! `minicpm data pairs`: preference pairs for DPO from conversations (docs/FINETUNE.md). Each
//! conversation's last answer is the chosen one; the rejected one is the SFT model's own
//! sampled answer to the same prompt (on-policy, given `--model`), or else another
//! conversation's answer.

use crate::finetune_cmd::TemplateArg;
use crate::inference;
use clap::Args;
use minicpm_data::conversation::{read_conversations, write_jsonl, Conversation, PreferencePair};
use minicpm_data::sft_batches::ChatEncoder;
use minicpm_serve::runtime::generate::Request;
use minicpm_serve::sampling::SamplingParams;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct PairsArgs {
    /// Conversations (JSONL); each makes one pair.
    #[arg(long)]
    pub(crate) conversations: PathBuf,
    /// The pairs file to write.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// The model whose sampled answer is the rejected one; without it, another conversation's.
    #[arg(long)]
    pub(crate) model: Option<PathBuf>,
    /// At most this many pairs, from conversations drawn at random (by `--seed`).
    #[arg(long)]
    pub(crate) limit: Option<usize>,
    #[arg(long, default_value_t = 0.8)]
    pub(crate) temperature: f64,
    #[arg(long, default_value_t = 64)]
    pub(crate) max_new_tokens: usize,
    /// Answers sampled together.
    #[arg(long, default_value_t = 32)]
    pub(crate) batch: usize,
    /// Draws the other answers and seeds the sampling.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    #[arg(long, value_enum, default_value = "minicpm")]
    pub(crate) template: TemplateArg,
}

/// A conversation as its prompt (everything before the last assistant turn) and that answer.
fn split_last_answer(
    c: &Conversation,
) -> Option<(Vec<minicpm_data::chat_template::Message>, String)> {
    let last = c.messages.iter().rposition(|m| m.role == "assistant")?;
    let prompt = c.messages[..last].to_vec();
    prompt
        .last()
        .is_some_and(|m| m.role == "user")
        .then(|| (prompt, c.messages[last].content.clone()))
}

pub fn run(a: PairsArgs) -> anyhow::Result<ExitCode> {
    let conversations = read_conversations(&a.conversations)?;
    let mut items: Vec<_> = conversations.iter().filter_map(split_last_answer).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
    if let Some(limit) = a.limit.filter(|&l| l < items.len()) {
        let mut keep = rand::seq::index::sample(&mut rng, items.len(), limit).into_vec();
        keep.sort_unstable();
        items = keep.into_iter().map(|i| items[i].clone()).collect();
    }
    anyhow::ensure!(
        items.len() >= 2,
        "{}: fewer than two conversations (of those --limit keeps) end with an answer to a user turn",
        a.conversations.display()
    );
    // Another conversation's answer that differs from `chosen`.
    let mut other = |i: usize, chosen: &str| -> Option<String> {
        (0..16).find_map(|_| {
            let j = (i + rng.random_range(1..items.len())) % items.len();
            (items[j].1 != chosen).then(|| items[j].1.clone())
        })
    };
    let sampled = match &a.model {
        Some(m) => Some(sample_answers(&a, m, &items)?),
        None => None,
    };
    let (mut pairs, mut fallbacks) = (Vec::with_capacity(items.len()), 0);
    for (i, (prompt, chosen)) in items.iter().enumerate() {
        let own = sampled.as_ref().map(|s| s[i].trim().to_string());
        let rejected = match own {
            Some(s) if !s.is_empty() && s != *chosen => Some(s),
            Some(_) => {
                fallbacks += 1;
                other(i, chosen)
            }
            None => other(i, chosen),
        };
        if let Some(rejected) = rejected {
            pairs.push(PreferencePair {
                prompt: prompt.clone(),
                chosen: chosen.clone(),
                rejected,
            });
        }
    }
    write_jsonl(&a.out, &pairs)?;
    eprintln!(
        "{}: {} pairs{}",
        a.out.display(),
        pairs.len(),
        match &a.model {
            Some(_) => format!(
                ", rejected = the model's own answer ({fallbacks} empty or equal to the reference, given another's instead)"
            ),
            None => ", rejected = another conversation's answer".into(),
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// The model's sampled answer to each prompt, cut where it begins another turn.
fn sample_answers(
    a: &PairsArgs,
    model: &std::path::Path,
    items: &[(Vec<minicpm_data::chat_template::Message>, String)],
) -> anyhow::Result<Vec<String>> {
    let loaded = inference::load(model, 0)?;
    let template = crate::finetune_cmd::template(a.template);
    let enc = ChatEncoder::new(&loaded.tokenizer, template)?;
    let ends = template.turn_ends();
    let mut answers = Vec::with_capacity(items.len());
    let batch = a.batch.max(1);
    for (b, chunk) in items.chunks(batch).enumerate() {
        let requests = chunk
            .iter()
            .enumerate()
            .map(|(k, (prompt, _))| {
                Ok(Request {
                    prompt: enc.encode_prompt(prompt)?,
                    max_new_tokens: a.max_new_tokens,
                    sampling: SamplingParams {
                        temperature: a.temperature,
                        seed: a.seed.wrapping_add((b * batch + k) as u64),
                        ..SamplingParams::default()
                    },
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for ids in loaded.files.model.generate(&requests, |_, _| true)? {
            let text = loaded.tokenizer.decode(&ids)?;
            let cut = ends
                .iter()
                .filter_map(|e| text.find(e.as_str()))
                .min()
                .unwrap_or(text.len());
            answers.push(text[..cut].to_string());
        }
        eprintln!("sampled {}/{} answers", answers.len(), items.len());
    }
    Ok(answers)
}
