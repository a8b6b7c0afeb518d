//! `cocoon-host verify-gpu-evidence` on the real H100 reports in
//! measurements/tests/data/nvidia/: pass, fail, and --json.

use std::path::PathBuf;
use std::process::{Command, Output};

const NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";
const COCO_NONCE: &str = "87d8e24ab336adafe228d49e83d745f6dba4ae505372b6a5704820856b343fec";

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../measurements/tests/data/nvidia")
        .join(name)
}

fn verify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cocoon-host"))
        .arg("verify-gpu-evidence")
        .args(args)
        .output()
        .unwrap()
}

fn hopper(extra: &[&str]) -> Output {
    let report = data("hopperAttestationReport.txt");
    let certs = data("hopper_cert_chain_case1.txt");
    let mut args = vec![
        "--report",
        report.to_str().unwrap(),
        "--certs",
        certs.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    verify(&args)
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

#[test]
fn genuine_report_passes_and_says_measurements_were_not_compared() {
    let o = hopper(&["--nonce", NONCE]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("ok   signature"), "{out}");
    assert!(out.contains("NOT compared"), "{out}");
    assert!(
        out.contains("driver 550.90.07, VBIOS 96.00.9f.00.01"),
        "{out}"
    );
}

#[test]
fn wrong_nonce_fails() {
    let o = hopper(&["--nonce", COCO_NONCE]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("FAIL nonce"), "{out}");
    assert!(out.contains("does not verify"), "{out}");
}

#[test]
fn json_verdict() {
    let o = hopper(&["--nonce", NONCE, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["holds"], true);
    assert_eq!(v["measurements_compared"], false);
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 6);
    assert_eq!(checks[2]["name"], "signature");
    assert_eq!(checks[2]["status"], "pass");
    assert_eq!(checks[5]["status"], "not_checked");

    let o = hopper(&["--nonce", NONCE, "--json", "--min-driver", "999"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["holds"], false);
    assert_eq!(v["checks"][4]["status"], "fail");
}

#[test]
fn reference_values_are_compared() {
    // Reference values made from the report's own (verified) blocks, one
    // of them changed: the comparison must notice.
    let o = hopper(&["--nonce", NONCE, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let blocks = v["evidence"]["measurements"].as_object().unwrap();
    let entries = |change: &str| -> Vec<serde_json::Value> {
        blocks
            .iter()
            .map(|(i, value)| {
                let value = if i == change { "00".repeat(48) } else { value.as_str().unwrap().to_string() };
                serde_json::json!({"index": i.parse::<u8>().unwrap(), "component": "test", "values": [value]})
            })
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    for (change, ok) in [("none", true), ("2", false)] {
        let file = dir.path().join(format!("ref-{change}.json"));
        let reference = serde_json::json!({
            "format": "cocoon-gpu-reference-values/1",
            "source": "test",
            "measurements": entries(change),
        });
        std::fs::write(&file, reference.to_string()).unwrap();
        let o = hopper(&["--nonce", NONCE, "--reference", file.to_str().unwrap()]);
        let out = text(&o);
        assert_eq!(o.status.success(), ok, "{out}");
        if ok {
            assert!(out.contains("measurements included"), "{out}");
        } else {
            assert!(out.contains("measurement block 2"), "{out}");
        }
    }
}

#[test]
fn trailing_byte_needs_the_flag() {
    let report = data("hopper_coco_report1.txt");
    let certs = data("hopper_coco_certs1.txt");
    let base = [
        "--report",
        report.to_str().unwrap(),
        "--certs",
        certs.to_str().unwrap(),
        "--nonce",
        COCO_NONCE,
    ];
    let o = verify(&base);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("1 byte(s) after the signature"),
        "{}",
        text(&o)
    );
    let mut allowed = base.to_vec();
    allowed.push("--allow-trailing-zero");
    let o = verify(&allowed);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn bad_nonce_argument_is_an_error() {
    let o = hopper(&["--nonce", "abcd"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("64 hex digits"));
}

fn rim(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../measurements/tests/data/rim")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

/// The test RIMs (signed with xmlsec1 by a test PKI, their digests the
/// real report's) straight on the command line, and through
/// `import-rims` then `--reference`: the same 31 blocks match.
#[test]
fn rims_are_verified_and_compared() {
    let (driver, vbios, root) = (rim("driver.swidtag"), rim("vbios.swidtag"), rim("root.pem"));
    // The hopper report checked against the RIMs given.
    let with_rims = |driver: &str, vbios: &str, root: &str| {
        hopper(&[
            "--nonce",
            NONCE,
            "--driver-rim",
            driver,
            "--vbios-rim",
            vbios,
            "--rim-root",
            root,
        ])
    };
    let o = with_rims(&driver, &vbios, &root);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("31 block(s) match"), "{out}");
    assert!(out.contains("measurements included"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let refs = dir.path().join("refs.json");
    let import = |driver: &str, vbios: &str| {
        Command::new(env!("CARGO_BIN_EXE_cocoon-host"))
            .args(["import-rims", "--driver-rim", driver, "--vbios-rim", vbios])
            .args(["--rim-root", &root, "--out"])
            .arg(&refs)
            .output()
            .unwrap()
    };
    let o = import(&driver, &vbios);
    assert!(o.status.success(), "{}", text(&o));
    let o = hopper(&["--nonce", NONCE, "--reference", refs.to_str().unwrap()]);
    assert!(text(&o).contains("31 block(s) match"), "{}", text(&o));

    // The files swapped: refused, nothing written over the good file.
    let before = std::fs::read(&refs).unwrap();
    let o = import(&vbios, &driver);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not a driver version"), "{}", text(&o));
    assert_eq!(std::fs::read(&refs).unwrap(), before);

    // A RIM changed after signing, or another root: refused.
    let tampered = dir.path().join("driver.swidtag");
    let xml = std::fs::read_to_string(&driver).unwrap();
    std::fs::write(
        &tampered,
        xml.replacen("active=\"False\"", "active=\"True\"", 1),
    )
    .unwrap();
    let o = with_rims(tampered.to_str().unwrap(), &vbios, &root);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("changed after signing"), "{}", text(&o));
    let nvidia = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../gpu-evidence/src/nvidia_device_root.pem");
    let o = with_rims(&driver, &vbios, nvidia.to_str().unwrap());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("certificate chain"), "{}", text(&o));
}
