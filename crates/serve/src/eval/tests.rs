//! A task scored end to end on a small random model against the training forward
//! (`minicpm_model::MiniCpm`) over each request's whole sequence, the ids made by hand from the
//! rules of docs/EVAL.md.

use super::*;
use crate::gguf::TensorType;
use crate::runtime::MemorySource;
use burn::tensor::{Device, Int, Tensor, TensorData};
use minicpm_data::eval_task::{ChoiceDoc, TextDoc};
use minicpm_model::init::init_model;
use minicpm_model::{strict, MiniCpm, ModelConfig, Parametrization};

const TEXT: &str = "The cat sat on the mat. The dog slept on the log. A bird sang in the tree.";

fn setup(context: usize) -> (TextTokenizer, MiniCpm, InferenceModel) {
    let tok = TextTokenizer::train_bpe(std::iter::repeat_n(TEXT, 30), 400).unwrap();
    let text = format!(
        "vocab_size = {}\nhidden_size = 32\nintermediate_size = 64\nnum_hidden_layers = 2\n\
         num_attention_heads = 2\nnum_key_value_heads = 1\nmax_position_embeddings = {context}\n\
         dim_model_base = 16.0\nscale_emb = 1.0\ninitializer_range = 0.5\n",
        tok.vocab_size()
    );
    let cfg: ModelConfig =
        strict::from_value(strict::toml_to_value(&text, "test").unwrap(), "test").unwrap();
    let model = init_model(&cfg, Parametrization::Mup, 21, &Device::flex());
    let src = MemorySource::of_model(&model, TensorType::F32);
    let rt = InferenceModel::load(&src, cfg, 2).unwrap();
    (tok, model, rt)
}

/// Summed log-softmax of `continuation` after `context`, by the training forward.
fn reference(model: &MiniCpm, context: &[u32], continuation: &[u32]) -> f64 {
    let whole: Vec<u32> = context.iter().chain(continuation).copied().collect();
    let input: Vec<i64> = whole[..whole.len() - 1].iter().map(|&t| t as i64).collect();
    let n = input.len();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(input, [1, n]), &Device::flex());
    let logits: Vec<f32> = model
        .forward(ids, None)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let vocab = model.config.vocab_size;
    logits
        .chunks(vocab)
        .skip(context.len() - 1)
        .zip(continuation)
        .map(|(row, &t)| {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
            let z: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
            row[t as usize] as f64 - max - z.ln()
        })
        .sum()
}

const OPTS: EvalOptions = EvalOptions {
    add_bos: true,
    batch_tokens: 64,
};

#[test]
fn multiple_choice_log_likelihoods_are_the_training_forwards() {
    let (tok, model, rt) = setup(64);
    let docs = vec![
        ChoiceDoc {
            context: "The cat sat on the".into(),
            choices: vec!["mat.".into(), "log.".into(), "tree.".into()],
            gold: 0,
            target_delimiter: None,
        },
        // The trailing space moves into the continuation; no delimiter of its own.
        ChoiceDoc {
            context: "A bird sang in the ".into(),
            choices: vec!["tree.".into(), "cat".into()],
            gold: 1,
            target_delimiter: Some(String::new()),
        },
    ];
    let task = Task {
        name: "t".into(),
        docs: TaskDocs::MultipleChoice(docs.clone()),
    };
    let report = evaluate(&rt, &tok, &task, OPTS, &mut |_, _| {}).unwrap();
    let TaskResult::MultipleChoice(r) = report.result else {
        panic!("not multiple choice")
    };
    for (doc, scored) in docs.iter().zip(&r.docs) {
        let context = doc.context.trim_end();
        let mut context_ids = vec![1];
        context_ids.extend(tok.encode(context).unwrap());
        for (choice, &got) in doc.choices.iter().zip(&scored.loglikelihoods) {
            let whole = format!("{}{}{choice}", doc.context, doc.delimiter());
            let whole = tok.encode(&whole).unwrap();
            let want = reference(&model, &context_ids, &whole[context_ids.len() - 1..]);
            assert!(
                (got - want).abs() < 1e-4 * want.abs(),
                "{choice}: {got} vs {want}"
            );
        }
    }
    let best = |d: usize| {
        let lls = &r.docs[d].loglikelihoods;
        (0..lls.len()).fold(0, |b, i| if lls[i] > lls[b] { i } else { b })
    };
    let acc = ((best(0) == 0) as u8 + (best(1) == 1) as u8) as f64 / 2.0;
    assert_eq!(r.acc, acc);
    assert_eq!(r.random_baseline, (1.0 / 3.0 + 0.5) / 2.0);
}

/// A text shorter than the context is one window from BOS: the training forward's NLL over it,
/// in bits per UTF-8 byte; two documents add their NLLs, tokens and bytes. A context shorter
/// than the text cuts it into windows, which still predict every token once.
#[test]
fn bits_per_byte_is_the_summed_nll_over_the_bytes() {
    let (tok, model, rt) = setup(64);
    let texts = ["The cat sat on the log.", "汉字 and a bird."];
    let docs: Vec<TextDoc> = texts
        .iter()
        .map(|t| TextDoc {
            text: t.to_string(),
        })
        .collect();
    let task = Task {
        name: "t".into(),
        docs: TaskDocs::Text(docs.clone()),
    };
    let report = evaluate(&rt, &tok, &task, OPTS, &mut |_, _| {}).unwrap();
    let TaskResult::BitsPerByte(r) = report.result else {
        panic!("not a text task")
    };
    let (mut nll, mut tokens) = (0.0, 0);
    for t in texts {
        let ids = tok.encode(t).unwrap();
        nll -= reference(&model, &[1], &ids);
        tokens += ids.len() as u64;
    }
    let bytes = texts.iter().map(|t| t.len() as u64).sum::<u64>();
    assert_eq!((r.tokens, r.bytes), (tokens, bytes));
    let want = nll / std::f64::consts::LN_2 / bytes as f64;
    assert!(
        (r.bits_per_byte - want).abs() < 1e-5 * want,
        "{r:?} vs {want}"
    );
    assert!((r.token_perplexity.ln() - nll / tokens as f64).abs() < 1e-5);

    let (_, _, short) = setup(5);
    let mut windows = 0;
    let windowed = evaluate(&short, &tok, &task, OPTS, &mut |_, total| windows = total).unwrap();
    let TaskResult::BitsPerByte(w) = windowed.result else {
        panic!("not a text task")
    };
    assert_eq!((w.tokens, w.bytes), (tokens, bytes));
    assert!(windows > 2, "{windows} windows");
}

#[test]
fn a_choice_the_context_cannot_hold_names_the_document() {
    let (tok, _, rt) = setup(4);
    let task = Task {
        name: "t".into(),
        docs: TaskDocs::MultipleChoice(vec![ChoiceDoc {
            context: "The cat".into(),
            choices: vec![
                "sat on the mat. The dog slept on the log.".into(),
                "sat.".into(),
            ],
            gold: 0,
            target_delimiter: None,
        }]),
    };
    let e = evaluate(&rt, &tok, &task, OPTS, &mut |_, _| {}).unwrap_err();
    assert_eq!(
        e.to_string(),
        "document 0: choice 0 alone is longer than the model's context"
    );
}
