//! `cocoon-host boot`: check an image, then boot it under SEV-SNP (with a
//! GPU passed through) or, with `--dev`, without SEV for development.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cocoon_image::manifest::{self, Manifest};
use cocoon_image::{packhash, profile};
use cocoon_measurements::snp::{
    CpuType, DEFAULT_GUEST_FEATURES, LaunchInputs, LaunchShape, Measurer,
};
use serde_json::json;

use crate::accel::{self, Accel};
use crate::qemu::{self, CBit, DevVm, GpuPassthrough, SnpVm};
use crate::release;
use crate::report::Report;
use crate::rundir::RunDir;
use crate::supervise::Supervisor;

/// The guest's HTTPS port (see the guest's main module).
const GUEST_PORT: u16 = 443;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Boot without SEV (KVM when it can run the guest, TCG otherwise): the
    /// development and test path. Without it, the boot is SEV-SNP.
    #[arg(long)]
    pub dev: bool,
    /// The image directory (vmlinuz, initrd.img, cmdline, OVMF.fd, manifest.json).
    #[arg(long, required_unless_present = "release", conflicts_with = "release")]
    pub image: Option<PathBuf>,
    /// A signed release folder (cocoon-VERSION/): its signature and every
    /// checksum are verified before anything else, then its profile boots.
    #[arg(long)]
    pub release: Option<PathBuf>,
    /// With --release: the profile to boot [default: the release's only one].
    #[arg(long, requires = "release")]
    pub profile: Option<String>,
    /// With --release: a minisign public key to trust besides the built-in
    /// ones (release/keys/); repeatable.
    #[arg(long, requires = "release")]
    pub pubkey: Vec<PathBuf>,
    /// vCPUs. Under SEV-SNP the manifest must list this count for --cpu-type.
    #[arg(long, default_value_t = 2)]
    pub vcpus: u32,
    /// SEV-SNP: the QEMU CPU model the image was measured with
    /// (EPYC-v4, EPYC-Milan, EPYC-Genoa, EPYC-Turin; never the host model).
    #[arg(long)]
    pub cpu_type: Option<String>,
    /// Guest memory (e.g. 512M, 16G).
    #[arg(long, default_value = "1G")]
    pub memory: String,
    /// SEV-SNP: a GPU to pass through with VFIO, by PCI address (0000:41:00.0).
    #[arg(long)]
    pub gpu: Option<String>,
    /// Print the QEMU arguments (one per line) after every check, and exit.
    #[arg(long)]
    pub print_qemu_args: bool,
    /// SEV-SNP: the C-bit position, instead of reading the host CPU (to
    /// print the arguments for another machine).
    #[arg(long, requires = "reduced_phys_bits")]
    pub cbitpos: Option<u32>,
    /// SEV-SNP: physical address bits lost to encryption, with --cbitpos.
    #[arg(long, requires = "cbitpos")]
    pub reduced_phys_bits: Option<u32>,
    /// The model pack the image serves (`cargo xtask model-pack`), attached
    /// as a read-only disk. Required when the image's manifest names a model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Skip the host's early check of --model's sha256 (tests use it to show
    /// that the guest itself refuses a wrong pack).
    #[arg(long, hide = true)]
    pub unchecked_model: bool,
    /// Local port forwarded to the guest's HTTPS port (0: any free port).
    #[arg(long, default_value_t = 8443)]
    pub port: u16,
    /// A name for the VM, for `cocoon-host stop --name`.
    #[arg(long, default_value = "dev")]
    pub name: String,
    /// Where to keep the QMP socket and logs [default: $XDG_RUNTIME_DIR/cocoon/<name>].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// --dev only. auto: KVM when it can run the guest, TCG otherwise.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Seconds to wait for the guest to answer before giving up.
    #[arg(long, default_value_t = 180)]
    pub boot_timeout: u64,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelChoice {
    Auto,
    Kvm,
    Tcg,
}

/// What the SEV-SNP launch will be, once every check passed.
struct SnpLaunch {
    shape: LaunchShape,
    cbit: CBit,
    gpu: Option<GpuPassthrough>,
    measurement: String,
}

