//! The HTTPS server: TLS 1.3 (rustls) in front of an HTTP/1.1 router.
//!
//! Every connection gets a handshake deadline and a header deadline, and the
//! number of open connections is bounded, so a slow or hostile client costs
//! a bounded amount of memory and time.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Json;
use axum::Router;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;

use crate::console;
use crate::tls::Identity;

const MAX_CONNECTIONS: usize = 256;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

fn router() -> Router {
    Router::new()
        .route("/health", get(health))
        .fallback(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                Json(json!({"error": "not found"})),
            )
        })
}

async fn health() -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": (console::uptime() * 1000.0).round() / 1000.0,
    }))
}

/// Serves until a stop request arrives on `stop`.
pub async fn serve(port: u16, identity: Identity, mut stop: mpsc::Receiver<String>) -> Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("listening on port {port}"))?;
    let acceptor = TlsAcceptor::from(identity.server_config.clone());
    let app = router();
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
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                        .await;
                });
            }
        }
    }
}
