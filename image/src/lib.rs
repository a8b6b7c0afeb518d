//! The cocoon guest image: what goes into it and how it is described.
//!
//! Everything here is deterministic by construction: the same pinned inputs
//! and the same guest binary give the same bytes, whatever the machine, the
//! path, the time of day or the umask. `xtask` drives these pieces; the host
//! CLI reads the [`manifest`] to check an image before it boots it.
//!
//! | module | what it holds |
//! |---|---|
//! | [`digest`] | SHA-256 values and file hashing |
//! | [`lock`] | `image/inputs.lock`: every outside input, pinned by sha256 |
//! | [`apt`] | a private apt configuration that reuses the system's mirror |
//! | [`cache`] | the content-addressed store of fetched inputs |
//! | [`deb`] | reading files out of Debian packages |
//! | [`elf`] | what a program needs to start: its loader and libraries |
//! | [`kmod`] | kernel module metadata and load order |
//! | [`newc`] | the cpio "newc" archive format |
//! | [`initramfs`] | assembling and compressing the initramfs |
//! | [`profile`] | the image profiles (what each one contains) |
//! | [`manifest`] | `manifest.json`: what a built image is made of |
//! | [`gguf`] | the metadata of a GGUF model file |
//! | [`modelpack`] | the model pack: a GGUF plus what serving it needs, one hash |
//! | [`synth_gguf`] | synthetic-weight GGUFs of real model shapes, for benchmarks |

pub mod apt;
pub mod cache;
pub mod deb;
pub mod digest;
pub mod elf;
pub mod gguf;
pub mod initramfs;
pub mod kmod;
pub mod lock;
pub mod manifest;
pub mod modelpack;
pub mod newc;
pub mod packhash;
pub mod profile;
pub mod synth_gguf;