pub fn run(args: &Args) -> Result<()> {
    let report = Report::new(args.json);
    // A release is checked before anything else, arguments included.
    let released = match &args.release {
        Some(dir) => Some(release::open(dir, args.profile.as_deref(), &args.pubkey)?),
        None => None,
    };
    let memory_mib = qemu::parse_memory(&args.memory).map_err(anyhow::Error::msg)?;
    if !(1..=512).contains(&args.vcpus) {
        bail!("--vcpus {}: choose 1 to 512", args.vcpus);
    }
    if args.dev && (args.cpu_type.is_some() || args.gpu.is_some()) {
        bail!(
            "--cpu-type and --gpu are for SEV-SNP boots; a --dev boot uses the host's CPU model and no GPU"
        );
    }
    let (image, manifest) = match released {
        Some(r) => {
            report.say("release", &r.summary, r.fields);
            (r.image_dir, r.manifest)
        }
        None => {
            let image = args
                .image
                .clone()
                .context("--image or --release is required")?;
            (image.clone(), Manifest::load(&image)?)
        }
    };
    manifest
        .verify_artifacts(&image)
        .context("refusing to boot")?;
    profile::check_cmdline(&manifest.cmdline).map_err(anyhow::Error::msg)?;
    check_model(args, &manifest)?;
    let snp = if args.dev {
        None
    } else {
        Some(snp_launch(args, &manifest)?)
    };

    if args.print_qemu_args {
        let port = if args.port == 0 { 8443 } else { args.port };
        let run = RunDir::locate(&args.name, args.run_dir.as_deref())?;
        let accel = if args.dev {
            choose_accel(args.accel)?
        } else {
            Accel::Kvm
        };
        for a in qemu_args(
            args,
            &manifest,
            &image,
            &run,
            &accel,
            snp.as_ref(),
            memory_mib,
            port,
        ) {
            println!("{a}");
        }
        return Ok(());
    }

    let qemu_bin = qemu::find()?;
    let qemu_version = qemu::check_version(&qemu_bin)?;
    let run = RunDir::locate(&args.name, args.run_dir.as_deref())?;
    run.claim()?;
    let result = (|| {
        // Boot private copies, checked after copying: nothing can change the
        // bytes between the check and QEMU reading them.
        let staged = stage(&image, &run.path, &manifest).context("refusing to boot")?;
        report.say(
            "verified",
            &format!(
                "image {} verified against its manifest: profile {}, commit {}{}",
                image.display(),
                manifest.profile,
                short(&manifest.git.commit),
                if manifest.git.dirty {
                    " (uncommitted changes)"
                } else {
                    ""
                }
            ),
            json!({ "profile": manifest.profile, "commit": manifest.git.commit }),
        );
        let accel = match &snp {
            None => choose_accel(args.accel)?,
            Some(launch) => {
                // The copies are what QEMU reads: measure those.
                check_measurement(&staged, &manifest, launch)?;
                report.say(
                    "measurement",
                    &format!(
                        "SEV-SNP launch of {} vCPUs on {}: expected measurement {}",
                        launch.shape.vcpus, launch.shape.cpu_type, launch.measurement
                    ),
                    json!({ "measurement": launch.measurement, "vcpus": launch.shape.vcpus,
                            "cpu_type": launch.shape.cpu_type.qemu_name() }),
                );
                match accel::probe() {
                    Accel::Kvm => Accel::Kvm,
                    Accel::Tcg(why) => bail!("SEV-SNP needs KVM on an AMD SNP host: {why}"),
                }
            }
        };
        report.say(
            "accelerator",
            &format!("accelerator: {}", accel.describe()),
            json!({ "accel": accel.name() }),
        );
        let port = match args.port {
            0 => free_port()?,
            p => {
                // QEMU's own message for a taken port is obscure: check first.
                std::net::TcpListener::bind(("127.0.0.1", p)).with_context(|| {
                    format!("port {p} on 127.0.0.1 is not free: choose another with --port, or --port 0 for any")
                })?;
                p
            }
        };
        Supervisor {
            report: &report,
            run: &run,
            qemu: &qemu_bin,
            qemu_version: &qemu_version,
            qemu_args: qemu_args(
                args,
                &manifest,
                &staged,
                &run,
                &accel,
                snp.as_ref(),
                memory_mib,
                port,
            ),
            port,
            accel_name: accel.name(),
            grace: match accel {
                Accel::Kvm => Duration::from_secs(15),
                Accel::Tcg(_) => Duration::from_secs(30),
            },
            boot_timeout: Duration::from_secs(args.boot_timeout),
        }
        .run()
    })();
    run.release();
    result
}

