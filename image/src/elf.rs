//! What an x86-64 ELF program needs from the file system to start: its
//! program interpreter (the dynamic loader) and the shared libraries it
//! names (`DT_NEEDED`).
//!
//! The build reads this from the `/init` it just compiled and refuses an
//! image that could not run it: `/init` must name the loader the profile
//! declares and find it and every library it names in the initramfs. Without that check a missing library shows up
//! only as a kernel panic ("No working init found") at boot.
//!
//! Only what that check needs is parsed: 64-bit little-endian files, the
//! program headers, the dynamic section and its string table.

use std::fmt;

/// What a program needs before its first instruction runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linkage {
    /// `PT_INTERP`: the loader the kernel starts instead of the program.
    pub interpreter: Option<String>,
    /// `DT_NEEDED`, in the file's order.
    pub needed: Vec<String>,
}

impl Linkage {
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none() && self.needed.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfError(String);

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a readable x86-64 ELF program: {}", self.0)
    }
}

impl std::error::Error for ElfError {}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const EM_X86_64: u16 = 62;

fn err(what: impl Into<String>) -> ElfError {
    ElfError(what.into())
}

/// `len` bytes at `offset`, or an error naming what was cut short.
fn slice<'a>(bytes: &'a [u8], offset: u64, len: u64, what: &str) -> Result<&'a [u8], ElfError> {
    let start = usize::try_from(offset).map_err(|_| err(format!("{what} is out of range")))?;
    let len = usize::try_from(len).map_err(|_| err(format!("{what} is out of range")))?;
    start
        .checked_add(len)
        .and_then(|end| bytes.get(start..end))
        .ok_or_else(|| err(format!("{what} runs past the end of the file")))
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// The NUL-terminated string at the start of `bytes`.
fn c_str(bytes: &[u8], what: &str) -> Result<String, ElfError> {
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| err(format!("{what} is not NUL-terminated")))?;
    String::from_utf8(bytes[..end].to_vec()).map_err(|_| err(format!("{what} is not UTF-8")))
}

