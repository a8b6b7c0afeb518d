//! End to end: `cargo xtask build` → `cocoon-host boot --dev` → HTTPS
//! `/health` → a clean power-off. Runs under KVM where the host has it and
//! under TCG otherwise; always runs.

use std::time::Duration;

use cocoon_tests::vm::BootedVm;
use cocoon_tests::{host_bin, host_boot, image, require_qemu};

#[test]
fn boots_answers_over_tls_and_stops_via_the_stop_command() {
    require_qemu();
    let mut vm = BootedVm::boot(image(), "e2e-stop");
    let ready = vm.wait_for("ready", Duration::from_secs(1));
    let timeline = &ready["timeline"];
    eprintln!("accel {}, timeline {timeline}", ready["accel"]);
    for k in [
        "qemu_and_firmware_ms",
        "kernel_ms",
        "init_to_listening_ms",
        "total_ms",
    ] {
        assert!(
            timeline[k].as_u64().is_some(),
            "timeline lacks {k}: {timeline}"
        );
    }

    // The guest answers a client that pins its announced certificate...
    let (status, body) = vm.get("/health", &vm.cert_sha256).unwrap();
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    let (status, _) = vm.get("/no-such-path", &vm.cert_sha256).unwrap();
    assert_eq!(status, 404);
    // ...and the pin is real: another fingerprint fails the handshake.
    let err = vm.get("/health", &"0".repeat(64)).unwrap_err();
    assert!(err.contains("not the pinned"), "{err}");

    // Attestation: the dev guest has no SEV-SNP and says so. `attest`
    // refuses it by default and accepts it only when told to, saying so.
    let attest = |extra: &[&str]| {
        std::process::Command::new(host_bin())
            .args([
                "attest",
                &format!("https://127.0.0.1:{}", vm.port),
                "--offline",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = attest(&[]);
    let text = String::from_utf8_lossy(&refused.stdout).to_string()
        + &String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{text}");
    assert!(text.contains("without SEV-SNP"), "{text}");
    let allowed = attest(&["--allow-unattested", "--json"]);
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    let verdict: serde_json::Value = serde_json::from_slice(&allowed.stdout).unwrap();
    assert_eq!(verdict["accepted"], true);
    assert_eq!(verdict["attestation"]["verdict"]["platform"], "unattested");
    assert!(
        verdict["attestation"]["verdict"]["reason"]
            .as_str()
            .unwrap()
            .contains("/dev/sev-guest"),
        "{verdict}"
    );

    // A second VM under the same name is refused before anything starts.
    let second = host_boot(image(), &vm.run_dir, &vm.name, &["--dev", "--port", "0"]);
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("already running"));

    let stop = std::process::Command::new(host_bin())
        .args(["stop", "--name", &vm.name, "--run-dir"])
        .arg(&vm.run_dir)
        .output()
        .unwrap();
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let status = vm.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "cocoon-host boot exited with {status}: {:#?}",
        vm.events
    );
    let stopped = vm.wait_for("stopped", Duration::from_secs(1));
    assert_eq!(stopped["clean"], true);
    let serial = std::fs::read_to_string(vm.run_dir.join("serial.log")).unwrap();
    assert!(
        serial.contains(r#""event":"stopping","reason":"ACPI button/power""#),
        "{serial}"
    );
}

#[test]
fn ctrl_c_powers_the_guest_off_cleanly() {
    require_qemu();
    let mut vm = BootedVm::boot(image(), "e2e-ctrl-c");
    vm.signal(libc::SIGINT);
    let status = vm.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "cocoon-host boot exited with {status}: {:#?}",
        vm.events
    );
    assert_eq!(
        vm.wait_for("stopped", Duration::from_secs(1))["clean"],
        true
    );
}
