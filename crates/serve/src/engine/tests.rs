//! The engine against the runtime's own generation: a request gets the same tokens whether it
//! runs alone or joins a batch that is already decoding, with its prompt fed in chunks.

use super::*;
use crate::logprobs::log_sum_exp;
use crate::runtime::tests::{all_logits, config, prompt, runtime_of, VOCAB};
use crate::runtime::Request;
use burn::tensor::Device;
use minicpm_model::init::init_model;
use minicpm_model::{MiniCpm, Parametrization};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Barrier, Mutex};

fn model() -> MiniCpm {
    init_model(
        &config(2, true, ""),
        Parametrization::Mup,
        8,
        &Device::flex(),
    )
}

fn engine(model: &MiniCpm, slots: usize, queue: usize, prefill_chunk: usize) -> Engine {
    let config = EngineConfig {
        slots,
        context: 32,
        queue,
        prefill_chunk,
    };
    Engine::start(runtime_of(model, 2), config).expect("a small cache")
}

fn job(
    prompt: Vec<u32>,
    max_new_tokens: usize,
    sampling: SamplingParams,
) -> (Job, Receiver<Event>) {
    let (tx, rx) = channel();
    let job = Job {
        prompt,
        max_new_tokens,
        sampling,
        logprobs: None,
        prompt_logprobs: None,
        sink: Box::new(move |e| tx.send(e).is_ok()),
    };
    (job, rx)
}

/// The generated tokens and how the request ended.
fn collect(rx: &Receiver<Event>) -> (Vec<u32>, Finish) {
    let mut tokens = Vec::new();
    loop {
        match rx.recv().expect("the engine ends every request with Done") {
            Event::Token { token, .. } => tokens.push(token),
            Event::Done(f) => return (tokens, f),
            Event::Prompt(_) => {}
        }
    }
}

fn sampled(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        seed,
        ..SamplingParams::default()
    }
}

