//! The release's SLSA v1 provenance: an in-toto Statement whose subjects
//! are the bundle's artifacts and whose `resolvedDependencies` are every
//! pinned input (each Debian package and each file taken from it, each
//! source tarball) and the source commit, all with their digests.
//!
//! It is made from the manifests alone, with no clock and no path, so the
//! same release gives the same bytes; only `builder.id` says where it was
//! made (a GitHub workflow, or a local `cargo xtask release`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use cocoon_image::manifest::MANIFEST_FILE;

use crate::bundle::ProfileManifest;

pub const FILE: &str = "provenance.intoto.json";
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// What kind of build this is; names the command, not a place.
pub const BUILD_TYPE: &str = "urn:cocoon:build-type:xtask-release:v1";
/// `builder.id` of a release made outside CI.
pub const LOCAL_BUILDER: &str = "urn:cocoon:builder:local-xtask-release";

/// The subjects: `(path in the bundle, sha256)` of every profile's artifacts
/// and manifest.
pub fn subjects(profiles: &[ProfileManifest]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in profiles {
        for a in &p.manifest.artifacts {
            out.push((format!("{}/{}", p.name, a.name), a.sha256.to_hex()));
        }
        out.push((
            format!("{}/{MANIFEST_FILE}", p.name),
            p.manifest_sha256.to_hex(),
        ));
    }
    out.sort();
    out
}

/// The statement, as pretty JSON with a final newline.
pub fn statement(version: &str, profiles: &[ProfileManifest], builder_id: &str) -> String {
    let subject: Vec<Value> = subjects(profiles)
        .into_iter()
        .map(|(name, sha)| json!({ "name": name, "digest": { "sha256": sha } }))
        .collect();
    // Keyed by name so an input two profiles share is listed once.
    let mut deps: BTreeMap<String, Value> = BTreeMap::new();
    let mut commit = String::new();
    for ProfileManifest { manifest: m, .. } in profiles {
        commit = m.git.commit.clone();
        for p in &m.inputs {
            let purl = format!("pkg:deb/debian/{}@{}?arch=amd64", p.package, p.version);
            deps.insert(
                format!("{}:{}", p.name, p.package),
                json!({
                    "name": format!("{}.deb", p.package),
                    "uri": purl,
                    "digest": { "sha256": p.sha256.to_hex() },
                    "annotations": { "input": p.name, "suite": p.suite, "component": p.component, "size": p.size },
                }),
            );
            for f in &p.files {
                deps.insert(
                    format!("{}:{}:{}", p.name, p.package, f.path),
                    json!({
                        "name": f.path,
                        "uri": format!("{purl}#{}", f.path),
                        "digest": { "sha256": f.sha256.to_hex() },
                    }),
                );
            }
        }
        for s in &m.sources {
            for f in &s.files {
                deps.insert(
                    format!("{}:{}:{}", s.name, s.package, f.path),
                    json!({
                        "name": f.path,
                        "uri": format!("pkg:deb/debian/{}@{}?arch=source", s.package, s.version),
                        "digest": { "sha256": f.sha256.to_hex() },
                        "annotations": { "input": s.name, "suite": s.suite, "component": s.component },
                    }),
                );
            }
        }
        for w in &m.wheels {
            deps.insert(
                format!("{}:{}", w.name, w.file),
                json!({
                    "name": w.file,
                    "uri": format!("pkg:pypi/{}@{}", w.project, w.version),
                    "digest": { "sha256": w.sha256.to_hex() },
                    "annotations": { "input": w.name, "size": w.size },
                }),
            );
        }
    }
    let mut resolved = vec![json!({ "name": "source", "digest": { "gitCommit": commit } })];
    resolved.extend(deps.into_values());
    let build: Vec<Value> = profiles
        .iter()
        .map(
            |ProfileManifest {
                 name, manifest: m, ..
             }| {
                json!({
                    "profile": name,
                    "rustc": m.build.rustc,
                    "cargo": m.build.cargo,
                    "target": m.build.target,
                    "cc": m.build.cc,
                    "libc": m.build.libc,
                    "cargoProfile": m.build.cargo_profile,
                    "cargoFeatures": m.build.cargo_features,
                    "firmwareTools": m.build.firmware_tools,
                    "sourceDateEpoch": m.source_date_epoch,
                })
            },
        )
        .collect();
    let profile_names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
    let statement = json!({
        "_type": STATEMENT_TYPE,
        "subject": subject,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "version": version,
                    "profiles": profile_names,
                    "commit": commit,
                },
                "internalParameters": { "environment": build },
                "resolvedDependencies": resolved,
            },
            "runDetails": {
                "builder": { "id": builder_id },
            },
        },
    });
    let mut text = serde_json::to_string_pretty(&statement).expect("JSON always serializes");
    text.push('\n');
    text
}

/// Checks that a provenance file is an in-toto v1 Statement with the SLSA
/// v1 predicate, and that its subjects are exactly `expected`.
pub fn check(text: &str, expected: &[(String, String)]) -> Result<(), String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if v["_type"] != STATEMENT_TYPE || v["predicateType"] != PREDICATE_TYPE {
        return Err(format!(
            "not an in-toto Statement v1 with predicate {PREDICATE_TYPE}"
        ));
    }
    let mut found: Vec<(String, String)> = v["subject"]
        .as_array()
        .ok_or("no subject list")?
        .iter()
        .map(|s| {
            Some((
                s["name"].as_str()?.to_string(),
                s["digest"]["sha256"].as_str()?.to_string(),
            ))
        })
        .collect::<Option<_>>()
        .ok_or("a subject without name or sha256")?;
    found.sort();
    if found != expected {
        return Err("its subjects are not the bundle's artifacts".into());
    }
    Ok(())
}
