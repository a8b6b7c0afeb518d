//! The model: which one the measured command line requires, and loading it
//! from the read-only disk the host attaches.
//!
//! `cocoon.model=sha256tree:<hex>` on the kernel command line is covered by
//! the SNP launch measurement, so the hash below is the one the image was
//! measured with, whatever the host does. The disk is found by its virtio
//! serial, read once into memory while hashing, and parsed only after the
//! hash matched (see `cocoon_engine::verify`; the hash is the pack hash of
//! `cocoon_image::packhash`, not the file's plain sha256).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cocoon_engine::model::{self, Model, Target};
use cocoon_image::digest::Sha256;
use cocoon_image::packhash;

/// The virtio serial the host gives the model disk.
pub const DISK_SERIAL: &str = "cocoon-model";
/// How long the disk may take to appear after the virtio_blk module loads.
const DISK_WAIT: Duration = Duration::from_secs(10);

/// The pack hash the measured command line requires, if any.
pub fn measured_model() -> Option<Sha256> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").ok()?;
    parse_cmdline(&cmdline).ok().flatten()
}

pub fn parse_cmdline(cmdline: &str) -> Result<Option<Sha256>> {
    let mut found = None;
    for word in cmdline.split_whitespace() {
        if let Some(v) = word.strip_prefix("cocoon.model=") {
            let hash = v
                .strip_prefix(packhash::SCHEME)
                .and_then(|v| v.strip_prefix(':'))
                .and_then(|hex| hex.parse::<Sha256>().ok())
                .with_context(|| {
                    format!(
                        "cocoon.model must be {}:<64 lowercase hex digits>, not {v:?}",
                        packhash::SCHEME
                    )
                })?;
            if found.is_some() {
                bail!("cocoon.model appears twice on the command line");
            }
            found = Some(hash);
        }
    }
    Ok(found)
}

/// `/dev/vdX` whose serial is [`DISK_SERIAL`], waiting for it to appear.
fn find_disk(sys_block: &Path) -> Result<PathBuf> {
    let start = Instant::now();
    loop {
        if let Ok(entries) = std::fs::read_dir(sys_block) {
            for e in entries.flatten() {
                let serial = std::fs::read_to_string(e.path().join("serial")).unwrap_or_default();
                if serial.trim() == DISK_SERIAL {
                    return Ok(Path::new("/dev").join(e.file_name()));
                }
            }
        }
        if start.elapsed() > DISK_WAIT {
            bail!(
                "the measured command line requires a model, but no disk with serial {DISK_SERIAL} is attached \
                 (boot with --model PACK)"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Loads and verifies the model the command line names; `None` if it names
/// none. The profile picks `target`, not a probe: a GPU image whose GPU
/// fails stops instead of serving from its CPU.
pub fn load(target: Target) -> Result<Option<Arc<Model>>> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    let Some(expected) = parse_cmdline(&cmdline)? else {
        return Ok(None);
    };
    let dev = find_disk(Path::new("/sys/block"))?;
    let start = Instant::now();
    let file = std::fs::File::open(&dev).with_context(|| format!("opening {}", dev.display()))?;
    let size = block_size(&file).with_context(|| format!("sizing {}", dev.display()))?;
    let bytes = cocoon_engine::verify::read_verified(&file, size, &expected)
        .with_context(|| format!("model disk {}", dev.display()))?;
    let verified = start.elapsed();
    let device = match target {
        Target::Cpu => (Target::Cpu, "cpu".to_string()),
        Target::Cuda => model::device_named("cuda").map_err(anyhow::Error::msg)?,
    };
    let model = Model::load_on(&bytes, device).context("loading the verified model pack")?;
    drop(bytes);
    crate::console::event(
        "model",
        &[
            ("id", model.header.name.clone().into()),
            ("pack_hash", packhash::display(&expected).into()),
            ("device", model.device_name.clone().into()),
            ("verify_s", verified.as_secs_f64().into()),
            ("load_s", start.elapsed().as_secs_f64().into()),
        ],
    );
    Ok(Some(Arc::new(model)))
}

fn block_size(f: &std::fs::File) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut f = f;
    let n = f.seek(SeekFrom::End(0))?;
    f.seek(SeekFrom::Start(0))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_model_hash_from_the_command_line() {
        let h = "ab".repeat(32);
        assert_eq!(
            parse_cmdline(&format!("console=ttyS0 cocoon.model=sha256tree:{h} quiet")).unwrap(),
            Some(Sha256([0xab; 32]))
        );
        assert_eq!(parse_cmdline("console=ttyS0").unwrap(), None);
        assert!(parse_cmdline("cocoon.model=md5:abc").is_err());
        // A plain file sha256 names no pack this guest can check.
        assert!(parse_cmdline(&format!("cocoon.model=sha256:{h}")).is_err());
        assert!(parse_cmdline(&format!("cocoon.model=sha256tree:{}", "AB".repeat(32))).is_err());
        assert!(
            parse_cmdline(&format!(
                "cocoon.model=sha256tree:{h} cocoon.model=sha256tree:{h}"
            ))
            .is_err()
        );
    }

    #[test]
    fn finds_the_disk_by_its_serial() {
        let d = tempfile::tempdir().unwrap();
        for (dev, serial) in [("vda", "other\n"), ("vdb", "cocoon-model\n")] {
            std::fs::create_dir(d.path().join(dev)).unwrap();
            std::fs::write(d.path().join(dev).join("serial"), serial).unwrap();
        }
        assert_eq!(find_disk(d.path()).unwrap(), Path::new("/dev/vdb"));
    }
}
