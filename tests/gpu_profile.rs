//! The GPU profile's refusals, end to end under `--dev` (no GPU here):
//!
//! - the GPU image itself (`cargo xtask build --profile gpu`): its
//!   dynamically linked `/init`, byte for byte the CPU image's, starts on
//!   the image's own loader and glibc,
//!   the NVIDIA modules the build compiled load into the pinned kernel, find
//!   no GPU, and the guest says so and powers off;
//! - the CPU image with `cocoon.gpu=required` added to its command line
//!   (manifest updated to match): it has none of the driver's libraries,
//!   and the guest refuses before touching any module.
//!
//! The host reports the guest's reason in both.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cocoon_image::digest::Sha256;
use cocoon_image::{elf, initramfs, newc};
use cocoon_tests::{copy_image, host_bin, image, require_qemu, root, xtask_in};

/// `cargo xtask build --profile gpu`, once per test process.
fn gpu_image() -> &'static Path {
    static IMAGE: OnceLock<std::path::PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let out = xtask_in(&root(), &["build", "--profile", "gpu"]);
        assert!(
            out.status.success(),
            "cargo xtask build --profile gpu failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        root().join("target/cocoon/gpu")
    })
}

/// `cocoon-host boot --dev` of `img`, which must power off by itself within
/// the deadline; its exit status and what the host printed.
fn boot_until_it_stops(img: &Path, name: &str, tmp: &Path) -> (ExitStatus, String) {
    // Spawned with a deadline: a guest that ignored `cocoon.gpu` would
    // serve, and `boot` would supervise it forever.
    let run = tmp.join("run");
    let log = tmp.join("host.log");
    let mut child = Command::new(host_bin())
        .args(["boot", "--image"])
        .arg(img)
        .args(["--name", name, "--run-dir"])
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
                .args(["stop", "--name", name, "--run-dir"])
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
    (status, std::fs::read_to_string(&log).unwrap())
}

#[test]
fn the_gpu_image_without_a_gpu_powers_off_saying_why() {
    require_qemu();
    let img = gpu_image();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(img.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["profile"], "gpu");
    let files = manifest["initramfs"]["files"].as_array().unwrap();
    for wanted in [
        "/updates/dkms/nvidia.ko",
        "/updates/dkms/nvidia-uvm.ko",
        "lib/firmware/nvidia/",
        "lib/x86_64-linux-gnu/libcuda.so.1",
        "lib/x86_64-linux-gnu/libnvidia-ml.so.1",
    ] {
        assert!(
            files
                .iter()
                .any(|f| f["path"].as_str().unwrap().contains(wanted)),
            "the GPU initramfs lists no {wanted}"
        );
    }

    // `/init` is linked dynamically (libcuda fails in a static program),
    // against a loader and libraries the initramfs holds; the boot below
    // is what proves they suffice.
    let cpio = initramfs::decompress(&std::fs::read(img.join("initrd.img")).unwrap()).unwrap();
    let entries = newc::parse(&cpio).unwrap();
    let entry = |name: &str| entries.iter().find(|e| e.name == name);
    let init = elf::linkage(&entry("init").expect("an /init").data).unwrap();
    let loader = init
        .interpreter
        .clone()
        .expect("a dynamically linked /init");
    let loader_entry =
        entry(&loader[1..]).unwrap_or_else(|| panic!("no {loader} in the initramfs"));
    assert_eq!(
        loader_entry.mode & 0o777,
        0o755,
        "the loader must be executable"
    );
    for lib in &init.needed {
        assert!(
            entry(&format!("lib/x86_64-linux-gnu/{lib}")).is_some(),
            "/init needs {lib}, which the initramfs lacks"
        );
    }
    assert!(init.needed.iter().any(|l| l == "libc.so.6"), "{init:?}");
    // It carries the engine's CUDA kernels, compiled ahead of time (a
    // fatbin of SASS), and links no CUDA library: cudarc opens libcuda at
    // run time, so the same binary starts where there is none.
    let init_bytes = &entry("init").unwrap().data;
    let has = |needle: &[u8]| init_bytes.windows(needle.len()).any(|w| w == needle);
    assert!(
        has(&[0x50, 0xed, 0x55, 0xba]) && has(b".text.matvec_q4_0_1"),
        "/init carries no compiled CUDA kernels"
    );
    for lib in &init.needed {
        assert!(
            !["libcuda", "libcudart", "libcublas", "libnvrtc", "libcurand"]
                .iter()
                .any(|cuda| lib.starts_with(cuda)),
            "/init links {lib}: the image's engine must open libcuda at run time instead"
        );
    }
    // One `/init` for both profiles: the CPU image's boot and inference
    // tests run the very program a GPU machine runs.
    let cpu_cpio =
        initramfs::decompress(&std::fs::read(image().join("initrd.img")).unwrap()).unwrap();
    let cpu_entries = newc::parse(&cpu_cpio).unwrap();
    let cpu_init = cpu_entries.iter().find(|e| e.name == "init").unwrap();
    assert!(
        cpu_init.data == entry("init").unwrap().data,
        "the CPU and GPU images carry different /init binaries"
    );

    let tmp = tempfile::tempdir().unwrap();
    let (status, err) = boot_until_it_stops(img, "gpu-image", tmp.path());
    assert!(!status.success(), "{err}");
    // nvidia.ko loaded far enough to look for a device: its vermagic,
    // symbols and format suit the pinned kernel.
    assert!(
        err.contains("the guest stopped") && err.contains("no NVIDIA GPU"),
        "{err}"
    );
    let reason = err.lines().find(|l| l.contains("no NVIDIA GPU"));
    eprintln!("{}", reason.unwrap_or_default());
}

#[test]
fn a_cpu_image_told_to_require_a_gpu_powers_off_saying_why() {
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

    let (status, err) = boot_until_it_stops(&img, "gpu-required", tmp.path());
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("the guest stopped")
            && err.contains("this image's libnvidia-ml.so.1 does not load"),
        "{err}"
    );
    let reason = err.lines().find(|l| l.contains("does not load"));
    eprintln!("{}", reason.unwrap_or_default());
}
