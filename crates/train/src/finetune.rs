//! Fine-tuning runs (docs/FINETUNE.md): supervised fine-tuning on conversations and DPO on
//! preference pairs, as runs like any other (same step, checkpoints, exact resume, metrics),
//! starting from a model's weights rather than an initialisation. The `[finetune]` section of a
//! run config says which, from what, on what.

use crate::dpo::{row_log_probs, sequence_log_probs, Dpo, PairBatch, PairStats, PreferenceLoss};
use crate::error::{InvalidSetting, TrainError};
use crate::loss::{batch_hidden, evaluate_masked, token_nll, EvalResult, MaskedLanguageModel};
use crate::recipe::Recipe;
use burn::module::Module;
use burn::tensor::Device;
use minicpm_data::chat_template::ChatTemplate;
use minicpm_data::conversation::{read_conversations_numbered, read_pairs_numbered};
use minicpm_data::mixture::MixtureCursor;
use minicpm_data::sft_batches::{
    all_batches, fit_to, pair_rows, ChatEncoder, Layout, PairExample, SftExample, SftStream,
    Shuffled,
};
use minicpm_data::{Batch, DataError, TextTokenizer};
use minicpm_model::safetensors_io::write_atomic;
use minicpm_model::{MiniCpm, ModelError};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_inline_default::serde_inline_default;
use std::path::{Path, PathBuf};

/// What a fine-tuning run minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinetuneKind {
    /// The masked next-token loss on the assistant's turns.
    Sft,
    /// A preference loss on pairs against the starting model as reference.
    Dpo,
}

#[serde_inline_default]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneConfig {
    pub kind: FinetuneKind,
    /// The HF model directory whose weights the run starts from (for DPO also the reference).
    pub base: PathBuf,
    /// Conversations (SFT) or preference pairs (DPO), JSONL.
    pub train: PathBuf,
    /// Held-out conversations or pairs, JSONL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<PathBuf>,
    #[serde_inline_default(ChatTemplate::MiniCpm)]
    pub template: ChatTemplate,
    /// SFT rows: `packed` (several conversations per row) or `padded` (one per row).
    #[serde_inline_default(Layout::Packed)]
    pub layout: Layout,
    /// DPO's beta.
    #[serde_inline_default(0.1)]
    pub beta: f64,
    /// DPO's loss: `sigmoid` or `ipo`.
    #[serde_inline_default(PreferenceLoss::Sigmoid)]
    pub loss: PreferenceLoss,
}

impl FinetuneConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if !(self.beta > 0.0 && self.beta.is_finite()) {
            return Err(InvalidSetting::new(
                "finetune.beta",
                format!("finetune.beta: {} must be positive", self.beta),
            ));
        }
        Ok(())
    }

    /// The base model's tokenizer, which must fit a vocabulary of `vocab_size`.
    fn tokenizer(&self, vocab_size: usize) -> Result<TextTokenizer, TrainError> {
        let path = self.base.join("tokenizer.json");
        if !path.is_file() {
            return Err(InvalidSetting::new(
                "finetune.base",
                format!(
                    "{}: no tokenizer.json (fine-tuning renders text with the model's tokenizer)",
                    self.base.display()
                ),
            )
            .into());
        }
        let tok = TextTokenizer::load(&path)?;
        if tok.vocab_size() > vocab_size {
            return Err(DataError::file(
                &path,
                format!(
                    "{} tokens, more than the model's vocab_size {vocab_size}",
                    tok.vocab_size()
                ),
            )
            .into());
        }
        Ok(tok)
    }
}

/// An error of the tokenizer against the chat template, naming the tokenizer.
fn encoder_for<'t>(
    tok: &'t TextTokenizer,
    cfg: &FinetuneConfig,
) -> Result<ChatEncoder<'t>, TrainError> {
    ChatEncoder::new(tok, cfg.template).map_err(|e| {
        DataError::Invalid(format!(
            "{}: {e}",
            cfg.base.join("tokenizer.json").display()
        ))
        .into()
    })
}