pub fn linkage(bytes: &[u8]) -> Result<Linkage, ElfError> {
    let header = slice(bytes, 0, 64, "the ELF header")?;
    if header[..4] != *b"\x7fELF" {
        return Err(err("no ELF magic"));
    }
    if header[4] != 2 || header[5] != 1 {
        return Err(err("not 64-bit little-endian"));
    }
    if u16_at(header, 18) != EM_X86_64 {
        return Err(err("not built for x86-64"));
    }
    let (phoff, phentsize, phnum) = (
        u64_at(header, 32),
        u64::from(u16_at(header, 54)),
        u64::from(u16_at(header, 56)),
    );
    if phentsize < 56 {
        return Err(err(format!("program headers of {phentsize} bytes")));
    }
    let table = slice(bytes, phoff, phentsize * phnum, "the program header table")?;
    let segments: Vec<Segment> = table
        .chunks_exact(phentsize as usize)
        .map(|ph| Segment {
            kind: u32_at(ph, 0),
            offset: u64_at(ph, 8),
            vaddr: u64_at(ph, 16),
            filesz: u64_at(ph, 32),
        })
        .collect();

    let interpreter = match segments.iter().find(|s| s.kind == PT_INTERP) {
        Some(s) => Some(c_str(
            slice(bytes, s.offset, s.filesz, "PT_INTERP")?,
            "PT_INTERP",
        )?),
        None => None,
    };
    let Some(dynamic) = segments.iter().find(|s| s.kind == PT_DYNAMIC) else {
        return Ok(Linkage {
            interpreter,
            needed: vec![],
        });
    };
    let mut strtab = None;
    let mut needed_offsets = Vec::new();
    for entry in slice(bytes, dynamic.offset, dynamic.filesz, "PT_DYNAMIC")?.chunks_exact(16) {
        match u64_at(entry, 0) {
            DT_NULL => break,
            DT_NEEDED => needed_offsets.push(u64_at(entry, 8)),
            DT_STRTAB => strtab = Some(u64_at(entry, 8)),
            _ => {}
        }
    }
    if needed_offsets.is_empty() {
        return Ok(Linkage {
            interpreter,
            needed: vec![],
        });
    }
    let strtab = strtab.ok_or_else(|| err("DT_NEEDED without DT_STRTAB"))?;
    // DT_STRTAB is an address: find the loaded segment that holds it.
    let load = segments
        .iter()
        .find(|s| s.kind == PT_LOAD && s.vaddr <= strtab && strtab - s.vaddr < s.filesz)
        .ok_or_else(|| err("DT_STRTAB lies in no loaded segment"))?;
    let strtab_offset = load.offset + (strtab - load.vaddr);
    let strtab_len = load.filesz - (strtab - load.vaddr);
    let strings = slice(bytes, strtab_offset, strtab_len, "the dynamic string table")?;
    let needed = needed_offsets
        .into_iter()
        .map(|at| {
            let rest = usize::try_from(at)
                .ok()
                .and_then(|at| strings.get(at..))
                .ok_or_else(|| err("a DT_NEEDED name lies outside the string table"))?;
            c_str(rest, "a DT_NEEDED name")
        })
        .collect::<Result<_, _>>()?;
    Ok(Linkage {
        interpreter,
        needed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF: the header, `phdrs` program headers right after it,
    /// then `tail` (what the headers point into) at offset 64 + 56·n.
    fn elf(phdrs: &[(u32, u64, u64, u64)], tail: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for &(kind, offset, vaddr, filesz) in phdrs {
            let mut ph = [0u8; 56];
            ph[0..4].copy_from_slice(&kind.to_le_bytes());
            ph[8..16].copy_from_slice(&offset.to_le_bytes());
            ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
            ph[32..40].copy_from_slice(&filesz.to_le_bytes());
            b.extend_from_slice(&ph);
        }
        b.extend_from_slice(tail);
        b
    }

    fn dyn_entry(tag: u64, val: u64) -> [u8; 16] {
        let mut e = [0u8; 16];
        e[..8].copy_from_slice(&tag.to_le_bytes());
        e[8..].copy_from_slice(&val.to_le_bytes());
        e
    }

    /// An interpreter and two libraries, the string table loaded at
    /// address 0x1000 (so that the address-to-offset mapping is exercised).
    fn dynamic_program() -> Vec<u8> {
        let base = 64 + 3 * 56;
        let interp = b"/lib/ld.so\0";
        let strings = b"\0libc.so.6\0libm.so.6\0";
        let dynamic: Vec<u8> = [
            dyn_entry(DT_NEEDED, 1),
            dyn_entry(DT_STRTAB, 0x1000),
            dyn_entry(DT_NEEDED, 11),
            dyn_entry(DT_NULL, 0),
        ]
        .concat();
        let interp_at = base as u64;
        let strings_at = interp_at + interp.len() as u64;
        let dynamic_at = strings_at + strings.len() as u64;
        elf(
            &[
                (PT_INTERP, interp_at, 0, interp.len() as u64),
                (PT_LOAD, strings_at, 0x1000, strings.len() as u64),
                (PT_DYNAMIC, dynamic_at, 0x2000, dynamic.len() as u64),
            ],
            &[&interp[..], strings, &dynamic].concat(),
        )
    }

    #[test]
    fn reads_interpreter_and_needed_libraries() {
        let l = linkage(&dynamic_program()).unwrap();
        assert_eq!(l.interpreter.as_deref(), Some("/lib/ld.so"));
        assert_eq!(l.needed, ["libc.so.6", "libm.so.6"]);
        assert!(!l.is_static());
    }

    #[test]
    fn a_program_without_interpreter_or_libraries_is_static() {
        let l = linkage(&elf(&[], &[])).unwrap();
        assert!(l.is_static());
        // A static PIE has a dynamic section (for its relocations) but
        // names no library.
        let dynamic = [dyn_entry(DT_STRTAB, 0), dyn_entry(DT_NULL, 0)].concat();
        let l = linkage(&elf(&[(PT_DYNAMIC, 120, 0, 32)], &dynamic)).unwrap();
        assert!(l.is_static());
    }

    #[test]
    fn this_test_program_is_linked_dynamically() {
        // Whatever built it: a real linker's output, not our own fixture.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let l = linkage(&me).unwrap();
        let interp = l.interpreter.expect("a PT_INTERP");
        assert!(interp.contains("ld-linux-x86-64.so.2"), "{interp}");
        assert!(l.needed.iter().any(|n| n == "libc.so.6"), "{:?}", l.needed);
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let good = dynamic_program();
        assert!(linkage(b"#!/bin/sh\n").is_err());
        for len in 0..good.len() {
            // Cut anywhere: an error or, past the last byte read, the same
            // answer; never a panic.
            if let Ok(l) = linkage(&good[..len]) {
                assert!(l.needed.len() <= 2);
            }
        }
        let mut unterminated = good.clone();
        let last = unterminated.len() - 64 - 1;
        // The NUL after "libm.so.6" (the last string before the dynamic section).
        unterminated[last] = b'x';
        assert!(linkage(&unterminated).is_err());
        let mut not_x86 = good;
        not_x86[18] = 183; // aarch64
        assert!(
            linkage(&not_x86)
                .unwrap_err()
                .to_string()
                .contains("x86-64")
        );
    }
}
