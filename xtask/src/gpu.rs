//! What a GPU profile adds to the image: the NVIDIA modules (compiled by
//! [`nvidia_modules`]), the firmware and libraries the driver loads, and
//! the checks that keep that set coherent.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use cocoon_image::lock::{InputsLock, PinnedPackage};
use cocoon_image::profile::{self, GpuStack};
use xshell::Shell;

use crate::inputs::Fetcher;
use crate::nvidia_modules;

pub struct GpuParts {
    /// `(file name, path)` of the compiled modules, in load order.
    pub modules: Vec<(String, PathBuf)>,
    /// `(path in the image, verified cache path)` of the runtime files.
    pub files: Vec<(String, PathBuf)>,
    /// The inputs as the manifest records them: the packages the modules
    /// were compiled from (whole) and those files were taken from.
    pub inputs: Vec<PinnedPackage>,
}

pub fn parts(
    sh: &Shell,
    root: &Path,
    fetcher: &mut Fetcher,
    lock: &InputsLock,
    stack: &GpuStack,
    release: &str,
) -> Result<GpuParts> {
    check_one_nvidia_release(lock, stack)?;
    let modules = nvidia_modules::build(sh, root, fetcher, lock, stack, release)?;
    let mut inputs = vec![lock.package(stack.module_source.name)?.clone()];
    for name in profile::KERNEL_HEADER_INPUTS {
        inputs.push(lock.package(name)?.clone());
    }
    let runtime = fetcher.image_files(lock, stack.runtime)?;
    inputs.extend(runtime.packages);
    Ok(GpuParts {
        modules,
        files: runtime.files,
        inputs,
    })
}

/// The kernel modules, GSP firmware and libraries of one NVIDIA release
/// talk a private protocol: all must be of one version, or the driver
/// fails at run time in ways that are hard to read.
fn check_one_nvidia_release(lock: &InputsLock, stack: &GpuStack) -> Result<()> {
    let source = lock.package(stack.module_source.name)?;
    for input in stack.runtime.iter().filter(|i| i.nvidia) {
        let pkg = lock.package(input.name)?;
        if pkg.version != source.version {
            bail!(
                "inputs.lock pins {} but {}: the NVIDIA packages must be of one version (rerun `cargo xtask lock --nvidia {}`)",
                pkg.apt_spec(),
                source.apt_spec(),
                source.version
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_image::digest::Sha256;

    fn pkg(name: &str, package: &str, version: &str) -> PinnedPackage {
        PinnedPackage {
            name: name.into(),
            package: package.into(),
            version: version.into(),
            suite: "trixie".into(),
            component: "main".into(),
            sha256: Sha256::of(b""),
            size: 0,
            files: vec![],
        }
    }

    fn lock_with(nvidia_versions: &[&str], others: &str) -> InputsLock {
        let stack = profile::GPU.gpu.unwrap();
        let mut packages = vec![pkg(
            stack.module_source.name,
            stack.module_source.package,
            nvidia_versions[0],
        )];
        let mut versions = nvidia_versions.iter().skip(1).cycle();
        for input in stack.runtime {
            let v = if input.nvidia {
                versions.next().unwrap()
            } else {
                others
            };
            packages.push(pkg(input.name, input.package, v));
        }
        InputsLock {
            schema: cocoon_image::lock::LOCK_SCHEMA,
            packages,
            sources: vec![],
            wheels: vec![],
        }
    }

    #[test]
    fn nvidia_packages_of_two_releases_are_refused() {
        let stack = profile::GPU.gpu.unwrap();
        check_one_nvidia_release(&lock_with(&["550.163.01-4"; 2], "3.0.18-1"), stack).unwrap();
        let mixed = lock_with(&["550.163.01-4", "535.261.03-1"], "3.0.18-1");
        let err = check_one_nvidia_release(&mixed, stack).unwrap_err();
        assert!(err.to_string().contains("one version"), "{err}");
    }
}