#[allow(clippy::too_many_arguments)]
fn qemu_args(
    args: &Args,
    manifest: &Manifest,
    dir: &Path,
    run: &RunDir,
    accel: &Accel,
    snp: Option<&SnpLaunch>,
    memory_mib: u64,
    port: u16,
) -> Vec<String> {
    let (kernel, initrd, firmware) = (
        dir.join(manifest::KERNEL),
        dir.join(manifest::INITRD),
        dir.join(manifest::FIRMWARE),
    );
    let (serial_log, qmp_socket) = (run.serial_log(), run.qmp_socket());
    match snp {
        None => DevVm {
            kernel: &kernel,
            initrd: &initrd,
            cmdline: &manifest.cmdline,
            accel,
            vcpus: args.vcpus,
            memory_mib,
            host_port: port,
            guest_port: GUEST_PORT,
            serial_log: &serial_log,
            qmp_socket: &qmp_socket,
            model: args.model.as_deref(),
        }
        .args(),
        Some(launch) => SnpVm {
            firmware: &firmware,
            kernel: &kernel,
            initrd: &initrd,
            cmdline: &manifest.cmdline,
            cpu_model: launch.shape.cpu_type.qemu_name(),
            vcpus: launch.shape.vcpus,
            memory_mib,
            cbit: launch.cbit,
            gpu: launch.gpu.clone(),
            host_port: port,
            guest_port: GUEST_PORT,
            serial_log: &serial_log,
            qmp_socket: &qmp_socket,
            model: args.model.as_deref(),
        }
        .args(),
    }
}

/// The model pack must be the one the manifest (and so the measured command
/// line) names. The guest checks again as it reads the disk; this check
/// only turns a mistake into an early, clear error.
fn check_model(args: &Args, manifest: &Manifest) -> Result<()> {
    match (&manifest.model, &args.model) {
        (None, None) => Ok(()),
        (None, Some(_)) => bail!(
            "this image was built without a model; rebuild it with `cargo xtask build --model PACK`"
        ),
        (Some(m), None) => bail!(
            "this image serves the model {} (pack hash {}): pass it with --model PACK",
            m.name,
            packhash::display(&m.pack_hash)
        ),
        (Some(m), Some(pack)) => {
            if args.unchecked_model {
                return Ok(());
            }
            let (hash, _) = packhash::of_file(pack)
                .with_context(|| format!("reading the model pack {}", pack.display()))?;
            if hash != m.pack_hash {
                bail!(
                    "refusing to boot: the model pack {} has pack hash {}, the image requires {} ({})",
                    pack.display(),
                    packhash::display(&hash),
                    packhash::display(&m.pack_hash),
                    m.name
                );
            }
            Ok(())
        }
    }
}

/// The SEV-SNP checks that need no QEMU: a launch shape the manifest lists,
/// the host's C-bit, a well-formed GPU address.
fn snp_launch(args: &Args, manifest: &Manifest) -> Result<SnpLaunch> {
    let cpu_type: CpuType = args
        .cpu_type
        .as_deref()
        .context("a SEV-SNP boot needs --cpu-type (the CPU model the image was measured with); or boot with --dev")?
        .parse()
        .map_err(anyhow::Error::msg)?;
    let shape = LaunchShape {
        vcpus: args.vcpus,
        cpu_type,
        guest_features: DEFAULT_GUEST_FEATURES,
    };
    let Some(record) =
        manifest.measurement(shape.vcpus, cpu_type.qemu_name(), shape.guest_features)
    else {
        let listed = listed_shapes(manifest);
        bail!(
            "the image was not measured for {} vCPUs on {cpu_type}; refusing a launch nobody could verify. \
             Its manifest lists: {listed}",
            shape.vcpus
        );
    };
    let cbit = match (args.cbitpos, args.reduced_phys_bits) {
        (Some(position), Some(reduced_phys_bits)) => CBit {
            position,
            reduced_phys_bits,
        },
        _ => CBit::from_host()?,
    };
    let gpu = match &args.gpu {
        Some(bdf) => {
            check_bdf(bdf)?;
            Some(GpuPassthrough {
                bdf: bdf.clone(),
                iommufd: Path::new("/dev/iommu").exists(),
            })
        }
        None => None,
    };
    Ok(SnpLaunch {
        shape,
        cbit,
        gpu,
        measurement: record.measurement.clone(),
    })
}

