//! The pre-tokenisation of our tokenizer family, done directly on the raw text.
//!
//! The HF pipeline for it is: prepend "▁" to the text, turn every space into "▁", start a new
//! piece at every "▁" (the "▁" stays at the front of its piece), then isolate every numeric
//! character. Done through `NormalizedString`s, this costs allocations and offset bookkeeping per
//! piece; done here, a pre-token is a slice of the input plus one flag saying whether the "▁"
//! marker precedes it. The result is the same sequence of pre-tokens, which the equivalence tests
//! in `fast_encoder` check against the HF tokenizer.

/// The word marker the normaliser prepends and puts in place of spaces.
pub const MARKER: char = '▁';

/// One pre-token: `body`, preceded by the "▁" marker when `marked`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreToken<'a> {
    pub marked: bool,
    pub body: &'a str,
}

/// The pre-tokens of a text segment that holds no added tokens, in order.
pub struct PreTokens<'a> {
    /// Text not yet split into words; `None` once every word has been started.
    unsplit: Option<&'a str>,
    /// What is left of the current word after its marked head: digits and the runs between them.
    word_tail: &'a str,
}

impl<'a> PreTokens<'a> {
    pub fn new(segment: &'a str) -> Self {
        // The normaliser prepends the marker only to non-empty text.
        PreTokens {
            unsplit: (!segment.is_empty()).then_some(segment),
            word_tail: "",
        }
    }
}

impl<'a> Iterator for PreTokens<'a> {
    type Item = PreToken<'a>;

    fn next(&mut self) -> Option<PreToken<'a>> {
        if !self.word_tail.is_empty() {
            let tail = self.word_tail;
            let first = tail.chars().next().expect("tail is not empty");
            let end = if is_numeric(first) {
                first.len_utf8()
            } else {
                first_numeric(tail).unwrap_or(tail.len())
            };
            self.word_tail = &tail[end..];
            return Some(PreToken {
                marked: false,
                body: &tail[..end],
            });
        }
        // Every word starts with a marker: the prepended one for the first word, the space or
        // literal "▁" that ends the previous word for the others.
        let unsplit = self.unsplit?;
        let (word, after) = match word_end(unsplit) {
            Some((end, delimiter_len)) => (&unsplit[..end], Some(&unsplit[end + delimiter_len..])),
            None => (unsplit, None),
        };
        self.unsplit = after;
        let head_end = first_numeric(word).unwrap_or(word.len());
        self.word_tail = &word[head_end..];
        Some(PreToken {
            marked: true,
            body: &word[..head_end],
        })
    }
}

/// Byte offset and length of the first word delimiter (a space or a literal "▁"), if any.
fn word_end(text: &str) -> Option<(usize, usize)> {
    // "▁" is E2 96 81 in UTF-8; 0xE2 only ever starts a character, so the byte scan cannot
    // match inside another character.
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' => return Some((i, 1)),
            0xE2 if bytes[i + 1..].starts_with(&[0x96, 0x81]) => return Some((i, 3)),
            _ => i += 1,
        }
    }
    None
}

/// Byte offset of the first numeric character.
fn first_numeric(text: &str) -> Option<usize> {
    text.char_indices()
        .find(|&(_, c)| is_numeric(c))
        .map(|(i, _)| i)
}

/// `char::is_numeric`, as the Digits pre-tokenizer uses (Unicode digits, numerals and fractions,
/// not only ASCII digits), with the commonest characters answered before the Unicode table
/// lookup, which showed in profiles of Chinese text.
fn is_numeric(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_digit()
    } else if CJK_IDEOGRAPHS.contains(&c) {
        // Ideographs are letters (Lo), even those for numbers.
        false
    } else {
        c.is_numeric()
    }
}

const CJK_IDEOGRAPHS: std::ops::RangeInclusive<char> = '\u{4E00}'..='\u{9FFF}';

#[cfg(test)]
mod tests {
    use super::*;

    fn spelled(text: &str) -> Vec<String> {
        PreTokens::new(text)
            .map(|p| {
                if p.marked {
                    format!("{MARKER}{}", p.body)
                } else {
                    p.body.to_string()
                }
            })
            .collect()
    }

    #[test]
    fn words_start_at_spaces_and_markers_and_digits_stand_alone() {
        assert_eq!(spelled("hello world"), ["▁hello", "▁world"]);
        assert_eq!(spelled(" a  b "), ["▁", "▁a", "▁", "▁b", "▁"]);
        assert_eq!(spelled("x▁y"), ["▁x", "▁y"]);
        assert_eq!(spelled("ab12cd 3"), ["▁ab", "1", "2", "cd", "▁", "3"]);
        assert_eq!(spelled("½²٣"), ["▁", "½", "²", "٣"]);
        assert_eq!(spelled("tab\there\nnew"), ["▁tab\there\nnew"]);
        assert!(spelled("").is_empty());
    }

    #[test]
    fn the_shortcuts_agree_with_char_is_numeric() {
        for c in ('\0'..='\u{7F}').chain(CJK_IDEOGRAPHS) {
            assert_eq!(is_numeric(c), c.is_numeric(), "{c:?}");
        }
    }
}
