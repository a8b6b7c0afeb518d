//! Image profiles: what each kind of image contains.
//!
//! A profile is data, not code paths: the kernel input it boots, the
//! modules its `/init` loads, the measured kernel command line, and for the
//! GPU profile the NVIDIA driver stack ([`GpuStack`]).

/// One image profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub name: &'static str,
    /// The `inputs.lock` input that provides `vmlinuz` and the modules.
    pub kernel_input: &'static str,
    /// The `inputs.lock` source the SNP firmware (`OVMF.fd`) is built from.
    pub firmware_input: &'static str,
    /// Modules the guest needs; their dependencies are added and everything
    /// is loaded in dependency order.
    pub modules: &'static [&'static str],
    /// The kernel command line. It is measured: it carries only what must be
    /// trusted, never host-specific settings.
    pub cmdline: &'static str,
    /// The most `initrd.img` may weigh (compressed), in bytes; the build
    /// fails above it.
    pub initrd_budget: u64,
    /// The zstd level of `initrd.img` (the build's slowest step on a big
    /// initramfs).
    pub zstd_level: i32,
    /// The launch shapes whose SNP measurement the manifest lists (and
    /// that `cocoon-host` agrees to boot): every vCPU count in the range,
    /// times every CPU model, with these guest features.
    pub measured_vcpus: (u32, u32),
    pub measured_cpu_types: &'static [&'static str],
    pub guest_features: u64,
    /// How `/init` is built, and what it needs in the image.
    pub init: &'static InitBuild,
    /// The NVIDIA driver stack, for a GPU image.
    pub gpu: Option<&'static GpuStack>,
}

/// How `/init` (the `cocoon-guest` binary) is compiled, and what the image
/// must hold for it to start.
#[derive(Debug, PartialEq, Eq)]
pub struct InitBuild {
    /// The cargo profile (in the workspace's Cargo.toml).
    pub cargo_profile: &'static str,
    /// The loader `/init` names (its `PT_INTERP`): linked dynamically, it
    /// starts on the image's own glibc.
    pub interpreter: &'static str,
    /// The packages whose files `/init` loads: glibc and the unwinder.
    pub runtime: &'static [DebInput],
    /// The cargo features `cocoon-guest` is built with.
    pub features: &'static [&'static str],
    /// The compiler of the engine's CUDA kernels (the `cuda` feature).
    pub cuda: &'static CudaToolkit,
}

/// The CUDA compiler the engine's kernels are built with, ahead of time:
/// nothing of it goes into an image but the kernels' SASS, inside `/init`.
/// nvcc itself is in Debian only (trixie's `nvidia-cuda-toolkit`; PyPI's
/// CUDA 12 wheels carry no nvcc), the headers it includes only in PyPI's
/// wheels (Debian's are in the 934 MB `nvidia-cuda-dev`).
#[derive(Debug, PartialEq, Eq)]
pub struct CudaToolkit {
    /// nvcc and the tools `nvcc --fatbin` runs: `(path in the package,
    /// path in the assembled toolkit)`.
    pub compiler: DebInput,
    /// The headers, by folder: `(folder in the wheel, folder in the
    /// toolkit)`.
    pub headers: &'static [WheelInput],
}

/// A PyPI wheel the build takes files from.
#[derive(Debug, PartialEq, Eq)]
pub struct WheelInput {
    /// Its name in `inputs.lock`.
    pub name: &'static str,
    pub project: &'static str,
    pub version: &'static str,
    /// `(folder in the wheel, folder it is copied to)`.
    pub folders: &'static [(&'static str, &'static str)],
}

/// CUDA 12.4: the release of the R550 driver the GPU image carries (a
/// kernel built by a newer toolkit may need a newer driver).
pub const CUDA_12_4: CudaToolkit = CudaToolkit {
    compiler: DebInput {
        name: "cuda-compiler",
        package: "nvidia-cuda-toolkit",
        suite: "trixie",
        component: "non-free",
        nvidia: false,
        files: &[
            ("usr/lib/nvidia-cuda-toolkit/bin/nvcc", "bin/nvcc"),
            ("usr/bin/ptxas", "bin/ptxas"),
            ("usr/bin/fatbinary", "bin/fatbinary"),
            ("usr/lib/nvidia-cuda-toolkit/bin/cicc", "nvvm/bin/cicc"),
            (
                "usr/lib/nvidia-cuda-toolkit/libdevice/libdevice.10.bc",
                "nvvm/libdevice/libdevice.10.bc",
            ),
        ],
    },
    headers: &[
        // cuda_runtime.h (which nvcc includes in every file), cuda_fp16.h.
        WheelInput {
            name: "cuda-runtime-headers",
            project: "nvidia-cuda-runtime-cu12",
            version: "12.4.127",
            folders: &[("nvidia/cuda_runtime/include", "include")],
        },
        // crt/, which cuda_runtime.h includes.
        WheelInput {
            name: "cuda-crt-headers",
            project: "nvidia-cuda-nvcc-cu12",
            version: "12.4.131",
            folders: &[("nvidia/cuda_nvcc/include/crt", "include/crt")],
        },
        // nv/target, which cuda_fp16.h includes. 12.4.127.post1: the
        // 12.4.127 wheel lacks the extension-less headers.
        WheelInput {
            name: "cuda-cccl-headers",
            project: "nvidia-cuda-cccl-cu12",
            version: "12.4.127.post1",
            folders: &[("nvidia/cuda_cccl/include/nv", "include/nv")],
        },
    ],
};

