//! A length curriculum within one run (docs/MODEL.md section 13): shorter rows for the first
//! updates, then `train.seq_len`, as MiniCPM-128K trained on growing lengths.
//!
//! ```toml
//! [train]
//! seq_len = 4096
//! micro_batch = 1
//! length_schedule = [{ seq_len = 1024, until = 96 }]   # updates 0-95 on rows of 1,024
//! ```
//!
//! Every update keeps `batch_tokens` and every micro-batch keeps `micro_batch x seq_len` tokens:
//! a micro-batch of rows a quarter as long has four times the rows, so the number of
//! micro-batches per update (and so how ranks share them) never changes. Each length draws its
//! own shuffle of every source (a window of 1,024 tokens is not a quarter of one of 4,096), and
//! the data cursor records the length it belongs to so that a resume finds its place.

use crate::config::TrainConfig;
use crate::error::InvalidSetting;
use serde::{Deserialize, Serialize};

/// Rows of `seq_len` tokens for the updates before `until`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LengthStage {
    pub seq_len: usize,
    /// The first update that no longer trains at this length.
    pub until: u64,
}

impl TrainConfig {
    /// The row length of update `step`.
    pub fn row_length(&self, step: u64) -> usize {
        self.length_schedule
            .iter()
            .find(|s| step < s.until)
            .map_or(self.seq_len, |s| s.seq_len)
    }

    /// Rows per micro-batch at update `step`: `micro_batch` at `seq_len`, more at shorter rows.
    pub fn rows_at(&self, step: u64) -> usize {
        self.micro_batch * self.seq_len / self.row_length(step)
    }

    /// Stages in order, each shorter than the next and than `seq_len`, each ending before the
    /// next and before the run does, each dividing a micro-batch's tokens into whole rows.
    pub fn check_length_schedule(&self) -> Result<(), InvalidSetting> {
        let key = "train.length_schedule";
        let bad = |msg: String| Err(InvalidSetting::new(key, format!("{key}: {msg}")));
        let micro_tokens = self.micro_batch * self.seq_len;
        let (mut length, mut until) = (0usize, 0u64);
        for s in &self.length_schedule {
            if s.seq_len <= length || s.until <= until {
                return bad(format!(
                    "stages must grow in seq_len and in until; {{ seq_len = {}, until = {} }} \
                     follows {{ seq_len = {length}, until = {until} }}",
                    s.seq_len, s.until
                ));
            }
            if s.seq_len >= self.seq_len {
                return bad(format!(
                    "seq_len {} is not shorter than train.seq_len ({}), the length the run ends at",
                    s.seq_len, self.seq_len
                ));
            }
            if s.until >= self.steps {
                return bad(format!(
                    "until = {} leaves no update of the {} in train.steps at train.seq_len",
                    s.until, self.steps
                ));
            }
            if !micro_tokens.is_multiple_of(s.seq_len) {
                return bad(format!(
                    "seq_len {} does not divide micro_batch x seq_len = {micro_tokens} into whole \
                     rows",
                    s.seq_len
                ));
            }
            (length, until) = (s.seq_len, s.until);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::BASE;
    use crate::config::RunConfig;

    fn with(schedule: &str) -> Result<RunConfig, String> {
        RunConfig::parse(
            BASE,
            "t.toml",
            &[format!("train.length_schedule={schedule}")],
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn each_update_gets_its_stages_length_and_the_same_tokens() {
        let cfg = with("[{seq_len=16, until=3}, {seq_len=32, until=6}]").unwrap();
        let t = &cfg.train;
        let lengths: Vec<usize> = (0..10).map(|s| t.row_length(s)).collect();
        assert_eq!(lengths, [16, 16, 16, 32, 32, 32, 64, 64, 64, 64]);
        for s in 0..10 {
            assert_eq!(t.rows_at(s) * t.row_length(s), t.micro_batch * t.seq_len);
        }
        assert_eq!(
            RunConfig::parse(&cfg.to_toml(), "run.toml", &[]).unwrap(),
            cfg
        );
        let plain = RunConfig::parse(BASE, "t.toml", &[]).unwrap();
        assert!(!plain.to_toml().contains("length_schedule"));
        assert_eq!(plain.train.rows_at(0), plain.train.micro_batch);
    }

    #[test]
    fn bad_schedules_are_one_line_naming_the_key() {
        for (schedule, culprit) in [
            (
                "[{seq_len=32, until=3}, {seq_len=16, until=6}]",
                "must grow",
            ),
            (
                "[{seq_len=16, until=6}, {seq_len=32, until=6}]",
                "must grow",
            ),
            (
                "[{seq_len=64, until=3}]",
                "not shorter than train.seq_len (64)",
            ),
            ("[{seq_len=16, until=10}]", "leaves no update"),
            ("[{seq_len=48, until=3}]", "does not divide"),
            ("[{seq_len=16}]", "until"),
        ] {
            let e = with(schedule).unwrap_err();
            assert!(
                e.contains("train.length_schedule") && e.contains(culprit),
                "{schedule}: {e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
