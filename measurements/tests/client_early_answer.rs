//! The HTTPS client reads a response that arrives before its request body
//! is all sent: a server answers 413 as soon as it sees a Content-Length
//! over its limit, closes without reading the body, and the client's write
//! fails. The answer is what matters, not the broken pipe.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use sha2::{Digest, Sha256};

#[path = "support/tls_server.rs"]
mod tls_server;

const ANSWER: &[u8] =
    b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 9\r\nconnection: close\r\n\r\ntoo large";

/// A TLS server that answers every connection with [`ANSWER`] after the
/// request head, then closes with the body unread (the kernel resets).
fn early_answer_server() -> (u16, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["cocoon.local".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let fingerprint = hex::encode(Sha256::digest(cert.der()));
    let config = tls_server::config(cert.der().to_vec(), &key);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let tcp = tcp.unwrap();
            // As the guest's server does: otherwise Nagle may hold the
            // answer back, and the reset on close discards it unsent.
            tcp.set_nodelay(true).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if tls.read(&mut byte).unwrap_or(0) == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            let _ = tls.write_all(ANSWER);
            let _ = tls.flush();
            // Dropped with the body unread.
        }
    });
    (port, fingerprint)
}

#[test]
fn a_413_sent_before_the_body_is_read_reaches_the_caller() {
    let (port, fingerprint) = early_answer_server();
    let body = format!("\"{}\"", "x".repeat(8 << 20));
    for attempt in 0..20 {
        let got = cocoon_measurements::client::request(
            port,
            "POST",
            "/v1/chat/completions",
            Some(&body),
            &fingerprint,
            Duration::from_secs(30),
        );
        assert_eq!(
            got.map_err(|e| e.to_string()),
            Ok((413, "too large".to_string())),
            "attempt {attempt}"
        );
    }
}

#[test]
fn a_server_that_never_answers_is_still_an_error() {
    // Accepts, then closes at once: no TLS, no answer.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            drop(tcp);
        }
    });
    let got = cocoon_measurements::client::request(
        port,
        "POST",
        "/",
        Some("{}"),
        &"0".repeat(64),
        Duration::from_secs(5),
    );
    assert!(got.is_err(), "{got:?}");
}