/// The one `/init` of every profile. It is linked dynamically because
/// libcuda fails in a statically linked program (`cuInit` returns
/// CUDA_ERROR_OPERATING_SYSTEM; bench/gpu/static-libcuda/), and the CPU
/// profile runs the very same binary: one compile serves both images, and
/// the CPU image's boots test the program a GPU machine runs (docs/image.md).
pub const INIT: InitBuild = InitBuild {
    cargo_profile: "guest",
    // Where Debian's libc6 installs it; the toolchain's default, /lib64/…,
    // is only a symlink there.
    interpreter: "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    runtime: &[
        // The glibc the guest was built against (the build checks the
        // release). libdl, libpthread and librt are empty since glibc 2.34
        // but still named by NVIDIA's libraries.
        DebInput {
            name: "glibc",
            package: "libc6",
            suite: "bookworm",
            component: "main",
            nvidia: false,
            files: &[
                (
                    "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                    "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                ),
                (
                    "lib/x86_64-linux-gnu/libc.so.6",
                    "lib/x86_64-linux-gnu/libc.so.6",
                ),
                (
                    "lib/x86_64-linux-gnu/libm.so.6",
                    "lib/x86_64-linux-gnu/libm.so.6",
                ),
                (
                    "lib/x86_64-linux-gnu/libdl.so.2",
                    "lib/x86_64-linux-gnu/libdl.so.2",
                ),
                (
                    "lib/x86_64-linux-gnu/libpthread.so.0",
                    "lib/x86_64-linux-gnu/libpthread.so.0",
                ),
                (
                    "lib/x86_64-linux-gnu/librt.so.1",
                    "lib/x86_64-linux-gnu/librt.so.1",
                ),
            ],
        },
        // The unwinder Rust's standard library links dynamically.
        DebInput {
            name: "libgcc",
            package: "libgcc-s1",
            suite: "bookworm",
            component: "main",
            nvidia: false,
            files: &[(
                "lib/x86_64-linux-gnu/libgcc_s.so.1",
                "lib/x86_64-linux-gnu/libgcc_s.so.1",
            )],
        },
    ],
    // The engine's own CUDA path, libcuda opened at run time: where there
    // is none (the CPU image) it serves from the CPU.
    features: &["cuda"],
    cuda: &CUDA_12_4,
};

/// What a GPU image adds: open kernel modules compiled by the build against
/// the pinned kernel's headers, and the files the driver loads at run time.
#[derive(Debug, PartialEq, Eq)]
pub struct GpuStack {
    /// The `inputs.lock` input holding the modules' DKMS source.
    pub module_source: DebInput,
    /// The modules built from it that the image loads, in load order.
    pub modules: &'static [&'static str],
    /// Packages whose files the image carries as they are.
    pub runtime: &'static [DebInput],
    /// The most the uncompressed initramfs may weigh, in bytes.
    pub initramfs_budget: u64,
}

/// One Debian binary package an image takes files from.
#[derive(Debug, PartialEq, Eq)]
pub struct DebInput {
    /// Its name in `inputs.lock`.
    pub name: &'static str,
    pub package: &'static str,
    /// Where `cargo xtask lock` looks for it.
    pub suite: &'static str,
    pub component: &'static str,
    /// Whether it is part of the NVIDIA driver release, whose packages must
    /// all be of one version (the modules, firmware and libraries talk a
    /// private, per-release protocol).
    pub nvidia: bool,
    /// `(path in the package, path in the image)`; `{upstream}` stands for
    /// the package's upstream version (`550.163.01` of `550.163.01-4`).
    pub files: &'static [(&'static str, &'static str)],
}

impl DebInput {
    /// `files` with `{upstream}` filled in from the Debian `version`.
    pub fn resolved_files(&self, version: &str) -> Vec<(String, String)> {
        let upstream = upstream_version(version);
        self.files
            .iter()
            .map(|(from, to)| {
                (
                    from.replace("{upstream}", upstream),
                    to.replace("{upstream}", upstream),
                )
            })
            .collect()
    }
}

