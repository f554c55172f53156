//! Reading OpenAI request bodies: the JSON is checked field by field, and every way it can be
//! wrong (not JSON, an unknown field, a wrong type, a value out of range) becomes one 400 that
//! names the field. Nothing here can panic on any body (the fuzz test throws random ones at it).

use super::error::ApiError;
use crate::chat_template::Message;
use serde::Deserialize;
use serde_json::Value;

/// Bounds a request must keep to, set by the server's flags.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_n: usize,
    pub max_top_logprobs: usize,
    pub max_stops: usize,
    pub max_prompts: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_n: 8,
            max_top_logprobs: 20,
            max_stops: 4,
            max_prompts: 64,
        }
    }
}

/// A prompt as the client gave it.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

/// Settings both routes share, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Common {
    pub model: Option<String>,
    pub max_tokens: Option<usize>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub repetition_penalty: Option<f64>,
    pub seed: Option<u64>,
    pub n: usize,
    pub stop: Vec<String>,
    pub stream: bool,
    pub include_usage: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    pub common: Common,
    pub prompts: Vec<Prompt>,
    /// Log-probabilities of each token with this many alternatives (OpenAI's `logprobs: k`).
    pub logprobs: Option<usize>,
    pub echo: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub common: Common,
    pub messages: Vec<Message>,
    pub logprobs: bool,
    pub top_logprobs: usize,
}

/// The fields of `/v1/completions` as they arrive; shapes that JSON cannot type (prompt, stop)
/// stay values and are read by hand.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompletion {
    model: Option<String>,
    prompt: Option<Value>,
    max_tokens: Option<i64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    repetition_penalty: Option<f64>,
    seed: Option<i64>,
    n: Option<i64>,
    stop: Option<Value>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    logprobs: Option<i64>,
    echo: Option<bool>,
    // Accepted only at their neutral values.
    best_of: Option<i64>,
    frequency_penalty: Option<f64>,
    presence_penalty: Option<f64>,
    logit_bias: Option<serde_json::Map<String, Value>>,
    suffix: Option<String>,
    user: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChat {
    model: Option<String>,
    messages: Value,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    repetition_penalty: Option<f64>,
    seed: Option<i64>,
    n: Option<i64>,
    stop: Option<Value>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    logprobs: Option<bool>,
    top_logprobs: Option<i64>,
    frequency_penalty: Option<f64>,
    presence_penalty: Option<f64>,
    logit_bias: Option<serde_json::Map<String, Value>>,
    user: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// Parses `body` as JSON into `T`, the two failures told apart.
fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::invalid("the body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| ApiError::invalid(format!("invalid request: {e}")))
}

/// A non-negative integer no larger than `max`.
fn bounded(param: &str, v: i64, min: i64, max: usize) -> Result<usize, ApiError> {
    if v < min || v as u64 > max as u64 {
        return Err(ApiError::invalid_param(
            param,
            format!("{param} is {v}; it must be between {min} and {max}"),
        ));
    }
    Ok(v as usize)
}

fn neutral(
    frequency_penalty: Option<f64>,
    presence_penalty: Option<f64>,
    logit_bias: &Option<serde_json::Map<String, Value>>,
) -> Result<(), ApiError> {
    for (name, v) in [
        ("frequency_penalty", frequency_penalty),
        ("presence_penalty", presence_penalty),
    ] {
        if v.is_some_and(|v| v != 0.0) {
            return Err(ApiError::invalid_param(
                name,
                format!("{name} is not supported (only 0); use repetition_penalty"),
            ));
        }
    }
    if logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
        return Err(ApiError::invalid_param(
            "logit_bias",
            "logit_bias is not supported",
        ));
    }
    Ok(())
}

fn stops(value: Option<Value>, limits: &Limits) -> Result<Vec<String>, ApiError> {
    let bad = || ApiError::invalid_param("stop", "stop must be a string or a list of strings");
    let list = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(bad()),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad()),
    };
    if list.len() > limits.max_stops {
        return Err(ApiError::invalid_param(
            "stop",
            format!(
                "{} stop strings; at most {} are allowed",
                list.len(),
                limits.max_stops
            ),
        ));
    }
    Ok(list)
}

