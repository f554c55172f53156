//! WordNet definition -> word. A held-out synset, "words (part of speech): gloss; \"example\"",
//! becomes "Definition: gloss\nWord:" with its first word as the answer, the other words of the
//! synset kept out of the distractors, which are words of held-out synsets of the same part of
//! speech. The examples are dropped (they use the word), and so is a synset whose gloss names
//! its word.

use super::{names_word, Question};

/// One synset of the demo corpus's `wordnet` source.
#[derive(Debug, Clone, PartialEq)]
pub struct Synset {
    pub words: Vec<String>,
    pub part_of_speech: String,
    /// The definition without its examples.
    pub gloss: String,
}

const PARTS_OF_SPEECH: [&str; 4] = ["noun", "verb", "adjective", "adverb"];

/// Reads one corpus document; `None` when it is not of that shape.
pub fn parse(text: &str) -> Option<Synset> {
    let (words, rest) = text.split_once(" (")?;
    let (pos, gloss) = rest.split_once("): ")?;
    if !PARTS_OF_SPEECH.contains(&pos) {
        return None;
    }
    let gloss = gloss.split("; \"").next()?.trim();
    let words: Vec<String> = words.split(", ").map(str::to_string).collect();
    if gloss.is_empty() || words.iter().any(String::is_empty) {
        return None;
    }
    Some(Synset {
        words,
        part_of_speech: pos.to_string(),
        gloss: gloss.to_string(),
    })
}

/// The questions of held-out synsets (documents of another shape are passed over).
pub fn questions(held_out: &[String]) -> Vec<Question> {
    held_out
        .iter()
        .filter_map(|text| parse(text))
        .filter(|s| !names_word(&s.gloss, &s.words[0]))
        .map(|s| Question {
            context: format!("Definition: {}\nWord:", s.gloss),
            answer: s.words[0].clone(),
            group: s.part_of_speech,
            also_right: s.words[1..].to_vec(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synsets_become_definition_questions() {
        let s = parse(
            "object, physical object (noun): a tangible and visible entity; \"it was full of \
             rackets, balls and other objects\"",
        )
        .unwrap();
        assert_eq!(s.words, ["object", "physical object"]);
        assert_eq!(s.part_of_speech, "noun");
        assert_eq!(s.gloss, "a tangible and visible entity");
        assert_eq!(parse("no part of speech: here"), None);
        assert_eq!(parse("word (pronoun): not one of the four"), None);
        let held_out = vec![
            "object, physical object (noun): a tangible and visible entity".to_string(),
            // Names its own word: left out.
            "run (verb): to run fast".to_string(),
            "not a synset".to_string(),
        ];
        let q = questions(&held_out);
        assert_eq!(q.len(), 1);
        assert_eq!(
            q[0].context,
            "Definition: a tangible and visible entity\nWord:"
        );
        assert_eq!(
            (q[0].answer.as_str(), q[0].group.as_str()),
            ("object", "noun")
        );
        assert_eq!(q[0].also_right, ["physical object"]);
    }
}
