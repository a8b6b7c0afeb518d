//! The OpenAI-compatible API: `/v1/models`, `/v1/chat/completions`,
//! `/v1/completions` (streamed as server-sent events on request), plus
//! `/health` and `/metrics`.
//!
//! Handlers turn requests into engine jobs and engine events into
//! responses; the engine itself (and its fairness) is in `cocoon-engine`.
//! Nothing here logs a prompt or a completion.

mod attestation;
mod error;
mod metrics;
mod request;
mod respond;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use cocoon_engine::model::Model;
use cocoon_engine::scheduler::{Limits, Scheduler};

use crate::attest::Attester;

pub use error::ApiError;

/// Request bodies above this are refused (413): a prompt that fits the
/// context is far smaller.
pub const MAX_BODY: usize = 2 << 20;

/// The loaded model and its scheduler, if the image has one.
pub struct Served {
    pub model: Arc<Model>,
    pub scheduler: Scheduler,
    /// Unix time the model became ready (`created` in `/v1/models`).
    pub ready_at: u64,
}

#[derive(Default)]
pub struct Counters {
    pub by_status: std::sync::Mutex<std::collections::BTreeMap<(&'static str, u16), u64>>,
    pub next_id: AtomicU64,
}

impl Counters {
    fn count(&self, endpoint: &'static str, status: u16) {
        *self
            .by_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((endpoint, status))
            .or_default() += 1;
    }
    fn id(&self, prefix: &str) -> String {
        format!(
            "{prefix}-{:x}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }
}

pub struct AppState {
    pub served: Option<Served>,
    pub counters: Counters,
    pub attester: Arc<Attester>,
}

/// The TLS exporter value of the connection a request came on.
#[derive(Clone, Copy)]
pub struct SessionExporter(pub [u8; cocoon_evidence::EXPORTER_LEN]);

pub type Shared = Arc<AppState>;

impl AppState {
    pub fn new(model: Option<Arc<Model>>, limits: Limits, attester: Arc<Attester>) -> Shared {
        let served = model.map(|model| Served {
            scheduler: Scheduler::start(model.clone(), limits),
            model,
            ready_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        });
        Arc::new(AppState {
            served,
            counters: Counters::default(),
            attester,
        })
    }

    fn served(&self) -> Result<&Served, ApiError> {
        self.served.as_ref().ok_or_else(ApiError::no_model)
    }
}

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/health", get(respond::health))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/models", get(respond::models))
        .route("/v1/attestation", get(attestation::attestation))
        .route("/v1/chat/completions", post(respond::chat))
        .route("/v1/completions", post(respond::completions))
        .fallback(|State(s): State<Shared>| async move {
            s.counters.count("other", 404);
            ApiError::not_found()
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}
