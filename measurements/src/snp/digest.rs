//! Computing launch digests: once per image, then cheaply per shape.
//!
//! The `sev` crate provides every SNP structure (the OVMF metadata parser,
//! the kernel-hashes page, the VMSA of each CPU model) and a reference
//! `snp_calc_launch_digest`, which re-reads and re-hashes the whole image
//! for every shape. [`Measurer`] chains the same pages through the PSP's
//! `PAGE_INFO` hash (SNP ABI specification, "LAUNCH_UPDATE") itself, so the
//! image-dependent part is hashed once and each shape costs only its VMSA
//! pages. The tests hold it equal to the reference for every CPU type and
//! many vCPU counts, and to the published vectors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sev::launch::PageType;
use sev::measurement::ovmf::{OVMF, SectionType};
use sev::measurement::sev_hashes::SevHashes;
use sev::measurement::snp::{SnpMeasurementArgs, snp_calc_launch_digest};
use sev::measurement::vmsa::{GuestFeatures, VMMType, VMSA};
use sha2::{Digest, Sha384};

use super::{LaunchDigest, LaunchShape};

/// The GPA the PSP records VMSA pages at (all ones, page-aligned, 52 bits).
const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;
const PAGE: usize = 4096;
/// The most vCPUs one launch can have (the SNP architecture's limit is far
/// above what QEMU runs; this bounds the work a bad request costs).
pub const MAX_VCPUS: u32 = 512;

#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error("{path}: cannot read: {error}")]
    Read { path: String, error: std::io::Error },
    #[error(
        "{path}: not an SNP-capable OVMF ({detail}): build OvmfPkg/AmdSev/AmdSevX64.dsc (the firmware `cargo xtask build` makes)"
    )]
    NoSnpMetadata { path: String, detail: String },
    #[error(
        "{path}: the firmware has no SNP_KERNEL_HASHES section, so QEMU's kernel-hashes=on cannot bind the kernel, initrd and command line"
    )]
    NoKernelHashes { path: String },
    #[error(
        "the kernel command line {0:?} has leading or trailing whitespace: tools disagree on trimming it, so it is refused"
    )]
    CmdlineWhitespace(String),
    #[error("a launch needs 1 to {MAX_VCPUS} vCPUs, not {0}")]
    Vcpus(u32),
    #[error("measuring: {0}")]
    Sev(String),
}

fn sev_err(e: impl std::fmt::Display) -> MeasureError {
    MeasureError::Sev(e.to_string())
}

fn sha384(data: &[u8]) -> [u8; 48] {
    Sha384::digest(data).into()
}

/// What an image launch measures.
#[derive(Debug, Clone)]
pub struct LaunchInputs {
    pub ovmf: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
}

/// The running launch digest, updated page by page like the PSP does.
struct Gctx([u8; 48]);

impl Gctx {
    fn update(&mut self, page_type: PageType, gpa: u64, contents: &[u8; 48]) {
        // PAGE_INFO: digest so far, contents hash, length 0x70, page type,
        // IMI 0, VMPL3..1 permissions 0, reserved, GPA.
        let mut info = [0u8; 0x70];
        info[..48].copy_from_slice(&self.0);
        info[48..96].copy_from_slice(contents);
        info[96..98].copy_from_slice(&0x70u16.to_le_bytes());
        info[98] = page_type as u8;
        info[104..112].copy_from_slice(&gpa.to_le_bytes());
        self.0 = sha384(&info);
    }

    fn normal(&mut self, gpa: u64, data: &[u8]) -> Result<(), MeasureError> {
        if !data.len().is_multiple_of(PAGE) {
            return Err(sev_err(format!(
                "{} bytes at {gpa:#x} are not whole pages",
                data.len()
            )));
        }
        for (i, page) in data.chunks(PAGE).enumerate() {
            self.update(PageType::Normal, gpa + (i * PAGE) as u64, &sha384(page));
        }
        Ok(())
    }

    fn zero(&mut self, page_type: PageType, gpa: u64, len: usize) {
        for i in 0..len.div_ceil(PAGE) {
            self.update(page_type, gpa + (i * PAGE) as u64, &[0; 48]);
        }
    }
}

/// An image, hashed once; [`Measurer::measure`] gives the digest of any shape.
pub struct Measurer {
    /// The digest after the firmware and its metadata pages.
    seed: [u8; 48],
    reset_eip: u32,
}

fn check_cmdline(cmdline: &str) -> Result<(), MeasureError> {
    if cmdline.trim() != cmdline {
        return Err(MeasureError::CmdlineWhitespace(cmdline.to_string()));
    }
    Ok(())
}

fn check_readable(path: &Path) -> Result<(), MeasureError> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|error| MeasureError::Read {
            path: path.display().to_string(),
            error,
        })
}

