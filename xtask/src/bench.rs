//! `cargo xtask bench`: the figures in BENCHMARKS.md, measured the way a
//! user meets them (whole commands, wall-clock time).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use xshell::{Shell, cmd};

use crate::setup;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// How many boots to time.
    #[arg(long, default_value_t = 5)]
    boots: usize,
    /// Also time a clean build: deletes the guest's build directory first.
    #[arg(long)]
    clean: bool,
    /// Also time a clean firmware build (forgets the cached OVMF.fd).
    #[arg(long)]
    firmware: bool,
}

fn time_build(root: &Path) -> Result<f64> {
    let start = Instant::now();
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["xtask", "build"])
        .status()?;
    if !status.success() {
        bail!("cargo xtask build failed");
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Launch digests: ours for every shape, side by side with the Python
/// `sev-snp-measure` over the same image.
fn measurement_rows(sh: &Shell, root: &Path, image: &Path) -> Result<Vec<(String, String)>> {
    use cocoon_measurements::snp::{CpuType, LaunchShape, Measurer};
    let manifest = cocoon_image::manifest::Manifest::load(image)?;
    let inputs = crate::measure::launch_inputs(image, &manifest.cmdline);
    let shapes: Vec<LaunchShape> = CpuType::ALL
        .iter()
        .flat_map(|&cpu_type| {
            (1..=64).map(move |vcpus| LaunchShape {
                vcpus,
                cpu_type,
                guest_features: 1,
            })
        })
        .collect();
    // Every shape, from the files: what `cargo xtask build` does.
    let start = Instant::now();
    let m = Measurer::new(&inputs)?;
    let hashed = start.elapsed().as_secs_f64();
    for s in &shapes {
        m.measure(s)?;
    }
    let all = start.elapsed().as_secs_f64();
    let per_shape = (all - hashed) / shapes.len() as f64;
    // One shape from the files, as a one-off `measure` does.
    let one = {
        let t = Instant::now();
        Measurer::new(&inputs)?.measure(&shapes[0])?;
        t.elapsed().as_secs_f64()
    };
    // Python, in one process over every shape (each call reads the files).
    let python = crate::setup::venv_python(root);
    crate::setup::ensure_python_tools(sh, root)?;
    let script = root.join("tests/tools/sev_snp_measure_table.py");
    let t = Instant::now();
    let out = cmd!(sh, "{python} {script} {image}").quiet().read()?;
    let py_all = t.elapsed().as_secs_f64();
    let py_per: Vec<f64> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["seconds"].as_f64())
        .collect();
    let py_mean = py_per.iter().sum::<f64>() / py_per.len().max(1) as f64;
    // Python's command line, three times.
    let cli = python.with_file_name("sev-snp-measure");
    let (ovmf, kernel, initrd) = (
        image.join("OVMF.fd"),
        image.join("vmlinuz"),
        image.join("initrd.img"),
    );
    let cmdline = &manifest.cmdline;
    let t = Instant::now();
    for _ in 0..3 {
        cmd!(sh, "{cli} --mode snp --vcpus 4 --vcpu-type EPYC-v4 --ovmf {ovmf} --kernel {kernel} --initrd {initrd} --append {cmdline} --guest-features 0x1")
            .quiet()
            .read()?;
    }
    let py_cli = t.elapsed().as_secs_f64() / 3.0;
    Ok(vec![
        (
            format!(
                "SNP measurement, all {} shapes (1-64 vCPUs x 4 CPU models), from the files",
                shapes.len()
            ),
            format!(
                "{:.3} s (image hashed once in {:.3} s, then {:.3} ms per shape)",
                all,
                hashed,
                per_shape * 1e3
            ),
        ),
        (
            "  Python sev-snp-measure 0.0.13, same shapes, one process".into(),
            format!("{py_all:.2} s ({:.1} ms per shape)", py_mean * 1e3),
        ),
        (
            "  ratio, all shapes (Python / ours)".into(),
            format!("{:.0}x", py_all / all),
        ),
        (
            "  ratio, per shape (Python / ours)".into(),
            format!("{:.0}x", py_mean / per_shape),
        ),
        (
            "  one shape from the files: ours / Python library / Python CLI".into(),
            format!(
                "{:.1} ms / {:.1} ms / {:.0} ms",
                one * 1e3,
                py_mean * 1e3,
                py_cli * 1e3
            ),
        ),
    ])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Boots the image once; returns the `ready` event's timeline.
fn one_boot(host: &Path, image: &Path, i: usize) -> Result<Value> {
    let run_dir = tempfile::tempdir()?;
    let mut child = Command::new(host)
        .args([
            "boot",
            "--dev",
            "--json",
            "--port",
            "0",
            "--name",
            &format!("bench-{i}"),
            "--run-dir",
        ])
        .arg(run_dir.path())
        .arg("--image")
        .arg(image)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut timeline = Value::Null;
    let mut accel = String::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let v: Value = serde_json::from_str(&line?)?;
        if v["event"] == "ready" {
            timeline = v["timeline"].clone();
            accel = v["accel"].as_str().unwrap_or("?").to_string();
            // SAFETY: kill(2) on our child: Ctrl-C, the clean stop path.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        }
    }
    let status = child.wait()?;
    if timeline.is_null() || !status.success() {
        bail!("boot {i} failed ({status})");
    }
    timeline["accel"] = accel.into();
    Ok(timeline)
}

pub fn run(sh: &Shell, root: &Path, args: &Args) -> Result<()> {
    setup::ensure(sh)?;
    let mut rows: Vec<(String, String)> = Vec::new();
    if args.firmware {
        let index = cocoon_image::cache::Cache::open_default()?
            .root()
            .join("firmware");
        let _ = std::fs::remove_dir_all(&index);
        let start = Instant::now();
        time_build(root)?;
        rows.push((
            "clean firmware build (edk2 AmdSevX64, in a full `cargo xtask build`)".into(),
            format!("{:.0} s", start.elapsed().as_secs_f64()),
        ));
    }
    if args.clean {
        let guest_dir = root.join("target/x86_64-unknown-linux-gnu");
        let _ = std::fs::remove_dir_all(&guest_dir);
        let _ = std::fs::remove_dir_all(root.join("target/cocoon/cpu"));
        rows.push((
            "clean build (crates and inputs cached)".into(),
            format!("{:.1} s", time_build(root)?),
        ));
    } else {
        time_build(root)?;
    }
    let noop: Vec<f64> = (0..3).map(|_| time_build(root)).collect::<Result<_>>()?;
    rows.push((
        "no-change rebuild, median of 3".into(),
        format!("{:.2} s", median(noop)),
    ));
    let image = crate::default_image_dir(root, "cpu");
    let initrd = std::fs::metadata(image.join("initrd.img"))?.len();
    let manifest = cocoon_image::manifest::Manifest::load(&image)?;
    rows.push((
        "initrd.img (zstd), CPU profile".into(),
        format!(
            "{:.2} MiB ({} bytes; {:.2} MiB uncompressed)",
            initrd as f64 / (1 << 20) as f64,
            initrd,
            manifest.initramfs.uncompressed_size as f64 / (1 << 20) as f64
        ),
    ));

    rows.extend(measurement_rows(sh, root, &image)?);

    cmd!(sh, "cargo build --quiet --locked -p cocoon-host").run()?;
    let host = root.join("target/debug/cocoon-host");
    let mut timelines = Vec::new();
    for i in 0..args.boots {
        let t = one_boot(&host, &image, i).with_context(|| format!("boot {}", i + 1))?;
        eprintln!("xtask: boot {}: {t}", i + 1);
        timelines.push(t);
    }
    if timelines.is_empty() {
        print_table(&rows);
        return Ok(());
    }
    let accel = timelines
        .first()
        .and_then(|t| t["accel"].as_str())
        .unwrap_or("?")
        .to_string();
    let col = |k: &str| {
        median(
            timelines
                .iter()
                .map(|t| t[k].as_u64().unwrap_or(0) as f64 / 1e3)
                .collect(),
        )
    };
    let m = |k: &str| format!("{:.2} s", col(k));
    rows.push((
        format!(
            "boot to /health answering, median of {} ({accel})",
            args.boots
        ),
        m("total_ms"),
    ));
    rows.push((
        "  QEMU start + firmware + kernel load".into(),
        m("qemu_and_firmware_ms"),
    ));
    rows.push(("  kernel start → /init".into(), m("kernel_ms")));
    rows.push((
        "  /init → listening (modules, DHCP, TLS key)".into(),
        m("init_to_listening_ms"),
    ));
    rows.push((
        "  listening → first /health answered".into(),
        m("first_health_ms"),
    ));

    print_table(&rows);
    Ok(())
}

fn print_table(rows: &[(String, String)]) {
    println!("| figure | value |\n|---|---|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
}
