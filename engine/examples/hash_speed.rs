//! SHA-256 throughput of the `sha2` crate on this CPU, from cache and from
//! memory (a plain sha256 of a pack is bound by the latter), and the pack
//! hash of the same bytes, whose leaves are hashed on every core.
//! `cargo run --release -p cocoon-engine --example hash_speed`
fn main() {
    use sha2::{Digest, Sha256};
    let small = vec![7u8; 8192];
    let t = std::time::Instant::now();
    let mut h = Sha256::new();
    for _ in 0..12288 {
        h.update(&small);
    }
    let x = h.finalize();
    println!(
        "sha2 8 KiB in cache: {:.2} GB/s {:x}",
        (8192.0 * 12288.0) / t.elapsed().as_secs_f64() / 1e9,
        x[0]
    );
    let buf = vec![7u8; 96 << 20];
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let h = Sha256::digest(&buf);
        let dt = t.elapsed().as_secs_f64();
        println!(
            "sha2 96 MiB from memory: {:.2} GB/s {:x}",
            buf.len() as f64 / dt / 1e9,
            h[0]
        );
    }
}
