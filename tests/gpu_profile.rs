//! The GPU profile's refusal, end to end: the CPU image with
//! `cocoon.gpu=required` added to its command line (manifest updated to
//! match, as a GPU image's would be) boots under `--dev`, finds no NVIDIA
//! module, says so on the console, and powers off; the host reports the
//! reason. No GPU image build is needed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cocoon_image::digest::Sha256;
use cocoon_tests::{copy_image, host_bin, image, require_qemu};

#[test]
fn a_gpu_image_without_an_nvidia_module_powers_off_saying_why() {
    require_qemu();
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("image");
    copy_image(image(), &img);
    let cmdline = format!(
        "{} cocoon.gpu=required",
        std::fs::read_to_string(img.join("cmdline")).unwrap()
    );
    std::fs::write(img.join("cmdline"), &cmdline).unwrap();
    let manifest_path = img.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    m["cmdline"] = cmdline.clone().into();
    for a in m["artifacts"].as_array_mut().unwrap() {
        if a["name"] == "cmdline" {
            a["sha256"] = Sha256::of(cmdline.as_bytes()).to_hex().into();
            a["size"] = cmdline.len().into();
        }
    }
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();

    // Spawned with a deadline: a guest that ignored `cocoon.gpu` would
    // serve, and `boot` would supervise it forever.
    let run = tmp.path().join("run");
    let log = tmp.path().join("host.log");
    let mut child = Command::new(host_bin())
        .args(["boot", "--image"])
        .arg(&img)
        .args(["--name", "gpu-required", "--run-dir"])
        .arg(&run)
        .args(["--dev", "--port", "0"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = Command::new(host_bin())
                .args(["stop", "--name", "gpu-required", "--run-dir"])
                .arg(&run)
                .status();
            let _ = child.kill();
            panic!(
                "a GPU image without a GPU did not power off:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("the guest stopped") && err.contains("no NVIDIA module"),
        "{err}"
    );
    let reason = err.lines().find(|l| l.contains("no NVIDIA module"));
    eprintln!("{}", reason.unwrap_or_default());
}
