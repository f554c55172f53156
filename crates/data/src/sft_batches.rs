//! Conversations as training rows (docs/FINETUNE.md). A conversation is rendered by the chat
//! template that `chat` and `serve` use and tokenized piece by piece: the text up to an
//! assistant turn, then the turn, so that each answer starts on a token boundary exactly as a
//! generated answer follows its prompt's tokens at inference (tokenized whole, "cat?<AI>a" may
//! become one token). The answers' tokens are learned; the sample is BOS + conversation + EOS,
//! the EOS learned when the conversation ends with the assistant (MiniCPM's SFT recipe).
//!
//! Rows are made in one of two layouts: padded (one conversation per row, padded to the longest
//! of the micro-batch) or packed (conversations laid end to end in rows of `seq_len` positions,
//! each with positions from 0 and attention only within itself, see [`Batch::positions`]).
//! The order of conversations is a shuffle that is a pure function of (seed, epoch), and the
//! stream's whole position is the number of conversations drawn, so a checkpoint resumes it.

use crate::batches::{Batch, IGNORE};
use crate::chat_template::{ChatTemplate, Message};
use crate::conversation::Conversation;
use crate::error::DataError;
use crate::tokenizer::TextTokenizer;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// A tokenized conversation: `ids`, and for each whether the model learns to produce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftExample {
    pub ids: Vec<u32>,
    pub learn: Vec<bool>,
}

impl SftExample {
    /// Input positions the example fills: every token but the last is an input.
    pub fn positions(&self) -> usize {
        self.ids.len() - 1
    }

    /// The next-token targets of its input positions, [`IGNORE`] where nothing is learned.
    pub fn targets(&self) -> impl Iterator<Item = u32> + '_ {
        (1..self.ids.len()).map(|i| match self.learn[i] {
            true => self.ids[i],
            false => IGNORE,
        })
    }

    /// Tokens learned.
    pub fn learned(&self) -> usize {
        self.learn.iter().filter(|&&l| l).count()
    }
}

/// Renders and tokenizes conversations for one tokenizer and chat template.
pub struct ChatEncoder<'a> {
    tokenizer: &'a TextTokenizer,
    /// The tokenizer for pieces after the first (see [`TextTokenizer::continuation`]).
    continuation: TextTokenizer,
    pub template: ChatTemplate,
    pub bos: u32,
    pub eos: u32,
}

impl<'a> ChatEncoder<'a> {
    /// Checks that the tokenizer has BOS and EOS and encodes the template's markers faithfully
    /// (ChatML's as single tokens); the error says which is missing.
    pub fn new(tokenizer: &'a TextTokenizer, template: ChatTemplate) -> Result<Self, DataError> {
        let special = |t: &str| {
            tokenizer.token_id(t).ok_or_else(|| {
                DataError::Invalid(format!(
                    "the tokenizer has no {t} token (BOS and EOS are needed)"
                ))
            })
        };
        let (bos, eos) = (special("<s>")?, special("</s>")?);
        for &marker in template.markers() {
            let ids = tokenizer.encode(marker)?;
            // ChatML's markers must be tokens of their own (decoding would skip them as
            // special); MiniCPM's are ordinary text that must come back as written.
            let (faithful, single) = match template {
                ChatTemplate::ChatMl => {
                    let id = tokenizer.token_id(marker);
                    (
                        id.is_some() && ids == id.into_iter().collect::<Vec<_>>(),
                        ids.len() == 1,
                    )
                }
                ChatTemplate::MiniCpm => (tokenizer.decode(&ids)? == marker, true),
            };
            if !faithful || !single {
                return Err(DataError::Invalid(format!(
                    "the tokenizer's vocabulary lacks the {template:?} chat template's marker {marker:?} \
                     ({} tokens{})",
                    ids.len(),
                    if faithful { "" } else { ", decoded differently" }
                )));
            }
        }
        Ok(ChatEncoder {
            tokenizer,
            continuation: tokenizer.continuation()?,
            template,
            bos,
            eos,
        })
    }

