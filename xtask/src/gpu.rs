//! What a GPU profile adds to the image: the NVIDIA modules (compiled by
//! [`nvidia_modules`]), the firmware and libraries the driver loads, and
//! the checks that keep that set coherent.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use cocoon_image::lock::{InputsLock, PinnedPackage};
use cocoon_image::profile::{self, GpuStack};
use xshell::Shell;

use crate::inputs::Fetcher;
use crate::{env, nvidia_modules};

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
    check_glibc(lock, stack, &env::libc_version(sh)?)?;
    let modules = nvidia_modules::build(sh, root, fetcher, lock, stack, release)?;
    let mut files = Vec::new();
    let mut inputs = vec![lock.package(stack.module_source.name)?.clone()];
    for name in profile::KERNEL_HEADER_INPUTS {
        inputs.push(lock.package(name)?.clone());
    }
    for input in stack.runtime {
        let pkg = lock.package(input.name)?;
        let mut found = fetcher.files(pkg)?;
        for (from, to) in input.resolved_files(&pkg.version) {
            let Some(blob) = found.remove(&from) else {
                bail!(
                    "inputs.lock pins no {from} in input `{}` ({}): run `cargo xtask lock`",
                    input.name,
                    pkg.apt_spec()
                );
            };
            files.push((to, blob));
        }
        inputs.push(pkg.clone());
    }
    Ok(GpuParts {
        modules,
        files,
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

/// The GPU image's `/init` is linked against the build machine's glibc and
/// runs on the image's copy: that copy must be the same release (older
/// lacks symbols the binary may use; newer is a different, unaudited
/// program). The same rule kept NVML's `dlopen` working when `/init` was
/// static.
fn check_glibc(lock: &InputsLock, stack: &GpuStack, linked: &str) -> Result<()> {
    let Some(input) = stack.runtime.iter().find(|i| i.package == "libc6") else {
        return Ok(());
    };
    let pinned = lock.package(input.name)?;
    // `linked` reads "glibc (libc6-dev 2.36-9+deb12u14)".
    let linked_version = linked
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .trim_end_matches(')');
    let (want, have) = (
        profile::upstream_version(&pinned.version),
        profile::upstream_version(linked_version),
    );
    if want != have {
        bail!(
            "the guest links glibc {have} ({linked}) but inputs.lock pins {} (glibc {want}) for the image: build on a machine with glibc {want}, or re-pin",
            pinned.apt_spec()
        );
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

    fn lock_with(nvidia_versions: &[&str], glibc: &str) -> InputsLock {
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
                glibc
            };
            packages.push(pkg(input.name, input.package, v));
        }
        InputsLock {
            schema: cocoon_image::lock::LOCK_SCHEMA,
            packages,
            sources: vec![],
        }
    }

    #[test]
    fn nvidia_packages_of_two_releases_are_refused() {
        let stack = profile::GPU.gpu.unwrap();
        check_one_nvidia_release(&lock_with(&["550.163.01-4"; 2], "2.36-9"), stack).unwrap();
        let mixed = lock_with(&["550.163.01-4", "535.261.03-1"], "2.36-9");
        let err = check_one_nvidia_release(&mixed, stack).unwrap_err();
        assert!(err.to_string().contains("one version"), "{err}");
    }

    #[test]
    fn the_image_glibc_must_be_the_linked_release() {
        let stack = profile::GPU.gpu.unwrap();
        let lock = lock_with(&["550.163.01-4"; 2], "2.36-9+deb12u14");
        check_glibc(&lock, stack, "glibc (libc6-dev 2.36-9+deb12u9)").unwrap();
        let err = check_glibc(&lock, stack, "glibc (libc6-dev 2.41-12)").unwrap_err();
        assert!(err.to_string().contains("glibc 2.41"), "{err}");
    }
}
