//! A private apt configuration that downloads from the system's own mirror.
//!
//! The project never names a mirror: it reads the URI that the machine's apt
//! sources already use for Debian, and writes a configuration of its own
//! (under `target/`) that adds the suites the lock needs. The system's apt
//! state is never touched, so this works without root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::lock::PinnedPackage;

/// Suite names that identify a Debian archive (not a third-party one).
const DEBIAN_SUITES: &[&str] = &[
    "buster",
    "bullseye",
    "bookworm",
    "trixie",
    "forky",
    "duke",
    "sid",
    "oldstable",
    "stable",
    "testing",
    "unstable",
];

#[derive(Debug, thiserror::Error)]
pub enum AptError {
    #[error(
        "no Debian mirror found in the system's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/): \
         add the Debian archive there, or set COCOON_APT_MIRROR to its URI"
    )]
    NoMirror,
    #[error("cannot run {tool}: {error} (install the `apt` package)")]
    Spawn { tool: String, error: std::io::Error },
    #[error("`{command}` failed:\n{stderr}")]
    Failed { command: String, stderr: String },
    /// The mirror does not serve the pinned version (the message says what to do).
    #[error("{0}")]
    NotServed(String),
    #[error("apt I/O on {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AptError + '_ {
    move |error| AptError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// One `deb`/`deb-src` entry of an apt sources file, either syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    pub types: Vec<String>,
    pub uris: Vec<String>,
    pub suites: Vec<String>,
    pub components: Vec<String>,
}

/// Parses the one-line format: `deb [options] URI SUITE COMPONENT...`.
pub fn parse_one_line(text: &str) -> Vec<SourceEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace().peekable();
        let Some(kind) = words.next() else { continue };
        if kind != "deb" && kind != "deb-src" {
            continue;
        }
        if words.peek().is_some_and(|w| w.starts_with('[')) {
            for w in words.by_ref() {
                if w.ends_with(']') {
                    break;
                }
            }
        }
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        out.push(SourceEntry {
            types: vec![kind.to_string()],
            uris: vec![uri.to_string()],
            suites: vec![suite.to_string()],
            components: words.map(str::to_string).collect(),
        });
    }
    out
}

/// Parses the deb822 format of `*.sources` files (stanzas of `Key: value`).
pub fn parse_deb822(text: &str) -> Vec<SourceEntry> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut fields = std::collections::BTreeMap::<String, String>::new();
        let mut last: Option<String> = None;
        for line in stanza.lines() {
            if line.starts_with('#') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                if let Some(k) = &last {
                    let v = fields.entry(k.clone()).or_default();
                    v.push(' ');
                    v.push_str(line.trim());
                }
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                fields.insert(k.clone(), v.trim().to_string());
                last = Some(k);
            }
        }
        if fields
            .get("enabled")
            .is_some_and(|v| v.eq_ignore_ascii_case("no"))
        {
            continue;
        }
        let list = |k: &str| -> Vec<String> {
            fields
                .get(k)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let entry = SourceEntry {
            types: list("types"),
            uris: list("uris"),
            suites: list("suites"),
            components: list("components"),
        };
        if !entry.types.is_empty() && !entry.uris.is_empty() {
            out.push(entry);
        }
    }
    out
}

/// The first Debian archive URI among `entries`: a `deb` entry with a
/// Debian suite name (`bookworm`, not `bookworm-security`) and `main`.
pub fn debian_mirror(entries: &[SourceEntry]) -> Option<String> {
    entries
        .iter()
        .filter(|e| e.types.iter().any(|t| t == "deb"))
        .filter(|e| e.components.iter().any(|c| c == "main"))
        .filter(|e| e.suites.iter().any(|s| DEBIAN_SUITES.contains(&s.as_str())))
        .flat_map(|e| e.uris.first())
        .map(|u| u.trim_end_matches('/').to_string())
        .next()
}

/// The system's Debian mirror, read from its apt sources (or
/// `COCOON_APT_MIRROR` when set).
pub fn system_mirror() -> Result<String, AptError> {
    if let Some(m) = std::env::var_os("COCOON_APT_MIRROR").filter(|v| !v.is_empty()) {
        return Ok(m.to_string_lossy().trim_end_matches('/').to_string());
    }
    let mut entries = Vec::new();
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list") {
        entries.extend(parse_one_line(&text));
    }
    let mut parts: Vec<PathBuf> = fs::read_dir("/etc/apt/sources.list.d")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    parts.sort();
    for p in parts {
        let Ok(text) = fs::read_to_string(&p) else {
            continue;
        };
        match p.extension().and_then(|e| e.to_str()) {
            Some("sources") => entries.extend(parse_deb822(&text)),
            Some("list") => entries.extend(parse_one_line(&text)),
            _ => {}
        }
    }
    debian_mirror(&entries).ok_or(AptError::NoMirror)
}

