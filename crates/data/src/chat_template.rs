//! Conversations as the prompt text a chat model was tuned on: the one rendering that `chat`,
//! `serve` and supervised fine-tuning share, so a model sees at inference exactly the format it
//! learned.
//!
//! Two templates: MiniCPM's released one (the MiniCPM-2B sft/dpo tokenizers' `chat_template`),
//! where a user turn is `<用户>` + content + `<AI>` and every other turn is its content alone,
//! each stripped of surrounding whitespace as Python's `str.strip()` does; and ChatML
//! (`<|im_start|>role\ncontent<|im_end|>\n`, then `<|im_start|>assistant\n` when a reply is
//! wanted). Both render byte for byte as transformers' `apply_chat_template` does with the
//! Jinja text of [`ChatTemplate::jinja`] (fixture from scripts/reference).

use serde::{Deserialize, Serialize};

/// One turn: `system`, `user` or `assistant`, and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Message {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatTemplate {
    /// `<用户>question<AI>answer`: MiniCPM-2B's sft and dpo models.
    MiniCpm,
    /// `<|im_start|>user\nquestion<|im_end|>\n...`.
    ChatMl,
}

impl ChatTemplate {
    /// The tokenizer_config.json of a model tuned on this template: the template, and BOS and
    /// EOS as MiniCPM's tokenizer has them.
    pub fn tokenizer_config(self) -> String {
        let config = serde_json::json!({
            "chat_template": self.jinja(),
            "bos_token": "<s>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "add_bos_token": true,
            "add_eos_token": false,
        });
        serde_json::to_string_pretty(&config).expect("a JSON value serialises")
    }

    /// The Jinja text a tokenizer_config.json carries for this template.
    pub fn jinja(self) -> &'static str {
        match self {
            ChatTemplate::MiniCpm => {
                "{% for message in messages %}{% if message['role'] == 'user' %}\
                 {{'<用户>' + message['content'].strip() + '<AI>'}}{% else %}\
                 {{message['content'].strip()}}{% endif %}{% endfor %}"
            }
            ChatTemplate::ChatMl => {
                "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + \
                 message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}\
                 {% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
            }
        }
    }

    /// The template a tokenizer_config.json's `chat_template` is, recognised by its markers.
    pub fn recognise(jinja: &str) -> Option<ChatTemplate> {
        if jinja.contains("<用户>") {
            Some(ChatTemplate::MiniCpm)
        } else if jinja.contains("<|im_start|>") {
            Some(ChatTemplate::ChatMl)
        } else {
            None
        }
    }

    /// Text that means the model has begun a turn that is not its own: generation stops there.
    pub fn turn_ends(self) -> Vec<String> {
        match self {
            ChatTemplate::MiniCpm => vec!["<用户>".into()],
            ChatTemplate::ChatMl => vec!["<|im_end|>".into(), "<|im_start|>".into()],
        }
    }

    /// The prompt text of `messages`; `add_generation_prompt` opens the assistant's turn where
    /// the template has a marker for it (MiniCPM's `<AI>` already ends every user turn).
    pub fn render(self, messages: &[Message], add_generation_prompt: bool) -> String {
        self.render_spans(messages, add_generation_prompt).text
    }

    /// [`Self::render`], with where each assistant turn lies in the text: its content and, for
    /// ChatML, the `<|im_end|>` that closes it (MiniCPM's template has no end marker of its own;
    /// a training sample ends with EOS instead, docs/FINETUNE.md). These are the
    /// bytes supervised fine-tuning learns to produce.
    pub fn render_spans(self, messages: &[Message], add_generation_prompt: bool) -> Rendering {
        let mut out = Rendering::default();
        for m in messages {
            let assistant = m.role == "assistant";
            match self {
                ChatTemplate::MiniCpm if m.role == "user" => {
                    out.text.push_str("<用户>");
                    out.text.push_str(python_strip(&m.content));
                    out.text.push_str("<AI>");
                }
                ChatTemplate::MiniCpm => out.push(python_strip(&m.content), assistant),
                ChatTemplate::ChatMl => {
                    out.text.push_str("<|im_start|>");
                    out.text.push_str(&m.role);
                    out.text.push('\n');
                    let start = out.text.len();
                    out.text.push_str(&m.content);
                    out.text.push_str("<|im_end|>");
                    if assistant {
                        out.assistant.push(start..out.text.len());
                    }
                    out.text.push('\n');
                }
            }
        }
        if add_generation_prompt && self == ChatTemplate::ChatMl {
            out.text.push_str("<|im_start|>assistant\n");
        }
        out
    }

    /// Text the template writes around turns: a tokenizer must encode each of them faithfully.
    pub fn markers(self) -> &'static [&'static str] {
        match self {
            ChatTemplate::MiniCpm => &["<用户>", "<AI>"],
            ChatTemplate::ChatMl => &["<|im_start|>", "<|im_end|>"],
        }
    }

    /// Whether a turn of `role` is one this template renders as the role it is.
    pub fn knows_role(self, role: &str) -> bool {
        matches!(role, "system" | "user" | "assistant")
    }
}