/// Each conversation of `path` tokenized; an error names the file and line.
fn encode_conversations(
    enc: &ChatEncoder,
    path: &Path,
    seq_len: usize,
) -> Result<Vec<SftExample>, TrainError> {
    let conversations = read_conversations_numbered(path)?;
    let encoded: Vec<Result<SftExample, DataError>> = conversations
        .par_iter()
        .map(|(_, c)| enc.encode(c))
        .collect();
    // The first failure in file order, whichever thread met it first.
    let examples = encoded
        .into_iter()
        .zip(&conversations)
        .map(|(r, (line, _))| r.map_err(|e| line_error(path, *line, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let (examples, cut, dropped) = fit_to(examples, seq_len);
    if cut + dropped > 0 {
        tracing::warn!(
            "{}: {cut} conversations longer than train.seq_len + 1 = {} tokens are cut there; {dropped} with nothing to learn are dropped",
            path.display(),
            seq_len + 1
        );
    }
    if examples.is_empty() {
        return Err(DataError::file(path, "no conversation left to learn from").into());
    }
    Ok(examples)
}

/// A run's training file and its held-out file (empty without one), each encoded by `encode`
/// with the base model's tokenizer and the run's template.
fn encode_both<T>(
    cfg: &FinetuneConfig,
    seq_len: usize,
    vocab: usize,
    encode: fn(&ChatEncoder, &Path, usize) -> Result<Vec<T>, TrainError>,
) -> Result<(Vec<T>, Vec<T>), TrainError> {
    let tok = cfg.tokenizer(vocab)?;
    let enc = encoder_for(&tok, cfg)?;
    let train = encode(&enc, &cfg.train, seq_len)?;
    let valid = match &cfg.valid {
        Some(v) => encode(&enc, v, seq_len)?,
        None => Vec::new(),
    };
    Ok((train, valid))
}

/// `e` about line `line` of `path`.
fn line_error(path: &Path, line: usize, e: DataError) -> TrainError {
    DataError::Invalid(format!("{}:{line}: {e}", path.display())).into()
}

/// The SFT data of a run: its training and held-out conversations, tokenized.
pub struct SftData {
    pub train: Vec<SftExample>,
    pub valid: Vec<SftExample>,
}

impl SftData {
    pub fn open(cfg: &FinetuneConfig, seq_len: usize, vocab: usize) -> Result<Self, TrainError> {
        let (train, valid) = encode_both(cfg, seq_len, vocab, encode_conversations)?;
        Ok(SftData { train, valid })
    }
}

/// The DPO data of a run: pairs tokenized, with the reference model's log-probabilities.
pub struct PairData {
    pub train: Vec<PairExample>,
    pub train_reference: Vec<(f32, f32)>,
    pub valid: Vec<PairExample>,
    pub valid_reference: Vec<(f32, f32)>,
}

/// Where a run keeps its reference log-probabilities: computed once (or found beside the
/// pairs, [`PairData::attach_reference`]) from the model it starts from.
pub const REFERENCE_FILE: &str = "reference_logps.json";

#[derive(Serialize, Deserialize)]
struct ReferenceFile {
    /// The model they were computed with.
    base: PathBuf,
    /// [`PairData::fingerprint`] of the pairs they belong to.
    pairs: String,
    train: Vec<(f32, f32)>,
    valid: Vec<(f32, f32)>,
}

fn encode_pairs(
    enc: &ChatEncoder,
    path: &Path,
    seq_len: usize,
) -> Result<Vec<PairExample>, TrainError> {
    let pairs = read_pairs_numbered(path)?;
    let mut out = Vec::with_capacity(pairs.len());
    let mut cut = 0;
    for &(i, ref p) in &pairs {
        let mut one = |answer: &str| {
            let e = enc
                .encode(&p.conversation(answer))
                .map_err(|e| line_error(path, i, e))?;
            let (mut fitted, c, _) = fit_to(vec![e], seq_len);
            cut += c;
            fitted.pop().ok_or_else(|| {
                line_error(
                    path,
                    i,
                    DataError::Invalid(format!(
                        "the prompt fills train.seq_len = {seq_len}: no answer token is left"
                    )),
                )
            })
        };
        let pair = PairExample {
            chosen: one(&p.chosen)?,
            rejected: one(&p.rejected)?,
        };
        if pair.chosen == pair.rejected {
            let why = "chosen and rejected render to the same tokens: the pair prefers nothing";
            return Err(line_error(path, i, DataError::Invalid(why.into())));
        }
        out.push(pair);
    }
    if cut > 0 {
        tracing::warn!("{}: {cut} answers cut at train.seq_len", path.display());
    }
    Ok(out)
}

/// Reference log-probabilities of `pairs` under `model`, `rows` pairs at a time.
fn reference_log_probs(
    model: &MiniCpm,
    pairs: &[PairExample],
    rows: usize,
    device: &Device,
) -> Vec<(f32, f32)> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(rows.max(1)) {
        let refs: Vec<&PairExample> = chunk.iter().collect();
        let lp = sequence_log_probs(model, &pair_rows(&refs), device);
        let n = chunk.len();
        out.extend((0..n).map(|i| (lp[i], lp[n + i])));
    }
    out
}

impl PairData {
    /// The pairs of `cfg`, tokenized; their reference log-probabilities come with
    /// [`PairData::attach_reference`].
    pub fn read(cfg: &FinetuneConfig, seq_len: usize, vocab: usize) -> Result<Self, TrainError> {
        let (train, valid) = encode_both(cfg, seq_len, vocab, encode_pairs)?;
        Ok(PairData {
            train,
            train_reference: Vec::new(),
            valid,
            valid_reference: Vec::new(),
        })
    }

    /// The token ids of every pair, training then held out, hashed (64-bit FNV-1a, in hex): a
    /// stored reference file belongs to exactly these pairs.
    pub fn fingerprint(&self) -> String {
        let sequences = self
            .train
            .iter()
            .chain(&self.valid)
            .flat_map(|p| [&p.chosen, &p.rejected]);
        let counts = [self.train.len() as u32, self.valid.len() as u32];
        let bytes = sequences
            .flat_map(|e| e.ids.iter().chain(&[u32::MAX]))
            .chain(&counts)
            .flat_map(|id| id.to_le_bytes());
        format!("{:016x}", fnv1a(bytes))
    }

    /// The reference log-probabilities: the run's own [`REFERENCE_FILE`] when it has one (a
    /// resume); else the shared file beside the training pairs that the same model made for the
    /// same pairs (another run's, say with another beta); else computed with `reference`, the
    /// model the run starts from, and stored in both places.
    pub fn attach_reference(
        &mut self,
        run: &Path,
        cfg: &FinetuneConfig,
        reference: impl FnOnce() -> Result<MiniCpm, TrainError>,
        rows: usize,
        device: &Device,
    ) -> Result<(), TrainError> {
        let fingerprint = self.fingerprint();
        let own = run.join(REFERENCE_FILE);
        let stored = match read_reference(&own)? {
            Some(s) if s.pairs == fingerprint && s.base == cfg.base => s,
            Some(_) => {
                let why = "does not match the run's pairs or model (they changed since it began)";
                return Err(DataError::file(&own, why).into());
            }
            None => {
                let shared = shared_reference_path(cfg, &fingerprint)?;
                let s = match read_reference(&shared) {
                    Ok(Some(s)) if s.pairs == fingerprint && s.base == cfg.base => {
                        tracing::info!("reference log-probabilities from {}", shared.display());
                        s
                    }
                    _ => {
                        let s =
                            self.compute_reference(cfg, fingerprint, reference()?, rows, device);
                        let json = serde_json::to_vec(&s).expect("numbers serialise");
                        if let Err(e) = write_atomic(&shared, &json) {
                            tracing::warn!("not shared for other runs: {e}");
                        }
                        s
                    }
                };
                let json = serde_json::to_vec(&s).expect("numbers serialise");
                write_atomic(&own, &json)?;
                s
            }
        };
        if stored.train.len() != self.train.len() || stored.valid.len() != self.valid.len() {
            return Err(DataError::file(&own, "holds another number of pairs than the run").into());
        }
        self.train_reference = stored.train;
        self.valid_reference = stored.valid;
        Ok(())
    }

    /// Every pair's reference log-probabilities under `model`.
    fn compute_reference(
        &self,
        cfg: &FinetuneConfig,
        fingerprint: String,
        model: MiniCpm,
        rows: usize,
        device: &Device,
    ) -> ReferenceFile {
        tracing::info!(
            "reference log-probabilities of {} pairs from {}",
            self.train.len() + self.valid.len(),
            cfg.base.display()
        );
        ReferenceFile {
            base: cfg.base.clone(),
            pairs: fingerprint,
            train: reference_log_probs(&model, &self.train, rows, device),
            valid: reference_log_probs(&model, &self.valid, rows, device),
        }
    }
}

/// A reference file, or `None` when there is none.
fn read_reference(path: &Path) -> Result<Option<ReferenceFile>, TrainError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
            ModelError::Parse {
                origin: path.display().to_string(),
                msg: e.to_string(),
            }
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ModelError::io(path, e).into()),
    }
}