/// An apt configuration of our own under `dir`, for the given suites.
#[derive(Debug)]
pub struct PrivateApt {
    dir: PathBuf,
    mirror: String,
    updated: bool,
}

impl PrivateApt {
    /// Writes the configuration: `suites` are the `(suite, component)`
    /// pairs of binary packages, `source_suites` those of source packages.
    pub fn create(
        dir: &Path,
        mirror: &str,
        suites: &[(String, String)],
        source_suites: &[(String, String)],
    ) -> Result<Self, AptError> {
        for sub in [
            "sources.list.d",
            "preferences.d",
            "state/lists/partial",
            "cache/archives/partial",
        ] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let status = dir.join("state/status");
        if !status.exists() {
            fs::write(&status, "").map_err(io_err(&status))?;
        }
        let mut sources = String::new();
        for (kind, pairs) in [("deb", suites), ("deb-src", source_suites)] {
            let mut grouped = std::collections::BTreeMap::<&str, Vec<&str>>::new();
            for (suite, component) in pairs {
                let comps = grouped.entry(suite).or_default();
                if !comps.contains(&component.as_str()) {
                    comps.push(component);
                }
            }
            for (suite, comps) in grouped {
                sources.push_str(&format!(
                    "{kind} [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} {suite} {}\n",
                    comps.join(" ")
                ));
            }
        }
        write_if_changed(&dir.join("sources.list"), &sources)?;
        let d = dir.display();
        let mut conf = format!(
            "Dir::Etc::sourcelist \"{d}/sources.list\";\n\
             Dir::Etc::sourceparts \"{d}/sources.list.d\";\n\
             Dir::Etc::preferencesparts \"{d}/preferences.d\";\n\
             Dir::State \"{d}/state\";\n\
             Dir::State::status \"{d}/state/status\";\n\
             Dir::Cache \"{d}/cache\";\n\
             APT::Architecture \"amd64\";\n\
             Acquire::Languages \"none\";\n"
        );
        // As root, apt would hand downloads to the `_apt` user, who cannot
        // write into the caller's directories.
        if unsafe { libc::geteuid() } == 0 {
            conf.push_str("APT::Sandbox::User \"root\";\n");
        }
        write_if_changed(&dir.join("apt.conf"), &conf)?;
        Ok(PrivateApt {
            dir: dir.to_path_buf(),
            mirror: mirror.to_string(),
            updated: false,
        })
    }

    pub fn mirror(&self) -> &str {
        &self.mirror
    }

    fn command(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.env("APT_CONFIG", self.dir.join("apt.conf"))
            .env("LC_ALL", "C");
        c
    }

    fn run(&self, mut cmd: Command, what: &str) -> Result<std::process::Output, AptError> {
        let out = cmd.output().map_err(|error| AptError::Spawn {
            tool: what.to_string(),
            error,
        })?;
        Ok(out)
    }

