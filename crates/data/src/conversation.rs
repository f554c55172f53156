//! Conversations and preference pairs for fine-tuning, one JSON object per line (docs/FINETUNE.md).
//!
//! Our conversation format is the common `messages` shape, `{"messages": [{"role", "content"},
//! ...]}` with roles `system`, `user` and `assistant`, and an optional top-level `"system"`
//! prompt. The other shapes found in public SFT sets read as well: ShareGPT's
//! `{"conversations": [{"from": "human" | "gpt" | "system", "value"}]}` and Alpaca's
//! `{"instruction", "input", "output"}`. A preference pair is TRL's shape: `{"prompt",
//! "chosen", "rejected"}`, the prompt a string (one user turn) or a list of turns, each answer a
//! string or a list holding one assistant turn.
//!
//! Every record is checked as it is read, and a bad one is an error naming the file and line.

use crate::atomic_file::write_atomic;
use crate::chat_template::Message;
use crate::error::DataError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// One conversation: an optional system turn first, then user and assistant turns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub messages: Vec<Message>,
}

/// A prompt with a preferred and a dispreferred answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferencePair {
    pub prompt: Vec<Message>,
    pub chosen: String,
    pub rejected: String,
}

impl PreferencePair {
    /// The prompt followed by `answer` as the assistant's turn.
    pub fn conversation(&self, answer: &str) -> Conversation {
        let mut messages = self.prompt.clone();
        messages.push(Message::new("assistant", answer));
        Conversation { messages }
    }
}

/// Roles a conversation may hold.
const ROLES: [&str; 3] = ["system", "user", "assistant"];

impl Conversation {
    /// A conversation of one question and its answer.
    pub fn question_answer(question: &str, answer: &str) -> Self {
        Conversation {
            messages: vec![
                Message::new("user", question),
                Message::new("assistant", answer),
            ],
        }
    }

    /// Reads one JSON record of any of the accepted shapes and checks it.
    pub fn parse(line: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let messages = if let Some(m) = v.get("messages") {
            let mut turns = turns(m, "messages", "role", "content")?;
            if let Some(system) = v.get("system") {
                let system = string(system, "system")?;
                turns.insert(0, Message::new("system", &system));
            }
            turns
        } else if let Some(c) = v.get("conversations") {
            let mut turns = turns(c, "conversations", "from", "value")?;
            for t in &mut turns {
                t.role = match t.role.as_str() {
                    "human" | "user" => "user".into(),
                    "gpt" | "assistant" => "assistant".into(),
                    "system" => "system".into(),
                    other => return Err(format!("unknown ShareGPT speaker {other:?}")),
                };
            }
            turns
        } else if let Some(instruction) = v.get("instruction") {
            let mut question = string(instruction, "instruction")?;
            if let Some(input) = v.get("input") {
                let input = string(input, "input")?;
                if !input.trim().is_empty() {
                    question = format!("{question}\n\n{input}");
                }
            }
            let output = v
                .get("output")
                .ok_or("an instruction record needs \"output\"")?;
            vec![
                Message::new("user", &question),
                Message::new("assistant", &string(output, "output")?),
            ]
        } else {
            return Err(
                "expected \"messages\", \"conversations\" or \"instruction\"/\"output\"".into(),
            );
        };
        let c = Conversation { messages };
        c.check()?;
        Ok(c)
    }

    /// Known roles, a system turn only first, and at least one assistant turn.
    pub fn check(&self) -> Result<(), String> {
        if self.messages.is_empty() {
            return Err("the conversation has no turns".into());
        }
        for (i, m) in self.messages.iter().enumerate() {
            if !ROLES.contains(&m.role.as_str()) {
                return Err(format!(
                    "turn {}: unknown role {:?} (expected system, user or assistant)",
                    i + 1,
                    m.role
                ));
            }
            if m.role == "system" && i > 0 {
                return Err(format!("turn {}: a system turn may only come first", i + 1));
            }
        }
        if !self.messages.iter().any(|m| m.role == "assistant") {
            return Err("the conversation has no assistant turn: nothing to learn".into());
        }
        Ok(())
    }
}

impl PreferencePair {
    /// Reads one `{"prompt", "chosen", "rejected"}` record and checks it.
    pub fn parse(line: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let field = |k: &str| v.get(k).ok_or_else(|| format!("missing {k:?}"));
        let prompt = match field("prompt")? {
            Value::String(s) => vec![Message::new("user", s)],
            other => turns(other, "prompt", "role", "content")?,
        };
        let answer = |k: &str| -> Result<String, String> {
            match field(k)? {
                Value::String(s) => Ok(s.clone()),
                other => match turns(other, k, "role", "content")?.as_slice() {
                    [m] if m.role == "assistant" => Ok(m.content.clone()),
                    _ => Err(format!("{k:?} must be a string or one assistant turn")),
                },
            }
        };
        let pair = PreferencePair {
            prompt,
            chosen: answer("chosen")?,
            rejected: answer("rejected")?,
        };
        pair.check()?;
        Ok(pair)
    }

    pub fn check(&self) -> Result<(), String> {
        if self.chosen == self.rejected {
            return Err("chosen and rejected are identical: the pair prefers nothing".into());
        }
        let mut c = self.conversation(&self.chosen);
        c.check()?;
        c.messages.pop();
        match c.messages.last() {
            Some(m) if m.role == "user" => Ok(()),
            _ => Err("the prompt must end with a user turn".into()),
        }
    }
}

fn string(v: &Value, what: &str) -> Result<String, String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{what:?} must be a string"))
}

