//! Wheels from PyPI, through pip and the index the system already uses
//! (never a host name of ours), pinned by the sha256 of the wheel file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cocoon_image::cache::Cache;
use cocoon_image::digest::Sha256;
use xshell::{Shell, cmd};

/// Downloads `project==version` (the wheel for this platform, no
/// dependencies) into `dir`; returns the wheel's path.
pub fn download(sh: &Shell, project: &str, version: &str, dir: &Path) -> Result<PathBuf> {
    let spec = format!("{project}=={version}");
    cmd!(
        sh,
        "python3 -m pip download --quiet --no-deps --only-binary :all: --dest {dir} {spec}"
    )
    .run()
    .with_context(|| format!("pip could not download {spec} (is PyPI reachable?)"))?;
    let mut wheels = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .filter(|p| {
            p.as_ref()
                .map_or(true, |p| p.extension().is_some_and(|x| x == "whl"))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    match wheels.len() {
        1 => Ok(wheels.remove(0)),
        n => bail!("pip left {n} wheels for {spec} in {}", dir.display()),
    }
}

/// The wheel `file` with this sha256, from the cache or downloaded and
/// checked (a wheel that hashes otherwise is refused, saying both hashes).
pub fn wheel(
    sh: &Shell,
    cache: &Cache,
    project: &str,
    version: &str,
    file: &str,
    sha256: &Sha256,
) -> Result<PathBuf> {
    if let Some(p) = cache.get(sha256, file)? {
        return Ok(p);
    }
    let dl = tempfile::tempdir()?;
    let got = download(sh, project, version, dl.path())?;
    if got.file_name() != Some(file.as_ref()) {
        bail!(
            "pip downloaded {} for {project}=={version}, but the lock pins {file}",
            got.display()
        );
    }
    Ok(cache.put_file(&got, sha256, file)?)
}

/// Extracts the members of `wheel` under `folder/` into `dest` (a wheel is
/// a zip file; Python's zipfile is already a dependency of the pipeline).
pub fn extract_folder(sh: &Shell, wheel: &Path, folder: &str, dest: &Path) -> Result<()> {
    const SCRIPT: &str = "import os, shutil, sys, zipfile
wheel, folder, dest = sys.argv[1], sys.argv[2].rstrip('/') + '/', sys.argv[3]
z = zipfile.ZipFile(wheel)
n = 0
for m in z.infolist():
    if m.is_dir() or not m.filename.startswith(folder):
        continue
    rel = m.filename[len(folder):]
    if rel.startswith('/') or '..' in rel.split('/'):
        sys.exit('unsafe member ' + m.filename)
    out = os.path.join(dest, rel)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with z.open(m) as src, open(out, 'wb') as dst:
        shutil.copyfileobj(src, dst)
    n += 1
if n == 0:
    sys.exit('no member under ' + folder)
";
    cmd!(sh, "python3 -c {SCRIPT} {wheel} {folder} {dest}")
        .quiet()
        .run()
        .with_context(|| format!("extracting {folder}/ from {}", wheel.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zip file holding `members` (name, content), written by Python's
    /// zipfile as a wheel would be.
    fn zip(dir: &Path, members: &[(&str, &str)]) -> PathBuf {
        let sh = Shell::new().unwrap();
        let path = dir.join("t.whl");
        let spec = serde_json::to_string(members).unwrap();
        let script = "import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1], 'w')
for name, text in json.loads(sys.argv[2]):
    z.writestr(name, text)
";
        cmd!(sh, "python3 -c {script} {path} {spec}")
            .quiet()
            .run()
            .unwrap();
        path
    }

    #[test]
    fn extracts_one_folder_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = zip(
            tmp.path(),
            &[
                ("nvidia/include/crt/host.h", "crt"),
                ("nvidia/include/cuda.h", "cuda"),
                ("nvidia/include-not/x.h", "no"),
                ("nvidia/lib/libcudart.so.12", "lib"),
            ],
        );
        let dest = tmp.path().join("out");
        let sh = Shell::new().unwrap();
        extract_folder(&sh, &wheel, "nvidia/include", &dest).unwrap();
        let read = |p: &str| std::fs::read_to_string(dest.join(p)).unwrap();
        assert_eq!(read("crt/host.h"), "crt");
        assert_eq!(read("cuda.h"), "cuda");
        let mut names: Vec<_> = std::fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["crt", "cuda.h"]);
    }

    #[test]
    fn a_missing_folder_or_an_escaping_member_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let sh = Shell::new().unwrap();
        let wheel = zip(tmp.path(), &[("nvidia/include/cuda.h", "cuda")]);
        let dest = tmp.path().join("out");
        assert!(extract_folder(&sh, &wheel, "nvidia/lib", &dest).is_err());
        let evil = zip(tmp.path(), &[("nvidia/include/../../evil.h", "x")]);
        assert!(extract_folder(&sh, &evil, "nvidia/include", &dest).is_err());
        assert!(!tmp.path().join("evil.h").exists());
    }
}