/// Five requests through two slots, prompts fed four tokens a step, each submitted while the
/// others run: every one gets exactly the tokens it gets from `generate` alone.
#[test]
fn requests_joining_a_running_batch_get_what_they_get_alone() {
    let m = model();
    let rt = runtime_of(&m, 2);
    let specs = [
        (5, 12, sampled(1)),
        (19, 7, SamplingParams::greedy()),
        (1, 20, sampled(2)),
        (11, 9, SamplingParams::greedy()),
        (8, 15, sampled(3)),
    ];
    let engine = engine(&m, 2, 8, 4);
    let mut receivers = Vec::new();
    for (i, &(len, max_new, sampling)) in specs.iter().enumerate() {
        let (j, rx) = job(prompt(len, i as u32), max_new, sampling);
        engine.submit(j).unwrap();
        receivers.push(rx);
        if i == 1 {
            // Let the first two start decoding before the rest arrive.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    for (i, (&(len, max_new, sampling), rx)) in specs.iter().zip(&receivers).enumerate() {
        let request = Request {
            prompt: prompt(len, i as u32),
            max_new_tokens: max_new,
            sampling,
        };
        let alone = rt.generate(&[request], |_, _| true).unwrap().remove(0);
        let (tokens, finish) = collect(rx);
        // `generate` returns the tokens before an end-of-sequence; the engine sends it too.
        assert_eq!(tokens[..alone.len()], alone, "request {i}");
        match alone.len() < max_new {
            true => {
                assert_eq!(finish, Finish::Stop, "request {i}");
                assert_eq!(tokens.len(), alone.len() + 1);
                assert!(m.config.eos_token_id.contains(tokens[alone.len()]));
            }
            false => assert_eq!((finish, tokens.len()), (Finish::Length, max_new)),
        }
    }
}

/// Echo: the prompt's log-probabilities, fed three tokens a step, equal those of the whole
/// prompt scored in one pass; the generated tokens' log-probabilities are the log-softmax of
/// the logits that chose them.
#[test]
fn prompt_logprobs_fed_in_chunks_equal_the_prompt_scored_at_once() {
    let m = model();
    let rt = runtime_of(&m, 2);
    let engine = engine(&m, 2, 4, 3);
    let text = prompt(13, 5);
    let (mut j, rx) = job(text.clone(), 1, SamplingParams::greedy());
    j.prompt_logprobs = Some(2);
    j.logprobs = Some(2);
    engine.submit(j).unwrap();
    let logits = all_logits(&rt, &text);
    let rows: Vec<&[f32]> = logits.chunks_exact(VOCAB).collect();
    let Event::Prompt(lps) = rx.recv().unwrap() else {
        panic!("the prompt's log-probabilities come first")
    };
    assert_eq!(lps.len(), text.len() - 1);
    for (k, lp) in lps.iter().enumerate() {
        let want = rows[k][text[k + 1] as usize] as f64 - log_sum_exp(rows[k]);
        assert_eq!(lp.token, text[k + 1]);
        assert!((lp.logprob - want).abs() < 1e-4, "position {}", k + 1);
        assert_eq!(lp.top.len(), 2);
        assert!(lp.top[0].1 >= lp.top[1].1 && lp.top[0].1 >= lp.logprob - 1e-9);
    }
    let Event::Token { token, logprob } = rx.recv().unwrap() else {
        panic!("then the generated token")
    };
    let last = rows[text.len() - 1];
    assert_eq!(token, crate::sampling::argmax(last));
    let lp = logprob.unwrap();
    assert!((lp.logprob - (last[token as usize] as f64 - log_sum_exp(last))).abs() < 1e-4);
    assert_eq!(lp.top[0].0, token);
    assert_eq!(rx.recv().unwrap(), Event::Done(Finish::Length));
}

/// A sink that stops listening ends its request at once: the one slot goes to the next
/// request, which runs to its end.
#[test]
fn a_sink_that_stops_listening_frees_its_slot() {
    let m = model();
    let engine = engine(&m, 1, 4, 8);
    let (tx, rx) = channel();
    let mut left = 2;
    let quitter = Job {
        prompt: prompt(4, 1),
        max_new_tokens: 25,
        sampling: sampled(4),
        logprobs: None,
        prompt_logprobs: None,
        sink: Box::new(move |e| {
            let _ = tx.send(e);
            left -= 1;
            left > 0
        }),
    };
    engine.submit(quitter).unwrap();
    let (next, next_rx) = job(prompt(6, 2), 10, SamplingParams::greedy());
    engine.submit(next).unwrap();
    let (tokens, _) = collect(&next_rx);
    assert!(!tokens.is_empty());
    assert_eq!(
        rx.iter().count(),
        2,
        "nothing is sent after the sink said no"
    );
    assert_eq!(engine.stats().cancelled.load(Ordering::Relaxed), 1);
}

/// While the engine is busy, requests beyond the queue's bound are refused at once, and bad
/// input is refused before it can reach a batch.
#[test]
fn a_full_queue_and_bad_input_are_refused_at_submit() {
    let m = model();
    let engine = engine(&m, 1, 2, 8);
    // The first request's sink holds the engine thread until the test has filled the queue.
    let gate = Arc::new(Barrier::new(2));
    let held = Arc::new(Mutex::new(true));
    let (g, h) = (gate.clone(), held.clone());
    let blocker = Job {
        prompt: prompt(3, 0),
        max_new_tokens: 2,
        sampling: SamplingParams::greedy(),
        logprobs: None,
        prompt_logprobs: None,
        sink: Box::new(move |_| {
            if std::mem::replace(&mut *h.lock().unwrap(), false) {
                g.wait();
                g.wait();
            }
            true
        }),
    };
    engine.submit(blocker).unwrap();
    gate.wait();
    let waiting: Vec<_> = (0..2)
        .map(|i| {
            let (j, rx) = job(prompt(3, i), 2, SamplingParams::greedy());
            engine.submit(j).unwrap();
            rx
        })
        .collect();
    let (extra, _) = job(prompt(3, 9), 2, SamplingParams::greedy());
    assert_eq!(engine.submit(extra).unwrap_err(), SubmitError::QueueFull(2));
    assert_eq!(engine.stats().queued.load(Ordering::Relaxed), 2);
    gate.wait();
    for rx in &waiting {
        assert_eq!(collect(rx).0.len(), 2);
    }
    let refuse = |p: Vec<u32>| match engine.submit(job(p, 1, SamplingParams::greedy()).0) {
        Err(SubmitError::Invalid(msg)) => msg,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        refuse(vec![1, VOCAB as u32]),
        "token id 64 is outside the vocabulary of 64"
    );
    assert_eq!(
        refuse(prompt(33, 0)),
        "the prompt has 33 tokens, more than this server's context of 32"
    );
    assert_eq!(refuse(Vec::new()), "the prompt has no tokens");
}

/// Slots and a context beyond any machine's address space are refused when the engine starts,
/// with the sizes named, rather than failing inside the engine thread.
#[test]
fn a_cache_beyond_the_machine_is_refused_at_start() {
    let config = EngineConfig {
        slots: usize::MAX / 2,
        context: 32,
        queue: 4,
        prefill_chunk: 8,
    };
    let e = Engine::start(runtime_of(&model(), 1), config)
        .err()
        .expect("no machine holds this cache");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "a KV cache of {} slots x 32 positions",
            usize::MAX / 2
        )),
        "{text}"
    );
}