    /// BOS + the rendered conversation + EOS, the assistant's tokens and the final EOS learned.
    pub fn encode(&self, c: &Conversation) -> Result<SftExample, DataError> {
        c.check().map_err(DataError::Invalid)?;
        let r = self.template.render_spans(&c.messages, false);
        let mut out = SftExample {
            ids: vec![self.bos],
            learn: vec![false],
        };
        let mut at = 0;
        let piece = |text: &str, learn: bool, out: &mut SftExample| {
            if text.is_empty() {
                return Ok::<(), DataError>(());
            }
            let tok = match out.ids.len() {
                1 => self.tokenizer,
                _ => &self.continuation,
            };
            let ids = tok.encode(text)?;
            out.learn.extend(std::iter::repeat_n(learn, ids.len()));
            out.ids.extend(ids);
            Ok(())
        };
        for span in &r.assistant {
            piece(&r.text[at..span.start], false, &mut out)?;
            piece(&r.text[span.clone()], true, &mut out)?;
            at = span.end;
        }
        piece(&r.text[at..], false, &mut out)?;
        let ends_with_answer = c.messages.last().is_some_and(|m| m.role == "assistant");
        out.ids.push(self.eos);
        out.learn.push(ends_with_answer);
        Ok(out)
    }

    /// The tokens of a prompt that asks for the assistant's next turn: BOS + the rendering
    /// with the generation prompt.
    pub fn encode_prompt(&self, messages: &[Message]) -> Result<Vec<u32>, DataError> {
        let mut ids = vec![self.bos];
        ids.extend(
            self.tokenizer
                .encode(&self.template.render(messages, true))?,
        );
        Ok(ids)
    }
}

/// How conversations share rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// One conversation per row, padded to the micro-batch's longest.
    Padded,
    /// Conversations end to end in rows of `seq_len` positions, each attending to itself only.
    Packed,
}

/// Examples cut to `seq_len + 1` tokens (so they fit a row); those left with nothing to learn
/// are dropped. Returns the examples and how many were cut and dropped.
pub fn fit_to(examples: Vec<SftExample>, seq_len: usize) -> (Vec<SftExample>, usize, usize) {
    let (mut cut, mut dropped) = (0, 0);
    let mut out = Vec::with_capacity(examples.len());
    for mut e in examples {
        if e.ids.len() > seq_len + 1 {
            e.ids.truncate(seq_len + 1);
            e.learn.truncate(seq_len + 1);
            cut += 1;
        }
        match e.learn[1..].iter().any(|&l| l) {
            true => out.push(e),
            false => dropped += 1,
        }
    }
    (out, cut, dropped)
}

/// Rows of `examples` taken in order, as many as fit `rows` rows of at most `seq_len` positions;
/// returns the batch and how many examples it holds. Every example must fit a row
/// ([`fit_to`]).
pub fn make_rows<'e>(
    mut examples: impl Iterator<Item = &'e SftExample>,
    rows: usize,
    seq_len: usize,
    layout: Layout,
) -> (Batch, usize) {
    let mut row_list: Vec<Vec<&SftExample>> = Vec::with_capacity(rows);
    let mut used = 0;
    let mut pending = examples.next();
    while let Some(e) = pending {
        assert!(
            e.positions() <= seq_len,
            "examples are fitted to the rows first"
        );
        let fits = match (row_list.last(), layout) {
            (Some(row), Layout::Packed) => {
                row.iter().map(|e| e.positions()).sum::<usize>() + e.positions() <= seq_len
            }
            _ => false,
        };
        if !fits {
            if row_list.len() == rows {
                break;
            }
            row_list.push(Vec::new());
        }
        row_list.last_mut().expect("a row is open").push(e);
        used += 1;
        pending = examples.next();
    }
    let width = match layout {
        Layout::Packed => seq_len,
        Layout::Padded => row_list.iter().map(|r| r[0].positions()).max().unwrap_or(1),
    };
    let n = row_list.len() * width;
    let mut batch = Batch {
        inputs: Vec::with_capacity(n),
        targets: Vec::with_capacity(n),
        rows: row_list.len(),
        seq_len: width,
        positions: (layout == Layout::Packed).then(|| Vec::with_capacity(n)),
    };
    for row in &row_list {
        let mut filled = 0;
        for e in row {
            batch.inputs.extend_from_slice(&e.ids[..e.positions()]);
            batch.targets.extend(e.targets());
            if let Some(p) = &mut batch.positions {
                p.extend(0..e.positions() as u32);
            }
            filled += e.positions();
        }
        // Padding repeats the last input, learns nothing, and is a sequence of its own.
        let pad = *batch.inputs.last().unwrap_or(&0);
        batch
            .inputs
            .extend(std::iter::repeat_n(pad, width - filled));
        batch
            .targets
            .extend(std::iter::repeat_n(IGNORE, width - filled));
        if let Some(p) = &mut batch.positions {
            p.extend(0..(width - filled) as u32);
        }
    }
    (batch, used)
}

