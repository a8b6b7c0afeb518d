//! `cargo xtask gpu-bench-prepare`: everything the GPU benchmark needs on
//! a machine that has a GPU but no Rust toolchain and no network, built
//! here on a machine with neither GPU nor CUDA installed.
//!
//! 1. A CUDA 13.0 toolkit assembled from PyPI wheels (the only full `nvcc`
//!    on PyPI; CUDA 13 matches the lent machines' R580 driver), and the
//!    `libcuda.so` that candle's cudarc links against, from Debian's
//!    `libcuda1` (link time only: the driver's own library is used at run
//!    time). Every download is pinned by sha256 and kept in the cache.
//! 2. The guest binary with `--features cuda-candle` (the engine's own
//!    CUDA path and candle's, to compare; candle's kernels for sm_90), and
//!    `engine/tests/cuda.rs` built, not run (it needs a GPU).
//! 3. The images' `/init` (CUDA 12.4 kernels, libcuda opened at run
//!    time), built exactly as `cargo xtask build` builds it.
//! 4. llama.cpp's sources from the pinned llama-cpp-python sdist (the one
//!    `bench-inference` uses), stripped to what `llama-bench` with the
//!    CUDA backend needs, to build there.
//! 5. A folder holding those (compressed) and `bench/gpu/`'s scripts; the
//!    device runs `bash DIR/run.sh DIR $OUT` (against llama.cpp) or
//!    `bash DIR/native.sh DIR/cocoon-guest.xz $OUT` (the engine's own CUDA
//!    path: logits against the CPU engine, speed, a profile of its kernels)
//!    or `VARIANTS=... bash DIR/ab.sh DIR $OUT` (its decode kernels'
//!    variants against each other in one call).
//!
//! The synthetic models are not carried: the binary writes them there
//! (`cocoon-guest synth-gguf`), since an 8B file is 4.5 GB.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cocoon_image::apt::{self, PrivateApt};
use cocoon_image::cache::Cache;
use cocoon_image::digest::Sha256;
use cocoon_image::lock::{InputsLock, PinnedPackage};
use cocoon_image::profile::INIT;
use xshell::{Shell, cmd};

use crate::inputs::Fetcher;
use crate::progress::Step;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to put the folder the device machine gets.
    #[arg(long, default_value = "target/cocoon/gpu-bench")]
    out: PathBuf,
}

/// The CUDA 13.0 wheels: (file name, sha256). nvcc 13.0.88 with what it
/// needs (nvvm, crt, runtime headers, cccl) and the libraries the guest
/// links (cuBLAS, cuRAND, NVRTC, the runtime).
const WHEELS: &[(&str, &str)] = &[
    (
        "nvidia_cuda_nvcc-13.0.88-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03",
    ),
    (
        "nvidia_nvvm-13.0.88-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl",
        "c5f41ffeb6466944a026dfa5317d7d85355c119bbec279205d22f1869d1054e0",
    ),
    (
        "nvidia_cuda_crt-13.0.88-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4",
    ),
    (
        "nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548",
    ),
    (
        "nvidia_cuda_cccl-13.0.85-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649",
    ),
    (
        "nvidia_cublas-13.0.2.14-py3-none-manylinux_2_27_x86_64.whl",
        "0cf238ffdbe46c00cb9aa98e7bca745c223a5ca5a53e686ac8b3e5a08fe80d6c",
    ),
    (
        "nvidia_curand-10.4.0.35-py3-none-manylinux_2_27_x86_64.whl",
        "1aee33a5da6e1db083fe2b90082def8915f30f3248d5896bcec36a579d941bfc",
    ),
    // cudarc names -lnvrtc; --as-needed drops it, but the linker must find it.
    (
        "nvidia_cuda_nvrtc-13.0.88-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl",
        "ad9b6d2ead2435f11cbb6868809d2adeeee302e9bb94bcf0539c7a40d80e8575",
    ),
];