/// One token id from a JSON value.
fn token_id(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|t| u32::try_from(t).ok())
}

/// OpenAI's four prompt shapes: a string, a list of strings, a list of token ids, or a list of
/// such lists.
fn prompts(value: Option<Value>, limits: &Limits) -> Result<Vec<Prompt>, ApiError> {
    let bad = |what: &str| ApiError::invalid_param("prompt", what.to_string());
    let shape = "prompt must be a string, a list of strings, a list of token ids or a list of lists of token ids";
    let list = match value {
        None | Some(Value::Null) => return Err(bad("prompt is required")),
        Some(Value::String(s)) => vec![Prompt::Text(s)],
        Some(Value::Array(items)) if items.is_empty() => return Err(bad("prompt is empty")),
        Some(Value::Array(items)) => match &items[0] {
            Value::String(_) => items
                .iter()
                .map(|v| v.as_str().map(|s| Prompt::Text(s.to_string())))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad(shape))?,
            Value::Number(_) => vec![Prompt::Ids(
                items
                    .iter()
                    .map(token_id)
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad("token ids must be integers from 0 to 2^32-1"))?,
            )],
            Value::Array(_) => items
                .iter()
                .map(|v| {
                    v.as_array()
                        .and_then(|ids| ids.iter().map(token_id).collect::<Option<Vec<_>>>())
                        .map(Prompt::Ids)
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad(shape))?,
            _ => return Err(bad(shape)),
        },
        Some(_) => return Err(bad(shape)),
    };
    if list.len() > limits.max_prompts {
        return Err(bad(&format!(
            "{} prompts in one request; at most {} are allowed",
            list.len(),
            limits.max_prompts
        )));
    }
    if list
        .iter()
        .any(|p| matches!(p, Prompt::Ids(ids) if ids.is_empty()))
    {
        return Err(bad("a prompt of token ids is empty"));
    }
    Ok(list)
}

#[allow(clippy::too_many_arguments)]
fn common(
    model: Option<String>,
    max_tokens: Option<i64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    repetition_penalty: Option<f64>,
    seed: Option<i64>,
    n: Option<i64>,
    stop: Option<Value>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    limits: &Limits,
) -> Result<Common, ApiError> {
    if let Some(t) = temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::invalid_param(
                "temperature",
                format!("temperature is {t}; it must be between 0 and 2"),
            ));
        }
    }
    if let Some(p) = top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::invalid_param(
                "top_p",
                format!("top_p is {p}; it must be in (0, 1]"),
            ));
        }
    }
    if let Some(r) = repetition_penalty {
        if !(r > 0.0 && r.is_finite()) {
            return Err(ApiError::invalid_param(
                "repetition_penalty",
                format!("repetition_penalty is {r}; it must be a finite number > 0"),
            ));
        }
    }
    let stream = stream.unwrap_or(false);
    if stream_options.is_some() && !stream {
        return Err(ApiError::invalid_param(
            "stream_options",
            "stream_options is only allowed with stream: true",
        ));
    }
    Ok(Common {
        model,
        max_tokens: max_tokens
            .map(|m| bounded("max_tokens", m, 0, usize::MAX))
            .transpose()?,
        temperature,
        top_p,
        top_k: top_k
            .map(|k| bounded("top_k", k, 0, usize::MAX))
            .transpose()?,
        repetition_penalty,
        // OpenAI's seed is a signed 64-bit integer: its bits seed the sampler.
        seed: seed.map(|s| s as u64),
        n: bounded("n", n.unwrap_or(1), 1, limits.max_n)?,
        stop: stops(stop, limits)?,
        stream,
        include_usage: stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
    })
}