/// `vCPUs 1-64 on EPYC-v4, ...`: the manifest's shapes, compactly.
fn listed_shapes(manifest: &Manifest) -> String {
    let mut by_type: std::collections::BTreeMap<&str, Vec<u32>> = Default::default();
    for r in &manifest.measurements {
        by_type.entry(&r.cpu_type).or_default().push(r.vcpus);
    }
    if by_type.is_empty() {
        return "nothing (an image built before measurements existed: rebuild it)".into();
    }
    by_type
        .iter()
        .map(|(t, v)| {
            format!(
                "{}-{} vCPUs on {t}",
                v.iter().min().unwrap(),
                v.iter().max().unwrap()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Recomputes the launch digest of the bytes QEMU will read and compares it
/// with the manifest's.
fn check_measurement(dir: &Path, manifest: &Manifest, launch: &SnpLaunch) -> Result<()> {
    let inputs = LaunchInputs {
        ovmf: dir.join(manifest::FIRMWARE),
        kernel: dir.join(manifest::KERNEL),
        initrd: dir.join(manifest::INITRD),
        cmdline: manifest.cmdline.clone(),
    };
    let computed = Measurer::new(&inputs)?.measure(&launch.shape)?.to_hex();
    if computed != launch.measurement {
        bail!(
            "refusing to boot: the manifest expects measurement {} for this shape, but the image measures {computed}",
            launch.measurement
        );
    }
    Ok(())
}

/// `dddd:bb:dd.f`, hex.
fn check_bdf(bdf: &str) -> Result<()> {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let ok = match bdf.split([':', '.']).collect::<Vec<_>>().as_slice() {
        [d, b, s, f] => {
            hex(d, 4) && hex(b, 2) && hex(s, 2) && f.len() == 1 && f.as_bytes()[0].is_ascii_digit()
        }
        _ => false,
    };
    if !ok {
        bail!("--gpu {bdf:?} is not a PCI address like 0000:41:00.0 (see `lspci -D`)");
    }
    Ok(())
}

fn short(commit: &str) -> &str {
    &commit[..12.min(commit.len())]
}

fn choose_accel(choice: AccelChoice) -> Result<Accel> {
    Ok(match choice {
        AccelChoice::Tcg => Accel::Tcg("chosen with --accel tcg".into()),
        AccelChoice::Auto => accel::probe(),
        AccelChoice::Kvm => match accel::probe() {
            Accel::Kvm => Accel::Kvm,
            Accel::Tcg(why) => bail!("--accel kvm, but KVM cannot run the guest here: {why}"),
        },
    })
}

/// Copies the artifacts into the run directory and checks the copies
/// against the manifest.
fn stage(image: &Path, run_dir: &Path, manifest: &Manifest) -> Result<PathBuf> {
    let dir = run_dir.join("image");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    for a in &manifest.artifacts {
        fs::copy(image.join(&a.name), dir.join(&a.name))
            .with_context(|| format!("copying {}", a.name))?;
    }
    manifest.verify_artifacts(&dir)?;
    Ok(dir)
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses() {
        check_bdf("0000:41:00.0").unwrap();
        check_bdf("0000:c1:1f.7").unwrap();
        for bad in [
            "41:00.0",
            "0000:41:00",
            "0000:41:00.0 --x",
            "0000:4g:00.0",
            "",
        ] {
            assert!(check_bdf(bad).is_err(), "{bad}");
        }
    }
}
