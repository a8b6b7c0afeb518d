//! `cargo xtask build`: pinned inputs + `/init` → a bootable, described image.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cocoon_image::cache::Cache;
use cocoon_image::digest::Sha256;
use cocoon_image::elf;
use cocoon_image::initramfs::{self, Initramfs};
use cocoon_image::kmod;
use cocoon_image::lock::{InputsLock, PinnedPackage};
use cocoon_image::manifest::{
    self, Artifact, BuildInfo, GitInfo, InitramfsInfo, MANIFEST_FILE, MANIFEST_SCHEMA, Manifest,
};
use cocoon_image::profile::{self, Profile};
use xshell::Shell;

use crate::inputs::Fetcher;
use crate::progress::Step;
use crate::{env, firmware, gpu, guest, measure};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Image profile to build.
    #[arg(long, default_value = "cpu")]
    pub profile: String,
    /// Output directory [default: target/cocoon/<profile>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A model pack (`cargo xtask model-pack`) the image will serve: its
    /// sha256 goes on the measured kernel command line.
    #[arg(long)]
    pub model: Option<PathBuf>,
}

pub const LOCK_PATH: &str = "image/inputs.lock";

/// The kernel release a package's `boot/vmlinuz-<release>` names.
pub fn kernel_release(pkg: &PinnedPackage) -> Result<(String, String)> {
    pkg.files
        .iter()
        .find_map(|f| {
            Some((
                f.path.clone(),
                f.path.strip_prefix("boot/vmlinuz-")?.to_string(),
            ))
        })
        .with_context(|| {
            format!(
                "input `{}` pins no boot/vmlinuz-*: run `cargo xtask lock`",
                pkg.name
            )
        })
}

/// The kernel and the modules a profile loads, verified, in load order.
struct KernelParts {
    release: String,
    vmlinuz: PathBuf,
    /// `(path under /lib/modules/<release>/, cache path)` in load order.
    modules: Vec<(String, PathBuf)>,
    modules_dep: String,
}

/// `built`: modules the build compiled, as `(file name, path)`; they go
/// under `updates/dkms/`, where Debian's DKMS would install them.
fn kernel_parts(
    fetcher: &mut Fetcher,
    pkg: &PinnedPackage,
    profile: &Profile,
    built: &[(String, PathBuf)],
) -> Result<KernelParts> {
    let files = fetcher.files(pkg)?;
    let (vmlinuz_path, release) = kernel_release(pkg)?;
    let prefix = format!("lib/modules/{release}/");
    let mut infos = BTreeMap::new();
    let mut rel_path = BTreeMap::new();
    let mut cache_path = BTreeMap::new();
    let built = built
        .iter()
        .map(|(name, path)| (format!("{prefix}updates/dkms/{name}"), path.clone()));
    for (path, blob) in files.clone().into_iter().chain(built) {
        let Some(rel) = path.strip_prefix(&prefix) else {
            continue;
        };
        if kmod::name_from_path(&path).is_none() {
            continue;
        }
        let bytes = fs::read(&blob)?;
        let info = kmod::modinfo(&path, &bytes)?;
        kmod::check_vermagic(&path, &info, &release)?;
        rel_path.insert(info.name.clone(), rel.to_string());
        cache_path.insert(info.name.clone(), blob.clone());
        infos.insert(info.name.clone(), info);
    }
    let gpu_modules = profile.gpu.map_or(&[][..], |g| g.modules);
    let roots: Vec<&str> = profile.modules.iter().chain(gpu_modules).copied().collect();
    let order = kmod::load_order(&roots, &infos)?;
    let modules_dep = kmod::modules_dep(&order, &infos, &rel_path);
    Ok(KernelParts {
        release,
        vmlinuz: files[&vmlinuz_path].clone(),
        modules: order
            .iter()
            .map(|m| (rel_path[m].clone(), cache_path[m].clone()))
            .collect(),
        modules_dep,
    })
}

/// Writes `bytes` to `path` unless it already holds them (keeps mtimes of
/// unchanged artifacts, and a no-op build writes nothing).
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<bool> {
    if fs::read(path).ok().as_deref() == Some(bytes) {
        return Ok(false);
    }
    let dir = path.parent().context("artifact paths have a parent")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    // Fixed permissions, whatever the umask: the image directory is
    // compared across builds and copied into releases.
    fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(true)
}

pub struct Built {
    pub dir: PathBuf,
}