pub fn completion(body: &[u8], limits: &Limits) -> Result<CompletionRequest, ApiError> {
    let r: RawCompletion = parse(body)?;
    neutral(r.frequency_penalty, r.presence_penalty, &r.logit_bias)?;
    if r.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid_param("suffix", "suffix is not supported"));
    }
    let _ = r.user;
    let common = common(
        r.model,
        r.max_tokens,
        r.temperature,
        r.top_p,
        r.top_k,
        r.repetition_penalty,
        r.seed,
        r.n,
        r.stop,
        r.stream,
        r.stream_options,
        limits,
    )?;
    if let Some(b) = r.best_of {
        if b != common.n as i64 {
            return Err(ApiError::invalid_param(
                "best_of",
                "best_of is supported only equal to n",
            ));
        }
    }
    Ok(CompletionRequest {
        prompts: prompts(r.prompt, limits)?,
        logprobs: r
            .logprobs
            .map(|k| bounded("logprobs", k, 0, limits.max_top_logprobs))
            .transpose()?,
        echo: r.echo.unwrap_or(false),
        common,
    })
}

/// A message's content: a string, or a list of text parts (`{"type": "text", "text": ...}`).
fn content(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => parts
            .iter()
            .map(
                |p| match (p.get("type")?.as_str()?, p.get("text")?.as_str()) {
                    ("text", Some(t)) => Some(t),
                    _ => None,
                },
            )
            .collect::<Option<Vec<&str>>>()
            .map(|t| t.concat()),
        _ => None,
    }
}

fn messages(value: Value) -> Result<Vec<Message>, ApiError> {
    let bad = |what: String| ApiError::invalid_param("messages", what);
    let items = match value {
        Value::Array(items) if !items.is_empty() => items,
        Value::Array(_) => return Err(bad("messages is empty".into())),
        _ => return Err(bad("messages must be a list of messages".into())),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = m.get("role").and_then(Value::as_str).ok_or_else(|| {
                bad(format!(
                    "messages[{i}] needs a role (system, user or assistant)"
                ))
            })?;
            if !["system", "user", "assistant"].contains(&role) {
                return Err(bad(format!(
                    "messages[{i}] has role `{role}`; this server takes system, user and assistant"
                )));
            }
            let text = m.get("content").and_then(content).ok_or_else(|| {
                bad(format!(
                    "messages[{i}].content must be a string or a list of text parts"
                ))
            })?;
            Ok(Message::new(role, &text))
        })
        .collect()
}