/// `libcuda.so` to link against (cudarc as candle-core 0.11 configures it
/// links the driver library dynamically).
fn libcuda_deb() -> PinnedPackage {
    PinnedPackage {
        name: "libcuda1 (link time only)".into(),
        package: "libcuda1".into(),
        version: "550.163.01-2".into(),
        suite: "trixie".into(),
        component: "non-free".into(),
        sha256: "8feff97aac61d6f27ded96a3c25b9e68025a680476e6072ff7eaf10623509135"
            .parse()
            .expect("a valid sha256"),
        size: 2_962_276,
        files: Vec::new(),
    }
}

/// "name-version-..." of a wheel file as pip takes it: `name==version`.
fn wheel_spec(file: &str) -> String {
    let mut parts = file.split('-');
    let name = parts.next().unwrap_or_default().replace('_', "-");
    let version = parts.next().unwrap_or_default();
    format!("{name}=={version}")
}

fn fetch_wheel(sh: &Shell, cache: &Cache, file: &str, sha: &str) -> Result<PathBuf> {
    let want: Sha256 = sha.parse().map_err(anyhow::Error::msg)?;
    if let Some(p) = cache.get(&want, file)? {
        return Ok(p);
    }
    let step = Step::start(format!("fetching {file}"));
    let dl = tempfile::tempdir()?;
    let (d, spec) = (dl.path(), wheel_spec(file));
    cmd!(sh, "python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --dest {d} {spec}")
        .run()
        .with_context(|| format!("pip could not download {spec}"))?;
    let p = cache.put_file(&d.join(file), &want, file)?;
    step.done("sha256 verified");
    Ok(p)
}

/// The assembled toolkit: `<cache>/cuda13/root/nvidia/cu13` with bin/nvcc,
/// include/, lib/ (plus the unversioned links a linker wants). The path
/// stays the same from run to run: cudarc's build script reruns when the
/// CUDA_* variables pointing at it change.
fn toolkit(sh: &Shell, cache: &Cache) -> Result<PathBuf> {
    let root = cache.root().join("cuda13/root");
    let cu13 = root.join("nvidia/cu13");
    let stamp = root.join("assembled");
    let lib = cu13.join("lib");
    if !stamp.is_file() {
        let step = Step::start("assembling the CUDA 13.0 toolkit from its wheels");
        for (file, sha) in WHEELS {
            let w = fetch_wheel(sh, cache, file, sha)?;
            // A wheel is a zip file; every one of these unpacks under nvidia/cu13.
            cmd!(sh, "python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' {w} {root}")
                .run()?;
        }
        let pkg = libcuda_deb();
        let deb = match cache.get(&pkg.sha256, "libcuda1")? {
            Some(p) => p,
            None => {
                let apt_dir = root.join("apt");
                let mut apt = PrivateApt::create(
                    &apt_dir,
                    &apt::system_mirror()?,
                    &[(pkg.suite.clone(), pkg.component.clone())],
                    &[],
                )?;
                let dl = tempfile::tempdir()?;
                let blob = cache.blob_path(&pkg.sha256);
                let f = apt.download(&pkg, dl.path(), &blob)?;
                cache.put_file(&f, &pkg.sha256, "libcuda1")?
            }
        };
        let x = root.join("libcuda1");
        std::fs::create_dir_all(&x)?;
        cmd!(sh, "dpkg-deb -x {deb} {x}").run()?;
        for bin in ["nvcc", "ptxas", "cudafe++", "fatbinary", "nvlink", "bin2c"] {
            let p = cu13.join("bin").join(bin);
            cmd!(sh, "chmod +x {p}").run()?;
        }
        let cicc = cu13.join("nvvm/bin/cicc");
        cmd!(sh, "chmod +x {cicc}").run()?;
        for (link, target) in [
            ("libcudart.so", "libcudart.so.13"),
            ("libcublas.so", "libcublas.so.13"),
            ("libcublasLt.so", "libcublasLt.so.13"),
            ("libcurand.so", "libcurand.so.10"),
            ("libnvrtc.so", "libnvrtc.so.13"),
        ] {
            let l = lib.join(link);
            let _ = std::fs::remove_file(&l);
            std::os::unix::fs::symlink(target, &l)?;
        }
        let libcuda = x.join("usr/lib/x86_64-linux-gnu/nvidia/current/libcuda.so.550.163.01");
        for link in ["libcuda.so", "libcuda.so.1"] {
            let l = lib.join(link);
            let _ = std::fs::remove_file(&l);
            std::os::unix::fs::symlink(&libcuda, &l)?;
        }
        std::fs::write(&stamp, "")?;
        step.done(&cu13.display().to_string());
    }
    Ok(cu13)
}

