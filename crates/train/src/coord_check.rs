//! The coordinate check (docs/MODEL.md section 8): the mean absolute value of each kind of
//! activation over the first updates of training. Under muP these stay the same whatever the
//! width; under standard parametrisation they grow with width as soon as the weights move,
//! which is the visible sign of an LR that will not transfer.
//!
//! Following Yang et al. (Tensor Programs V), the learning rate is held constant (no schedule)
//! and the measurement is a forward pass over one fixed batch before each update. By default the
//! tokens are uniformly random (seeded), so the check needs no dataset: it measures the scale of
//! the activations, which the updates set whatever the data. On random tokens, though, the only
//! thing to learn is that every token is equally likely, so the check can also train on the
//! run's own data (its stable mixture, probed on the first held-out batch) and show the updates
//! that text drives.

use crate::bench::{token_bound, TokenSource};
use crate::config::RunConfig;
use crate::error::{InvalidSetting, TrainError};
use crate::loss::{input_tensor, LanguageModel};
use crate::open_run;
use crate::run_data::RunData;
use crate::step::Step;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use minicpm_data::batches::eval_batches;
use minicpm_data::mixture::{Mixture, MixtureCursor};
use minicpm_data::Batch;
use minicpm_model::Site;
use serde::Serialize;
use std::collections::BTreeMap;

/// Mean |activation| of one kind at one step, averaged over layers and positions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoordRecord {
    /// Updates made before the measurement (0: at initialisation).
    pub step: u64,
    /// `embedding`, `attention`, `mlp`, `residual` or `logits`.
    pub site: String,
    pub mean_abs: f64,
}

/// The training batches: random tokens, or the run's data mixture.
enum Batches<'a> {
    Random { tokens: TokenSource, vocab: u32 },
    Text(Mixture<'a>),
}

impl Batches<'_> {
    fn next(&mut self, rows: usize, seq_len: usize) -> Batch {
        match self {
            Batches::Random { tokens, vocab } => tokens.batch(rows, seq_len, *vocab),
            Batches::Text(mixture) => mixture.next_batch("stable", rows).0,
        }
    }
}

/// Measures at initialisation and after each of `steps` updates of `cfg`'s model on `device`
/// (an autodiff device), at the config's peak learning rate, on random tokens or, given `text`
/// (opened from `cfg`), on the run's data.
pub fn run(
    cfg: &RunConfig,
    steps: u64,
    text: Option<&RunData>,
    device: &Device,
) -> Result<Vec<CoordRecord>, TrainError> {
    let t = &cfg.train;
    let vocab = token_bound(cfg.model.vocab_size)?;
    let (mut model, mut opt) = open_run::fresh(cfg, device);
    let (probe_batch, mut training) = match text {
        None => (
            TokenSource(cfg.seed ^ 0x0063_6f6f_7264_636b).batch(t.micro_batch, t.seq_len, vocab),
            Batches::Random {
                tokens: TokenSource(cfg.seed),
                vocab,
            },
        ),
        Some(data) => {
            let probe = eval_batches(&data.valid, t.seq_len, t.micro_batch, 1)
                .into_iter()
                .next()
                .ok_or_else(|| {
                    InvalidSetting::new(
                        "data.valid",
                        format!(
                            "data.valid: fewer than {} sequences of {} for the probe batch",
                            t.micro_batch, t.seq_len
                        ),
                    )
                })?;
            let mixture = data.mixture(t.seq_len, cfg.seed, &MixtureCursor::default())?;
            (probe, Batches::Text(mixture))
        }
    };
    let inner = device.clone().inner();
    let objective = LanguageModel;
    let mut update = Step::new(&objective, device);
    let mut out = Vec::new();
    for step in 0..=steps {
        let valid = model.valid();
        let mut sums: BTreeMap<Site, (f64, usize)> = BTreeMap::new();
        let hidden =
            valid.hidden_probed(input_tensor(&probe_batch, &inner), None, &mut |site, x| {
                let e = sums.entry(site).or_default();
                e.0 += mean_abs(x.clone());
                e.1 += 1;
            });
        let [b, len, d] = hidden.dims();
        let logits = hidden
            .reshape([b * len, d])
            .matmul(valid.head_weight().transpose());
        for (site, (sum, n)) in sums {
            out.push(CoordRecord {
                step,
                site: site.label().into(),
                mean_abs: sum / n as f64,
            });
        }
        out.push(CoordRecord {
            step,
            site: "logits".into(),
            mean_abs: mean_abs(logits),
        });
        if step == steps {
            break;
        }
        let batch = training.next(t.micro_batch, t.seq_len);
        model = update.run(model, &mut opt, &[batch], cfg.optim.lr).0;
    }
    Ok(out)
}

fn mean_abs<const D: usize>(x: Tensor<D>) -> f64 {
    x.abs().mean().into_scalar::<f32>() as f64
}
