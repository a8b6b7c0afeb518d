//! The HTTPS server: TLS 1.3 (rustls) in front of an HTTP/1.1 router.
//!
//! Every connection gets a handshake deadline and a header deadline, and the
//! number of open connections is bounded, so a slow or hostile client costs
//! a bounded amount of memory and time.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use std::net::SocketAddr;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;

use crate::console;
use crate::tls::Identity;

const MAX_CONNECTIONS: usize = 256;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a closing connection keeps discarding what the client still
/// sends (see [`linger`]).
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `app` until a stop request arrives on `stop`.
pub async fn serve(
    addr: SocketAddr,
    identity: Identity,
    app: Router,
    mut stop: mpsc::Receiver<String>,
) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let port = listener.local_addr()?.port();
    let acceptor = TlsAcceptor::from(identity.server_config.clone());
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    console::event(
        "listening",
        &[
            ("port", port.into()),
            ("cert_sha256", identity.cert_sha256.clone().into()),
        ],
    );
    loop {
        tokio::select! {
            reason = stop.recv() => {
                let reason = reason.unwrap_or_else(|| "all stop sources closed".into());
                console::event("stopping", &[("reason", reason.into())]);
                return Ok(());
            }
            accepted = listener.accept() => {
                let tcp = match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Over the limit: close at once rather than queue without bound.
                let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    let _ = tcp.set_nodelay(true);
                    let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await else {
                        return;
                    };
                    // This connection's exporter value: what a session
                    // report binds (see api::attestation).
                    let Ok(exporter) = tls.get_ref().1.export_keying_material(
                        [0u8; cocoon_evidence::EXPORTER_LEN],
                        cocoon_evidence::EXPORTER_LABEL,
                        None,
                    ) else {
                        return;
                    };
                    let app = app.layer(axum::Extension(crate::api::SessionExporter(exporter)));
                    let served = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                        .without_shutdown()
                        .await;
                    if let Ok(parts) = served {
                        linger(parts.io.into_inner()).await;
                    }
                });
            }
        }
    }
}

/// Closes a connection the way nginx's `lingering_close` does: close_notify
/// and FIN first, then discard what the client is still sending until it
/// closes too, for at most [`LINGER_TIMEOUT`].
///
/// Without this, a connection closed with unread request bytes (a body over
/// [`crate::api::MAX_BODY`] is answered 413 before it is read) makes the
/// kernel send a reset instead of a FIN, and a client still writing its body
/// sees a broken pipe instead of the 413 that was already sent.
async fn linger(mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(LINGER_TIMEOUT, async {
        tls.shutdown().await?;
        let (mut tcp, _) = tls.into_inner();
        let mut sink = [0u8; 16 << 10];
        while tcp.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    })
    .await;
}
