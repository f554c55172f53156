//! `minicpm chat`: a multi-turn conversation on the terminal. Each turn renders the whole
//! conversation with the model's chat template (the one function SFT and the server use) and
//! streams the reply.

use crate::inference::{self, SamplingArgs};
use anyhow::Context;
use clap::{Args, ValueEnum};
use minicpm_serve::chat_template::{ChatTemplate, Message};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TemplateArg {
    Minicpm,
    Chatml,
}

#[derive(Args)]
pub struct ChatArgs {
    /// An HF model directory, a checkpoint, a run (its latest checkpoint) or a GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// The chat template [default: the model's tokenizer_config.json template, else minicpm].
    #[arg(long, value_enum)]
    template: Option<TemplateArg>,
    /// A system message (ChatML; MiniCPM's template has no system role and shows it as text).
    #[arg(long)]
    system: Option<String>,
    /// Longest reply in tokens [default: generation_config.json's max_new_tokens, else 512].
    #[arg(long)]
    max_new_tokens: Option<usize>,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// The template `--template` names, else the one the model's files carry, else MiniCPM's.
pub fn choose_template(flag: Option<TemplateArg>, files_template: Option<&str>) -> ChatTemplate {
    match flag {
        Some(TemplateArg::Minicpm) => ChatTemplate::MiniCpm,
        Some(TemplateArg::Chatml) => ChatTemplate::ChatMl,
        None => files_template
            .and_then(ChatTemplate::recognise)
            .unwrap_or(ChatTemplate::MiniCpm),
    }
}

pub fn run(a: ChatArgs) -> anyhow::Result<ExitCode> {
    let loaded = inference::load(&a.model, a.threads)?;
    let files = &loaded.files;
    let template = choose_template(a.template, files.chat_template.as_deref());
    let sampling = a.sampling.resolve(files.sampling)?;
    let max_new_tokens = a.max_new_tokens.or(files.max_new_tokens).unwrap_or(512);
    let mut messages: Vec<Message> = a.system.iter().map(|s| Message::new("system", s)).collect();
    eprintln!("chat template {template:?}; an empty line or Ctrl-D ends the conversation");
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    let mut turn = 0u64;
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).context("reading stdin")? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if line.is_empty() {
            break;
        }
        messages.push(Message::new("user", line));
        let text = template.render(&messages, true);
        let mut prompt = vec![files.model.config.bos_token_id];
        prompt.extend(loaded.tokenizer.encode(&text)?);
        // Each turn its own seed, so a conversation is reproducible as a whole.
        let mut turn_sampling = sampling;
        turn_sampling.seed = sampling.seed.wrapping_add(turn);
        turn += 1;
        let reply = inference::stream_reply(
            &loaded,
            prompt,
            max_new_tokens,
            turn_sampling,
            template.turn_ends(),
            None,
            &mut out,
        );
        writeln!(out)?;
        match reply {
            Ok(reply) => messages.push(Message::new("assistant", reply.trim())),
            Err(e) => {
                // A turn that cannot run (the conversation outgrew the context) is dropped;
                // the conversation goes on.
                eprintln!(
                    "error: {}",
                    minicpm_model::strict::one_line(&format!("{e:#}"))
                );
                messages.pop();
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_model_template_then_minicpm() {
        let chatml = ChatTemplate::ChatMl.jinja();
        assert_eq!(
            choose_template(Some(TemplateArg::Minicpm), Some(chatml)),
            ChatTemplate::MiniCpm
        );
        assert_eq!(choose_template(None, Some(chatml)), ChatTemplate::ChatMl);
        assert_eq!(
            choose_template(None, Some("{{ x }}")),
            ChatTemplate::MiniCpm
        );
        assert_eq!(choose_template(None, None), ChatTemplate::MiniCpm);
    }
}
