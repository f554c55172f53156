//! Which updates log a record and which are followed by a held-out evaluation.

use crate::config::TrainConfig;

#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    steps: u64,
    log_every: u64,
    eval_every: u64,
}

impl Cadence {
    pub fn new(t: &TrainConfig) -> Self {
        Cadence {
            steps: t.steps,
            log_every: t.log_every.max(1),
            eval_every: t.eval_every,
        }
    }

    /// Whether the model is evaluated once `n` updates are done: every `eval_every` and at the
    /// end.
    pub fn evaluates_after(&self, n: u64) -> bool {
        n == self.steps || (self.eval_every > 0 && n.is_multiple_of(self.eval_every))
    }

    /// Whether update `s` (0-based) logs a record: every `log_every`-th, and each one followed
    /// by an evaluation, so that every held-out loss has its record.
    pub fn logs(&self, s: u64) -> bool {
        self.evaluates_after(s + 1) || s.is_multiple_of(self.log_every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_every_log_interval_and_before_every_evaluation() {
        let c = Cadence {
            steps: 25,
            log_every: 10,
            eval_every: 8,
        };
        let logged: Vec<u64> = (0..25).filter(|&s| c.logs(s)).collect();
        // 0, 10, 20 by interval; 7, 15, 23 end at an evaluation (8, 16, 24); 24 is the last.
        assert_eq!(logged, [0, 7, 10, 15, 20, 23, 24]);
        let evals: Vec<u64> = (1..=25).filter(|&n| c.evaluates_after(n)).collect();
        assert_eq!(evals, [8, 16, 24, 25]);
        let never = Cadence {
            steps: 5,
            log_every: 100,
            eval_every: 0,
        };
        assert_eq!(
            (0..5).filter(|&s| never.logs(s)).collect::<Vec<_>>(),
            [0, 4]
        );
    }
}
