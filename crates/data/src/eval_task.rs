//! Evaluation task files (docs/EVAL.md): JSONL, one document a line, every line of one kind.
//!
//! - Multiple choice: `{"context": "...", "choices": ["...", ...], "gold": 0}`, with an optional
//!   `"target_delimiter"` (what goes between the context and each choice; lm-evaluation-harness's
//!   default, one space, when absent).
//! - Text, scored in bits per byte: `{"text": "..."}`.
//!
//! A plain `.txt` file is a text task of one document. `minicpm data eval-tasks` writes these
//! files and `minicpm eval` reads them, both through the types here. Unknown fields are errors,
//! so a misspelt `"choice"` cannot pass unnoticed.

use crate::atomic_file::write_atomic;
use crate::error::DataError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// lm-evaluation-harness's default `target_delimiter`.
pub const DEFAULT_TARGET_DELIMITER: &str = " ";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChoiceDoc {
    pub context: String,
    pub choices: Vec<String>,
    /// Index of the right choice.
    pub gold: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_delimiter: Option<String>,
}

impl ChoiceDoc {
    pub fn delimiter(&self) -> &str {
        self.target_delimiter
            .as_deref()
            .unwrap_or(DEFAULT_TARGET_DELIMITER)
    }

    fn check(&self) -> Result<(), String> {
        if self.choices.len() < 2 {
            return Err(format!("{} choice(s); at least 2", self.choices.len()));
        }
        if let Some(i) = self.choices.iter().position(String::is_empty) {
            // acc_norm divides by a choice's length.
            return Err(format!("choice {i} is empty"));
        }
        if self.gold >= self.choices.len() {
            return Err(format!(
                "gold {} is not an index of the {} choices",
                self.gold,
                self.choices.len()
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextDoc {
    pub text: String,
}

/// A task's documents.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskDocs {
    MultipleChoice(Vec<ChoiceDoc>),
    Text(Vec<TextDoc>),
}

impl TaskDocs {
    pub fn len(&self) -> usize {
        match self {
            TaskDocs::MultipleChoice(d) => d.len(),
            TaskDocs::Text(d) => d.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first `n` documents.
    pub fn truncate(&mut self, n: usize) {
        match self {
            TaskDocs::MultipleChoice(d) => d.truncate(n),
            TaskDocs::Text(d) => d.truncate(n),
        }
    }
}

/// A task: its name (the file's stem) and documents.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub name: String,
    pub docs: TaskDocs,
}

/// Reads a `.jsonl` task or a `.txt` text. Errors name the file and, for a bad line, its number.
pub fn read_task(path: &Path) -> Result<Task, DataError> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "task".into());
    let bytes = std::fs::read(path).map_err(|e| DataError::file(path, e))?;
    let text =
        String::from_utf8(bytes).map_err(|_| DataError::file(path, "not valid UTF-8 text"))?;
    let docs = match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl") => parse_jsonl(&text).map_err(|e| DataError::file(path, e))?,
        Some("txt") if text.is_empty() => return Err(DataError::file(path, "the text is empty")),
        Some("txt") => TaskDocs::Text(vec![TextDoc { text }]),
        _ => {
            return Err(DataError::file(
                path,
                "a task is a .jsonl file of documents or a .txt text",
            ))
        }
    };
    if docs.is_empty() {
        return Err(DataError::file(path, "no documents"));
    }
    Ok(Task { name, docs })
}

/// The documents of a JSONL task's text; an error says which line and why.
fn parse_jsonl(text: &str) -> Result<TaskDocs, String> {
    let mut docs: Option<TaskDocs> = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |e: String| format!("line {}: {e}", i + 1);
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| at(format!("not JSON: {e}")))?;
        let is_text = value.get("text").is_some();
        let docs = docs.get_or_insert_with(|| match is_text {
            true => TaskDocs::Text(Vec::new()),
            false => TaskDocs::MultipleChoice(Vec::new()),
        });
        match docs {
            TaskDocs::Text(d) if is_text => {
                let doc: TextDoc = serde_json::from_value(value).map_err(|e| at(e.to_string()))?;
                if doc.text.is_empty() {
                    return Err(at("the text is empty".into()));
                }
                d.push(doc);
            }
            TaskDocs::MultipleChoice(d) if !is_text => {
                let doc: ChoiceDoc = serde_json::from_value(value)
                    .map_err(|e| at(format!("not a multiple-choice document: {e}")))?;
                doc.check().map_err(at)?;
                d.push(doc);
            }
            TaskDocs::Text(_) => {
                return Err(at(
                    "a multiple-choice document in a text task (every line has `text`)".into(),
                ))
            }
            TaskDocs::MultipleChoice(_) => {
                return Err(at("a text document in a multiple-choice task".into()))
            }
        }
    }
    Ok(docs.unwrap_or(TaskDocs::Text(Vec::new())))
}

