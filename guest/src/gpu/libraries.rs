//! The driver's user-space libraries, loaded before the modules are.
//!
//! A library that cannot load (a missing dependency, the wrong glibc) is a
//! defect of the image, not of the machine. Checking it first makes it an
//! error that says so, and one that any boot finds, including the tests'
//! boots without a GPU, instead of a confusing NVML error on a rented H100.

use std::ffi::CStr;

use anyhow::{Result, bail};

/// What the GPU path opens: NVML (the CC state, the evidence) and libcuda
/// (the engine, through cudarc). libcuda in turn opens
/// libnvidia-pkcs11-openssl3 in CC mode, which needs libcrypto.
pub const REQUIRED: &[&CStr] = &[super::nvml::LIBRARY, c"libcuda.so.1"];

/// Loads each of [`REQUIRED`] with every symbol resolved (`RTLD_NOW`). The
/// handles stay open: the GPU path opens the same libraries next.
pub fn check() -> Result<()> {
    for lib in REQUIRED {
        // SAFETY: a NUL-terminated name. Loading runs the library's
        // initialisers, as the GPU path's own dlopen would a moment later.
        let handle = unsafe { libc::dlopen(lib.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            bail!(
                "this image's {} does not load: {}",
                lib.to_string_lossy(),
                super::nvml::dlerror()
            );
        }
    }
    Ok(())
}