/// A rendered conversation and the byte ranges of its assistant turns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendering {
    pub text: String,
    pub assistant: Vec<std::ops::Range<usize>>,
}

impl Rendering {
    fn push(&mut self, s: &str, assistant: bool) {
        let start = self.text.len();
        self.text.push_str(s);
        if assistant {
            self.assistant.push(start..self.text.len());
        }
    }
}

/// `s` without leading and trailing whitespace as Python's `str.strip()` sees it: Unicode
/// White_Space, plus the ASCII separators 0x1c-0x1f (Python counts them, Rust's `trim` does not).
fn python_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[derive(Deserialize)]
    struct Fixture {
        templates: std::collections::BTreeMap<String, String>,
        cases: Vec<Case>,
    }

    #[derive(Deserialize)]
    struct Case {
        template: String,
        add_generation_prompt: bool,
        messages: Vec<Message>,
        text: String,
    }

    fn fixture() -> Fixture {
        let p =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat/renderings.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    fn template(name: &str) -> ChatTemplate {
        match name {
            "minicpm" => ChatTemplate::MiniCpm,
            "chatml" => ChatTemplate::ChatMl,
            other => panic!("unknown template {other}"),
        }
    }

    /// Byte for byte what transformers' apply_chat_template renders, over multi-turn, Chinese,
    /// empty and whitespace-padded conversations, with and without the generation prompt.
    #[test]
    fn renders_as_transformers_does() {
        let f = fixture();
        assert_eq!(f.cases.len(), 36);
        for (i, c) in f.cases.iter().enumerate() {
            let got = template(&c.template).render(&c.messages, c.add_generation_prompt);
            assert_eq!(got, c.text, "case {i} ({})", c.template);
        }
    }

    /// Over the same conversations, the assistant spans cut from transformers' rendering are
    /// exactly each answer as the template writes it (with ChatML's `<|im_end|>`), in order:
    /// what fine-tuning learns and nothing else.
    #[test]
    fn assistant_spans_are_the_answers_of_the_transformers_rendering() {
        let mut spans_seen = 0;
        for (i, c) in fixture().cases.iter().enumerate() {
            let t = template(&c.template);
            let r = t.render_spans(&c.messages, c.add_generation_prompt);
            assert_eq!(r.text, c.text, "case {i}");
            let want: Vec<String> = c
                .messages
                .iter()
                .filter(|m| m.role == "assistant")
                .map(|m| match t {
                    ChatTemplate::MiniCpm => python_strip(&m.content).to_string(),
                    ChatTemplate::ChatMl => format!("{}<|im_end|>", m.content),
                })
                .collect();
            let got: Vec<&str> = r.assistant.iter().map(|s| &r.text[s.clone()]).collect();
            assert_eq!(got, want, "case {i}");
            spans_seen += got.len();
        }
        assert!(spans_seen > 20, "the fixture has answers to check");
    }

    /// The Jinja text written into tokenizer_config.json is the reference's, and is recognised.
    #[test]
    fn the_jinja_text_is_the_released_one_and_is_recognised() {
        let f = fixture();
        for (name, jinja) in &f.templates {
            let t = template(name);
            assert_eq!(t.jinja(), jinja);
            assert_eq!(ChatTemplate::recognise(jinja), Some(t));
        }
        assert_eq!(ChatTemplate::recognise("{{ messages }}"), None);
    }
}