/// `cargo ARGS` with the assembled toolkit's environment, into target/cuda.
fn cuda_cargo<'a>(sh: &'a Shell, root: &Path, cu13: &Path, args: &[&str]) -> xshell::Cmd<'a> {
    let path = format!(
        "{}:{}",
        cu13.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd!(sh, "cargo {args...}")
        .env("CUDA_ROOT", cu13)
        .env("CUDA_PATH", cu13)
        .env("CUDA_HOME", cu13)
        .env("PATH", path)
        // No GPU here to ask: Hopper (candle-kernels then targets sm_90a).
        .env("CUDA_COMPUTE_CAP", "90")
        .env("LIBRARY_PATH", cu13.join("lib"))
        // The plain release profile (no LTO), not the image's guest
        // profile: a bench binary, built in minutes rather than with fat LTO.
        .env("CARGO_TARGET_DIR", root.join("target/cuda"))
}

/// Builds the guest with CUDA into target/cuda; returns the binary.
fn build_guest(sh: &Shell, root: &Path, cu13: &Path) -> Result<PathBuf> {
    let step =
        Step::start("building cocoon-guest --features cuda-candle (candle's kernels take a while)");
    let args = [
        "build",
        "--release",
        "--locked",
        "-p",
        "cocoon-guest",
        "--features",
        "cuda-candle",
    ];
    cuda_cargo(sh, root, cu13, &args).run()?;
    let bin = root.join("target/cuda/release/cocoon-guest");
    step.done(&bin.display().to_string());
    Ok(bin)
}

/// Builds `engine/tests/cuda.rs` (the CUDA path's tests, which need a GPU)
/// without running it; returns the test binary.
fn build_cuda_tests(sh: &Shell, root: &Path, cu13: &Path) -> Result<PathBuf> {
    let step = Step::start("building the engine's CUDA tests");
    let args = [
        "test",
        "--release",
        "--locked",
        "-p",
        "cocoon-engine",
        "--features",
        "cuda-candle",
        "--test",
        "cuda",
        "--no-run",
        "--message-format=json",
    ];
    let json = cuda_cargo(sh, root, cu13, &args).read()?;
    let bin = json
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "cuda")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .context("cargo named no executable for engine/tests/cuda.rs")?;
    step.done(&bin.display().to_string());
    Ok(bin)
}

/// What `llama-bench` with the CUDA backend needs of the llama.cpp tree:
/// the root's CMake files, ggml without the other backends, the library,
/// common/, vendor/ and tools/llama-bench (tools/CMakeLists.txt is cut
/// down to that one tool). 22 MiB instead of 176.
const LLAMA_KEEP: &[&str] = &[
    "CMakeLists.txt",
    "LICENSE",
    "cmake",
    "ggml",
    "src",
    "include",
    "common",
    "vendor",
    "tools/llama-bench",
];
const GGML_OTHER_BACKENDS: &[&str] = &[
    "blas", "cann", "et", "hexagon", "hip", "metal", "musa", "opencl", "openvino", "rpc", "sycl",
    "virtgpu", "vulkan", "webgpu", "zdnn", "zendnn",
];

