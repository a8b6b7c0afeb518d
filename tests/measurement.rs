//! The SEV-SNP measurement of the real image: cross-checked with the
//! Python `sev-snp-measure` over every shape in the manifest, and the host's
//! refusals of launches that nobody could verify.

use std::collections::BTreeMap;
use std::process::Command;

use cocoon_image::manifest::Manifest;
use cocoon_tests::{copy_image, host_boot, image, python_with_sev_snp_measure, root, xtask_in};

#[test]
fn every_manifest_measurement_matches_python_sev_snp_measure() {
    let img = image();
    let manifest = Manifest::load(img).unwrap();
    assert_eq!(
        manifest.measurements.len(),
        256,
        "1-64 vCPUs x 4 CPU models"
    );
    let out = Command::new(python_with_sev_snp_measure())
        .arg(root().join("tests/tools/sev_snp_measure_table.py"))
        .arg(img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python: BTreeMap<(u32, String), String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let key = (
                v["vcpus"].as_u64().unwrap() as u32,
                v["cpu_type"].as_str().unwrap().to_string(),
            );
            (key, v["measurement"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(python.len(), manifest.measurements.len());
    for r in &manifest.measurements {
        assert_eq!(
            python[&(r.vcpus, r.cpu_type.clone())],
            r.measurement,
            "{} vCPUs on {}",
            r.vcpus,
            r.cpu_type
        );
    }
}

#[test]
fn xtask_measure_prints_the_manifest_value_and_refuses_bad_shapes() {
    let img = image();
    let manifest = Manifest::load(img).unwrap();
    let row = manifest
        .measurements
        .iter()
        .find(|r| r.vcpus == 4 && r.cpu_type == "EPYC-Milan")
        .unwrap();
    for extra in [&[][..], &["--reference"][..]] {
        let mut args = vec![
            "measure",
            "--vcpus",
            "4",
            "--cpu-type",
            "EPYC-Milan",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = xtask_in(&root(), &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["measurement"], row.measurement.as_str());
        assert_eq!(v["in_manifest"], true);
    }
    for (args, says) in [
        (
            &["measure", "--vcpus", "0", "--cpu-type", "EPYC-v4"][..],
            "vCPUs",
        ),
        (
            &["measure", "--vcpus", "2", "--cpu-type", "EPYC-Rome"][..],
            "unknown CPU type",
        ),
        (
            &[
                "measure",
                "--vcpus",
                "2",
                "--cpu-type",
                "EPYC-v4",
                "--guest-features",
                "0xzz",
            ][..],
            "hex",
        ),
    ] {
        let out = xtask_in(&root(), args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{args:?}: {err}"
        );
    }
}

fn snp_boot(img: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = vec!["--cbitpos", "51", "--reduced-phys-bits", "1"];
    args.extend_from_slice(extra);
    host_boot(img, &tmp.path().join("run"), "snp-test", &args)
}

#[test]
fn the_snp_command_line_carries_the_measured_shape() {
    let out = snp_boot(
        image(),
        &[
            "--vcpus",
            "8",
            "--cpu-type",
            "EPYC-Genoa",
            "--memory",
            "16G",
            "--print-qemu-args",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let args = String::from_utf8_lossy(&out.stdout);
    for want in [
        "sev-snp-guest,id=sev0,policy=0x30000,cbitpos=51,reduced-phys-bits=1,kernel-hashes=on",
        "\n-cpu\nEPYC-Genoa\n",
        "\n-smp\n8\n",
        "memory-backend-memfd,id=ram0,size=16384M",
        "/OVMF.fd\n",
    ] {
        assert!(args.contains(want), "missing {want:?} in:\n{args}");
    }
}

#[test]
fn unmeasured_shapes_and_inconsistent_manifests_are_refused() {
    let out = snp_boot(
        image(),
        &[
            "--vcpus",
            "65",
            "--cpu-type",
            "EPYC-Genoa",
            "--print-qemu-args",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not measured for 65 vCPUs on EPYC-Genoa"),
        "{err}"
    );

    // A manifest whose measurement was edited: the artifacts still match it,
    // but the recomputed digest does not.
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("image");
    copy_image(image(), &img);
    let path = img.join("manifest.json");
    let mut manifest = Manifest::load(&img).unwrap();
    let row = manifest
        .measurements
        .iter_mut()
        .find(|r| r.vcpus == 2 && r.cpu_type == "EPYC-v4")
        .unwrap();
    row.measurement = "00".repeat(48);
    std::fs::write(&path, manifest.to_json()).unwrap();
    let out = snp_boot(&img, &["--vcpus", "2", "--cpu-type", "EPYC-v4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("the image measures"),
        "{err}"
    );

    // A tampered firmware is refused like any artifact.
    cocoon_tests::flip_byte(&img.join("OVMF.fd"));
    let out = snp_boot(
        &img,
        &["--vcpus", "2", "--cpu-type", "EPYC-v4", "--print-qemu-args"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("OVMF.fd") && err.contains("does not match"),
        "{err}"
    );
}

/// Without SEV, QEMU writes no table of kernel hashes, and the AmdSev
/// firmware must then refuse the kernel QEMU hands it: booting it here
/// proves the firmware we build enforces `kernel-hashes` (fail closed).
#[test]
fn the_snp_firmware_refuses_a_kernel_it_cannot_verify() {
    cocoon_tests::require_qemu();
    let img = image();
    let tmp = tempfile::tempdir().unwrap();
    let serial = tmp.path().join("serial.log");
    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-nodefaults",
            "-display",
            "none",
            "-machine",
            "q35,accel=tcg",
            "-cpu",
            "max",
            "-m",
            "512M",
        ])
        .arg("-bios")
        .arg(img.join("OVMF.fd"))
        .arg("-kernel")
        .arg(img.join("vmlinuz"))
        .arg("-initrd")
        .arg(img.join("initrd.img"))
        .args(["-append", "console=ttyS0", "-no-reboot", "-serial"])
        .arg(format!("file:{}", serial.display()))
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while std::time::Instant::now() < end && qemu.try_wait().unwrap().is_none() {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    let log = std::fs::read_to_string(&serial).unwrap_or_default();
    assert!(log.contains("BdsDxe"), "the firmware did not run:\n{log}");
    assert!(
        !log.contains("Linux version") && !log.contains("cocoon-event"),
        "an unverified kernel ran:\n{log}"
    );
}