/// `550.163.01` from `550.163.01-4~bpo13+1`, `2.36` from `2.36-9+deb12u14`.
pub fn upstream_version(version: &str) -> &str {
    let no_epoch = version.split_once(':').map_or(version, |(_, v)| v);
    no_epoch.rsplit_once('-').map_or(no_epoch, |(u, _)| u)
}

/// The header packages a kernel release's out-of-tree modules build against:
/// the flavour's, the common tree it includes, and kbuild's tools.
pub fn kernel_header_packages(release: &str) -> Result<[String; 3], String> {
    // 6.12.95+deb12-cloud-amd64 → 6.12.95+deb12 and its flavour.
    let (base, _flavour) = release
        .split_once('-')
        .ok_or_else(|| format!("kernel release `{release}` has no flavour"))?;
    Ok([
        format!("linux-headers-{release}"),
        format!("linux-headers-{base}-common"),
        format!("linux-kbuild-{base}"),
    ])
}

/// The `inputs.lock` names of [`kernel_header_packages`], in that order.
pub const KERNEL_HEADER_INPUTS: [&str; 3] =
    ["kernel-headers", "kernel-headers-common", "kernel-kbuild"];

/// R550, the first branch where H100 confidential computing is generally
/// available; Debian ships it in trixie(-backports), and its libraries need
/// only glibc 2.34.
pub const NVIDIA_R550: GpuStack = GpuStack {
    module_source: DebInput {
        name: "nvidia-kernel-source",
        package: "nvidia-open-kernel-dkms",
        suite: "trixie-backports",
        component: "contrib",
        nvidia: true,
        files: &[],
    },
    modules: &["nvidia", "nvidia-uvm"],
    runtime: &[
        // GH100's GSP firmware (gsp_tu10x.bin is for Turing).
        DebInput {
            name: "nvidia-firmware",
            package: "firmware-nvidia-gsp",
            suite: "trixie-backports",
            component: "non-free-firmware",
            nvidia: true,
            files: &[(
                "usr/lib/firmware/nvidia/{upstream}/gsp_ga10x.bin",
                "lib/firmware/nvidia/{upstream}/gsp_ga10x.bin",
            )],
        },
        DebInput {
            name: "nvidia-libcuda",
            package: "libcuda1",
            suite: "trixie-backports",
            component: "non-free",
            nvidia: true,
            files: &[(
                "usr/lib/x86_64-linux-gnu/nvidia/current/libcuda.so.{upstream}",
                "lib/x86_64-linux-gnu/libcuda.so.1",
            )],
        },
        // NVML: the CC state, the evidence, the ready state.
        DebInput {
            name: "nvidia-libnvml",
            package: "libnvidia-ml1",
            suite: "trixie-backports",
            component: "non-free",
            nvidia: true,
            files: &[(
                "usr/lib/x86_64-linux-gnu/nvidia/current/libnvidia-ml.so.{upstream}",
                "lib/x86_64-linux-gnu/libnvidia-ml.so.1",
            )],
        },
        // libcuda opens it for the CC-mode session crypto.
        DebInput {
            name: "nvidia-pkcs11",
            package: "libnvidia-pkcs11-openssl3",
            suite: "trixie-backports",
            component: "non-free",
            nvidia: true,
            files: &[(
                "usr/lib/x86_64-linux-gnu/libnvidia-pkcs11-openssl3.so.{upstream}",
                "lib/x86_64-linux-gnu/libnvidia-pkcs11-openssl3.so.{upstream}",
            )],
        },
        DebInput {
            name: "libcrypto",
            package: "libssl3",
            suite: "bookworm",
            component: "main",
            nvidia: false,
            files: &[(
                "usr/lib/x86_64-linux-gnu/libcrypto.so.3",
                "lib/x86_64-linux-gnu/libcrypto.so.3",
            )],
        },
    ],
    initramfs_budget: 160 << 20,
};

/// Inference on the CPU: the profile every machine can build and boot.
pub const CPU: Profile = Profile {
    name: "cpu",
    kernel_input: "kernel",
    firmware_input: "firmware",
    // virtio_net: the one network interface. button: the ACPI power button,
    // so that the host's QMP `system_powerdown` reaches /init. sev-guest
    // (with tsm): attestation reports under SEV-SNP; without SNP it finds
    // no device and the guest goes on unattested.
    modules: &["virtio_net", "virtio_blk", "button", "sev-guest"],
    // quiet: serial output is slow under emulation; warnings still print.
    // panic=-1: a kernel panic stops the VM at once instead of hanging.
    cmdline: "console=ttyS0 quiet panic=-1",
    initrd_budget: 8 << 20,
    zstd_level: 19,
    measured_vcpus: (1, 64),
    measured_cpu_types: &["EPYC-v4", "EPYC-Milan", "EPYC-Genoa", "EPYC-Turin"],
    // SNPActive: what QEMU >= 9.1 sets.
    guest_features: 0x1,
    init: &INIT,
    gpu: None,
};

