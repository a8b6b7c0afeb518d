//! The launch digest against published vectors, against the `sev` crate's
//! own `snp_calc_launch_digest`, and on bad input.

use std::path::{Path, PathBuf};

use cocoon_measurements::snp::{
    CpuType, LaunchInputs, LaunchShape, MeasureError, Measurer, reference_digest,
};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn inputs(dir: &Path, kernel: &[u8], initrd: &[u8], cmdline: &str, ovmf: &str) -> LaunchInputs {
    std::fs::write(dir.join("kernel"), kernel).unwrap();
    std::fs::write(dir.join("initrd"), initrd).unwrap();
    LaunchInputs {
        ovmf: data(ovmf),
        kernel: dir.join("kernel"),
        initrd: dir.join("initrd"),
        cmdline: cmdline.into(),
    }
}

fn shape(vcpus: u32, cpu_type: CpuType, guest_features: u64) -> LaunchShape {
    LaunchShape {
        vcpus,
        cpu_type,
        guest_features,
    }
}

/// The `sev` crate's tests/measurement.rs publishes these (empty kernel and
/// initrd, QEMU, EPYC-v4, one vCPU).
#[test]
fn matches_the_published_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "",
            0x1,
            "ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5",
        ),
        (
            "",
            0x21,
            "329c8ce0972ae52343b64d34a434a86f245dfd74f5ed7aae15d22efc78fb9683632b9b50e4e1d7fa41179ef98a7ef198",
        ),
        (
            "console=ttyS0 loglevel=7",
            0x1,
            "6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa",
        ),
        (
            "console=ttyS0 loglevel=7",
            0x21,
            "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977",
        ),
    ];
    for (cmdline, features, expected) in cases {
        let inp = inputs(dir.path(), b"", b"", cmdline, "ovmf_AmdSev_suffix.bin");
        let got = Measurer::new(&inp)
            .unwrap()
            .measure(&shape(1, CpuType::EpycV4, features))
            .unwrap();
        assert_eq!(
            got.to_hex(),
            expected,
            "cmdline {cmdline:?}, features {features:#x}"
        );
    }
}

#[test]
fn fast_path_equals_the_sev_reference_for_every_cpu_type() {
    let dir = tempfile::tempdir().unwrap();
    let kernel: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let inp = inputs(
        dir.path(),
        &kernel,
        b"initrd bytes",
        "console=ttyS0 quiet panic=-1",
        "ovmf_AmdSev_suffix.bin",
    );
    let m = Measurer::new(&inp).unwrap();
    for cpu in CpuType::ALL {
        for vcpus in [1, 2, 3, 8, 64] {
            for features in [0x1, 0x21] {
                let s = shape(vcpus, cpu, features);
                assert_eq!(
                    m.measure(&s).unwrap(),
                    reference_digest(&inp, &s).unwrap(),
                    "{s:?}"
                );
            }
        }
    }
}

#[test]
fn different_shapes_give_different_digests() {
    let dir = tempfile::tempdir().unwrap();
    let inp = inputs(dir.path(), b"k", b"i", "c", "ovmf_AmdSev_suffix.bin");
    let m = Measurer::new(&inp).unwrap();
    let mut seen = std::collections::HashSet::new();
    for cpu in CpuType::ALL {
        for vcpus in 1..=4 {
            assert!(
                seen.insert(m.measure(&shape(vcpus, cpu, 1)).unwrap()),
                "{cpu} {vcpus}"
            );
        }
    }
    // And the image matters: another command line, another digest.
    let other = Measurer::new(&inputs(
        dir.path(),
        b"k",
        b"i",
        "d",
        "ovmf_AmdSev_suffix.bin",
    ))
    .unwrap();
    assert!(!seen.contains(&other.measure(&shape(1, CpuType::EpycV4, 1)).unwrap()));
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let trailing = inputs(
        dir.path(),
        b"",
        b"",
        "console=ttyS0 ",
        "ovmf_AmdSev_suffix.bin",
    );
    assert!(matches!(
        Measurer::new(&trailing),
        Err(MeasureError::CmdlineWhitespace(_))
    ));

    let generic = inputs(dir.path(), b"", b"", "", "ovmf_OvmfX64_suffix.bin");
    let err = Measurer::new(&generic)
        .err()
        .expect("a firmware without kernel hashes");
    assert!(matches!(err, MeasureError::NoKernelHashes { .. }), "{err}");

    let junk = dir.path().join("junk.fd");
    std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
    let mut j = inputs(dir.path(), b"", b"", "", "ovmf_AmdSev_suffix.bin");
    j.ovmf = junk;
    let err = Measurer::new(&j).err().expect("junk firmware");
    assert!(matches!(err, MeasureError::NoSnpMetadata { .. }), "{err}");
    assert!(err.to_string().contains("junk.fd"), "{err}");

    let good = Measurer::new(&inputs(dir.path(), b"", b"", "", "ovmf_AmdSev_suffix.bin")).unwrap();
    assert!(matches!(
        good.measure(&shape(0, CpuType::EpycV4, 1)),
        Err(MeasureError::Vcpus(0))
    ));

    let mut missing = inputs(dir.path(), b"", b"", "", "ovmf_AmdSev_suffix.bin");
    missing.kernel = dir.path().join("no-such-kernel");
    assert!(
        Measurer::new(&missing)
            .err()
            .unwrap()
            .to_string()
            .contains("no-such-kernel")
    );
}