/// Every example once, in order, as batches of `rows` rows (held-out evaluation).
pub fn all_batches(
    examples: &[SftExample],
    rows: usize,
    seq_len: usize,
    layout: Layout,
) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < examples.len() {
        let (b, used) = make_rows(examples[at..].iter(), rows, seq_len, layout);
        out.push(b);
        at += used;
    }
    out
}

/// Indices `0..n` epoch after epoch, each epoch in its own shuffled order, a pure function of
/// (seed, epoch); the whole position is the count drawn, so a checkpoint resumes it.
pub struct Shuffled {
    n: u64,
    seed: u64,
    cursor: u64,
    epoch_order: Option<(u64, Vec<u32>)>,
}

impl Shuffled {
    pub fn new(n: usize, seed: u64, cursor: u64) -> Self {
        assert!(n > 0, "a stream needs items");
        Shuffled {
            n: n as u64,
            seed,
            cursor,
            epoch_order: None,
        }
    }

    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The index at stream position `position`.
    pub fn at(&mut self, position: u64) -> usize {
        let epoch = position / self.n;
        if self.epoch_order.as_ref().map(|(e, _)| *e) != Some(epoch) {
            let mut order: Vec<u32> = (0..self.n as u32).collect();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
                self.seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
            order.shuffle(&mut rng);
            self.epoch_order = Some((epoch, order));
        }
        let order = &self.epoch_order.as_ref().expect("just set").1;
        order[(position % self.n) as usize] as usize
    }

    /// The next index.
    pub fn next_index(&mut self) -> usize {
        self.cursor += 1;
        self.at(self.cursor - 1)
    }

    /// Moves the cursor forward by `n` without drawing.
    pub fn skip(&mut self, n: u64) {
        self.cursor += n;
    }
}

/// The training stream over `examples`.
pub struct SftStream<'a> {
    examples: &'a [SftExample],
    order: Shuffled,
}

impl<'a> SftStream<'a> {
    pub fn new(examples: &'a [SftExample], seed: u64, cursor: u64) -> Self {
        SftStream {
            examples,
            order: Shuffled::new(examples.len(), seed, cursor),
        }
    }

    pub fn cursor(&self) -> u64 {
        self.order.cursor()
    }

    /// The next micro-batch of `rows` rows.
    pub fn next_batch(&mut self, rows: usize, seq_len: usize, layout: Layout) -> Batch {
        let mut at = self.order.cursor();
        let (examples, order) = (self.examples, &mut self.order);
        let upcoming = std::iter::from_fn(|| {
            at += 1;
            Some(&examples[order.at(at - 1)])
        });
        let (batch, used) = make_rows(upcoming, rows, seq_len, layout);
        self.order.skip(used as u64);
        batch
    }
}

/// Preference pairs tokenized: the prompt with the chosen answer, and with the rejected one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairExample {
    pub chosen: SftExample,
    pub rejected: SftExample,
}