    /// `apt-get update`, once per process.
    pub fn update(&mut self) -> Result<(), AptError> {
        if self.updated {
            return Ok(());
        }
        let mut c = self.command("apt-get");
        c.args(["-q", "update"]);
        let out = self.run(c, "apt-get")?;
        if !out.status.success() {
            return Err(AptError::Failed {
                command: "apt-get update (private configuration)".into(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        self.updated = true;
        Ok(())
    }

    /// Downloads the pinned `.deb` into `dest` and returns its path. The
    /// caller checks the hash; `cache_path` is where the error tells the
    /// user to put a copy if the mirror dropped the version.
    pub fn download(
        &mut self,
        pkg: &PinnedPackage,
        dest: &Path,
        cache_path: &Path,
    ) -> Result<PathBuf, AptError> {
        self.update()?;
        fs::create_dir_all(dest).map_err(io_err(dest))?;
        let mut c = self.command("apt-get");
        c.current_dir(dest)
            .args(["-q", "download", &pkg.apt_spec()]);
        let out = self.run(c, "apt-get")?;
        if !out.status.success() {
            return Err(AptError::NotServed(format!(
                "the mirror {} no longer serves {} ({}/{}):\n{}\n  \
                 either place a copy of that .deb (sha256 {}) at {},\n  \
                 or pin a version the mirror serves with `cargo xtask lock` and review the diff",
                self.mirror,
                pkg.apt_spec(),
                pkg.suite,
                pkg.component,
                String::from_utf8_lossy(&out.stderr).trim(),
                pkg.sha256,
                cache_path.display(),
            )));
        }
        let debs: Vec<PathBuf> = fs::read_dir(dest)
            .map_err(io_err(dest))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "deb"))
            .collect();
        match debs.as_slice() {
            [one] => Ok(one.clone()),
            _ => Err(AptError::Failed {
                command: format!("apt-get download {}", pkg.apt_spec()),
                stderr: format!(
                    "expected one .deb in {}, found {}",
                    dest.display(),
                    debs.len()
                ),
            }),
        }
    }

    /// Downloads the files of a source package into `dest`
    /// (`apt-get source --download-only`). Returns apt's complaints: some
    /// mirrors do not serve the `.dsc`, so a failure is only an error if
    /// the caller's pinned files did not arrive.
    pub fn download_source(&mut self, spec: &str, dest: &Path) -> Result<String, AptError> {
        self.update()?;
        fs::create_dir_all(dest).map_err(io_err(dest))?;
        let mut c = self.command("apt-get");
        c.current_dir(dest)
            .args(["-q", "source", "--download-only", spec]);
        let out = self.run(c, "apt-get")?;
        Ok(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }

    /// The versions of `package` the mirror serves, newest first.
    pub fn versions(&mut self, package: &str) -> Result<Vec<(String, String)>, AptError> {
        self.update()?;
        let mut c = self.command("apt-cache");
        c.args(["madison", package]);
        let out = self.run(c, "apt-cache")?;
        if !out.status.success() {
            return Err(AptError::Failed {
                command: format!("apt-cache madison {package}"),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        // `pkg | version | uri suite/component arch Packages`
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .lines()
            .filter_map(|l| {
                let cols: Vec<&str> = l.split('|').map(str::trim).collect();
                let suite = cols.get(2)?.split_whitespace().nth(1)?;
                Some((cols.get(1)?.to_string(), suite.to_string()))
            })
            .collect())
    }
}

fn write_if_changed(path: &Path, text: &str) -> Result<(), AptError> {
    if fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(());
    }
    fs::write(path, text).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_debian_archive_from_deb822() {
        let text = "Types: deb\n# a comment\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n\
                    Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                    Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n";
        let entries = parse_deb822(text);
        assert_eq!(entries.len(), 2);
        assert_eq!(
            debian_mirror(&entries).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn skips_security_third_party_and_disabled_sources() {
        let one_line = "deb http://sec.example/debian-security bookworm-security main\n\
                        deb [arch=amd64 signed-by=/k.gpg] https://vendor.example/apt nodistro main\n\
                        deb-src http://src.example/debian bookworm main\n";
        assert_eq!(debian_mirror(&parse_one_line(one_line)), None);
        let disabled = "Enabled: no\nTypes: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\n";
        assert_eq!(debian_mirror(&parse_deb822(disabled)), None);
        let good = format!(
            "{one_line}deb [trusted=yes] http://m.example/debian trixie main contrib # x\n"
        );
        assert_eq!(
            debian_mirror(&parse_one_line(&good)).as_deref(),
            Some("http://m.example/debian")
        );
    }

    #[test]
    fn writes_a_configuration_with_the_mirror_and_suites() {
        let dir = tempfile::tempdir().unwrap();
        let suites = [
            ("bookworm-backports".to_string(), "main".to_string()),
            ("trixie".to_string(), "main".to_string()),
            ("trixie".to_string(), "contrib".to_string()),
        ];
        let src = [("trixie".to_string(), "main".to_string())];
        PrivateApt::create(dir.path(), "http://m.example/debian", &suites, &src).unwrap();
        let list = fs::read_to_string(dir.path().join("sources.list")).unwrap();
        assert!(list.contains("deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://m.example/debian trixie main\n"), "{list}");
        assert!(
            list.contains("http://m.example/debian bookworm-backports main\n"),
            "{list}"
        );
        assert!(
            list.contains("http://m.example/debian trixie main contrib\n"),
            "{list}"
        );
        let conf = fs::read_to_string(dir.path().join("apt.conf")).unwrap();
        assert!(conf.contains(&format!("Dir::State \"{}/state\"", dir.path().display())));
    }
}
