//! The pack hash as docs/inference.md spells it in Python, run by the
//! system's `python3` on files around every leaf boundary, equals
//! `packhash::of_file`: the documented recipe is the implementation, and
//! an auditor needs no code of ours to name a pack.

use std::path::Path;
use std::process::Command;

use cocoon_image::packhash::{self, LEAF};

/// The first ```python block after the "## The pack hash" heading.
fn documented_recipe() -> String {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/inference.md");
    let text = std::fs::read_to_string(&doc).unwrap();
    let section = &text[text
        .find("## The pack hash")
        .expect("docs/inference.md lost its pack hash section")..];
    let start = section.find("```python\n").expect("no python block") + "```python\n".len();
    let end = start + section[start..].find("```").unwrap();
    section[start..end].to_string()
}

#[test]
fn the_documented_python_computes_the_same_pack_hash() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("pack_hash.py");
    std::fs::write(&script, documented_recipe()).unwrap();
    for len in [0, 1, LEAF - 1, LEAF, LEAF + 1, 2 * LEAF + 4097] {
        let file = dir.path().join(format!("pack-{len}"));
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
        std::fs::write(&file, &bytes).unwrap();
        let out = Command::new("python3")
            .arg(&script)
            .arg(&file)
            .output()
            .expect("python3 runs (Debian's python3 package)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (ours, _) = packhash::of_file(&file).unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            packhash::display(&ours),
            "{len} bytes"
        );
    }
}
