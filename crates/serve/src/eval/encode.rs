//! From a context and a continuation string to the token ids the model scores, by
//! lm-evaluation-harness's rules (`_encode_pair` of its API models, `add_bos_token=True`):
//!
//! - whitespace that ends the context moves to the start of the continuation (a tokenizer that
//!   marks word starts would otherwise see a word boundary in a different place);
//! - the continuation's ids are those of context + continuation past the context's own ids,
//!   both encoded without special tokens, so a merge across the boundary is read as lm-eval
//!   reads it;
//! - BOS goes before the context; a context with no tokens is BOS alone, even without BOS
//!   otherwise (lm-eval's prefix token: the first token must be predicted from something);
//! - a request longer than the model's context keeps the continuation and as much of the end
//!   of the context as fits (lm-eval's left truncation).

use minicpm_data::{DataError, TextTokenizer};

/// Python's `str.isspace`, which `rstrip()` strips: Unicode White_Space and the four
/// information separators U+001C..U+001F.
fn python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Encodes scoring requests for one model.
pub struct Encoder<'a> {
    pub tokenizer: &'a TextTokenizer,
    pub bos: u32,
    /// Whether BOS goes before every context.
    pub add_bos: bool,
    /// Tokens the model reads at the most (context plus continuation, less its last token).
    pub max_len: usize,
}

/// Context ids and continuation ids.
pub type IdPair = (Vec<u32>, Vec<u32>);

impl Encoder<'_> {
    /// (context ids, continuation ids) for scoring `continuation` after `context`; `None` when
    /// the continuation alone is too long for the model.
    pub fn pair(&self, context: &str, continuation: &str) -> Result<Option<IdPair>, DataError> {
        let kept = context.trim_end_matches(python_space);
        let (context, continuation) = match kept.len() < context.len() {
            true => (kept, format!("{}{continuation}", &context[kept.len()..])),
            false => (context, continuation.to_string()),
        };
        let whole = self.tokenizer.encode(&format!("{context}{continuation}"))?;
        let context_ids = self.tokenizer.encode(context)?;
        let continuation_ids = whole[context_ids.len().min(whole.len())..].to_vec();
        let mut ids = Vec::with_capacity(context_ids.len() + 1);
        if self.add_bos || context_ids.is_empty() {
            ids.push(self.bos);
        }
        ids.extend(context_ids);
        Ok(self.fit(ids, continuation_ids))
    }

    /// Drops the oldest context tokens until the request fits `max_len`.
    fn fit(&self, context: Vec<u32>, continuation: Vec<u32>) -> Option<(Vec<u32>, Vec<u32>)> {
        let room = (self.max_len + 1).checked_sub(continuation.len())?;
        if room == 0 {
            return None;
        }
        let drop = context.len().saturating_sub(room);
        Some((context[drop..].to_vec(), continuation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> TextTokenizer {
        let text = "the cat sat on the mat. the dog sat on the log. 成语：一心一意 三心二意";
        TextTokenizer::train_bpe(std::iter::repeat_n(text, 20), 400).unwrap()
    }

    fn encoder(tok: &TextTokenizer, add_bos: bool, max_len: usize) -> Encoder<'_> {
        Encoder {
            tokenizer: tok,
            bos: 1,
            add_bos,
            max_len,
        }
    }

    #[test]
    fn the_continuation_is_the_whole_text_past_the_context() {
        let tok = tokenizer();
        let e = encoder(&tok, true, 100);
        let (c, n) = e.pair("the cat sat on", " the mat").unwrap().unwrap();
        let mut want = vec![1];
        want.extend(tok.encode("the cat sat on").unwrap());
        assert_eq!(c, want);
        let whole = tok.encode("the cat sat on the mat").unwrap();
        assert_eq!(n, whole[want.len() - 1..]);
        // A space ending the context moves to the continuation: the same ids as above.
        assert_eq!(
            e.pair("the cat sat on ", "the mat").unwrap().unwrap(),
            (c.clone(), n.clone())
        );
        // Several trailing white-space characters, U+001F among them, move together.
        let (c2, n2) = e.pair("the cat sat on\u{1f} \n", "x").unwrap().unwrap();
        assert_eq!(c2, c);
        assert_eq!(
            n2,
            tok.encode("the cat sat on\u{1f} \nx").unwrap()[c.len() - 1..]
        );
        // Without BOS the context is the tokenizer's alone, unless it is empty.
        let plain = encoder(&tok, false, 100);
        assert_eq!(
            plain.pair("the cat sat on", " the mat").unwrap().unwrap().0,
            c[1..]
        );
        let (c3, n3) = plain.pair("", "the mat").unwrap().unwrap();
        assert_eq!((c3, n3), (vec![1], tok.encode("the mat").unwrap()));
    }

    #[test]
    fn a_long_context_loses_its_start_and_a_long_continuation_cannot_fit() {
        let tok = tokenizer();
        let full = encoder(&tok, true, 1000).pair("the cat sat on the mat.", " the dog");
        let (context, continuation) = full.unwrap().unwrap();
        let max_len = context.len() + continuation.len() - 1 - 3;
        let cut = encoder(&tok, true, max_len).pair("the cat sat on the mat.", " the dog");
        let (c, n) = cut.unwrap().unwrap();
        assert_eq!(c, context[3..]);
        assert_eq!(n, continuation);
        let none = encoder(&tok, true, continuation.len() - 1).pair("the cat", " the dog");
        assert_eq!(none.unwrap(), None);
    }
}
