//! `cocoon-guest gpu-probe [--nonce HEX]`: what NVML says on this host,
//! as JSON, without loading modules or making nodes (the host's driver is
//! already up) and without changing the GPUs' ready state. It shows what a
//! GPU image would decide, whether the engine's CUDA path opens GPU 0 (in
//! CC mode only once the GPUs are released), and, where the GPU gives
//! evidence (CC mode), whether that evidence verifies.

use anyhow::Result;
use serde_json::{Value, json};

use super::cc;
use super::cmdline::GpuMode;
use super::nvml::Nvml;

pub fn run(nonce: Option<&str>) -> Result<Value> {
    let nonce: [u8; 32] = match nonce {
        Some(h) => hex::decode(h)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| anyhow::anyhow!("--nonce takes 64 hex digits"))?,
        None => cocoon_evidence::gpu_nonce(b"cocoon-guest gpu-probe"),
    };
    let cuda = match cocoon_engine::model::device_named("cuda") {
        Ok((_, name)) => json!(name),
        Err(e) => json!(e),
    };
    let nvml = match Nvml::open() {
        Ok(n) => n,
        Err(e) => return Ok(json!({ "nvml": format!("{e:#}"), "cuda": cuda })),
    };
    let mut out = json!({
        "nvml": "loaded",
        "driver_version": str_or_err(nvml.driver_version()),
        "nonce": hex::encode(nonce),
        "cuda": cuda,
    });
    match nvml.cc_state() {
        Ok(s) => {
            out["cc_state"] = json!({
                "environment": s.environment,
                "cc_feature": s.cc_feature,
                "dev_tools_mode": s.dev_tools_mode,
                "text": cc::describe(&s),
            });
            for (name, mode) in [
                ("required", GpuMode::Required),
                ("cc-off-allowed", GpuMode::CcOffAllowed),
            ] {
                out["decision"][name] = match cc::decide(&s, mode) {
                    Ok(d) => json!(format!("{d:?}")),
                    Err(r) => json!(format!("refused: {r}")),
                };
            }
        }
        Err(e) => out["cc_state"] = json!(format!("{e:#}")),
    }
    out["cc_settings"] = match nvml.cc_settings() {
        Ok(Some(s)) => json!({
            "environment": s.environment, "cc_feature": s.cc_feature,
            "dev_tools_mode": s.dev_tools_mode, "multi_gpu_mode": s.multi_gpu_mode,
        }),
        Ok(None) => json!("not in this NVML"),
        Err(e) => json!(format!("{e:#}")),
    };
    out["ready_state"] = match nvml.ready_state() {
        Ok(v) => json!(v),
        Err(e) => json!(format!("{e:#}")),
    };
    let count = match nvml.device_count() {
        Ok(n) => n,
        Err(e) => {
            out["devices"] = json!(format!("{e:#}"));
            return Ok(out);
        }
    };
    let mut devices = Vec::new();
    for i in 0..count {
        let d = match nvml.device(i) {
            Ok(d) => d,
            Err(e) => {
                devices.push(json!({ "index": i, "error": format!("{e:#}") }));
                continue;
            }
        };
        let mut dev = json!({
            "index": i,
            "name": str_or_err(nvml.name(d)),
            "uuid": str_or_err(nvml.uuid(d)),
        });
        let report = nvml.attestation_report(d, nonce);
        let chain = nvml.attestation_chain(d);
        dev["attestation_report"] = match &report {
            Ok(r) => json!({ "bytes": r.len(), "hex": hex::encode(r) }),
            Err(e) => json!(format!("{e:#}")),
        };
        dev["certificate_chain"] = match &chain {
            Ok(c) => json!({ "bytes": c.len(), "pem": String::from_utf8_lossy(c) }),
            Err(e) => json!(format!("{e:#}")),
        };
        if let (Ok(report), Ok(cert_chain)) = (report, chain) {
            let e = cocoon_evidence::GpuEvidence { report, cert_chain };
            dev["verdict"] = serde_json::to_value(super::evidence::verify(&e, nonce))?;
        }
        devices.push(dev);
    }
    out["devices"] = json!(devices);
    Ok(out)
}

fn str_or_err(r: Result<String>) -> Value {
    match r {
        Ok(s) => json!(s),
        Err(e) => json!(format!("error: {e:#}")),
    }
}
