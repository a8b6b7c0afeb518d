//! Compiles the trusted release keys (`keys/*.pub`) and the revoked list
//! (`keys/revoked`) into the crate, so `cocoon-host` needs no key file at
//! run time and nobody can swap one beside the binary.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("keys");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut keys: Vec<_> = std::fs::read_dir(&dir)
        .expect("release/keys exists")
        .map(|e| e.expect("reading release/keys").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pub"))
        .collect();
    keys.sort();
    let mut code = String::from("pub const TRUSTED: &[(&str, &str)] = &[\n");
    for key in &keys {
        println!("cargo:rerun-if-changed={}", key.display());
        let name = key.file_name().unwrap().to_string_lossy();
        writeln!(code, "    ({name:?}, include_str!({:?})),", key.display()).unwrap();
    }
    code.push_str("];\n");
    let revoked = dir.join("revoked");
    println!("cargo:rerun-if-changed={}", revoked.display());
    writeln!(
        code,
        "pub const REVOKED: &str = include_str!({:?});",
        revoked.display()
    )
    .unwrap();
    let out = Path::new(&std::env::var_os("OUT_DIR").unwrap()).join("builtin_keys.rs");
    std::fs::write(out, code).unwrap();
}
