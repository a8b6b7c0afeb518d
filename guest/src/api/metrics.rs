//! `GET /metrics` in the Prometheus text format: request counts by
//! endpoint and status, tokens, queue depth, time to first token. Counts
//! only; nothing about what was asked or answered.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::Shared;

pub async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP cocoon_requests_total API requests by endpoint and HTTP status."
    );
    let _ = writeln!(out, "# TYPE cocoon_requests_total counter");
    for ((endpoint, status), n) in s
        .counters
        .by_status
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        let _ = writeln!(
            out,
            "cocoon_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
        );
    }
    if let Some(served) = &s.served {
        let m = &served.scheduler.metrics;
        let limits = served.scheduler.limits();
        let rows: [(&str, &str, &str, u64); 11] = [
            (
                "cocoon_queue_depth",
                "gauge",
                "Requests waiting for the engine.",
                m.queued.load(Relaxed),
            ),
            (
                "cocoon_active_sequences",
                "gauge",
                "Sequences generating now.",
                m.active.load(Relaxed),
            ),
            (
                "cocoon_max_active_sequences",
                "gauge",
                "Sequences the engine runs at once.",
                limits.max_active as u64,
            ),
            (
                "cocoon_rejected_total",
                "counter",
                "Requests refused because the queue was full.",
                m.rejected.load(Relaxed),
            ),
            (
                "cocoon_cancelled_total",
                "counter",
                "Generations stopped because the client left.",
                m.cancelled.load(Relaxed),
            ),
            (
                "cocoon_failed_total",
                "counter",
                "Generations that failed.",
                m.failed.load(Relaxed),
            ),
            (
                "cocoon_completed_total",
                "counter",
                "Generations that finished.",
                m.completed.load(Relaxed),
            ),
            (
                "cocoon_prompt_tokens_total",
                "counter",
                "Prompt tokens processed.",
                m.prompt_tokens.load(Relaxed),
            ),
            (
                "cocoon_completion_tokens_total",
                "counter",
                "Tokens generated.",
                m.completion_tokens.load(Relaxed),
            ),
            (
                "cocoon_batched_passes_total",
                "counter",
                "Passes over the weights that stepped several sequences at once.",
                m.batched_passes.load(Relaxed),
            ),
            (
                "cocoon_batched_steps_total",
                "counter",
                "Sequence steps made in those passes.",
                m.batched_steps.load(Relaxed),
            ),
        ];
        for (name, kind, help, v) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        let secs = |us: u64| us as f64 / 1e6;
        let _ = writeln!(
            out,
            "# HELP cocoon_engine_busy_seconds_total Time the engine thread spent generating.\n# TYPE cocoon_engine_busy_seconds_total counter\ncocoon_engine_busy_seconds_total {}",
            secs(m.busy_us.load(Relaxed))
        );
        let _ = writeln!(
            out,
            "# HELP cocoon_time_to_first_token_seconds Time from admission to the first token.\n# TYPE cocoon_time_to_first_token_seconds summary\ncocoon_time_to_first_token_seconds_sum {}\ncocoon_time_to_first_token_seconds_count {}",
            secs(m.ttft_us.load(Relaxed)),
            m.ttft_count.load(Relaxed)
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
