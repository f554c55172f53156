//! Evaluation sets made from the demo corpus's held-out documents (see `held_out`), so that no
//! question's own entry was trained on: WordNet definition -> word, and Chinese idiom meaning
//! -> idiom, both four-way multiple choice whose wrong choices are the answers of other
//! held-out entries of the same kind. Everything random (which distractors, where the right
//! answer stands, the order of documents) comes from one seed.

pub mod build;
pub mod idioms;
pub mod wordnet;

use crate::eval_task::ChoiceDoc;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Choices per question.
pub const CHOICES: usize = 4;

/// One question before its distractors are drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub context: String,
    pub answer: String,
    /// Distractors are drawn from questions of the same group when it has enough answers.
    pub group: String,
    /// Answers that would also be right (synonyms), never offered as distractors.
    pub also_right: Vec<String>,
}

/// Answers compare without case: "Bank" is no distractor for "bank".
fn same(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

/// Multiple-choice documents of `questions`, each with `CHOICES - 1` distractors from other
/// questions' answers (its group's when the group has enough distinct ones), the right answer
/// at a random place, the documents in a random order; the same seed gives the same documents.
/// Questions without enough possible distractors are left out.
pub fn multiple_choice(questions: &[Question], seed: u64) -> Vec<ChoiceDoc> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for q in questions {
        let answers = groups.entry(&q.group).or_default();
        if !answers.iter().any(|a| same(a, &q.answer)) {
            answers.push(&q.answer);
        }
    }
    let mut everyone: Vec<&str> = groups.values().flatten().copied().collect();
    everyone.sort_unstable();
    everyone.dedup_by(|a, b| same(a, b));
    let mut docs = Vec::new();
    for q in questions {
        let usable = |a: &&str| !same(a, &q.answer) && !q.also_right.iter().any(|r| same(a, r));
        let group = &groups[q.group.as_str()];
        let pool: &[&str] = match group.iter().filter(|a| usable(a)).count() >= CHOICES - 1 {
            true => group,
            false => &everyone,
        };
        let Some(mut choices) = draw(pool, CHOICES - 1, &usable, &mut rng) else {
            continue;
        };
        let gold = rng.random_range(0..CHOICES);
        choices.insert(gold, q.answer.clone());
        docs.push(ChoiceDoc {
            context: q.context.clone(),
            choices,
            gold,
            target_delimiter: None,
        });
    }
    docs.shuffle(&mut rng);
    docs
}

/// `k` distinct answers of `pool` that are `usable`, drawn at random: by rejection while that
/// is quick, else from a shuffled copy of the pool; `None` when the pool has too few.
fn draw(
    pool: &[&str],
    k: usize,
    usable: &dyn Fn(&&str) -> bool,
    rng: &mut ChaCha8Rng,
) -> Option<Vec<String>> {
    let mut picked: Vec<String> = Vec::with_capacity(k);
    let fits = |picked: &[String], a: &&str| usable(a) && !picked.iter().any(|p| same(p, a));
    for _ in 0..20 * k {
        let a = pool[rng.random_range(0..pool.len())];
        if fits(&picked, &a) {
            picked.push(a.to_string());
            if picked.len() == k {
                return Some(picked);
            }
        }
    }
    let mut rest = pool.to_vec();
    rest.shuffle(rng);
    for a in rest {
        if fits(&picked, &a) {
            picked.push(a.to_string());
            if picked.len() == k {
                return Some(picked);
            }
        }
    }
    None
}

/// Whether `text` has `word` as a whole word (not inside a longer one), case aside: a
/// definition that names its own word gives the answer away.
pub fn names_word(text: &str, word: &str) -> bool {
    let (text, word) = (text.to_lowercase(), word.to_lowercase());
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
    text.match_indices(&word).any(|(i, _)| {
        boundary(text[..i].chars().next_back()) && boundary(text[i + word.len()..].chars().next())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(answer: &str, group: &str, also_right: &[&str]) -> Question {
        Question {
            context: format!("what is {answer}?"),
            answer: answer.into(),
            group: group.into(),
            also_right: also_right.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn distractors_come_from_the_group_never_the_answer_or_its_synonyms() {
        let mut questions: Vec<Question> = ["cat", "dog", "cow", "hen", "Dog", "yak"]
            .iter()
            .map(|a| q(a, "noun", &[]))
            .collect();
        questions[0].also_right = vec!["hen".into()];
        questions.extend(["run", "sit"].iter().map(|a| q(a, "verb", &[])));
        let docs = multiple_choice(&questions, 7);
        assert_eq!(docs.len(), questions.len());
        for d in &docs {
            assert_eq!(d.choices.len(), CHOICES);
            let answer = &d.choices[d.gold];
            let question = questions.iter().find(|q| q.context == d.context).unwrap();
            assert_eq!(answer, &question.answer);
            for (i, c) in d.choices.iter().enumerate() {
                if i != d.gold {
                    assert!(!same(c, answer), "{d:?}");
                    assert!(!question.also_right.iter().any(|r| same(r, c)), "{d:?}");
                }
                let n = d.choices.iter().filter(|x| same(x, c)).count();
                assert_eq!(n, 1, "{d:?}");
            }
            // Nouns have enough nouns; verbs have too few verbs and draw from everyone.
            if question.group == "noun" {
                let nouns = ["cat", "dog", "cow", "hen", "yak"];
                assert!(d
                    .choices
                    .iter()
                    .all(|c| nouns.contains(&c.to_lowercase().as_str())));
            }
        }
        // Deterministic by seed; another seed, another draw.
        assert_eq!(multiple_choice(&questions, 7), docs);
        assert_ne!(multiple_choice(&questions, 8), docs);
        // Right answers are spread over the places.
        let golds: std::collections::BTreeSet<usize> = (0..20)
            .flat_map(|s| multiple_choice(&questions, s))
            .map(|d| d.gold)
            .collect();
        assert_eq!(golds.len(), CHOICES);
    }

    #[test]
    fn too_few_answers_leave_a_question_out() {
        let questions = vec![q("a", "x", &[]), q("b", "x", &[]), q("c", "y", &[])];
        assert!(multiple_choice(&questions, 1).is_empty());
    }

    #[test]
    fn a_word_is_named_only_as_a_whole_word() {
        assert!(names_word("A tree; trees grow", "Tree"));
        assert!(names_word("the (art) of", "art"));
        assert!(!names_word("particular", "art"));
        assert!(!names_word("artist", "art"));
        assert!(names_word("physical entity here", "physical entity"));
    }
}