/// Parses the firmware and checks it can carry kernel hashes.
fn load_ovmf(path: &Path) -> Result<OVMF, MeasureError> {
    check_readable(path)?;
    let ovmf = OVMF::new(path.to_path_buf()).map_err(|e| MeasureError::NoSnpMetadata {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    if ovmf.metadata_items().is_empty() {
        return Err(MeasureError::NoSnpMetadata {
            path: path.display().to_string(),
            detail: "no SEV metadata sections".into(),
        });
    }
    if !ovmf.has_metadata_section(SectionType::SnpKernelHashes) {
        return Err(MeasureError::NoKernelHashes {
            path: path.display().to_string(),
        });
    }
    Ok(ovmf)
}

impl Measurer {
    pub fn new(inputs: &LaunchInputs) -> Result<Self, MeasureError> {
        check_cmdline(&inputs.cmdline)?;
        let ovmf = load_ovmf(&inputs.ovmf)?;
        check_readable(&inputs.kernel)?;
        check_readable(&inputs.initrd)?;
        let hashes = SevHashes::new(
            inputs.kernel.clone(),
            Some(inputs.initrd.clone()),
            Some(&inputs.cmdline),
        )
        .map_err(sev_err)?;

        let mut g = Gctx([0; 48]);
        g.normal(ovmf.gpa(), ovmf.data())?;
        for desc in ovmf.metadata_items() {
            let (gpa, size) = (desc.gpa as u64, desc.size as usize);
            match desc.section_type {
                SectionType::SnpSecMemory | SectionType::SvsmCaa => {
                    g.zero(PageType::Zero, gpa, size)
                }
                SectionType::SnpSecrets => g.update(PageType::Secrets, gpa, &[0; 48]),
                SectionType::Cpuid => g.update(PageType::Cpuid, gpa, &[0; 48]),
                SectionType::SnpKernelHashes => {
                    let table = ovmf.sev_hashes_table_gpa().map_err(sev_err)?;
                    let page = hashes
                        .construct_page((table & 0xfff) as usize)
                        .map_err(sev_err)?;
                    if page.len() != size {
                        return Err(sev_err(format!(
                            "kernel-hashes page is {} bytes, section {size}",
                            page.len()
                        )));
                    }
                    g.normal(gpa, &page)?;
                }
            }
        }
        Ok(Measurer {
            seed: g.0,
            reset_eip: ovmf.sev_es_reset_eip().map_err(sev_err)?,
        })
    }

    pub fn measure(&self, shape: &LaunchShape) -> Result<LaunchDigest, MeasureError> {
        if shape.vcpus == 0 || shape.vcpus > MAX_VCPUS {
            return Err(MeasureError::Vcpus(shape.vcpus));
        }
        let vmsa = VMSA::new(
            self.reset_eip.into(),
            shape.cpu_type.to_sev(),
            VMMType::QEMU,
            Some(shape.vcpus as u64),
            GuestFeatures(shape.guest_features),
        );
        let mut g = Gctx(self.seed);
        // The BSP page and the (identical) AP pages: hash each once.
        let mut hashed: HashMap<Vec<u8>, [u8; 48]> = HashMap::new();
        for page in vmsa.pages(shape.vcpus as usize).map_err(sev_err)? {
            let h = *hashed.entry(page).or_insert_with_key(|p| sha384(p));
            g.update(PageType::Vmsa, VMSA_GPA, &h);
        }
        Ok(LaunchDigest(g.0))
    }
}

/// The digest as the `sev` crate's `snp_calc_launch_digest` computes it:
/// the reference the fast path is checked against.
pub fn reference_digest(
    inputs: &LaunchInputs,
    shape: &LaunchShape,
) -> Result<LaunchDigest, MeasureError> {
    check_cmdline(&inputs.cmdline)?;
    load_ovmf(&inputs.ovmf)?;
    if shape.vcpus == 0 || shape.vcpus > MAX_VCPUS {
        return Err(MeasureError::Vcpus(shape.vcpus));
    }
    let ld = snp_calc_launch_digest(SnpMeasurementArgs {
        vcpus: shape.vcpus,
        vcpu_type: shape.cpu_type.to_sev(),
        ovmf_file: inputs.ovmf.clone(),
        guest_features: GuestFeatures(shape.guest_features),
        kernel_file: Some(inputs.kernel.clone()),
        initrd_file: Some(inputs.initrd.clone()),
        append: Some(&inputs.cmdline),
        ovmf_hash_str: None,
        vmm_type: Some(VMMType::QEMU),
    })
    .map_err(sev_err)?;
    ld.get_hex_ld().parse().map_err(MeasureError::Sev)
}
