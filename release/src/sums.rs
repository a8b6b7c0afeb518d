//! `SHA256SUMS`: one line per file, `<64 hex digits>  <path>`, sorted by
//! path, the format `sha256sum -c` reads. Paths are relative, `/`-separated,
//! and plain (no `.`/`..` parts, no spaces, nothing a shell would mangle),
//! so a line can never point outside the bundle.

use cocoon_image::digest::Sha256;

pub const FILE: &str = "SHA256SUMS";

/// Writes the lines for `entries`, sorted by path.
pub fn write(entries: &[(String, Sha256)]) -> String {
    let mut sorted: Vec<_> = entries.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted
        .iter()
        .map(|(path, sha)| format!("{sha}  {path}\n"))
        .collect()
}

/// Parses a `SHA256SUMS` file strictly: every line well formed, paths
/// plain, no path twice. The error names the line.
pub fn parse(text: &str) -> Result<Vec<(String, Sha256)>, String> {
    let mut out: Vec<(String, Sha256)> = Vec::new();
    if !text.ends_with('\n') {
        return Err("does not end with a newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let at = |what: &str| format!("line {}: {what}", n + 1);
        let (hex, path) = line
            .split_once("  ")
            .ok_or_else(|| at("not `<sha256>  <path>`"))?;
        let sha: Sha256 = hex.parse().map_err(|e| at(&format!("{e}")))?;
        check_path(path).map_err(|e| at(&e))?;
        if out.iter().any(|(p, _)| p == path) {
            return Err(at(&format!("{path} is listed twice")));
        }
        out.push((path.to_string(), sha));
    }
    if out.is_empty() {
        return Err("lists no file".into());
    }
    Ok(out)
}

/// A relative path of plain parts: ASCII letters, digits, `.-_+`, no part
/// that is empty, `.` or `..`.
pub fn check_path(path: &str) -> Result<(), String> {
    let plain = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_+".contains(&b))
    };
    if path.split('/').all(plain) {
        Ok(())
    } else {
        Err(format!("`{path}` is not a plain relative path"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_sorted() {
        let a = Sha256::of(b"a");
        let b = Sha256::of(b"b");
        let text = write(&[("cpu/vmlinuz".into(), b), ("SHA256SUMS.x".into(), a)]);
        assert_eq!(text, format!("{a}  SHA256SUMS.x\n{b}  cpu/vmlinuz\n"));
        assert_eq!(
            parse(&text).unwrap(),
            vec![("SHA256SUMS.x".into(), a), ("cpu/vmlinuz".into(), b)]
        );
    }

    #[test]
    fn rejects_bad_lines_and_paths() {
        let h = Sha256::of(b"x");
        for bad in [
            format!("{h}  ../etc/passwd\n"),
            format!("{h}  /abs\n"),
            format!("{h}  a//b\n"),
            format!("{h}  a b\n"),
            format!("{h} *binary-mode\n"),
            format!("{h}  a\n{h}  a\n"),
            format!("{}  a\n", h.to_hex().to_uppercase()),
            format!("{h}  a"),
            String::new(),
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
    }
}