/// Beside the training pairs: `<pairs file>.reference-<key>.json`, the key a hash of the pairs'
/// fingerprint and of the base model's weights file (path, size and modification time), so a
/// retrained model in the same directory gets a file of its own.
fn shared_reference_path(cfg: &FinetuneConfig, pairs: &str) -> Result<PathBuf, TrainError> {
    let weights = ["model.safetensors", "model.safetensors.index.json"]
        .iter()
        .map(|f| cfg.base.join(f))
        .find(|p| p.is_file())
        .unwrap_or_else(|| cfg.base.join("model.safetensors"));
    let meta = std::fs::metadata(&weights).map_err(|e| ModelError::io(&weights, e))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let identity = format!("{pairs}|{}|{}|{modified}", weights.display(), meta.len());
    let key = fnv1a(identity.bytes());
    let name = cfg.train.file_name().unwrap_or_default().to_string_lossy();
    Ok(cfg
        .train
        .with_file_name(format!("{name}.reference-{key:016x}.json")))
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The pairs `picks` of `pairs` as one micro-batch with their reference log-probabilities.
fn pair_batch(pairs: &[PairExample], reference: &[(f32, f32)], picks: &[usize]) -> PairBatch {
    let chosen: Vec<&PairExample> = picks.iter().map(|&i| &pairs[i]).collect();
    let reference = picks
        .iter()
        .map(|&i| reference[i].0)
        .chain(picks.iter().map(|&i| reference[i].1))
        .collect();
    PairBatch {
        sequences: pair_rows(&chosen),
        reference,
    }
}

/// The data cursor of a fine-tuning run: examples (or pairs) drawn, under one source name.
fn cursor(drawn: u64) -> MixtureCursor {
    MixtureCursor {
        rows: drawn,
        sources: [("finetune".to_string(), drawn)].into(),
        seq_len: None,
    }
}

fn drawn(c: &MixtureCursor) -> u64 {
    c.sources.get("finetune").copied().unwrap_or(0)
}

/// Supervised fine-tuning.
pub struct SftRecipe<'a> {
    stream: SftStream<'a>,
    valid: Vec<Batch>,
    seq_len: usize,
    layout: Layout,
}

