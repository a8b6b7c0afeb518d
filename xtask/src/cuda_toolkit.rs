//! The pinned CUDA compiler (`profile::CUDA_12_4`) that `/init`'s kernels
//! are built with: nvcc and the tools `nvcc --fatbin` runs, from Debian's
//! `nvidia-cuda-toolkit`, and the headers it includes, from PyPI wheels,
//! assembled into `target/cocoon/cuda/<key>` (the key hashes every pin,
//! so a changed pin assembles afresh and an unchanged one is reused).
//!
//! Where the toolkit lies does not reach the kernels: two toolkits at two
//! paths compiled byte-identical fatbins (docs/image.md).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
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

/// The lock's pins of the toolkit's wheels, each the project and version
/// the profile names (a profile changed without `cargo xtask lock` would
/// otherwise build with the old wheel).
fn pinned_wheels(lock: &InputsLock, toolkit: &CudaToolkit) -> Result<Vec<PinnedWheel>> {
    toolkit
        .headers
        .iter()
        .map(|input| {
            let w = lock.wheel(input.name)?;
            if (w.project.as_str(), w.version.as_str()) != (input.project, input.version) {
                bail!(
                    "inputs.lock pins {}=={} as `{}`, the profile asks for {}=={}: rerun `cargo xtask lock`",
                    w.project,
                    w.version,
                    input.name,
                    input.project,
                    input.version
                );
            }
            Ok(w.clone())
        })
        .collect()
}

pub fn assemble(
    sh: &Shell,
    root: &Path,
    fetcher: &mut Fetcher,
    lock: &InputsLock,
    toolkit: &CudaToolkit,
) -> Result<Toolkit> {
    let compiler = fetcher.image_files(lock, std::slice::from_ref(&toolkit.compiler))?;
    let wheels = pinned_wheels(lock, toolkit)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_image::lock::LOCK_SCHEMA;
    use cocoon_image::profile::CUDA_12_4;

    fn lock_with(version_of_first: &str) -> InputsLock {
        let wheels = CUDA_12_4
            .headers
            .iter()
            .enumerate()
            .map(|(i, w)| PinnedWheel {
                name: w.name.into(),
                project: w.project.into(),
                version: if i == 0 { version_of_first } else { w.version }.into(),
                file: format!("{}.whl", w.project),
                sha256: Sha256::of(w.name.as_bytes()),
                size: 1,
            })
            .collect();
        InputsLock {
            schema: LOCK_SCHEMA,
            packages: vec![],
            sources: vec![],
            wheels,
        }
    }

    #[test]
    fn wheels_pinned_at_another_version_than_the_profile_names_are_refused() {
        let good = CUDA_12_4.headers[0].version;
        assert_eq!(
            pinned_wheels(&lock_with(good), &CUDA_12_4).unwrap().len(),
            3
        );
        let err = pinned_wheels(&lock_with("12.6.77"), &CUDA_12_4).unwrap_err();
        assert!(
            err.to_string().contains("rerun `cargo xtask lock`"),
            "{err}"
        );
        let none = InputsLock {
            wheels: vec![],
            ..lock_with(good)
        };
        let err = pinned_wheels(&none, &CUDA_12_4).unwrap_err();
        assert!(err.to_string().contains("cuda-runtime-headers"), "{err}");
    }
}