/// Inference on an NVIDIA GPU in confidential-computing mode: the CPU
/// profile plus the driver stack, with `cocoon.gpu=required` measured so
/// that the image refuses a GPU outside CC mode (see guest/src/gpu).
pub const GPU: Profile = Profile {
    name: "gpu",
    cmdline: "console=ttyS0 quiet panic=-1 cocoon.gpu=required",
    // 40 MiB today: the GSP firmware (37 MB) and libcuda (29 MB) are most
    // of the 106 MiB it unpacks to.
    initrd_budget: 48 << 20,
    // Level 19 saves 2 MB (5 %) over 9 and costs 40-80 s more per build on
    // two cores (three builds in a CI run).
    zstd_level: 9,
    gpu: Some(&NVIDIA_R550),
    ..CPU
};

pub const ALL: &[Profile] = &[CPU, GPU];

impl Profile {
    /// Every package whose files the image carries as they are: what
    /// `/init` loads, then the driver stack's.
    pub fn runtime(&self) -> impl Iterator<Item = &'static DebInput> {
        let gpu = self.gpu.map_or(&[][..], |g| g.runtime);
        self.init.runtime.iter().chain(gpu)
    }
}

pub fn by_name(name: &str) -> Option<&'static Profile> {
    ALL.iter().find(|p| p.name == name)
}

/// Checks a command line the way the measurement needs it: printable ASCII,
/// no newline, no leading or trailing whitespace, no doubled spaces (the
/// SEV kernel-hashes table hashes the exact bytes, and tools disagree on
/// trimming).
pub fn check_cmdline(cmdline: &str) -> Result<(), String> {
    if cmdline.trim() != cmdline {
        return Err("the kernel command line has leading or trailing whitespace".into());
    }
    if let Some(c) = cmdline.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(format!(
            "the kernel command line holds {c:?}: only printable ASCII is allowed"
        ));
    }
    if cmdline.contains("  ") {
        return Err("the kernel command line has doubled spaces".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_have_valid_command_lines() {
        for p in ALL {
            check_cmdline(p.cmdline).unwrap();
            assert!((1..=crate::initramfs::MAX_ZSTD_LEVEL).contains(&p.zstd_level));
            assert_eq!(by_name(p.name), Some(p));
        }
        assert_eq!(by_name("tpu"), None);
    }

    #[test]
    fn versions_and_header_packages() {
        assert_eq!(upstream_version("550.163.01-4~bpo13+1"), "550.163.01");
        assert_eq!(upstream_version("2.36-9+deb12u14"), "2.36");
        assert_eq!(upstream_version("1:2.0-1"), "2.0");
        assert_eq!(upstream_version("7"), "7");
        let [flavour, common, kbuild] =
            kernel_header_packages("6.12.95+deb12-cloud-amd64").unwrap();
        assert_eq!(flavour, "linux-headers-6.12.95+deb12-cloud-amd64");
        assert_eq!(common, "linux-headers-6.12.95+deb12-common");
        assert_eq!(kbuild, "linux-kbuild-6.12.95+deb12");
        assert!(kernel_header_packages("6.12").is_err());
    }

    #[test]
    fn gpu_inputs_have_unique_names_and_image_paths() {
        let stack = GPU.gpu.unwrap();
        let mut names = std::collections::BTreeSet::new();
        let mut paths = std::collections::BTreeSet::new();
        for input in std::iter::once(&stack.module_source).chain(GPU.runtime()) {
            assert!(names.insert(input.name), "{}", input.name);
            for (from, to) in input.resolved_files("550.163.01-4") {
                assert!(!from.contains('{') && !to.contains('{'), "{from} {to}");
                crate::lock::check_relative_path(&to).unwrap();
                assert!(paths.insert(to));
            }
        }
        for name in KERNEL_HEADER_INPUTS {
            assert!(names.insert(name), "{name}");
        }
        assert!(GPU.cmdline.split(' ').any(|w| w == "cocoon.gpu=required"));
        assert_eq!(CPU.gpu, None);
    }

    #[test]
    fn rejects_whitespace_and_control_characters() {
        for bad in ["a ", " a", "a\nb", "a  b", "a\tb", "é"] {
            assert!(check_cmdline(bad).is_err(), "{bad:?}");
        }
    }
}
