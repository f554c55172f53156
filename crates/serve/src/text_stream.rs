//! Turning generated tokens into text as they arrive: decode the prompt and continuation
//! together (SentencePiece decoders treat the start of a text specially, and a character split
//! across byte tokens must print whole), hand out only what the text gained, and stop at the
//! first stop string, holding back any tail that might be the start of one.

/// Incremental text of one generation.
pub struct TextStream<D> {
    decode: D,
    ids: Vec<u32>,
    /// Bytes of the decoded prompt: the continuation starts here.
    start: usize,
    /// Bytes of the continuation already handed out.
    emitted: usize,
    stops: Vec<String>,
    stopped: bool,
}

/// What one token added.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Piece {
    /// New text, safe to show.
    pub text: String,
    /// A stop string was reached: generation should end (the stop string is not shown).
    pub stop: bool,
}

impl<D: Fn(&[u32]) -> Option<String>> TextStream<D> {
    /// `decode` turns ids into text (`None` if it cannot); `prompt` is what came before the
    /// generation.
    pub fn new(decode: D, prompt: &[u32], stops: Vec<String>) -> Self {
        let start = decode(prompt).map_or(0, |t| t.len());
        let stops = stops.into_iter().filter(|s| !s.is_empty()).collect();
        TextStream {
            decode,
            ids: prompt.to_vec(),
            start,
            emitted: 0,
            stops,
            stopped: false,
        }
    }

    pub fn push(&mut self, id: u32) -> Piece {
        if self.stopped {
            return Piece {
                text: String::new(),
                stop: true,
            };
        }
        self.ids.push(id);
        let Some(all) = (self.decode)(&self.ids) else {
            return Piece::default();
        };
        let Some(text) = all.get(self.start..) else {
            return Piece::default();
        };
        if let Some(at) = self.first_stop(text) {
            self.stopped = true;
            let piece = text.get(self.emitted..at).unwrap_or("").to_string();
            self.emitted = at.max(self.emitted);
            return Piece {
                text: piece,
                stop: true,
            };
        }
        // An incomplete character decodes as U+FFFD until its last byte arrives.
        let settled = text.trim_end_matches('\u{fffd}');
        let safe = settled.len() - self.stop_prefix_len(settled);
        match text.get(self.emitted..safe) {
            Some(piece) if safe > self.emitted => {
                self.emitted = safe;
                Piece {
                    text: piece.to_string(),
                    stop: false,
                }
            }
            _ => Piece::default(),
        }
    }

    /// What is held back when the generation ends without a stop string.
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        let all = (self.decode)(&self.ids).unwrap_or_default();
        let rest = all
            .get(self.start..)
            .and_then(|t| t.get(self.emitted..))
            .unwrap_or("")
            .to_string();
        self.emitted += rest.len();
        rest
    }

    fn first_stop(&self, text: &str) -> Option<usize> {
        self.stops
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min()
    }

    /// The longest tail of `text` that is a proper prefix of a stop string.
    fn stop_prefix_len(&self, text: &str) -> usize {
        self.stops
            .iter()
            .flat_map(|s| {
                (1..s.len())
                    .filter(|&n| s.is_char_boundary(n) && text.ends_with(&s[..n]))
                    .max()
            })
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy decoder: token i is the i-th piece; "<s>" at 0 decodes to nothing, and 9 and 10
    /// are the two bytes of "é".
    fn decode(ids: &[u32]) -> Option<String> {
        let pieces = ["", "Hello", " wor", "ld", "\n", "User", ":", " ok", "!"];
        let mut bytes = Vec::new();
        for &i in ids {
            match i {
                9 => bytes.push(0xc3),
                10 => bytes.push(0xa9),
                _ => bytes.extend(pieces.get(i as usize)?.as_bytes()),
            }
        }
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn run(tokens: &[u32], stops: &[&str]) -> (Vec<String>, bool, String) {
        let mut s = TextStream::new(
            decode,
            &[0, 1],
            stops.iter().map(|s| s.to_string()).collect(),
        );
        let mut pieces = vec![];
        let mut stopped = false;
        for &t in tokens {
            let p = s.push(t);
            pieces.push(p.text);
            if p.stop {
                stopped = true;
                break;
            }
        }
        let rest = s.finish();
        (pieces, stopped, rest)
    }

    #[test]
    fn text_arrives_as_it_is_decoded_and_characters_whole() {
        let (pieces, stopped, rest) = run(&[2, 3, 9, 10, 8], &[]);
        assert_eq!(pieces, vec![" wor", "ld", "", "é", "!"]);
        assert!(!stopped);
        assert_eq!(rest, "");
    }

    #[test]
    fn a_stop_string_ends_the_text_before_it_even_across_tokens() {
        // "\nUser:" arrives as three tokens; nothing of it is shown.
        let (pieces, stopped, _) = run(&[2, 3, 4, 5, 6, 7], &["\nUser:"]);
        assert_eq!(pieces, vec![" wor", "ld", "", "", ""]);
        assert!(stopped);
        // A held-back tail that turns out not to be a stop string is released.
        let (pieces, stopped, rest) = run(&[2, 4, 7], &["\nUser:"]);
        assert_eq!(pieces, vec![" wor", "", "\n ok"]);
        assert!(!stopped);
        assert_eq!(rest, "");
        // Held back at the end of the generation: finish hands it out.
        let (pieces, _, rest) = run(&[2, 4, 5], &["\nUser:"]);
        assert_eq!(pieces, vec![" wor", "", ""]);
        assert_eq!(rest, "\nUser");
    }
}