fn llama_sources(sh: &Shell, out: &Path) -> Result<()> {
    let sdist = crate::bench_inference::llama_cpp_sdist(sh)?;
    let tmp = tempfile::tempdir()?;
    let src = tmp.path().join("llama.cpp");
    std::fs::create_dir_all(&src)?;
    let members: Vec<String> = LLAMA_KEEP
        .iter()
        .map(|m| format!("llama_cpp_python-0.3.36/vendor/llama.cpp/{m}"))
        .collect();
    let excludes: Vec<String> = GGML_OTHER_BACKENDS
        .iter()
        .map(|b| format!("--exclude=llama_cpp_python-0.3.36/vendor/llama.cpp/ggml/src/ggml-{b}"))
        .collect();
    cmd!(
        sh,
        "tar -xzf {sdist} -C {src} --strip-components=3 {excludes...} {members...}"
    )
    .run()?;
    std::fs::write(
        src.join("tools/CMakeLists.txt"),
        "# cut down by cargo xtask gpu-bench-prepare: llama-bench only\nadd_subdirectory(llama-bench)\n",
    )?;
    let dest = out.join("llama.cpp.tar.xz");
    cmd!(
        sh,
        "tar -C {src} --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cJf {dest} ."
    )
    .env("XZ_OPT", "-6 -T0")
    .run()?;
    Ok(())
}

/// The images' `/init`, built as `cargo xtask build` builds it (the
/// pinned CUDA 12.4 compiler, `--features cuda`, libcuda opened at run
/// time): `native.sh` runs it beside the benchmark build, so that the
/// binary the images carry is what a GPU checks.
fn image_init(sh: &Shell, root: &Path) -> Result<PathBuf> {
    let lock = InputsLock::load(&root.join(crate::build::LOCK_PATH))?;
    let mut fetcher = Fetcher::new(
        Cache::open_default()?,
        &lock,
        &root.join("target/cocoon/apt"),
    );
    let cuda = crate::cuda_toolkit::assemble(sh, root, &mut fetcher, &lock, INIT.cuda)?;
    let git = crate::env::git_info(sh, root)?;
    Ok(crate::guest::build(sh, root, git.source_date_epoch, &INIT, &cuda.root)?.path)
}

pub fn run(sh: &Shell, root: &Path, args: &Args) -> Result<()> {
    let cache = Cache::open_default()?;
    let out = root.join(&args.out);
    let cu13 = toolkit(sh, &cache)?;
    let bin = build_guest(sh, root, &cu13)?;
    let tests = build_cuda_tests(sh, root, &cu13)?;
    let init = image_init(sh, root)?;
    std::fs::create_dir_all(&out)?;
    let step = Step::start("packing the device folder");
    let packed = [
        (&bin, "cocoon-guest.xz"),
        (&tests, "cuda-tests.xz"),
        (&init, "init.xz"),
    ];
    for (from, name) in packed {
        let xz = out.join(name);
        cmd!(sh, "sh -c 'xz -6 -T0 -c \"$1\" > \"$2\"' - {from} {xz}").run()?;
    }
    llama_sources(sh, &out)?;
    for f in [
        "run.sh",
        "roofline.py",
        "collect.py",
        "native.sh",
        "ab.sh",
        "compare_logits.py",
        "summary.py",
        "ncu_summary.py",
        "libs.sh",
    ] {
        std::fs::copy(root.join("bench/gpu").join(f), out.join(f))?;
    }
    let size: u64 = std::fs::read_dir(&out)?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    step.done(&format!("{} ({} MiB)", out.display(), size >> 20));
    if size > 60 << 20 {
        bail!(
            "the device folder is {} MiB: over what a device call carries",
            size >> 20
        );
    }
    eprintln!(
        "xtask: on the device machine, from the folder's parent: bash {0}/run.sh {0} $OUT \
         (or bash {0}/native.sh {0}/cocoon-guest.xz $OUT)",
        args.out.display()
    );
    Ok(())
}