pub fn run(sh: &Shell, root: &Path, args: &Args) -> Result<Built> {
    let started = Instant::now();
    let profile = profile::by_name(&args.profile).with_context(|| {
        let names: Vec<_> = profile::ALL.iter().map(|p| p.name).collect();
        format!(
            "unknown profile `{}`; profiles: {}",
            args.profile,
            names.join(", ")
        )
    })?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| crate::default_image_dir(root, profile.name));
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out = out.canonicalize()?;
    // One build at a time per output directory (tests build concurrently).
    let lock_file = fs::File::create(out.join(".build.lock"))?;
    lock_file.lock().context("locking the output directory")?;

    let lock = InputsLock::load(&root.join(LOCK_PATH))?;
    let kernel_pkg = lock.package(profile.kernel_input)?;
    let mut fetcher = Fetcher::new(
        Cache::open_default()?,
        &lock,
        &root.join("target/cocoon/apt"),
    );
    let (_, release) = kernel_release(kernel_pkg)?;
    guest::check_glibc(&lock, profile.init, &env::libc_version(sh)?)?;
    let init_runtime = fetcher.image_files(&lock, profile.init.runtime)?;
    let gpu = match profile.gpu {
        Some(stack) => Some(gpu::parts(sh, root, &mut fetcher, &lock, stack, &release)?),
        None => None,
    };
    let built_modules = gpu.as_ref().map_or(&[][..], |g| &g.modules[..]);
    let kernel = kernel_parts(&mut fetcher, kernel_pkg, profile, built_modules)?;
    let firmware_src = lock.source(profile.firmware_input)?;
    let firmware = firmware::firmware(sh, &mut fetcher, firmware_src)?;
    let ovmf = fs::read(&firmware.path)?;

    let git = env::git_info(sh, root)?;
    let cuda = crate::cuda_toolkit::assemble(sh, root, &mut fetcher, &lock, profile.init.cuda)?;
    let guest = guest::build(sh, root, git.source_date_epoch, profile.init, &cuda.root)?;
    let init = fs::read(&guest.path)?;
    let interpreter = profile.init.interpreter.trim_start_matches('/');

    let mut tree = Initramfs::new();
    // Path → mode of what `/init` may need to start (the loader, libraries).
    let mut files = BTreeMap::new();
    tree.add_char_dev("dev/console", 0o600, 5, 1)?;
    let linkage = elf::linkage(&init).context("reading the /init just built")?;
    files.insert("init".to_string(), 0o755);
    tree.add_file("init", 0o755, init)?;
    let moddir = format!("lib/modules/{}", kernel.release);
    for (rel, blob) in &kernel.modules {
        tree.add_file(&format!("{moddir}/{rel}"), 0o644, fs::read(blob)?)?;
    }
    tree.add_file(
        &format!("{moddir}/modules.dep"),
        0o644,
        kernel.modules_dep.clone().into_bytes(),
    )?;
    let gpu_files = gpu.as_ref().map_or(&[][..], |g| &g.files[..]);
    for (path, blob) in init_runtime.files.iter().chain(gpu_files) {
        // The kernel maps the loader as it does a program.
        let mode = if path == interpreter { 0o755 } else { 0o644 };
        files.insert(path.clone(), mode);
        tree.add_file(path, mode, fs::read(blob)?)?;
    }
    guest::check_runs_in(&linkage, profile.init, &files)
        .with_context(|| format!("the {} image could not start its /init", profile.name))?;
    let cpio = tree.cpio(git.source_date_epoch as u32);
    let cpio_sha = Sha256::of(&cpio);
    if let Some(stack) = profile.gpu
        && cpio.len() as u64 > stack.initramfs_budget
    {
        bail!(
            "the {} initramfs is {} bytes uncompressed, over its budget of {} bytes",
            profile.name,
            cpio.len(),
            stack.initramfs_budget
        );
    }

    // Compression is the slow part: reuse the last result when the archive
    // and the compressor's settings are the same and the image on disk
    // still matches its manifest.
    let compression = format!(
        "zstd {} level {}",
        initramfs::zstd_version(),
        profile.zstd_level
    );
    let previous = Manifest::load(&out).ok();
    let reusable = previous.as_ref().is_some_and(|m| {
        m.initramfs.uncompressed_sha256 == cpio_sha
            && m.initramfs.compression == compression
            && m.artifact(manifest::INITRD).is_some_and(|a| {
                Sha256::of_file(&out.join(manifest::INITRD)).ok() == Some((a.sha256, a.size))
            })
    });
    let initrd = if reusable {
        fs::read(out.join(manifest::INITRD))?
    } else {
        let step = Step::start(format!(
            "compressing the initramfs (zstd -{})",
            profile.zstd_level
        ));
        let c = initramfs::compress(&cpio, profile.zstd_level)?;
        step.done(&format!("{} → {} bytes", cpio.len(), c.len()));
        c
    };
    if initrd.len() as u64 > profile.initrd_budget {
        bail!(
            "initrd.img is {} bytes, over the {} profile's budget of {} bytes: see BENCHMARKS.md before raising it",
            initrd.len(),
            profile.name,
            profile.initrd_budget
        );
    }
    let model = match &args.model {
        Some(pack) => Some(model_ref(pack)?),
        None => None,
    };
    let cmdline = match &model {
        Some(m) => format!(
            "{} {}",
            profile.cmdline,
            manifest::model_cmdline_arg(&m.pack_hash)
        ),
        None => profile.cmdline.to_string(),
    };
    profile::check_cmdline(&cmdline).map_err(anyhow::Error::msg)?;
    let vmlinuz = fs::read(&kernel.vmlinuz)?;

    let artifacts: Vec<(&str, &[u8])> = vec![
        (manifest::KERNEL, &vmlinuz),
        (manifest::INITRD, &initrd),
        (manifest::CMDLINE, cmdline.as_bytes()),
        (manifest::FIRMWARE, &ovmf),
    ];
    let mut changed = 0;
    for (name, bytes) in &artifacts {
        changed += write_if_changed(&out.join(name), bytes)? as usize;
    }
    let manifest = Manifest {
        schema: MANIFEST_SCHEMA,
        name: "cocoon".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        profile: profile.name.into(),
        git: GitInfo {
            commit: git.commit,
            dirty: git.dirty,
        },
        source_date_epoch: git.source_date_epoch,
        build: BuildInfo {
            rustc: env::rustc_version(sh)?,
            cargo: env::cargo_version(sh)?,
            target: guest::TARGET.into(),
            cc: env::cc_version(sh)?,
            libc: env::libc_version(sh)?,
            cargo_profile: profile.init.cargo_profile.into(),
            cargo_features: profile
                .init
                .features
                .iter()
                .map(|f| f.to_string())
                .collect(),
            rustflags: guest.recorded_rustflags,
            firmware_tools: firmware.tools,
        },
        cmdline: cmdline.clone(),
        inputs: std::iter::once(used_input(kernel_pkg, &kernel))
            .chain(init_runtime.packages)
            .chain([cuda.package])
            .chain(gpu.iter().flat_map(|g| g.inputs.iter().cloned()))
            .collect(),
        sources: vec![firmware_src.clone()],
        wheels: cuda.wheels,
        artifacts: artifacts
            .iter()
            .map(|(name, bytes)| Artifact {
                name: name.to_string(),
                sha256: Sha256::of(bytes),
                size: bytes.len() as u64,
            })
            .collect(),
        initramfs: InitramfsInfo {
            compression,
            uncompressed_size: cpio.len() as u64,
            uncompressed_sha256: cpio_sha,
            files: tree.listing(),
        },
        model,
        measurements: measure::table(&out, &cmdline, profile)?,
    };
    changed += write_if_changed(&out.join(MANIFEST_FILE), manifest.to_json().as_bytes())? as usize;
    manifest.verify_artifacts(&out)?;

    let mib = |n: usize| n as f64 / (1 << 20) as f64;
    eprintln!(
        "xtask: image {} ({}) in {}: vmlinuz {:.1} MiB, initrd.img {:.2} MiB (budget {:.0} MiB), {}{}",
        profile.name,
        &manifest.git.commit[..12.min(manifest.git.commit.len())],
        out.display(),
        mib(vmlinuz.len()),
        mib(initrd.len()),
        mib(profile.initrd_budget as usize),
        if changed == 0 { "unchanged" } else { "updated" },
        if manifest.git.dirty {
            " (uncommitted changes: not reproducible from the commit)"
        } else {
            ""
        },
    );
    eprintln!("xtask: build took {:.1} s", started.elapsed().as_secs_f64());
    Ok(Built { dir: out })
}

/// What the manifest records about a model pack (its header, re-hashed).
fn model_ref(pack: &Path) -> Result<manifest::ModelRef> {
    let header = cocoon_image::modelpack::read_header(pack)
        .with_context(|| format!("reading the model pack {}", pack.display()))?;
    let (pack_hash, size) = cocoon_image::packhash::of_file(pack)
        .with_context(|| format!("hashing {}", pack.display()))?;
    Ok(manifest::ModelRef {
        name: header.name,
        architecture: header.architecture,
        pack_hash,
        size,
        gguf_sha256: header.gguf.sha256,
    })
}

/// The kernel input as the manifest records it: only the files the image uses.
fn used_input(pkg: &PinnedPackage, kernel: &KernelParts) -> PinnedPackage {
    let used: Vec<String> = kernel
        .modules
        .iter()
        .map(|(rel, _)| format!("lib/modules/{}/{rel}", kernel.release))
        .chain([format!("boot/vmlinuz-{}", kernel.release)])
        .collect();
    PinnedPackage {
        files: pkg
            .files
            .iter()
            .filter(|f| used.contains(&f.path))
            .cloned()
            .collect(),
        ..pkg.clone()
    }
}