/// Writes documents as a JSONL task file, atomically.
pub fn write_task<T: Serialize>(path: &Path, docs: &[T]) -> Result<(), DataError> {
    let mut out = String::new();
    for d in docs {
        out += &serde_json::to_string(d).map_err(|e| DataError::file(path, e))?;
        out.push('\n');
    }
    write_atomic(path, out.as_bytes()).map_err(|e| DataError::file(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(name: &str, text: &str) -> Result<Task, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        read_task(&path).map_err(|e| {
            let msg = e.to_string();
            msg[msg.find(name).unwrap()..].to_string()
        })
    }

    #[test]
    fn both_kinds_read_and_write_back() {
        let docs = vec![
            ChoiceDoc {
                context: "2 + 2 =".into(),
                choices: vec!["4".into(), "5".into()],
                gold: 0,
                target_delimiter: None,
            },
            ChoiceDoc {
                context: "成语：".into(),
                choices: vec!["一心一意".into(), "三心二意".into()],
                gold: 1,
                target_delimiter: Some(String::new()),
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("arith.jsonl");
        write_task(&path, &docs).unwrap();
        let task = read_task(&path).unwrap();
        assert_eq!(task.name, "arith");
        assert_eq!(task.docs, TaskDocs::MultipleChoice(docs.clone()));
        assert_eq!(docs[0].delimiter(), " ");
        assert_eq!(docs[1].delimiter(), "");
        let text = read("brown.jsonl", "{\"text\": \"a\"}\n\n{\"text\": \"b c\"}\n").unwrap();
        assert_eq!(text.docs.len(), 2);
        let plain = read("essay.txt", "One text.\nTwo lines.\n").unwrap();
        assert_eq!(
            plain.docs,
            TaskDocs::Text(vec![TextDoc {
                text: "One text.\nTwo lines.\n".into()
            }])
        );
    }

    #[test]
    fn bad_lines_are_named_with_the_file_and_line() {
        let ok = r#"{"context": "c", "choices": ["a", "b"], "gold": 1}"#;
        let cases = [
            (
                format!("{ok}\n{{\"context\": \"c\"\n"),
                "t.jsonl: line 2: not JSON",
            ),
            (
                format!("{ok}\n{{\"context\": \"c\", \"choices\": [\"a\", \"b\"]}}\n"),
                "t.jsonl: line 2: not a multiple-choice document: missing field `gold`",
            ),
            (
                r#"{"context": "c", "choice": ["a"], "gold": 0}"#.to_string(),
                "t.jsonl: line 1: not a multiple-choice document: unknown field `choice`",
            ),
            (
                format!("\n{ok}\n{}\n", ok.replace("\"gold\": 1", "\"gold\": 2")),
                "t.jsonl: line 3: gold 2 is not an index of the 2 choices",
            ),
            (
                ok.replace("[\"a\", \"b\"]", "[\"a\"]"),
                "t.jsonl: line 1: 1 choice(s); at least 2",
            ),
            (
                ok.replace("\"b\"", "\"\""),
                "t.jsonl: line 1: choice 1 is empty",
            ),
            (
                format!("{ok}\n{{\"text\": \"x\"}}\n"),
                "t.jsonl: line 2: a text document in a multiple-choice task",
            ),
            (
                format!("{{\"text\": \"x\"}}\n{ok}\n"),
                "t.jsonl: line 2: a multiple-choice document in a text task",
            ),
            (
                "{\"text\": \"\"}\n".into(),
                "t.jsonl: line 1: the text is empty",
            ),
            ("\n\n".into(), "t.jsonl: no documents"),
        ];
        for (text, want) in cases {
            let e = read("t.jsonl", &text).unwrap_err();
            assert!(e.starts_with(want), "{e}\nwanted: {want}");
            assert!(!e.contains('\n'), "{e}");
        }
        let e = read("t.csv", "a,b").unwrap_err();
        assert!(e.contains("a task is a .jsonl file"), "{e}");
    }
}
