//! The batch stream: the token sequence cut into windows of `seq_len + 1` tokens, visited in a
//! shuffled order that is a pure function of (seed, epoch). The whole stream position is one
//! number, the cursor, so a checkpoint that stores it resumes the exact same data order.

use crate::shards::TokenDataset;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// The target of a position that is not a loss token (HF's label -100): a prompt token, padding,
/// or the last token of a packed conversation.
pub const IGNORE: u32 = u32::MAX;

/// Inputs and next-token targets, row-major `[rows, seq_len]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub inputs: Vec<u32>,
    /// The next token at each position, or [`IGNORE`].
    pub targets: Vec<u32>,
    pub rows: usize,
    pub seq_len: usize,
    /// Position ids `[rows, seq_len]` for rows that pack several sequences: each sequence's
    /// positions start at 0 and it attends only to itself (a position `p` sees the `p` tokens
    /// before it). `None` is one sequence per row, positions `0..seq_len`.
    pub positions: Option<Vec<u32>>,
}

impl Batch {
    /// Positions whose target counts in the loss.
    pub fn loss_tokens(&self) -> usize {
        self.targets.iter().filter(|&&t| t != IGNORE).count()
    }
}

pub struct BatchStream<'a> {
    data: &'a TokenDataset,
    seq_len: usize,
    seed: u64,
    /// Windows consumed so far.
    cursor: u64,
    epoch_order: Option<(u64, Vec<u32>)>,
}

impl<'a> BatchStream<'a> {
    pub fn new(data: &'a TokenDataset, seq_len: usize, seed: u64, cursor: u64) -> Self {
        BatchStream {
            data,
            seq_len,
            seed,
            cursor,
            epoch_order: None,
        }
    }

    /// Number of distinct windows (one epoch).
    pub fn windows(&self) -> u64 {
        (self.data.tokens.len().saturating_sub(1) / self.seq_len) as u64
    }

    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    fn window_at(&mut self, position: u64) -> usize {
        let n = self.windows();
        let epoch = position / n;
        if self.epoch_order.as_ref().map(|(e, _)| *e) != Some(epoch) {
            let mut order: Vec<u32> = (0..n as u32).collect();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
                self.seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
            order.shuffle(&mut rng);
            self.epoch_order = Some((epoch, order));
        }
        let order = &self.epoch_order.as_ref().expect("just set").1;
        order[(position % n) as usize] as usize
    }

    /// The next `rows` windows.
    pub fn next_batch(&mut self, rows: usize) -> Batch {
        let windows: Vec<usize> = (0..rows)
            .map(|_| {
                let w = self.window_at(self.cursor);
                self.cursor += 1;
                w
            })
            .collect();
        Batch::from_windows(self.data, &windows, self.seq_len)
    }
}

impl Batch {
    /// Rows made of the given windows: inputs are a window's first `seq_len` tokens, targets the
    /// same shifted by one.
    pub fn from_windows(data: &TokenDataset, windows: &[usize], seq_len: usize) -> Batch {
        let mut inputs = Vec::with_capacity(windows.len() * seq_len);
        let mut targets = Vec::with_capacity(windows.len() * seq_len);
        for &w in windows {
            let s = &data.tokens[w * seq_len..w * seq_len + seq_len + 1];
            inputs.extend_from_slice(&s[..seq_len]);
            targets.extend_from_slice(&s[1..]);
        }
        Batch {
            inputs,
            targets,
            rows: windows.len(),
            seq_len,
            positions: None,
        }
    }
}

/// Evaluation windows: the same every time, spread evenly over the whole dataset, so that a
/// held-out set made of several sources is sampled from all of them.
pub fn eval_batches(
    data: &TokenDataset,
    seq_len: usize,
    rows: usize,
    max_batches: usize,
) -> Vec<Batch> {
    let n = data.tokens.len().saturating_sub(1) / seq_len;
    let wanted = (rows * max_batches).min(n - n % rows.max(1));
    let stride = if wanted == 0 { 1 } else { n / wanted };
    let windows: Vec<usize> = (0..wanted).map(|i| i * stride).collect();
    windows
        .chunks_exact(rows)
        .map(|chunk| Batch::from_windows(data, chunk, seq_len))
        .collect()
}
