//! The passkey retrieval test (Mohtashami and Jaggi 2023), MiniCPM-128K's measure of long
//! context (docs/EVAL.md, "Passkey retrieval"): a number hidden at a chosen depth in repeated
//! filler text, asked for at the end. A model that can use its whole context answers with the
//! number; one that cannot see that far guesses.
//!
//! The same text, with the answer after the question, makes training documents that teach the
//! format (`minicpm data passkey`).

use crate::error::DataError;
use rand::{Rng, SeedableRng};

/// The text before the filler.
const INTRO: &str = "There is an important info hidden inside a lot of irrelevant text. Find it \
                     and memorize it. I will quiz you about the important information there.";
/// One unit of filler, repeated.
const FILLER: &str =
    " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
/// The question; the answer follows it after a space.
const QUESTION: &str = " What is the pass key? The pass key is";

fn needle(key: &str) -> String {
    format!(" The pass key is {key}. Remember it. {key} is the pass key.")
}

/// One test prompt: the text up to the question, and the key it hides.
#[derive(Debug, Clone, PartialEq)]
pub struct Passkey {
    pub prompt: String,
    pub key: String,
}

impl Passkey {
    /// The prompt followed by its answer: a training document.
    pub fn document(&self) -> String {
        format!("{} {}.", self.prompt, self.key)
    }

    /// Whether `continuation` (the text generated after the prompt) answers with the key: its
    /// first word is the key's digits, no more.
    pub fn is_answered_by(&self, continuation: &str) -> bool {
        answers(&self.key, continuation)
    }
}

/// Whether `continuation` answers with `key`: its first word is the key's digits, no more.
pub fn answers(key: &str, continuation: &str) -> bool {
    continuation
        .trim_start()
        .strip_prefix(key)
        .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// A random key of `digits` decimal digits, the first not 0.
pub fn random_key(rng: &mut impl Rng, digits: usize) -> String {
    let mut key = rng.random_range(1..=9u8).to_string();
    for _ in 1..digits {
        key.push(char::from(b'0' + rng.random_range(0..=9u8)));
    }
    key
}

/// The longest prompt of at most `length` tokens (as `count` counts them; documents add the
/// answer's few tokens) that hides `key` after the fraction `depth` (0 = first, 1 = last) of its
/// filler.
pub fn prompt(
    key: &str,
    depth: f64,
    length: usize,
    count: impl Fn(&str) -> Result<usize, DataError>,
) -> Result<Passkey, DataError> {
    if !(0.0..=1.0).contains(&depth) {
        return Err(DataError::Invalid(format!(
            "passkey depth {depth} is outside 0..1"
        )));
    }
    let build = |fillers: usize| {
        let before = (fillers as f64 * depth).round() as usize;
        let mut text = String::from(INTRO);
        text.push_str(&FILLER.repeat(before));
        text.push_str(&needle(key));
        text.push_str(&FILLER.repeat(fillers - before));
        text.push_str(QUESTION);
        text
    };
    let fixed = count(&build(0))?;
    if fixed > length {
        return Err(DataError::Invalid(format!(
            "a passkey prompt needs {fixed} tokens without filler, more than the length {length}"
        )));
    }
    // Tokens of one filler unit in place (merges across its ends may differ by a token or two),
    // then the first count that fits, walking down from the estimate.
    let per_filler = (count(&build(8))? - fixed).div_ceil(8).max(1);
    let mut fillers = (length - fixed) / per_filler + 1;
    loop {
        let text = build(fillers);
        if fillers == 0 || count(&text)? <= length {
            return Ok(Passkey {
                prompt: text,
                key: key.to_string(),
            });
        }
        fillers -= 1;
    }
}

/// `n` prompts of at most `length` tokens with keys of `digits` digits drawn from `seed`, at
/// depths spread evenly over 0..1 (`n` = 1: the middle).
pub fn prompts(
    n: usize,
    length: usize,
    digits: usize,
    seed: u64,
    count: impl Fn(&str) -> Result<usize, DataError> + Copy,
) -> Result<Vec<Passkey>, DataError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let depth = spread(i, n);
            prompt(&random_key(&mut rng, digits), depth, length, count)
        })
        .collect()
}

/// The `i`-th of `n` depths spread evenly over 0..1, ends included.
pub fn spread(i: usize, n: usize) -> f64 {
    match n {
        0 | 1 => 0.5,
        _ => i as f64 / (n - 1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words as tokens: enough to check the arithmetic.
    fn words(text: &str) -> Result<usize, DataError> {
        Ok(text.split_whitespace().count())
    }

    #[test]
    fn a_prompt_fills_its_length_and_hides_the_key_at_its_depth() {
        for (depth, length) in [(0.0, 200), (0.5, 300), (1.0, 1000)] {
            let p = prompt("4817", depth, length, words).unwrap();
            let n = words(&p.prompt).unwrap();
            assert!(n <= length && n + 20 > length, "{n} words for {length}");
            let at = p.prompt.find("The pass key is 4817").unwrap() as f64;
            let filler_start = INTRO.len() as f64;
            let filler_end = (p.prompt.len() - QUESTION.len() - needle("4817").len()) as f64;
            let placed = (at - filler_start) / (filler_end - filler_start);
            assert!(
                (placed - depth).abs() < 0.05,
                "depth {depth}: placed at {placed}"
            );
            assert!(p.prompt.ends_with(QUESTION));
        }
    }

    #[test]
    fn answers_are_checked_by_their_leading_digits() {
        let p = prompt("90210", 0.3, 200, words).unwrap();
        assert!(p.is_answered_by(" 90210. Remember"));
        assert!(!p.is_answered_by(" 9021"));
        assert!(!p.is_answered_by(" 902105"));
        assert!(!p.is_answered_by(" the key is 90210"));
        assert!(p.document().ends_with("The pass key is 90210."));
    }

    #[test]
    fn keys_and_depths_follow_the_seed_and_too_short_a_length_is_refused() {
        let a = prompts(4, 300, 5, 7, words).unwrap();
        assert_eq!(a, prompts(4, 300, 5, 7, words).unwrap());
        assert!(a
            .iter()
            .all(|p| p.key.len() == 5 && !p.key.starts_with('0')));
        assert_ne!(a[0].key, a[1].key);
        assert_eq!((spread(0, 4), spread(3, 4)), (0.0, 1.0));
        let e = prompt("1", 0.5, 10, words).unwrap_err().to_string();
        assert!(e.contains("more than the length 10"), "{e}");
    }
}
