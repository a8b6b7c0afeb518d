//! `cargo xtask measure`: the SEV-SNP launch measurement of a built image
//! for one launch shape, and the table `cargo xtask build` writes into the
//! manifest.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cocoon_image::manifest::{self, Manifest, MeasurementRecord};
use cocoon_image::profile::Profile;
use cocoon_measurements::snp::{CpuType, LaunchInputs, LaunchShape, Measurer, reference_digest};
use xshell::Shell;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image directory [default: target/cocoon/<profile>].
    #[arg(long)]
    image: Option<PathBuf>,
    /// The profile whose built image to measure, when `--image` is not given.
    #[arg(long, default_value = "cpu", conflicts_with = "image")]
    profile: String,
    /// vCPUs the guest is launched with.
    #[arg(long)]
    vcpus: u32,
    /// The QEMU CPU model: EPYC-v4, EPYC-Milan, EPYC-Genoa or EPYC-Turin.
    #[arg(long)]
    cpu_type: String,
    /// SEV features of the guest, hex.
    #[arg(long, default_value = "0x1")]
    guest_features: String,
    /// Compute with the `sev` crate's snp_calc_launch_digest instead of
    /// the cached path (slower; the same digest).
    #[arg(long)]
    reference: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn parse_features(text: &str) -> Result<u64> {
    manifest::parse_guest_features(text)
        .with_context(|| format!("guest features `{text}` are not a hex number (like 0x1)"))
}

pub fn launch_inputs(dir: &Path, cmdline: &str) -> LaunchInputs {
    LaunchInputs {
        ovmf: dir.join(manifest::FIRMWARE),
        kernel: dir.join(manifest::KERNEL),
        initrd: dir.join(manifest::INITRD),
        cmdline: cmdline.to_string(),
    }
}

/// The measurement of every shape the profile lists.
pub fn table(dir: &Path, cmdline: &str, profile: &Profile) -> Result<Vec<MeasurementRecord>> {
    let m = Measurer::new(&launch_inputs(dir, cmdline))?;
    let mut rows = Vec::new();
    for name in profile.measured_cpu_types {
        let cpu_type: CpuType = name.parse().map_err(anyhow::Error::msg)?;
        for vcpus in profile.measured_vcpus.0..=profile.measured_vcpus.1 {
            let shape = LaunchShape {
                vcpus,
                cpu_type,
                guest_features: profile.guest_features,
            };
            rows.push(MeasurementRecord {
                vcpus,
                cpu_type: cpu_type.qemu_name().to_string(),
                guest_features: format!("{:#x}", profile.guest_features),
                measurement: m.measure(&shape)?.to_hex(),
            });
        }
    }
    Ok(rows)
}

pub fn run(_sh: &Shell, root: &Path, args: &Args) -> Result<()> {
    let dir = args
        .image
        .clone()
        .unwrap_or_else(|| crate::default_image_dir(root, &args.profile));
    let manifest = Manifest::load(&dir)?;
    manifest.verify_artifacts(&dir)?;
    let shape = LaunchShape {
        vcpus: args.vcpus,
        cpu_type: args.cpu_type.parse().map_err(anyhow::Error::msg)?,
        guest_features: parse_features(&args.guest_features)?,
    };
    let inputs = launch_inputs(&dir, &manifest.cmdline);
    let digest = if args.reference {
        reference_digest(&inputs, &shape)?
    } else {
        Measurer::new(&inputs)?.measure(&shape)?
    };
    let listed = manifest
        .measurement(
            shape.vcpus,
            shape.cpu_type.qemu_name(),
            shape.guest_features,
        )
        .is_some_and(|r| r.measurement == digest.to_hex());
    if args.json {
        let v = serde_json::json!({
            "image": dir,
            "vcpus": shape.vcpus,
            "cpu_type": shape.cpu_type.qemu_name(),
            "guest_features": format!("{:#x}", shape.guest_features),
            "measurement": digest.to_hex(),
            "in_manifest": listed,
        });
        println!("{v}");
    } else {
        println!("{digest}");
        if !listed {
            eprintln!(
                "xtask: note: the manifest does not list this shape (cocoon-host will not boot it)"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_guest_features() {
        assert_eq!(parse_features("0x1").unwrap(), 1);
        assert_eq!(parse_features("21").unwrap(), 0x21);
        assert!(parse_features("0xzz").is_err());
    }
}