/// A list of turns whose role and text are under `role` and `text`.
fn turns(v: &Value, what: &str, role: &str, text: &str) -> Result<Vec<Message>, String> {
    let list = v
        .as_array()
        .ok_or_else(|| format!("{what:?} must be a list of turns"))?;
    list.iter()
        .enumerate()
        .map(|(i, t)| {
            let get = |k: &str| {
                t.get(k)
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{what}[{i}] needs a string {k:?}"))
            };
            Ok(Message::new(get(role)?, get(text)?))
        })
        .collect()
}

/// Every record of a JSONL file with its line number (from 1), parsed by `parse`; blank lines
/// are skipped. An error names the file and the line.
fn read_jsonl<T>(
    path: &Path,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Vec<(usize, T)>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::file(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = parse(line)
            .map_err(|e| DataError::Invalid(format!("{}:{}: {e}", path.display(), i + 1)))?;
        out.push((i + 1, record));
    }
    if out.is_empty() {
        return Err(DataError::file(path, "no records"));
    }
    Ok(out)
}

/// The conversations of a JSONL file, each with its line number.
pub fn read_conversations_numbered(path: &Path) -> Result<Vec<(usize, Conversation)>, DataError> {
    read_jsonl(path, Conversation::parse)
}

pub fn read_conversations(path: &Path) -> Result<Vec<Conversation>, DataError> {
    Ok(read_conversations_numbered(path)?
        .into_iter()
        .map(|(_, c)| c)
        .collect())
}

/// The preference pairs of a JSONL file, each with its line number.
pub fn read_pairs_numbered(path: &Path) -> Result<Vec<(usize, PreferencePair)>, DataError> {
    read_jsonl(path, PreferencePair::parse)
}

/// Writes `records` as JSONL in one atomic replacement.
pub fn write_jsonl<T: Serialize>(path: &Path, records: &[T]) -> Result<(), DataError> {
    let mut text = String::new();
    for r in records {
        let line = serde_json::to_string(r).map_err(|e| DataError::file(path, e))?;
        text.push_str(&line);
        text.push('\n');
    }
    write_atomic(path, text.as_bytes()).map_err(|e| DataError::file(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(c: &Conversation) -> Vec<&str> {
        c.messages.iter().map(|m| m.role.as_str()).collect()
    }

    #[test]
    fn every_accepted_shape_reads_as_the_same_turns() {
        let ours = r#"{"system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#;
        let sharegpt = r#"{"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}"#;
        let a = Conversation::parse(ours).unwrap();
        assert_eq!(a, Conversation::parse(sharegpt).unwrap());
        assert_eq!(roles(&a), ["system", "user", "assistant"]);
        let alpaca = r#"{"instruction": "Add.", "input": "1 + 2", "output": "3"}"#;
        let c = Conversation::parse(alpaca).unwrap();
        assert_eq!(c, Conversation::question_answer("Add.\n\n1 + 2", "3"));
        let no_input = r#"{"instruction": "Say hi.", "input": "", "output": "hi"}"#;
        assert_eq!(
            Conversation::parse(no_input).unwrap(),
            Conversation::question_answer("Say hi.", "hi")
        );
        // Our own output reads back as itself.
        let line = serde_json::to_string(&a).unwrap();
        assert_eq!(Conversation::parse(&line).unwrap(), a);
    }

    #[test]
    fn bad_conversations_say_what_is_wrong() {
        let cases = [
            (
                r#"{"messages": [{"role": "user", "content": "Hi"}]}"#,
                "no assistant turn",
            ),
            (r#"{"messages": []}"#, "no turns"),
            (
                r#"{"messages": [{"role": "bot", "content": "x"}]}"#,
                "unknown role \"bot\"",
            ),
            (
                r#"{"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}, {"role": "assistant", "content": "c"}]}"#,
                "system turn may only come first",
            ),
            (
                r#"{"conversations": [{"from": "tool", "value": "x"}]}"#,
                "ShareGPT speaker",
            ),
            (r#"{"text": "plain"}"#, "expected \"messages\""),
            (
                r#"{"messages": [{"role": "user"}]}"#,
                "needs a string \"content\"",
            ),
            ("{", "not JSON"),
        ];
        for (line, want) in cases {
            let e = Conversation::parse(line).unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn pairs_read_trl_shapes_and_refuse_identical_answers() {
        let a = PreferencePair::parse(r#"{"prompt": "Q", "chosen": "good", "rejected": "bad"}"#)
            .unwrap();
        let b = PreferencePair::parse(
            r#"{"prompt": [{"role": "user", "content": "Q"}], "chosen": [{"role": "assistant", "content": "good"}], "rejected": "bad"}"#,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(roles(&a.conversation("x")), ["user", "assistant"]);
        let same = PreferencePair::parse(r#"{"prompt": "Q", "chosen": "x", "rejected": "x"}"#);
        assert!(same.unwrap_err().contains("identical"));
        let no_user = PreferencePair::parse(
            r#"{"prompt": [{"role": "system", "content": "S"}], "chosen": "a", "rejected": "b"}"#,
        );
        assert!(no_user.unwrap_err().contains("end with a user turn"));
    }

    #[test]
    fn a_bad_line_is_named_by_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sft.jsonl");
        let good = r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#;
        let bad = r#"{"messages": [{"role": "user", "content": "Hi"}]}"#;
        std::fs::write(&p, format!("{good}\n\n{bad}\n")).unwrap();
        let e = read_conversations(&p).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:3: ", p.display())), "{e}");
        write_jsonl(&p, &[Conversation::parse(good).unwrap()]).unwrap();
        assert_eq!(read_conversations(&p).unwrap().len(), 1);
    }
}
