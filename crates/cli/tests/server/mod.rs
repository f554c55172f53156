//! `minicpm serve` driven over HTTP as clients drive it: every route, streaming, a client that
//! hangs up mid-stream, and bad requests, each answered with the right status and OpenAI's
//! error JSON while the server stays up.

use crate::common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};

const KEY: &str = "test-key";

/// A running server, killed when dropped.
struct Server {
    child: Child,
    base: String,
    agent: ureq::Agent,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(model: &Path, extra: &[&str]) -> Server {
    let mut child = bin()
        .args(["serve", "--port", "0", "--api-key", KEY, "--model"])
        .arg(model)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    Server { child, base, agent }
}

impl Server {
    fn get(&self, path: &str, key: Option<&str>) -> (u16, String) {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        let mut resp = req.call().unwrap();
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap())
    }

    fn post_raw(&self, path: &str, body: &[u8]) -> (u16, Value) {
        let mut resp = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {KEY}"))
            .header("Content-Type", "application/json")
            .send(body)
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path} answered {status} with non-JSON {text:?}: {e}"));
        (status, value)
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_raw(path, body.to_string().as_bytes())
    }

    /// The `data:` payloads of a streamed response, up to and including `[DONE]`.
    fn stream(&self, path: &str, body: Value) -> Vec<String> {
        let resp = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {KEY}"))
            .send_json(body)
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let reader = BufReader::new(resp.into_body().into_reader());
        reader
            .lines()
            .map(Result::unwrap)
            .filter_map(|l| l.strip_prefix("data: ").map(String::from))
            .collect()
    }

    fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics", Some(KEY));
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
    }
}

fn fixture_model() -> PathBuf {
    repo().join("crates/serve/tests/fixtures/gguf/model")
}

fn error_of(v: &Value) -> (&str, &str) {
    let e = &v["error"];
    (e["type"].as_str().unwrap(), e["message"].as_str().unwrap())
}

