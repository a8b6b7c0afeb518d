//! The inference server end to end, with the pinned SmolLM2 pack:
//!
//! - the API on the host (the image's own `/init` binary in host mode, at
//!   native speed): every endpoint, streaming, the error objects, limits,
//!   disconnects;
//! - a dev boot serving the official `openai` Python client, streamed and
//!   not, whose greedy answer equals the same engine run on the host;
//! - a pack with one flipped byte: refused by the host, and by the guest
//!   itself when the host's check is skipped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cocoon_tests::vm::{BootedVm, https};
use cocoon_tests::{MODEL, guest_bin, model_image, model_pack, require_qemu, venv_python};
use serde_json::{Value, json};

const QUESTION: &str = "What is the capital of France? Answer in one sentence.";

/// `cocoon-guest serve` on a free loopback port.
struct HostServer {
    child: Child,
    port: u16,
    cert_sha256: String,
    cert_pem: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl HostServer {
    fn start(extra: &[&str]) -> HostServer {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cert_pem = dir.path().join("cert.pem");
        let mut child = Command::new(guest_bin())
            .args([
                "serve",
                "--port",
                &port.to_string(),
                "--threads",
                "2",
                "--pack",
            ])
            .arg(model_pack())
            .arg("--cert-out")
            .arg(&cert_pem)
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut cert_sha256 = String::new();
        for line in stderr.lines().map_while(Result::ok) {
            if let Some(ev) = line.strip_prefix("cocoon-event ") {
                let v: Value = serde_json::from_str(ev).unwrap();
                if v["event"] == "listening" {
                    cert_sha256 = v["cert_sha256"].as_str().unwrap().to_string();
                    break;
                }
            }
        }
        assert!(!cert_sha256.is_empty(), "cocoon-guest serve never listened");
        HostServer {
            child,
            port,
            cert_sha256,
            cert_pem,
            _dir: dir,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let text = body.map(|b| b.to_string());
        let (status, body) =
            https(self.port, method, path, text.as_deref(), &self.cert_sha256).unwrap();
        (
            status,
            serde_json::from_str(&body).unwrap_or(Value::String(body)),
        )
    }
}

impl Drop for HostServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chat(max_tokens: u32) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": max_tokens, "temperature": 0})
}

/// A short system prompt keeps the prompt short: under emulation every
/// prompt token costs about as much as a generated one.
const SYSTEM: &str = "Answer briefly.";

/// The engine alone on the host: `cocoon-guest generate`.
fn host_generate(max_tokens: u32) -> Value {
    host_generate_with(&["--chat", QUESTION], max_tokens)
}

fn host_generate_with(prompt: &[&str], max_tokens: u32) -> Value {
    let out = Command::new(guest_bin())
        .arg("generate")
        .args(prompt)
        .args(["--max-tokens", &max_tokens.to_string(), "--pack"])
        .arg(model_pack())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_api_answers_streams_and_refuses_like_openai() {
    let s = HostServer::start(&[]);
    // --cert-out wrote the certificate the server presents.
    let pem = cocoon_tests::vm::fetch_cert_pem(s.port, &s.cert_sha256);
    assert_eq!(std::fs::read_to_string(&s.cert_pem).unwrap(), pem);
    let (status, models) = s.call("GET", "/v1/models", None);
    assert_eq!(status, 200);
    assert_eq!(models["data"][0]["id"], MODEL);

    let (status, r) = s.call("POST", "/v1/chat/completions", Some(&chat(24)));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["object"], "chat.completion");
    let text = r["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!text.is_empty());
    let usage = &r["usage"];
    assert_eq!(
        usage["total_tokens"],
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    // Greedy is deterministic and equals the engine run directly.
    assert_eq!(text, host_generate(24)["text"].as_str().unwrap());

    // Stop sequences cut the text before the match.
    let word: String = text.split_whitespace().nth(2).unwrap().to_string();
    let mut req = chat(24);
    req["stop"] = json!([word]);
    let (_, r) = s.call("POST", "/v1/chat/completions", Some(&req));
    let cut = r["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        text.starts_with(cut) && !cut.contains(&word) && cut.len() < text.len(),
        "{cut:?} vs {text:?}"
    );
    assert_eq!(r["choices"][0]["finish_reason"], "stop");

    // Sampling with a seed repeats; the legacy endpoint works too.
    let mut req = chat(16);
    req["temperature"] = json!(0.9);
    req["top_p"] = json!(0.9);
    req["top_k"] = json!(40);
    req["seed"] = json!(7);
    let a = s.call("POST", "/v1/chat/completions", Some(&req)).1;
    let b = s.call("POST", "/v1/chat/completions", Some(&req)).1;
    assert_eq!(
        a["choices"][0]["message"]["content"],
        b["choices"][0]["message"]["content"]
    );
    let (status, r) = s.call(
        "POST",
        "/v1/completions",
        Some(&json!({"model": MODEL, "prompt": "Paris is", "max_tokens": 5})),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["object"], "text_completion");
    assert_eq!(r["usage"]["completion_tokens"], 5);

    // Errors: OpenAI's shape, the right status.
    let err = |status: u16, body: Option<&Value>, raw: Option<&str>, kind: &str| {
        let (got, v) = match raw {
            Some(raw) => {
                let (st, b) = https(
                    s.port,
                    "POST",
                    "/v1/chat/completions",
                    Some(raw),
                    &s.cert_sha256,
                )
                .unwrap();
                (st, serde_json::from_str::<Value>(&b).unwrap())
            }
            None => s.call("POST", "/v1/chat/completions", body),
        };
        assert_eq!(got, status, "{v}");
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        v
    };
    err(400, None, Some("{not json"), "invalid_request_error");
    let mut req = chat(8);
    req["model"] = json!("gpt-4");
    assert_eq!(
        err(404, Some(&req), None, "invalid_request_error")["error"]["code"],
        "model_not_found"
    );
    let long =
        json!({"model": MODEL, "messages": [{"role": "user", "content": "word ".repeat(5000)}]});
    assert_eq!(
        err(400, Some(&long), None, "invalid_request_error")["error"]["code"],
        "context_length_exceeded"
    );
    let mut req = chat(8);
    req["max_tokens"] = json!(100_000);
    err(400, Some(&req), None, "invalid_request_error");
    let mut req = chat(8);
    req["n"] = json!(2);
    err(400, Some(&req), None, "invalid_request_error");
    let huge =
        json!({"model": MODEL, "messages": [{"role": "user", "content": "x".repeat(3 << 20)}]});
    let (status, _) = s.call("POST", "/v1/chat/completions", Some(&huge));
    assert_eq!(status, 413);
    let (status, v) = s.call("GET", "/v1/nothing", None);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    // Metrics count requests and tokens, never text.
    let (status, Value::String(metrics)) = s.call("GET", "/metrics", None) else {
        panic!("metrics are text")
    };
    assert_eq!(status, 200);
    assert!(
        metrics.contains("cocoon_requests_total{endpoint=\"chat\",status=\"200\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("cocoon_completion_tokens_total"));
    assert!(!metrics.contains("France"));
}

/// Requests running at the same time share each decode pass over the
/// weights (the native engine's batch): every answer is still, word for
/// word, the one the engine gives that prompt alone.
#[test]
fn concurrent_requests_are_batched_and_each_answer_is_its_own() {
    let s = HostServer::start(&[]);
    let questions = [
        (QUESTION, 20),
        ("Name three colours.", 12),
        ("Write one word that rhymes with cat.", 16),
    ];
    let port = s.port;
    let answers: Vec<(String, String)> = std::thread::scope(|scope| {
        let calls: Vec<_> = questions
            .iter()
            .map(|&(q, max_tokens)| {
                let (cert, q) = (s.cert_sha256.clone(), q.to_string());
                scope.spawn(move || {
                    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": q}], "max_tokens": max_tokens, "temperature": 0});
                    let (status, r) = https(
                        port,
                        "POST",
                        "/v1/chat/completions",
                        Some(&body.to_string()),
                        &cert,
                    )
                    .unwrap();
                    assert_eq!(status, 200, "{r}");
                    let r: Value = serde_json::from_str(&r).unwrap();
                    let text = r["choices"][0]["message"]["content"].as_str().unwrap();
                    (q, text.to_string())
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for ((q, text), (_, max_tokens)) in answers.iter().zip(questions) {
        let alone = host_generate_with(&["--chat", q], max_tokens);
        assert_eq!(text, alone["text"].as_str().unwrap(), "{q}");
    }
    let (_, Value::String(metrics)) = s.call("GET", "/metrics", None) else {
        panic!("metrics are text")
    };
    let batched = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cocoon_batched_steps_total "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(batched >= 2, "no decode step was batched:\n{metrics}");
}

/// Reads an SSE response on a raw TLS stream (to drop it mid-way).
fn open_stream(
    s: &HostServer,
    body: &Value,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let config =
        cocoon_measurements::pinned::PinnedCertVerifier::client_config(&s.cert_sha256).unwrap();
    let name = rustls::pki_types::ServerName::try_from("cocoon.local").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let body = body.to_string();
    write!(
        tls,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: cocoon.local\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    tls
}

#[test]
fn streams_end_with_done_and_a_client_that_leaves_stops_its_generation() {
    let s = HostServer::start(&["--max-active", "1", "--max-queued", "0"]);
    let mut req = chat(12);
    req["stream"] = json!(true);
    req["stream_options"] = json!({"include_usage": true});
    let (status, Value::String(body)) = s.call("POST", "/v1/chat/completions", Some(&req)) else {
        panic!()
    };
    assert_eq!(status, 200);
    let events: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    let expected = host_generate(12);
    assert_eq!(streamed, expected["text"].as_str().unwrap());
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"]["completion_tokens"],
        expected["completion_tokens"]
    );

    // One sequence at a time and no queue: a second request gets 429.
    let mut long = chat(4000);
    long["stream"] = json!(true);
    let mut first = open_stream(&s, &long);
    let mut buf = [0u8; 256];
    let n = first.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let (status, v) = s.call("POST", "/v1/chat/completions", Some(&chat(4)));
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    // The client leaves: its generation stops and the slot frees.
    drop(first);
    let start = Instant::now();
    loop {
        let (status, _) = s.call("POST", "/v1/chat/completions", Some(&chat(2)));
        if status == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the abandoned generation kept its slot"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, Value::String(metrics)) = s.call("GET", "/metrics", None) else {
        panic!()
    };
    assert!(metrics.contains("cocoon_cancelled_total 1"), "{metrics}");
}

#[test]
fn an_unattested_server_says_so_and_attest_refuses_it_by_default() {
    let server = HostServer::start(&[]);
    // The session endpoint: a nonce is required, and the answer is an
    // explicit "none", never a made-up report.
    let (status, body) = server.call("GET", "/v1/attestation", None);
    assert_eq!(status, 400, "{body}");
    let (status, _) = server.call("GET", "/v1/attestation?nonce=xyz", None);
    assert_eq!(status, 400);
    let nonce = "ab".repeat(32);
    let (status, body) = server.call("GET", &format!("/v1/attestation?nonce={nonce}"), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["platform"], "none");
    assert!(
        body["reason"].as_str().unwrap().contains("host mode"),
        "{body}"
    );

    let attest = |extra: &[&str]| {
        Command::new(cocoon_tests::host_bin())
            .args(["attest", &format!("127.0.0.1:{}", server.port), "--offline"])
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = attest(&[]);
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert!(!refused.status.success());
    assert!(
        stdout.contains("REFUSED") && stdout.contains("host mode"),
        "{stdout}"
    );
    let allowed = attest(&["--allow-unattested"]);
    let stdout = String::from_utf8_lossy(&allowed.stdout);
    assert!(allowed.status.success(), "{stdout}");
    assert!(
        stdout.contains("UNATTESTED") && stdout.contains("nothing about this server"),
        "{stdout}"
    );
    let json = attest(&["--json"]);
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["accepted"], false);
    assert!(
        v["error"].as_str().unwrap().contains("without SEV-SNP"),
        "{v}"
    );
}

#[test]
fn a_dev_boot_serves_the_openai_client_the_host_engines_answer() {
    require_qemu();
    let image = model_image();
    let pack = model_pack().to_str().unwrap();
    let image = image.to_str().unwrap();
    let vm = BootedVm::boot_with(
        &["--image", image, "--model", pack, "--vcpus", "1"],
        "infer-ok",
    );
    let cert = vm.run_dir.join("cert.pem");
    // The guest's certificate, as any client would fetch it before pinning.
    let pem = cocoon_tests::vm::fetch_cert_pem(vm.port, &vm.cert_sha256);
    std::fs::write(&cert, pem).unwrap();
    let out = Command::new(venv_python())
        .arg(cocoon_tests::root().join("tests/tools/openai_chat.py"))
        .arg(format!("https://127.0.0.1:{}/v1", vm.port))
        .arg(&cert)
        .args([MODEL, SYSTEM, QUESTION, "6"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["models"], json!([MODEL]));
    let expected = host_generate_with(&["--system", SYSTEM, "--chat", QUESTION], 6);
    assert!(!expected["text"].as_str().unwrap().is_empty());
    assert_eq!(
        r["text"], expected["text"],
        "guest and host engines disagree"
    );
    assert_eq!(r["streamed"], expected["text"]);
    assert_eq!(
        r["usage"]["completion_tokens"],
        expected["completion_tokens"]
    );
    assert_eq!(
        r["stream_usage"]["prompt_tokens"],
        expected["prompt_tokens"]
    );
    assert_eq!(r["stream_finish"].as_array().map(Vec::len), Some(1));
    vm.stop_cleanly();
}

/// `/init` carries the engine's CUDA path but opens libcuda only when asked
/// (cudarc's dynamic loading): where there is no NVIDIA driver, as on CI,
/// it serves from the CPU, and a run that requires CUDA is refused with
/// the reason instead of a panic.
#[test]
fn without_a_driver_the_cuda_build_refuses_cuda_and_serves_on_the_cpu() {
    let driver = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"]
        .iter()
        .any(|d| std::path::Path::new(d).join("libcuda.so.1").exists());
    if driver {
        eprintln!("skipped: this machine has an NVIDIA driver (libcuda.so.1)");
        return;
    }
    let run = |device: &str| {
        Command::new(guest_bin())
            .args(["generate", "--chat", "Hi", "--max-tokens", "1"])
            .args(["--device", device, "--pack"])
            .arg(model_pack())
            .output()
            .unwrap()
    };
    let cuda = run("cuda");
    let err = String::from_utf8_lossy(&cuda.stderr);
    assert_eq!(cuda.status.code(), Some(2), "{err}");
    assert!(
        err.contains("CUDA: no NVIDIA driver (libcuda.so.1 does not load)")
            && !err.contains("panicked"),
        "{err}"
    );
    let auto = run("auto");
    assert!(
        auto.status.success(),
        "{}",
        String::from_utf8_lossy(&auto.stderr)
    );
    // `gpu-probe`, what a provider runs first, says the same.
    let probe = Command::new(guest_bin()).arg("gpu-probe").output().unwrap();
    assert!(probe.status.success(), "{probe:?}");
    let probe: Value = serde_json::from_slice(&probe.stdout).unwrap();
    assert_eq!(
        probe["cuda"], "CUDA: no NVIDIA driver (libcuda.so.1 does not load)",
        "{probe}"
    );
}

#[test]
fn a_pack_with_one_flipped_byte_never_serves() {
    require_qemu();
    let image = model_image();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("flipped.pack");
    std::fs::copy(model_pack(), &bad).unwrap();
    // A byte deep inside the weights.
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&bad)
        .unwrap();
    let len = f.metadata().unwrap().len();
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(len / 2)).unwrap();
    let mut b = [0u8];
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(len / 2)).unwrap();
    f.write_all(&[b[0] ^ 0x01]).unwrap();
    drop(f);
    let bad = bad.to_str().unwrap();

    // The host refuses before starting QEMU ...
    let out = cocoon_tests::host_boot(
        image,
        &dir.path().join("run1"),
        "infer-bad1",
        &["--dev", "--model", bad],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to boot") && err.contains("pack hash sha256tree:"),
        "{err}"
    );

    // ... and without the host's check, the guest refuses by itself and says why.
    let out = cocoon_tests::host_boot(
        image,
        &dir.path().join("run2"),
        "infer-bad2",
        &[
            "--dev",
            "--memory",
            "1G",
            "--port",
            "0",
            "--model",
            bad,
            "--unchecked-model",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the guest stopped") && err.contains("model pack's hash is sha256tree:"),
        "{err}"
    );
}
