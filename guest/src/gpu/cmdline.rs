//! Which GPU profile the measured kernel command line asks for.
//!
//! `cocoon.gpu=required` (a GPU image: a GPU in confidential-computing mode
//! or no service) or `cocoon.gpu=cc-off-allowed` (development only: a GPU
//! outside CC mode is used, and the certificate then carries no GPU
//! evidence). No word: the CPU profile, exactly as before GPUs existed.
//! The command line is covered by the SNP launch measurement, so the host
//! cannot change the choice; it is parsed as strictly as `cocoon.model=`.

use anyhow::{Result, bail};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuMode {
    /// Every GPU must be in CC mode (production, no dev tools) and its
    /// evidence must verify.
    Required,
    /// A GPU outside CC mode is accepted (development images only).
    CcOffAllowed,
}

const KEY: &str = "cocoon.gpu=";

/// `Ok(None)`: the CPU profile. A malformed or repeated word is an error,
/// never a silent CPU profile.
pub fn parse(cmdline: &str) -> Result<Option<GpuMode>> {
    let mut found = None;
    for word in cmdline.split_whitespace() {
        let Some(value) = word.strip_prefix(KEY) else {
            continue;
        };
        let mode = match value {
            "required" => GpuMode::Required,
            "cc-off-allowed" => GpuMode::CcOffAllowed,
            other => bail!("cocoon.gpu must be `required` or `cc-off-allowed`, not {other:?}"),
        };
        if found.is_some() {
            bail!("cocoon.gpu appears twice on the command line");
        }
        found = Some(mode);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_profile_strictly() {
        assert_eq!(parse("console=ttyS0 quiet").unwrap(), None);
        assert_eq!(
            parse("console=ttyS0 cocoon.gpu=required").unwrap(),
            Some(GpuMode::Required)
        );
        assert_eq!(
            parse("cocoon.gpu=cc-off-allowed cocoon.model=sha256:00").unwrap(),
            Some(GpuMode::CcOffAllowed)
        );
        for bad in [
            "cocoon.gpu=",
            "cocoon.gpu=Required",
            "cocoon.gpu=yes",
            "cocoon.gpu=required,cc-off-allowed",
            "cocoon.gpu=required cocoon.gpu=required",
            "cocoon.gpu=required cocoon.gpu=cc-off-allowed",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} must be refused");
        }
        // Other words that merely start alike are not ours.
        assert_eq!(parse("cocoon.gpus=8").unwrap(), None);
    }
}