/// Every route answers as OpenAI's does; greedy text equals `minicpm generate`'s; streamed text
/// equals the whole response's; a seed reproduces sampled choices.
#[test]
fn serve_answers_every_route_as_openai_does() {
    let server = start(
        &fixture_model(),
        &["--served-model-name", "tiny", "--slots", "2"],
    );
    assert_eq!(
        server.get("/health", None),
        (200, r#"{"status":"ok"}"#.into())
    );
    let (status, body) = server.get("/v1/models", None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = server.get("/v1/models", Some(KEY));
    assert_eq!(status, 200);
    let models: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(models["data"][0]["id"], "tiny");

    // Greedy, echoed: the text `generate` prints for the same ids.
    let generated = run_ok(
        bin()
            .args(["generate", "--prompt-ids", "1,5,9", "--temperature", "0"])
            .args(["--max-new-tokens", "12", "--model"])
            .arg(fixture_model()),
    );
    let (status, c) = server.post(
        "/v1/completions",
        json!({"model": "tiny", "prompt": [1, 5, 9], "max_tokens": 12, "temperature": 0,
               "echo": true, "logprobs": 2}),
    );
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["object"], "text_completion");
    let choice = &c["choices"][0];
    assert_eq!(
        choice["text"],
        String::from_utf8_lossy(&generated.stdout).trim_end()
    );
    let lp = &choice["logprobs"];
    let n_tokens = 3 + c["usage"]["completion_tokens"].as_u64().unwrap() as usize;
    assert_eq!(lp["tokens"].as_array().unwrap().len(), n_tokens);
    assert!(lp["token_logprobs"][0].is_null() && lp["top_logprobs"][0].is_null());
    for k in 1..n_tokens {
        let l = lp["token_logprobs"][k].as_f64().unwrap();
        let top = lp["top_logprobs"][k].as_object().unwrap();
        assert!(l <= 0.0 && !top.is_empty() && top.len() <= 2);
        let best = top
            .values()
            .map(|v| v.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert!(
            best >= l - 1e-9,
            "position {k}: the top alternative is the likeliest"
        );
    }
    assert_eq!(c["usage"]["prompt_tokens"], 3);

    // n choices of several prompts; a seed reproduces them.
    let sampled = json!({"prompt": [[1, 2], [3, 4, 5]], "n": 2, "max_tokens": 8,
                         "temperature": 1.0, "seed": 42});
    let (status, a) = server.post("/v1/completions", sampled.clone());
    assert_eq!(status, 200, "{a}");
    let texts = |v: &Value| -> Vec<String> {
        v["choices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["text"].as_str().unwrap().to_string())
            .collect()
    };
    let indexes: Vec<u64> = a["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, vec![0, 1, 2, 3]);
    assert_eq!(texts(&server.post("/v1/completions", sampled).1), texts(&a));

    // Chat, whole and streamed, greedy: the same text.
    let chat = json!({"model": "tiny", "messages": [{"role": "user", "content": "hello"}],
                      "max_tokens": 10, "temperature": 0});
    let (status, whole) = server.post("/v1/chat/completions", chat.clone());
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["choices"][0]["message"]["role"], "assistant");
    let mut streamed_chat = chat.clone();
    streamed_chat["stream"] = json!(true);
    streamed_chat["stream_options"] = json!({"include_usage": true});
    let events = server.stream("/v1/chat/completions", streamed_chat);
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        whole["choices"][0]["message"]["content"].as_str().unwrap()
    );
    let finish = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect::<Vec<_>>();
    assert_eq!(
        finish,
        vec![whole["choices"][0]["finish_reason"].as_str().unwrap()]
    );
    assert_eq!(chunks.last().unwrap()["usage"], whole["usage"]);

    // A streamed completion's pieces add up to the whole text.
    let plain = json!({"prompt": "the", "max_tokens": 9, "temperature": 0});
    let (_, whole) = server.post("/v1/completions", plain.clone());
    let mut streamed = plain;
    streamed["stream"] = json!(true);
    let events = server.stream("/v1/completions", streamed);
    let text: String = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["choices"][0]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(text, whole["choices"][0]["text"].as_str().unwrap());

    assert!(
        server.metric("minicpm_requests_total{route=\"/v1/completions\",status=\"200\"}") >= 4.0
    );
    assert!(server.metric("minicpm_generated_tokens_total") > 0.0);
    assert_eq!(server.metric("minicpm_queue_depth"), 0.0);
    // The engine retires a request just after its last event: the gauge reads 0 soon after.
    let idle = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        server.metric("minicpm_running_requests") == 0.0
    });
    assert!(idle, "running requests never went back to 0");
}

/// The fixture's weights under a longer context, so that a generation runs long enough to be
/// cut off by its client.
fn long_context_model(dir: &Path) -> PathBuf {
    let model = dir.join("long");
    std::fs::create_dir(&model).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture_model().join(f), model.join(f)).unwrap();
    }
    let mut config: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_model().join("config.json")).unwrap(),
    )
    .unwrap();
    config["max_position_embeddings"] = json!(4096);
    // No end-of-sequence token the model can produce: it generates until cut off.
    config["eos_token_id"] = json!(1000);
    std::fs::write(model.join("config.json"), config.to_string()).unwrap();
    model
}

/// A client that hangs up mid-stream frees its slot: with one slot, the next request runs, and
/// the abandoned generation stopped long before its max_tokens.
#[test]
fn a_client_that_hangs_up_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        &long_context_model(dir.path()),
        &["--slots", "1", "--context", "4096"],
    );
    let resp = server
        .agent
        .post(format!("{}/v1/completions", server.base))
        .header("Authorization", format!("Bearer {KEY}"))
        .send_json(json!({"prompt": [1, 2, 3], "max_tokens": 4000, "stream": true}))
        .unwrap();
    let mut reader = BufReader::new(resp.into_body().into_reader());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.starts_with("data: "), "{first}");
    drop(reader);
    let (status, c) = server.post(
        "/v1/completions",
        json!({"prompt": [4, 5], "max_tokens": 5}),
    );
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["usage"]["completion_tokens"], 5);
    assert_eq!(server.metric("minicpm_cancelled_requests"), 1.0);
    assert!(server.metric("minicpm_generated_tokens_total") < 2000.0);
}

