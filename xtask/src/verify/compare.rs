//! Released artifact against rebuilt artifact: the table rows and, for
//! each difference, where it starts and how to look at it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cocoon_image::digest::Sha256;
use cocoon_image::manifest::{self, MANIFEST_FILE, Manifest};
use cocoon_release::bundle::PROFILE_FILES;
use cocoon_release::diff;

pub struct Row {
    pub what: String,
    pub released: String,
    pub rebuilt: String,
    pub matches: bool,
    /// Where and how it differs; with the paths of both files when they
    /// are files.
    pub detail: Option<String>,
    pub files: Option<(PathBuf, PathBuf)>,
}

/// Compares one profile's released folder with its rebuild.
pub fn profile(name: &str, released: &Path, rebuilt: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for f in PROFILE_FILES {
        let (a_path, b_path) = (released.join(f), rebuilt.join(f));
        let a = fs::read(&a_path).with_context(|| format!("reading {}", a_path.display()))?;
        let b = fs::read(&b_path).with_context(|| format!("reading {}", b_path.display()))?;
        let matches = a == b;
        let detail = (!matches).then(|| describe(f, &a, &b));
        rows.push(Row {
            what: format!("{name}/{f}"),
            released: Sha256::of(&a).to_hex(),
            rebuilt: Sha256::of(&b).to_hex(),
            matches,
            detail,
            files: Some((a_path, b_path)),
        });
    }
    rows.push(measurements(name, released, rebuilt)?);
    Ok(rows)
}

fn describe(file: &str, a: &[u8], b: &[u8]) -> String {
    let mut s = format!(
        "first difference at byte {} (released {} bytes, rebuilt {} bytes)",
        diff::first_difference(a, b).unwrap_or(0),
        a.len(),
        b.len()
    );
    if file == manifest::INITRD {
        match diff::initrd_entry_difference(a, b) {
            Ok(Some(entry)) => s.push_str(&format!("; cpio entry {entry}")),
            Ok(None) => s.push_str("; the cpio archives are equal: the compression differs"),
            Err(e) => s.push_str(&format!("; cannot compare the cpio entries: {e}")),
        }
    }
    if file == MANIFEST_FILE {
        let keys = differing_keys(a, b);
        if !keys.is_empty() {
            s.push_str(&format!("; fields that differ: {}", keys.join(", ")));
        }
    }
    s
}

/// The top-level manifest fields whose values differ.
fn differing_keys(a: &[u8], b: &[u8]) -> Vec<String> {
    let parse = |x: &[u8]| serde_json::from_slice::<serde_json::Value>(x).ok();
    let (Some(a), Some(b)) = (parse(a), parse(b)) else {
        return vec![];
    };
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return vec![];
    };
    let mut keys: Vec<String> = a.keys().chain(b.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().filter(|k| a.get(k) != b.get(k)).collect()
}

/// The SNP measurement of every launch shape, released against rebuilt.
fn measurements(name: &str, released: &Path, rebuilt: &Path) -> Result<Row> {
    let (a, b) = (Manifest::load(released)?, Manifest::load(rebuilt)?);
    let digest = |m: &Manifest| {
        let table = serde_json::to_vec(&m.measurements).expect("serializes");
        Sha256::of(&table).to_hex()
    };
    let differing: Vec<String> = a
        .measurements
        .iter()
        .filter(|r| !b.measurements.contains(r))
        .map(|r| format!("{} vCPUs on {}", r.vcpus, r.cpu_type))
        .collect();
    let matches = a.measurements == b.measurements && !a.measurements.is_empty();
    let detail = (!matches).then(|| {
        format!(
            "{} of {} released shapes have another measurement in the rebuild (first: {}); the rebuild lists {}",
            differing.len(),
            a.measurements.len(),
            differing.first().map_or("none", |s| s.as_str()),
            b.measurements.len()
        )
    });
    Ok(Row {
        what: format!("{name}/measurements ({} shapes)", a.measurements.len()),
        released: digest(&a),
        rebuilt: digest(&b),
        matches,
        detail,
        files: None,
    })
}

/// The table (stdout), then a paragraph per difference.
pub fn print(rows: &[Row]) {
    let width = rows.iter().map(|r| r.what.len()).max().unwrap_or(8).max(8);
    println!(
        "{:width$}  {:64}  {:64}  verdict",
        "artifact", "released sha256", "rebuilt sha256"
    );
    for r in rows {
        println!(
            "{:width$}  {:64}  {:64}  {}",
            r.what,
            r.released,
            r.rebuilt,
            if r.matches { "match" } else { "MISMATCH" }
        );
    }
    for r in rows.iter().filter(|r| !r.matches) {
        println!();
        println!(
            "{} differs: {}",
            r.what,
            r.detail.as_deref().unwrap_or("see above")
        );
        if let Some((a, b)) = &r.files {
            println!(
                "  see the difference: diffoscope {} {}",
                a.display(),
                b.display()
            );
        }
    }
}