impl<'a> SftRecipe<'a> {
    pub fn new(
        data: &'a SftData,
        cfg: &FinetuneConfig,
        seq_len: usize,
        rows: usize,
        seed: u64,
        at: &MixtureCursor,
    ) -> Self {
        SftRecipe {
            stream: SftStream::new(&data.train, seed, drawn(at)),
            valid: all_batches(&data.valid, rows, seq_len, cfg.layout),
            seq_len,
            layout: cfg.layout,
        }
    }
}

impl Recipe for SftRecipe<'_> {
    type Objective = MaskedLanguageModel;

    fn objective(&self) -> &MaskedLanguageModel {
        &MaskedLanguageModel
    }

    fn next_batch(&mut self, _phase: &str, rows: usize) -> Result<Batch, TrainError> {
        Ok(self.stream.next_batch(rows, self.seq_len, self.layout))
    }

    fn cursor(&self) -> MixtureCursor {
        cursor(self.stream.cursor())
    }

    fn evaluate(&self, model: &MiniCpm, device: &Device) -> Option<EvalResult> {
        (!self.valid.is_empty()).then(|| EvalResult {
            loss: evaluate_masked(model, &self.valid, device),
            bits_per_byte: None,
            pairs: None,
            routing: None,
        })
    }
}

/// DPO (or IPO).
pub struct DpoRecipe<'a> {
    data: &'a PairData,
    objective: Dpo,
    order: Shuffled,
    rows: usize,
}