pub fn chat(body: &[u8], limits: &Limits) -> Result<ChatRequest, ApiError> {
    let r: RawChat = parse(body)?;
    neutral(r.frequency_penalty, r.presence_penalty, &r.logit_bias)?;
    let _ = r.user;
    let common = common(
        r.model,
        r.max_completion_tokens.or(r.max_tokens),
        r.temperature,
        r.top_p,
        r.top_k,
        r.repetition_penalty,
        r.seed,
        r.n,
        r.stop,
        r.stream,
        r.stream_options,
        limits,
    )?;
    let logprobs = r.logprobs.unwrap_or(false);
    let top_logprobs = r
        .top_logprobs
        .map(|k| bounded("top_logprobs", k, 0, limits.max_top_logprobs))
        .transpose()?;
    if top_logprobs.is_some() && !logprobs {
        return Err(ApiError::invalid_param(
            "top_logprobs",
            "top_logprobs needs logprobs: true",
        ));
    }
    Ok(ChatRequest {
        common,
        messages: messages(r.messages)?,
        logprobs,
        top_logprobs: top_logprobs.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> ApiError {
        completion(body.as_bytes(), &Limits::default()).unwrap_err()
    }

    #[test]
    fn the_four_prompt_shapes_are_read() {
        let read = |p: &str| {
            let body = format!(r#"{{"prompt": {p}}}"#);
            completion(body.as_bytes(), &Limits::default())
                .unwrap()
                .prompts
        };
        assert_eq!(read(r#""hi""#), vec![Prompt::Text("hi".into())]);
        assert_eq!(
            read(r#"["a", "b"]"#),
            vec![Prompt::Text("a".into()), Prompt::Text("b".into())]
        );
        assert_eq!(read("[1, 2]"), vec![Prompt::Ids(vec![1, 2])]);
        assert_eq!(
            read("[[1], [2, 3]]"),
            vec![Prompt::Ids(vec![1]), Prompt::Ids(vec![2, 3])]
        );
    }

    #[test]
    fn each_mistake_is_a_400_naming_its_field() {
        let e = err("{not json");
        assert!(e.message.starts_with("the body is not valid JSON"), "{e:?}");
        assert!(err(r#"{"prompt": "x", "colour": 1}"#)
            .message
            .contains("unknown field `colour`"));
        assert!(err(r#"{"prompt": "x", "max_tokens": "ten"}"#)
            .message
            .contains("invalid type"));
        assert_eq!(
            err(r#"{"prompt": "x", "max_tokens": -1}"#).param.as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            err(r#"{"prompt": "x", "n": 99}"#).message,
            "n is 99; it must be between 1 and 8"
        );
        assert_eq!(
            err(r#"{"prompt": [1, -2]}"#).message,
            "token ids must be integers from 0 to 2^32-1"
        );
        assert_eq!(err(r#"{"prompt": []}"#).message, "prompt is empty");
        assert_eq!(
            err(r#"{"prompt": [[]]}"#).message,
            "a prompt of token ids is empty"
        );
        assert_eq!(
            err(r#"{"prompt": "x", "temperature": 3}"#).param.as_deref(),
            Some("temperature")
        );
        assert_eq!(
            err(r#"{"prompt": "x", "stop": 5}"#).param.as_deref(),
            Some("stop")
        );
        assert_eq!(err("[1]").message, "the body must be a JSON object");
        assert!(err(r#"{"prompt": "x", "presence_penalty": 0.5}"#)
            .message
            .contains("not supported"));
        for e in [err("{}"), err("null")] {
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn chat_messages_take_strings_or_text_parts_and_known_roles() {
        let read = |m: &str| {
            chat(
                format!(r#"{{"messages": {m}}}"#).as_bytes(),
                &Limits::default(),
            )
        };
        let ok = read(r#"[{"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]"#)
        .unwrap();
        assert_eq!(
            ok.messages,
            vec![
                Message::new("system", "be brief"),
                Message::new("user", "ab")
            ]
        );
        assert!(read(r#"[{"role": "tool", "content": "x"}]"#)
            .unwrap_err()
            .message
            .contains("role `tool`"));
        assert_eq!(read("[]").unwrap_err().message, "messages is empty");
        assert!(read(r#"[{"role": "user"}]"#)
            .unwrap_err()
            .message
            .contains("content"));
        let e = chat(
            br#"{"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}"#,
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(e.message, "top_logprobs needs logprobs: true");
    }

    /// Random bodies (bytes, JSON fragments and mutated valid requests) never panic the parser.
    #[test]
    fn ten_thousand_random_bodies_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
        let valid = [
            r#"{"model": "m", "prompt": [[1, 2], [3]], "max_tokens": 4, "logprobs": 2, "echo": true, "stop": ["\n"], "n": 2, "seed": -5, "stream": true, "stream_options": {"include_usage": true}}"#,
            r#"{"messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 3, "temperature": 0.5}"#,
        ];
        let pieces = [
            "{",
            "}",
            "[",
            "]",
            "\"",
            ":",
            ",",
            "null",
            "true",
            "-1",
            "1e999",
            "0.5",
            "\"prompt\"",
            "\"messages\"",
            "\"role\"",
            "\"n\"",
            "\"stop\"",
            "[[",
            "]]",
            "\\u0000",
            "18446744073709551616",
        ];
        let limits = Limits::default();
        for i in 0..10_000 {
            let body: Vec<u8> = match i % 3 {
                0 => (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
                1 => (0..rng.random_range(0..24))
                    .map(|_| pieces[rng.random_range(0..pieces.len())])
                    .collect::<String>()
                    .into_bytes(),
                _ => {
                    let mut b = valid[i % 2].as_bytes().to_vec();
                    for _ in 0..rng.random_range(1..4) {
                        let at = rng.random_range(0..b.len());
                        b[at] = pieces[rng.random_range(0..pieces.len())].as_bytes()[0];
                    }
                    b
                }
            };
            let _ = completion(&body, &limits);
            let _ = chat(&body, &limits);
        }
    }
}
