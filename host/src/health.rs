//! `GET /health` over TLS, trusting only the certificate the guest announced.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cocoon_measurements::pinned::PinnedCertVerifier;
use rustls::pki_types::ServerName;

/// Fetches `https://127.0.0.1:<port><path>`; returns the status and body.
pub fn get(port: u16, path: &str, cert_sha256: &str, timeout: Duration) -> Result<(u16, String)> {
    let config = PinnedCertVerifier::client_config(cert_sha256).map_err(anyhow::Error::msg)?;
    let name = ServerName::try_from("cocoon.local").expect("a valid DNS name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name)?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let tcp = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: cocoon.local\r\nConnection: close\r\nAccept: application/json\r\n\r\n"
    )
    .context("TLS handshake or request")?;
    let mut raw = Vec::new();
    // A peer that closes without close_notify after a complete response is
    // fine for us: the length is checked below.
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e).context("reading the response"),
    }
    parse_response(&raw)
}

/// Splits a `Connection: close` HTTP/1.1 response into status and body.
fn parse_response(raw: &[u8]) -> Result<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("malformed HTTP response ({} bytes)", raw.len());
    };
    let status: u16 = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("malformed status line in {head:?}"))?;
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    if let Some(n) = length
        && body.len() != n
    {
        bail!("truncated response: {} of {n} bytes", body.len());
    }
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_responses() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi";
        assert_eq!(parse_response(ok).unwrap(), (200, "hi".to_string()));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhi").is_err());
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }
}