/// Writes a request with `body` on a raw connection while reading the answer, so a server that
/// answers before reading the whole body (413) is heard however much of it is unsent.
fn raw_post(base: &str, path: &str, body: Vec<u8>) -> (u16, String) {
    let addr = base.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer
            .write_all(head.as_bytes())
            .and_then(|_| writer.write_all(&body));
    });
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let _ = sender.join();
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// Each kind of bad request gets its status and OpenAI's error JSON; random bodies thrown at the
/// running server get 4xx answers and it stays up.
#[test]
fn bad_requests_get_openai_errors_and_the_server_stays_up() {
    let server = start(&fixture_model(), &["--max-body-bytes", "1000000"]);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "/v1/completions",
            b"{\"prompt\": \"x\"".to_vec(),
            400,
            "not valid JSON",
        ),
        (
            "/v1/completions",
            br#"{"prompt": 5}"#.to_vec(),
            400,
            "prompt must be",
        ),
        (
            "/v1/completions",
            br#"{"prompt": "x", "max_tokens": "9"}"#.to_vec(),
            400,
            "invalid type",
        ),
        (
            "/v1/completions",
            br#"{"prompt": "x", "max_tokens": -3}"#.to_vec(),
            400,
            "max_tokens is -3",
        ),
        (
            "/v1/completions",
            br#"{"prompt": "x", "max_tokens": 1000000000}"#.to_vec(),
            400,
            "context is 128 tokens",
        ),
        (
            "/v1/completions",
            br#"{"prompt": "x", "model": "gpt-4"}"#.to_vec(),
            404,
            "does not exist",
        ),
        (
            "/v1/completions",
            br#"{"prompt": [1, 99]}"#.to_vec(),
            400,
            "outside the vocabulary",
        ),
        (
            "/v1/chat/completions",
            br#"{"messages": "hi"}"#.to_vec(),
            400,
            "list of messages",
        ),
        (
            "/v1/completions",
            format!(r#"{{"prompt": [{}]}}"#, vec!["3"; 200].join(",")).into_bytes(),
            400,
            "more than this server's context of 128",
        ),
        // 64 prompts x n 8 = 512 choices; the queue (256) and the slots (8) hold 264.
        (
            "/v1/completions",
            format!(r#"{{"prompt": [{}], "n": 8}}"#, vec!["[1]"; 64].join(",")).into_bytes(),
            400,
            "asks for 512 choices",
        ),
    ];
    for (path, body, status, says) in cases {
        let (got, v) = server.post_raw(path, &body);
        let (kind, message) = error_of(&v);
        assert_eq!(got, status, "{}: {message}", String::from_utf8_lossy(&body));
        assert!(message.contains(says), "{message:?} should say {says:?}");
        assert!(kind.ends_with("_error"), "{kind}");
    }
    let (status, body) = raw_post(&server.base, "/v1/completions", vec![b' '; 10 << 20]);
    assert_eq!(status, 413, "{body}");
    let no_key = server
        .agent
        .post(format!("{}/v1/completions", server.base))
        .send_json(json!({"prompt": "x"}))
        .unwrap();
    assert_eq!(no_key.status().as_u16(), 401);
    let (status, v) = server.post("/v1/nothing", json!({}));
    assert_eq!((status, error_of(&v).0), (404, "invalid_request_error"));

    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let valid = br#"{"prompt": [1, 2], "max_tokens": 2, "logprobs": 1, "echo": true, "n": 2}"#;
    for _ in 0..200 {
        let mut body = valid.to_vec();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..body.len());
            body[at] = rng.random_range(0..128u8);
        }
        let (status, _) = raw_post(&server.base, "/v1/completions", body);
        assert!(
            status == 200 || (400..500).contains(&status),
            "status {status}"
        );
    }
    assert_eq!(server.get("/health", None).0, 200);
}
