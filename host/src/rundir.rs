//! Where a running VM keeps its files: the QMP socket, the serial log,
//! QEMU's own log and the supervisor's pid (which `cocoon-host stop` signals).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

pub struct RunDir {
    pub path: PathBuf,
    pub name: String,
}

/// VM names become paths: keep them plain.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        bail!("VM name `{name}`: use 1 to 32 letters, digits, `-` or `_`");
    }
    Ok(())
}

impl RunDir {
    /// `$XDG_RUNTIME_DIR/cocoon/<name>`, else `/tmp/cocoon-<uid>/<name>`,
    /// unless `dir` says where.
    pub fn locate(name: &str, dir: Option<&Path>) -> Result<Self> {
        check_name(name)?;
        let path = match dir {
            Some(d) => d.to_path_buf(),
            None => match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
                Some(r) => PathBuf::from(r).join("cocoon").join(name),
                None => {
                    PathBuf::from(format!("/tmp/cocoon-{}", unsafe { libc::getuid() })).join(name)
                }
            },
        };
        Ok(RunDir {
            path,
            name: name.to_string(),
        })
    }

    pub fn serial_log(&self) -> PathBuf {
        self.path.join("serial.log")
    }
    pub fn qemu_log(&self) -> PathBuf {
        self.path.join("qemu.log")
    }
    pub fn qmp_socket(&self) -> PathBuf {
        self.path.join("qmp.sock")
    }
    fn supervisor_pid_file(&self) -> PathBuf {
        self.path.join("supervisor.pid")
    }

    /// The pid of the `cocoon-host boot` that owns this VM, if it still runs.
    pub fn running_supervisor(&self) -> Option<i32> {
        let pid: i32 = fs::read_to_string(self.supervisor_pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        is_cocoon_host(pid).then_some(pid)
    }

    /// Takes the directory for a new VM: refuses if one is running, clears
    /// what a previous one left, records our pid.
    pub fn claim(&self) -> Result<()> {
        if let Some(pid) = self.running_supervisor() {
            bail!(
                "a VM named `{}` is already running (cocoon-host pid {pid}): stop it with `cocoon-host stop --name {}`",
                self.name,
                self.name
            );
        }
        fs::create_dir_all(&self.path)
            .with_context(|| format!("creating {}", self.path.display()))?;
        fs::set_permissions(
            &self.path,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        for f in [self.serial_log(), self.qemu_log(), self.qmp_socket()] {
            let _ = fs::remove_file(f);
        }
        fs::write(self.supervisor_pid_file(), std::process::id().to_string())?;
        Ok(())
    }

    /// Forgets the VM (keeps the logs for post-mortems).
    pub fn release(&self) {
        let _ = fs::remove_file(self.supervisor_pid_file());
        let _ = fs::remove_file(self.qmp_socket());
    }
}

/// Whether `pid` is alive and is a `cocoon-host` (not a recycled pid).
fn is_cocoon_host(pid: i32) -> bool {
    let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    exe.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("cocoon-host"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain() {
        for good in ["dev", "demo-1", "a_b"] {
            check_name(good).unwrap();
        }
        for bad in ["", "../x", "a/b", "a b", &"x".repeat(33)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn claims_and_releases() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::locate("t", Some(dir.path())).unwrap();
        run.claim().unwrap();
        // Our own pid is a test binary, not cocoon-host: not "running".
        assert_eq!(run.running_supervisor(), None);
        run.release();
        assert!(!dir.path().join("supervisor.pid").exists());
    }
}
