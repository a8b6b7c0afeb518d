//! The pinned CUDA compiler (`profile::CUDA_12_4`) that `/init`'s kernels
//! are built with: nvcc and the tools `nvcc --fatbin` runs, from Debian's
//! `nvidia-cuda-toolkit`, and the headers it includes, from PyPI wheels,
//! assembled into `target/cocoon/cuda/<key>` (the key hashes every pin,
//! so a changed pin assembles afresh and an unchanged one is reused).
//!
//! Where the toolkit lies does not reach the kernels: two toolkits at two
//! paths compiled byte-identical fatbins (docs/image.md).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cocoon_image::cache::Cache;
use cocoon_image::digest::Sha256;
use cocoon_image::lock::{InputsLock, PinnedPackage, PinnedWheel};
use cocoon_image::profile::CudaToolkit;
use xshell::Shell;

use crate::inputs::Fetcher;
use crate::progress::Step;

/// How nvcc finds its tools and headers: relative to itself, so that the
/// folder works wherever it lies.
const NVCC_PROFILE: &str = "TOP = $(_HERE_)/..
NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice
PATH += $(TOP)/nvvm/bin:$(_HERE_):
INCLUDES += \"-I$(TOP)/include\" $(_SPACE_)
";

/// An assembled toolkit and the inputs it was made of (for the manifest).
pub struct Toolkit {
    /// What `CUDA_ROOT` names: `bin/nvcc` is in it.
    pub root: PathBuf,
    pub package: PinnedPackage,
    pub wheels: Vec<PinnedWheel>,
}

pub fn assemble(
    sh: &Shell,
    root: &Path,
    fetcher: &mut Fetcher,
    lock: &InputsLock,
    toolkit: &CudaToolkit,
) -> Result<Toolkit> {
    let compiler = fetcher.image_files(lock, std::slice::from_ref(&toolkit.compiler))?;
    let wheels = toolkit
        .headers
        .iter()
        .map(|w| Ok(lock.wheel(w.name)?.clone()))
        .collect::<Result<Vec<_>>>()?;
    let package = compiler.packages[0].clone();
    let mut key = format!("{NVCC_PROFILE}{}\n", package.sha256);
    for (from, to) in toolkit.compiler.resolved_files(&package.version) {
        let pin = package.file(&from).map(|f| f.sha256.to_hex());
        key += &format!("{from} {to} {pin:?}\n");
    }
    for (w, input) in wheels.iter().zip(toolkit.headers) {
        key += &format!("{} {:?}\n", w.sha256, input.folders);
    }
    let dir = root
        .join("target/cocoon/cuda")
        .join(&Sha256::of(key.as_bytes()).to_hex()[..16]);
    let done = dir.join(".assembled");
    if !done.exists() {
        let step = Step::start(format!("assembling CUDA from {}", package.apt_spec()));
        let cache = Cache::open_default()?;
        let parent = dir.parent().expect("a folder under target/cocoon/cuda");
        std::fs::create_dir_all(parent)?;
        let tmp = tempfile::tempdir_in(parent)?;
        for (to, blob) in &compiler.files {
            let dest = tmp.path().join(to);
            std::fs::create_dir_all(dest.parent().expect("a file in a folder"))?;
            std::fs::copy(blob, &dest)
                .with_context(|| format!("copying {} to {}", blob.display(), dest.display()))?;
            let mode = if to.starts_with("bin/") || to.starts_with("nvvm/bin/") {
                0o755
            } else {
                0o644
            };
            std::fs::set_permissions(&dest, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        }
        std::fs::write(tmp.path().join("bin/nvcc.profile"), NVCC_PROFILE)?;
        for (w, input) in wheels.iter().zip(toolkit.headers) {
            let wheel = crate::pypi::wheel(sh, &cache, &w.project, &w.version, &w.file, &w.sha256)?;
            for (from, to) in input.folders {
                crate::pypi::extract_folder(sh, &wheel, from, &tmp.path().join(to))?;
            }
        }
        std::fs::write(tmp.path().join(".assembled"), "")?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::rename(tmp.keep(), &dir)?;
        step.done(&dir.display().to_string());
    }
    Ok(Toolkit {
        root: dir,
        package,
        wheels,
    })
}
