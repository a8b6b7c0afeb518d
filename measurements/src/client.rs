//! A minimal HTTPS/1.1 client for loopback that trusts exactly one
//! certificate, by its SHA-256: the host's health check, the demo and the
//! tests use it against a dev-booted guest. (Trust in a production guest
//! comes from attestation, not from pinning what the guest printed.)

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::pinned::PinnedCertVerifier;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Tls(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
}

/// Sends `method path` (with a JSON body, if any) to `https://127.0.0.1:<port>`
/// and returns the status and body.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    json_body: Option<&str>,
    cert_sha256: &str,
    timeout: Duration,
) -> Result<(u16, String), ClientError> {
    let io = |context: &str| {
        let context = context.to_string();
        move |source| ClientError::Io { context, source }
    };
    let config = PinnedCertVerifier::client_config(cert_sha256).map_err(ClientError::Tls)?;
    let name = ServerName::try_from("cocoon.local").expect("a valid DNS name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let tcp =
        TcpStream::connect_timeout(&addr, timeout).map_err(io(&format!("connecting to {addr}")))?;
    tcp.set_read_timeout(Some(timeout))
        .map_err(io("setting a timeout"))?;
    tcp.set_write_timeout(Some(timeout))
        .map_err(io("setting a timeout"))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let body = json_body.unwrap_or("");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: cocoon.local\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    if json_body.is_some() {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    tls.write_all(head.as_bytes())
        .map_err(io("TLS handshake or request"))?;
    // A server may answer before the body is all sent (413 for a body over
    // its limit) and close: the write then fails, but the answer may
    // already be here, and it is the answer that matters.
    let sent = tls.write_all(body.as_bytes());
    let mut raw = Vec::new();
    // A peer that closes without close_notify after a complete response is
    // fine: the length is checked below.
    let read = match sent {
        Ok(()) => tls.read_to_end(&mut raw),
        // rustls' own reads would first retry the write that failed.
        Err(_) => read_without_flushing(&mut tls.conn, &mut tls.sock, &mut raw),
    };
    match (sent, read) {
        (Err(e), _) if raw.is_empty() => return Err(io("sending the body")(e)),
        (_, Ok(_)) => {}
        (_, Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        (Err(_), Err(_)) if !raw.is_empty() => {}
        (_, Err(e)) => return Err(io("reading the response")(e)),
    }
    parse_response(&raw)
}

/// Reads the rest of a response after a write failed. `Stream::read` would
/// first flush the TLS records the failed write left queued, fail the same
/// way, and never reach the response that may already be here.
fn read_without_flushing(
    conn: &mut rustls::ClientConnection,
    sock: &mut TcpStream,
    raw: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let start = raw.len();
    loop {
        match conn.reader().read_to_end(raw) {
            Ok(_) => return Ok(raw.len() - start),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if conn.read_tls(sock)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        conn.process_new_packets()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    }
}

/// The server's certificate in PEM, after checking it is the pinned one
/// (so that clients like `curl --cacert` or Python's `ssl` can trust it).
pub fn fetch_cert_pem(
    port: u16,
    cert_sha256: &str,
    timeout: Duration,
) -> Result<String, ClientError> {
    let config = PinnedCertVerifier::client_config(cert_sha256).map_err(ClientError::Tls)?;
    let name = ServerName::try_from("cocoon.local").expect("a valid DNS name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|source| ClientError::Io {
        context: format!("connecting to {addr}"),
        source,
    })?;
    tcp.set_read_timeout(Some(timeout)).ok();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)
            .map_err(|source| ClientError::Io {
                context: "TLS handshake".into(),
                source,
            })?;
    }
    let der = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| ClientError::Tls("the server sent no certificate".into()))?;
    Ok(pem("CERTIFICATE", der))
}

/// PEM armour: base64 in 64-column lines between BEGIN and END.
pub fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | b as u32) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Splits a `Connection: close` HTTP/1.1 response into status and body.
pub fn parse_response(raw: &[u8]) -> Result<(u16, String), ClientError> {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(ClientError::Malformed(format!(
            "no end of headers in {} bytes",
            raw.len()
        )));
    };
    let status: u16 = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Malformed(format!("status line {:?}", head.lines().next())))?;
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    if let Some(n) = length
        && body.len() != n
    {
        return Err(ClientError::Malformed(format!(
            "truncated: {} of {n} bytes",
            body.len()
        )));
    }
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_is_base64_in_lines() {
        assert_eq!(
            pem("X", b"foobar"),
            "-----BEGIN X-----\nZm9vYmFy\n-----END X-----\n"
        );
        assert_eq!(
            pem("X", b"fo"),
            "-----BEGIN X-----\nZm8=\n-----END X-----\n"
        );
        assert_eq!(pem("X", &[0xff; 49]).lines().nth(1).unwrap().len(), 64);
    }

    #[test]
    fn parses_responses() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi";
        assert_eq!(parse_response(ok).unwrap(), (200, "hi".to_string()));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhi").is_err());
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }
}