impl<'a> DpoRecipe<'a> {
    pub fn new(
        data: &'a PairData,
        cfg: &FinetuneConfig,
        rows: usize,
        seed: u64,
        at: &MixtureCursor,
    ) -> Self {
        DpoRecipe {
            data,
            objective: Dpo::new(cfg.beta, cfg.loss),
            order: Shuffled::new(data.train.len(), seed, drawn(at)),
            rows,
        }
    }
}

impl Recipe for DpoRecipe<'_> {
    type Objective = Dpo;

    fn objective(&self) -> &Dpo {
        &self.objective
    }

    /// `rows` rows are `rows / 2` pairs (at least one).
    fn next_batch(&mut self, _phase: &str, rows: usize) -> Result<PairBatch, TrainError> {
        let picks: Vec<usize> = (0..(rows / 2).max(1))
            .map(|_| self.order.next_index())
            .collect();
        Ok(pair_batch(
            &self.data.train,
            &self.data.train_reference,
            &picks,
        ))
    }

    fn cursor(&self) -> MixtureCursor {
        cursor(self.order.cursor())
    }

    /// Held-out answer loss (the chosen answers') and the held-out pairs' rewards, from one
    /// forward pass per batch of pairs.
    fn evaluate(&self, model: &MiniCpm, device: &Device) -> Option<EvalResult> {
        let d = self.data;
        if d.valid.is_empty() {
            return None;
        }
        let model = model.valid();
        let inner = device.clone().inner();
        let (mut nll, mut tokens, mut stats) = (0.0, 0, PairStats::default());
        let step = (self.rows / 2).max(1);
        for start in (0..d.valid.len()).step_by(step) {
            let picks: Vec<usize> = (start..(start + step).min(d.valid.len())).collect();
            let batch = pair_batch(&d.valid, &d.valid_reference, &picks);
            let seqs = &batch.sequences;
            let hidden = batch_hidden(&model, seqs, &inner);
            let rows = row_log_probs(
                &token_nll(&model, hidden, &seqs.targets),
                &seqs.targets,
                seqs.seq_len,
            );
            stats.add(&self.objective.pair_loss(&rows, &batch.reference).2);
            for &(log_prob, count) in &rows[..picks.len()] {
                nll -= log_prob;
                tokens += count;
            }
        }
        Some(EvalResult {
            loss: nll / tokens.max(1) as f64,
            bits_per_byte: None,
            pairs: Some(stats),
            routing: None,
        })
    }

    fn train_pairs(&self) -> Option<PairStats> {
        Some(self.objective.take_stats())
    }
}
