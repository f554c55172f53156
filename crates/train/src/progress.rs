//! Progress of a training run: a bar when stderr is a terminal, a plain line per logged update
//! when it is not (CI logs, `nohup`), nothing when asked to be quiet.

use crate::metrics::Record;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

pub enum Progress {
    Bar(ProgressBar),
    Lines { total: u64 },
    Quiet,
}

impl Progress {
    /// Progress of `total` updates, `done` of them already made.
    pub fn new(show: bool, total: u64, done: u64) -> Self {
        if !show {
            return Progress::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Lines { total };
        }
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
            )
            .expect("valid template"),
        );
        bar.set_position(done);
        Progress::Bar(bar)
    }

    /// After an update: `done` updates made, and the update's record if it logged one.
    pub fn update(&self, done: u64, record: Option<&Record>) {
        match (self, record) {
            (Progress::Bar(bar), Some(r)) => {
                bar.set_message(summary(r));
                bar.set_position(done);
            }
            (Progress::Bar(bar), None) => bar.set_position(done),
            (Progress::Lines { total }, Some(r)) => {
                eprintln!("update {done}/{total} {}", summary(r))
            }
            _ => {}
        }
    }

    /// Runs `f` (a branch's own training) with the bar out of its way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match self {
            Progress::Bar(bar) => bar.suspend(f),
            _ => f(),
        }
    }

    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// One record in words: `tokens 12800 loss 5.1234 lr 1.00e-2 2400 tok/s eval 5.2000`.
fn summary(r: &Record) -> String {
    format!(
        "tokens {} loss {:.4} lr {:.2e} {:.0} tok/s{}",
        r.tokens,
        r.loss,
        r.lr,
        r.tok_s,
        r.eval_loss
            .map_or(String::new(), |e| format!(" eval {e:.4}"))
    )
}
