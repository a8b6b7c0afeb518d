//! `GET /v1/attestation?nonce=<64 hex>`: a fresh SEV-SNP report whose
//! `report_data` covers the client's nonce and this connection's TLS
//! exporter value (`cocoon_evidence::session_report_data`).
//!
//! The certificate's report proves the key; this one proves the session: a
//! relay that forwards bytes to a real guest cannot make the guest sign its
//! own connection's exporter value. Without SEV-SNP the answer says so.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde_json::{Value, json};

use super::{ApiError, SessionExporter, Shared};

pub async fn attestation(
    State(state): State<Shared>,
    axum::Extension(SessionExporter(exporter)): axum::Extension<SessionExporter>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    // One parameter of hex digits: no URL decoding needed, none accepted.
    let nonce = query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("nonce="))
        .ok_or_else(|| ApiError::invalid(Some("nonce"), "`nonce` (64 hex digits) is required"))?;
    let mut bytes = [0u8; cocoon_evidence::NONCE_LEN];
    hex::decode_to_slice(nonce, &mut bytes)
        .map_err(|_| ApiError::invalid(Some("nonce"), "`nonce` must be 64 hex digits"))?;
    if let Some(reason) = state.attester.unattested_reason() {
        state.counters.count("attestation", 200);
        return Ok(Json(json!({ "platform": "none", "reason": reason })));
    }
    let report_data = cocoon_evidence::session_report_data(&bytes, &exporter);
    let attester = state.attester.clone();
    // The ioctl or configfs round trip blocks: keep it off the I/O threads.
    let signed = tokio::task::spawn_blocking(move || attester.report(report_data))
        .await
        .map_err(|e| ApiError::internal(format!("report task: {e}")))?
        .map_err(|e| ApiError::internal(format!("attestation report: {e:#}")))?;
    state.counters.count("attestation", 200);
    Ok(Json(json!({
        "platform": "sev-snp",
        "report": hex::encode(signed.report),
        "vcek": signed.vcek.map(hex::encode),
    })))
}
