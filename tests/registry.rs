//! The registry end to end: the real `cargo xtask publish`, `registry` and
//! `verify --chain` against a local devnet (the TON HTTP API v2 over the
//! @ton/sandbox emulator running the real wallet v4r2 and registry code),
//! and BOCs from the Rust side checked by @ton/core.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cocoon_measurements::registry::api::{Network, TonApi, boc_base64};
use cocoon_measurements::registry::keys::SecretKey;
use cocoon_measurements::registry::messages::{self, Release, RoleOp};
use cocoon_measurements::registry::reader::{Reader, Status};
use cocoon_measurements::registry::sender::{self, Sender};
use cocoon_measurements::registry::wallet::Wallet;
use cocoon_measurements::registry::{Measurement, contract};
use cocoon_tests::devnet::{Devnet, contract_dir, node_available};
use cocoon_tests::{root, xtask_in};

const API_KEY: &str = "devnet-test-key";

fn skip_without_node() -> bool {
    if node_available() {
        return false;
    }
    eprintln!("SKIPPED: Node.js is not installed (`cargo xtask setup` installs it)");
    true
}

struct Actor {
    key_file: PathBuf,
    wallet: Wallet,
}

fn actor(dir: &Path, name: &str, seed: u8) -> Actor {
    let seed_hex = hex::encode([seed; 32]);
    let key_file = dir.join(format!("{name}.key"));
    std::fs::write(&key_file, &seed_hex).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let wallet = Wallet::new(SecretKey::from_seed([seed; 32])).unwrap();
    Actor { key_file, wallet }
}

fn shapes() -> Vec<(u32, &'static str)> {
    ["EPYC-v4", "EPYC-Milan", "EPYC-Genoa", "EPYC-Turin"]
        .iter()
        .flat_map(|t| (1..=64).map(move |v| (v, *t)))
        .collect()
}

/// A manifest with 256 launch shapes whose measurements derive from `seed`.
fn write_manifest(dir: &Path, seed: &str, version: &str) -> Vec<Measurement> {
    use sha2_free::sha384_like;
    std::fs::create_dir_all(dir).unwrap();
    let zero = "0".repeat(64);
    let artifact = |name: &str| serde_json::json!({"name": name, "sha256": zero, "size": 0});
    let mut ms = Vec::new();
    let records: Vec<_> = shapes()
        .into_iter()
        .map(|(vcpus, cpu)| {
            let m = Measurement(sha384_like(&format!("{seed} {vcpus} {cpu}")));
            ms.push(m);
            serde_json::json!({"vcpus": vcpus, "cpu_type": cpu, "guest_features": "0x1", "measurement": m.to_string()})
        })
        .collect();
    let manifest = serde_json::json!({
        "schema": 2, "name": "cocoon", "version": version, "profile": "cpu",
        "git": {"commit": "0".repeat(40), "dirty": false},
        "source_date_epoch": 0,
        "build": {"rustc": "", "cargo": "", "target": "", "cc": "", "libc": "",
                  "cargo_profile": "", "rustflags": [], "firmware_tools": []},
        "cmdline": "", "inputs": [], "sources": [],
        "artifacts": [artifact("vmlinuz"), artifact("initrd.img"), artifact("cmdline"), artifact("OVMF.fd")],
        "initramfs": {"compression": "zstd", "uncompressed_size": 0, "uncompressed_sha256": zero, "files": []},
        "measurements": records,
    });
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    ms
}

/// Distinct 48-byte values without another dependency: SHA-256 of the text
/// and of the text reversed, cut to 48 bytes.
mod sha2_free {
    pub fn sha384_like(text: &str) -> [u8; 48] {
        use cocoon_image::digest::Sha256;
        let a = Sha256::of(text.as_bytes()).0;
        let b = Sha256::of(text.chars().rev().collect::<String>().as_bytes()).0;
        let mut out = [0u8; 48];
        out[..32].copy_from_slice(&a);
        out[32..].copy_from_slice(&b[..16]);
        out
    }
}

