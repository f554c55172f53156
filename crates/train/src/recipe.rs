//! What one kind of run trains on and how it is judged: the trainer's loop is written once over
//! this, for pre-training's mixture (trainer.rs) and fine-tuning's conversations and pairs
//! (finetune.rs).

use crate::dpo::PairStats;
use crate::error::TrainError;
use crate::loss::EvalResult;
use crate::step::Objective;
use burn::tensor::Device;
use minicpm_data::mixture::MixtureCursor;
use minicpm_model::MiniCpm;

/// What the trainer needs of a run's data and objective: batches, the resumable cursor, and the
/// held-out evaluation.
pub trait Recipe {
    type Objective: Objective;

    fn objective(&self) -> &Self::Objective;

    /// The next micro-batch of `rows` rows (`phase` is the mixture phase, for pre-training).
    fn next_batch(
        &mut self,
        phase: &str,
        rows: usize,
    ) -> Result<<Self::Objective as Objective>::Batch, TrainError>;

    fn cursor(&self) -> MixtureCursor;

    /// Called before update `step` draws its micro-batches (a length schedule's next stage
    /// starts here).
    fn start_update(&mut self, _step: u64) -> Result<(), TrainError> {
        Ok(())
    }

    /// The held-out evaluation, `None` when there is no held-out data.
    fn evaluate(&self, model: &MiniCpm, device: &Device) -> Option<EvalResult>;

    /// Statistics of the training batches since the last call (DPO's rewards).
    fn train_pairs(&self) -> Option<PairStats> {
        None
    }
}