/// The rows of `pairs`: every chosen sequence, then every rejected one, padded to the longest.
pub fn pair_rows(pairs: &[&PairExample]) -> Batch {
    let rows: Vec<&SftExample> = pairs
        .iter()
        .map(|p| &p.chosen)
        .chain(pairs.iter().map(|p| &p.rejected))
        .collect();
    let longest = rows.iter().map(|e| e.positions()).max().unwrap_or(1);
    make_rows(rows.into_iter(), 2 * pairs.len(), longest, Layout::Padded).0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> TextTokenizer {
        let corpus = ["<用户>what is a cat?<AI>a small animal. the quick brown fox 12345"; 50];
        TextTokenizer::train_bpe(corpus.iter(), 400).unwrap()
    }

    fn example(len: usize, first: u32) -> SftExample {
        SftExample {
            ids: (first..first + len as u32).collect(),
            learn: (0..len).map(|i| i >= len / 2).collect(),
        }
    }

    /// The learned tokens decode to exactly the assistant's turns (and EOS), for both templates.
    #[test]
    fn the_mask_covers_the_assistant_turns_and_the_final_eos() {
        let tok = tokenizer();
        let c = Conversation {
            messages: vec![
                Message::new("system", "be kind"),
                Message::new("user", "what is a cat?"),
                Message::new("assistant", "a small animal."),
                Message::new("user", "and a fox?"),
                Message::new("assistant", "quick and brown"),
            ],
        };
        let enc = ChatEncoder::new(&tok, ChatTemplate::MiniCpm).unwrap();
        let e = enc.encode(&c).unwrap();
        assert_eq!(e.ids[0], enc.bos);
        assert_eq!(*e.ids.last().unwrap(), enc.eos);
        assert!(*e.learn.last().unwrap());
        // The pieces decode to the template's rendering.
        let body = tok.decode(&e.ids[1..e.ids.len() - 1]).unwrap();
        assert_eq!(body, ChatTemplate::MiniCpm.render(&c.messages, false));
        // Runs of learned tokens are the two answers.
        let mut runs = vec![];
        let mut run = vec![];
        for (i, &l) in e.learn.iter().enumerate().take(e.ids.len() - 1) {
            match l {
                true => run.push(e.ids[i]),
                false if !run.is_empty() => {
                    runs.push(tok.decode(&std::mem::take(&mut run)).unwrap())
                }
                false => {}
            }
        }
        runs.push(tok.decode(&run).unwrap());
        assert_eq!(runs, ["a small animal.", "quick and brown"]);
        // A conversation that ends with the user learns its answers but not the EOS.
        let mut open = c.clone();
        open.messages.push(Message::new("user", "and a dog?"));
        assert!(!*enc.encode(&open).unwrap().learn.last().unwrap());
    }

    /// The test tokenizer with ChatML's markers as special added tokens, as Qwen-style
    /// tokenizers have them.
    fn chatml_tokenizer() -> TextTokenizer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        let tok = tokenizer();
        tok.save(&path).unwrap();
        let mut json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for (i, marker) in ["<|im_start|>", "<|im_end|>"].iter().enumerate() {
            json["added_tokens"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({
                    "id": tok.vocab_size() + i, "content": marker, "single_word": false,
                    "lstrip": false, "rstrip": false, "normalized": false, "special": true
                }));
        }
        TextTokenizer::from_json(&json.to_string(), "chatml test").unwrap()
    }

    /// ChatML's markers as special tokens are accepted, and each answer learns its `<|im_end|>`.
    #[test]
    fn chatml_learns_each_answer_and_its_end_marker() {
        let tok = chatml_tokenizer();
        let enc = ChatEncoder::new(&tok, ChatTemplate::ChatMl).unwrap();
        let im_end = tok.token_id("<|im_end|>").unwrap();
        let c = Conversation {
            messages: vec![
                Message::new("user", "what is a cat?"),
                Message::new("assistant", "a small animal."),
                Message::new("user", "and a fox?"),
                Message::new("assistant", "quick and brown"),
            ],
        };
        let e = enc.encode(&c).unwrap();
        let learned: Vec<u32> = (0..e.ids.len())
            .filter(|&i| e.learn[i])
            .map(|i| e.ids[i])
            .collect();
        assert_eq!(learned.iter().filter(|&&id| id == im_end).count(), 2);
        assert_eq!(e.ids.iter().filter(|&&id| id == im_end).count(), 4);
        assert_eq!(*learned.last().unwrap(), enc.eos);
    }

    #[test]
    fn a_tokenizer_without_the_templates_markers_is_refused() {
        let tok = tokenizer();
        let e = ChatEncoder::new(&tok, ChatTemplate::ChatMl)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("lacks the ChatMl chat template's marker \"<|im_start|>\""),
            "{e}"
        );
    }

    #[test]
    fn packing_lays_examples_end_to_end_with_positions_from_zero() {
        let ex = [
            example(4, 10),
            example(3, 20),
            example(5, 30),
            example(2, 40),
        ];
        let (b, used) = make_rows(ex.iter(), 2, 6, Layout::Packed);
        // Row 0: 3 + 2 positions, then 1 of padding (the third needs 4); row 1: 4 + 1.
        assert_eq!(used, 4);
        assert_eq!(b.rows, 2);
        assert_eq!(b.inputs, [10, 11, 12, 20, 21, 21, 30, 31, 32, 33, 40, 40]);
        assert_eq!(
            b.positions.as_deref().unwrap(),
            [0, 1, 2, 0, 1, 0, 0, 1, 2, 3, 0, 0]
        );
        let i = IGNORE;
        assert_eq!(b.targets, [i, 12, 13, 21, 22, i, i, 32, 33, 34, 41, i]);
        assert_eq!(b.loss_tokens(), 8);
        // Two rows of 6 leave the fifth example for the next batch.
        let more = [&ex[..], &ex[..1]].concat();
        assert_eq!(make_rows(more.iter(), 2, 6, Layout::Packed).1, 4);
        let (p, used) = make_rows(ex.iter(), 2, 6, Layout::Padded);
        assert_eq!((used, p.seq_len, p.positions.is_none()), (2, 3, true));
        assert_eq!(p.inputs, [10, 11, 12, 20, 21, 21]);
    }

    #[test]
    fn the_stream_resumes_from_its_cursor_and_covers_every_example_each_epoch() {
        let ex: Vec<SftExample> = (0..7).map(|i| example(3 + i % 3, 10 * i as u32)).collect();
        let mut a = SftStream::new(&ex, 5, 0);
        let first: Vec<Batch> = (0..6).map(|_| a.next_batch(2, 6, Layout::Packed)).collect();
        let mut b = SftStream::new(&ex, 5, 0);
        b.next_batch(2, 6, Layout::Packed);
        b.next_batch(2, 6, Layout::Packed);
        let mut c = SftStream::new(&ex, 5, b.cursor());
        assert_eq!(c.next_batch(2, 6, Layout::Packed), first[2]);
        // One epoch's first tokens are each example's once.
        let mut d = SftStream::new(&ex, 5, 0);
        let mut seen = vec![];
        while d.cursor() < 7 {
            let before = d.cursor();
            let batch = d.next_batch(1, 6, Layout::Padded);
            assert_eq!(d.cursor(), before + 1);
            seen.push(batch.inputs[0]);
        }
        seen.sort();
        assert_eq!(seen, [0, 10, 20, 30, 40, 50, 60]);
    }

    #[test]
    fn long_examples_are_cut_and_empty_ones_dropped() {
        let (kept, cut, dropped) = fit_to(vec![example(10, 0), example(3, 0)], 6);
        assert_eq!((kept.len(), cut, dropped), (2, 1, 0));
        assert_eq!(kept[0].ids.len(), 7);
        // Cut before its answer, an example has nothing left to learn.
        assert_eq!(fit_to(vec![example(10, 0)], 4).2, 1);
        let none = SftExample {
            ids: vec![1, 2, 3],
            learn: vec![false, false, false],
        };
        assert_eq!(fit_to(vec![none], 4).2, 1);
    }
}
