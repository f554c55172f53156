//! The decay branches a run makes on its way (`[branches]`, docs/MODEL.md section 6): the
//! updates they start at, each kept as a pinned checkpoint, and those a resumed run still owes.

use crate::branch::DecaySpec;
use crate::config::RunConfig;
use crate::error::TrainError;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default)]
pub struct BranchPolicy {
    steps: Vec<u64>,
    spec: Option<DecaySpec>,
    batch_tokens: u64,
}

impl BranchPolicy {
    pub fn of(cfg: &RunConfig) -> Result<Self, TrainError> {
        let Some(b) = &cfg.branches else {
            return Ok(BranchPolicy::default());
        };
        Ok(BranchPolicy {
            steps: b.steps(cfg)?,
            spec: Some(b.spec()?),
            batch_tokens: cfg.train.batch_tokens,
        })
    }

    /// The updates after which branches start, ascending.
    pub fn steps(&self) -> &[u64] {
        &self.steps
    }

    /// Whether a branch starts once `done` updates are made.
    pub fn starts_at(&self, done: u64) -> bool {
        self.steps.contains(&done)
    }

    /// The branches a run resumed after `done` updates may have left unfinished: every one that
    /// starts at or before it (a finished branch trains nothing when resumed).
    pub fn owed_at(&self, done: u64) -> Vec<u64> {
        self.steps.iter().copied().filter(|&s| s <= done).collect()
    }

    /// The branch starting at `at`: its directory under `run` and its decay.
    pub fn branch(&self, run: &Path, at: u64) -> Option<(PathBuf, &DecaySpec)> {
        let spec = self.spec.as_ref()?;
        let name = spec.default_name(at, self.batch_tokens);
        Some((run.join(crate::branch::BRANCHES_DIR).join(name), spec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(branches: &str) -> RunConfig {
        parse(branches).unwrap()
    }

    fn parse(branches: &str) -> Result<RunConfig, minicpm_model::ModelError> {
        let text = format!(
            "{}\n[schedule]\nkind = \"wsd\"\nwarmup_steps = 5\ndecay_fraction = 0.25\n{branches}",
            crate::config::tests::BASE
        );
        let sizes = ["train.steps=40".into(), "train.batch_tokens=128".into()];
        RunConfig::parse(&text, "t.toml", &sizes)
    }

    #[test]
    fn branches_start_at_their_token_counts_and_are_owed_after_a_resume() {
        let p = BranchPolicy::of(&config(
            "[branches]\nat_tokens = [2560, 768]\ndecay_fraction = 0.5\ndecay = \"linear\"\n",
        ))
        .unwrap();
        assert_eq!(p.steps(), [6, 20]);
        assert!(p.starts_at(6) && p.starts_at(20) && !p.starts_at(7));
        assert_eq!(p.owed_at(5), Vec::<u64>::new());
        assert_eq!(p.owed_at(6), [6]);
        assert_eq!(p.owed_at(25), [6, 20]);
        let (dir, _) = p.branch(Path::new("run"), 6).unwrap();
        assert_eq!(dir, Path::new("run/branches/step-0000006-linear-6"));
    }

    #[test]
    fn no_branches_without_the_table_and_none_in_the_decay() {
        let none = BranchPolicy::of(&config("")).unwrap();
        assert!(none.steps().is_empty() && none.branch(Path::new("r"), 6).is_none());
        // Update 35 lies in the decay (the last 10 of 40 updates): the config is refused.
        let e = parse("[branches]\nat_tokens = [4480]\n").unwrap_err();
        assert!(e.to_string().contains("below its peak"), "{e}");
    }
}