fn xtask(chain: &[&str], args: &[&str]) -> Output {
    let all: Vec<&str> = args.iter().chain(chain.iter()).copied().collect();
    let out = xtask_in(&root(), &all);
    eprintln!(
        "$ cargo xtask {}\n{}{}",
        all.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "the command failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: &Output, why: &str) {
    assert!(!out.status.success(), "the command should have failed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(why), "expected `{why}` in:\n{stderr}");
}

#[test]
fn publish_verify_endorse_revoke_on_the_devnet() {
    if skip_without_node() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let owner = actor(tmp.path(), "owner", 1);
    let publisher = actor(tmp.path(), "publisher", 2);
    let auditor = actor(tmp.path(), "auditor", 3);
    let stranger = actor(tmp.path(), "stranger", 4);
    let fund: Vec<String> = [&owner, &publisher, &auditor, &stranger]
        .iter()
        .map(|a| a.wallet.address().to_string())
        .collect();
    let devnet = Devnet::start(&fund, API_KEY);
    let endpoint = devnet.endpoint.clone();
    let (_, registry) = sender::deploy_message(1, owner.wallet.address()).unwrap();
    let registry_s = registry.to_string();
    let chain = [
        "--network",
        &endpoint,
        "--api-key",
        API_KEY,
        "--registry",
        &registry_s,
    ];
    let key = |a: &Actor| a.key_file.to_str().unwrap().to_string();

    // The owner deploys and grants roles, through the real xtask.
    let deployed = ok(&xtask(
        &chain,
        &["registry", "deploy", "--key-file", &key(&owner)],
    ));
    assert!(
        deployed.contains(&format!("deployed: registry {registry_s}")),
        "{deployed}"
    );
    for (action, who) in [("add-publisher", &publisher), ("add-auditor", &auditor)] {
        let a = who.wallet.address().to_string();
        ok(&xtask(
            &chain,
            &["registry", action, &a, "--key-file", &key(&owner)],
        ));
    }
    let api = TonApi::new(&Network::Url(endpoint.clone()), Some(API_KEY.into()));
    let reader = Reader::new(&api, registry.clone());
    assert_eq!(reader.info().unwrap(), (1, owner.wallet.address().clone()));
    assert!(reader.is_publisher(publisher.wallet.address()).unwrap());
    assert!(reader.is_auditor(auditor.wallet.address()).unwrap());
    assert!(!reader.is_publisher(stranger.wallet.address()).unwrap());

    let image = tmp.path().join("image");
    let ms = write_manifest(&image, "release one", "0.1.0");
    let manifest = image.join("manifest.json");
    let manifest_s = manifest.to_str().unwrap();
    let image_s = image.to_str().unwrap();
    fails(
        &xtask(&chain, &["verify", "--chain", "--image", image_s]),
        "not in the registry",
    );

    // A dry run signs and prints, and sends nothing.
    let dry = ok(&xtask(
        &chain,
        &[
            "publish",
            "--manifest",
            manifest_s,
            "--dry-run",
            "--key-file",
            &key(&publisher),
        ],
    ));
    assert!(
        dry.contains("256 in 8 publish message(s)") && dry.contains("dry run: nothing sent"),
        "{dry}"
    );
    assert!(!reader.is_allowed(&ms[0]).unwrap());

    // xtask refuses a wallet that is not a publisher before sending.
    fails(
        &xtask(
            &chain,
            &[
                "publish",
                "--manifest",
                manifest_s,
                "--key-file",
                &key(&stranger),
            ],
        ),
        "is not a publisher",
    );
    // Sent anyway (bypassing that check), the registry refuses it in the
    // emulator: the stranger's wallet takes the message, the registry
    // bounces it, nothing is recorded.
    let release = Release {
        manifest_sha256: [7; 32],
        model_sha256: [0; 32],
        version: "0.1.0".into(),
    };
    let forged = sender::publish_messages(&registry, &release, &ms[..3], 0).unwrap();
    let s = Sender::new(&api, stranger.wallet.clone());
    s.send_all(&forged, |_| {}).unwrap();
    assert_eq!(
        s.state().unwrap().seqno,
        1,
        "the stranger's wallet took the message"
    );
    for m in &ms[..3] {
        assert!(!reader.is_allowed(m).unwrap());
        assert_eq!(reader.record(m).unwrap(), None);
    }

    // The publisher publishes; verify --chain passes.
    let published = ok(&xtask(
        &chain,
        &[
            "publish",
            "--manifest",
            manifest_s,
            "--key-file",
            &key(&publisher),
        ],
    ));
    assert!(
        published.contains("all 256 measurements are allowed"),
        "{published}"
    );
    let rec = reader.record(&ms[100]).unwrap().expect("a record");
    assert_eq!(rec.status, Status::Allowed);
    assert_eq!(rec.publisher, *publisher.wallet.address());
    assert_eq!(rec.version, "0.1.0");
    let manifest_sha = cocoon_image::digest::Sha256::of(&std::fs::read(&manifest).unwrap()).0;
    assert_eq!(rec.manifest_sha256, manifest_sha);
    assert_eq!(rec.model_sha256, [0; 32]);
    let verified = ok(&xtask(&chain, &["verify", "--chain", "--image", image_s]));
    assert!(verified.contains("256 of 256 allowed"), "{verified}");
    assert!(
        verified.contains(&publisher.wallet.address().to_string()),
        "{verified}"
    );

    // Another manifest claiming the same measurements is a conflict.
    let other = tmp.path().join("other");
    write_manifest(&other, "release one", "0.1.1");
    fails(
        &xtask(
            &chain,
            &[
                "publish",
                "--manifest",
                other.join("manifest.json").to_str().unwrap(),
                "--key-file",
                &key(&publisher),
            ],
        ),
        "published for another manifest",
    );
    fails(
        &xtask(
            &chain,
            &["verify", "--chain", "--image", other.to_str().unwrap()],
        ),
        "published for another manifest",
    );

    // Endorsements: none yet; the auditor endorses after its check.
    fails(
        &xtask(
            &chain,
            &[
                "verify",
                "--chain",
                "--image",
                image_s,
                "--min-endorsements",
                "1",
            ],
        ),
        "0 endorsement(s), 1 required",
    );
    fails(
        &xtask(
            &chain,
            &[
                "verify",
                "--chain",
                "--image",
                image_s,
                "--endorse",
                "--key-file",
                &key(&stranger),
            ],
        ),
        "is not an auditor",
    );
    ok(&xtask(
        &chain,
        &[
            "verify",
            "--chain",
            "--image",
            image_s,
            "--endorse",
            "--key-file",
            &key(&auditor),
        ],
    ));
    assert_eq!(reader.endorsement_count(&ms[255]).unwrap(), 1);
    assert!(reader.is_allowed_k(&ms[0], 1).unwrap());
    assert!(!reader.is_allowed_k(&ms[0], 2).unwrap());
    let json = ok(&xtask(
        &chain,
        &[
            "verify",
            "--chain",
            "--image",
            image_s,
            "--min-endorsements",
            "1",
            "--json",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["measurements"].as_array().unwrap().len(), 256);

    // Revocation: verify fails from then on.
    ok(&xtask(
        &chain,
        &[
            "registry",
            "revoke",
            "--manifest",
            manifest_s,
            "--key-file",
            &key(&publisher),
        ],
    ));
    assert!(!reader.is_allowed(&ms[0]).unwrap());
    assert_eq!(
        reader.record(&ms[0]).unwrap().unwrap().status,
        Status::Revoked
    );
    fails(
        &xtask(&chain, &["verify", "--chain", "--image", image_s]),
        "revoked",
    );

    // An address that is not the registry is refused before any lookup:
    // here the owner's wallet, which answers get methods but runs other code.
    let owner_s = owner.wallet.address().to_string();
    let not_registry = [
        "--network",
        &endpoint,
        "--api-key",
        API_KEY,
        "--registry",
        &owner_s,
    ];
    fails(
        &xtask(&not_registry, &["verify", "--chain", "--image", image_s]),
        "not the registry's",
    );

    // A wrong API key is named as such.
    let bad = TonApi::new(&Network::Url(endpoint.clone()), Some("wrong".into()));
    let e = Reader::new(&bad, registry)
        .is_allowed(&ms[0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("401") && e.contains("API key"), "{e}");
}

#[test]
fn rust_bocs_parse_in_ton_core_with_the_same_hashes() {
    if skip_without_node() {
        return;
    }
    cocoon_tests::devnet::ensure_npm_packages();
    let ms: Vec<Measurement> = (0..70u8)
        .map(|i| Measurement([i.wrapping_mul(37) ^ 0x5a; 48]))
        .collect();
    let hexes = |ms: &[Measurement]| ms.iter().map(|m| m.to_string()).collect::<Vec<_>>();
    let release = Release {
        manifest_sha256: [0xab; 32],
        model_sha256: [0xcd; 32],
        version: "1.2.3-rc.1".into(),
    };
    let owner = Wallet::new(SecretKey::from_seed([9; 32])).unwrap();
    let account = owner.address().clone();
    let mut entries = Vec::new();
    let mut push =
        |kind: &str, cell: &cocoon_measurements::registry::Cell, inputs: serde_json::Value| {
            entries.push(serde_json::json!({
                "kind": kind,
                "boc": boc_base64(cell).unwrap(),
                "hash": cell.cell_hash().to_hex(),
                "inputs": inputs,
            }));
        };
    for batch in [&ms[..1], &ms[..32]] {
        let body = messages::publish_body(42, &release, batch).unwrap();
        push(
            "publish",
            &body,
            serde_json::json!({
            "queryId": 42, "manifestHash": hex::encode(release.manifest_sha256),
            "modelHash": hex::encode(release.model_sha256), "version": release.version,
            "measurements": hexes(batch)}),
        );
    }
    push(
        "revoke",
        &messages::revoke_body(1, &ms[3..9]).unwrap(),
        serde_json::json!({"queryId": 1, "measurements": hexes(&ms[3..9])}),
    );
    push(
        "endorse",
        &messages::endorse_body(2, &ms[..2]).unwrap(),
        serde_json::json!({"queryId": 2, "measurements": hexes(&ms[..2])}),
    );
    for (op, name) in [
        (RoleOp::AddPublisher, "addPublisher"),
        (RoleOp::RemoveAuditor, "removeAuditor"),
        (RoleOp::TransferOwnership, "transferOwnership"),
    ] {
        push(
            "role",
            &messages::role_body(op, 5, &account).unwrap(),
            serde_json::json!({"queryId": 5, "op": name, "account": account.to_string()}),
        );
    }
    let (_, registry) = contract::state_init(3, &account).unwrap();
    push(
        "registry-data",
        &contract::initial_data(3, &account).unwrap(),
        serde_json::json!({
        "registryId": 3, "owner": account.to_string(), "registryAddress": registry.to_hex()}),
    );
    // Signed wallet messages: a deploying one (state init) with the
    // registry deploy, and a plain one with four publish messages.
    let (deploy, _) = sender::deploy_message(3, &account).unwrap();
    let ext = owner
        .external_message(0, 1_900_000_000, true, &[deploy])
        .unwrap();
    push(
        "external",
        &ext,
        serde_json::json!({"wallet": account.to_string()}),
    );
    let publish = sender::publish_messages(&registry, &release, &ms[..32], 0).unwrap();
    let four: Vec<_> = (0..4).map(|_| publish[0].clone()).collect();
    let ext = owner
        .external_message(7, 1_900_000_000, false, &four)
        .unwrap();
    push(
        "external",
        &ext,
        serde_json::json!({"wallet": account.to_string()}),
    );

    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bocs.json");
    std::fs::write(&file, serde_json::to_string_pretty(&entries).unwrap()).unwrap();
    let out = Command::new("node")
        .arg("scripts/check-rust-bocs.js")
        .arg(&file)
        .current_dir(contract_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "@ton/core disagrees");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("same ")).count(),
        entries.len() + 1
    );
}
