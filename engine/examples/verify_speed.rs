//! Reading a pack with and without verification, alternating, medians
//! of seven; the verified read uses every core, as the guest does. With `--cold` the page cache is dropped before every read (root
//! only), which is what the guest sees: it reads its model disk once.
//! `cargo run --release -p cocoon-engine --example verify_speed -- PACK [--cold]`
use std::time::Instant;

fn drop_caches() {
    // SAFETY-free and root-only: write 3 to drop_caches after a sync.
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("--cold needs root");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = &args[1];
    let cold = args.iter().any(|a| a == "--cold");
    let size = std::fs::metadata(path).unwrap().len();
    let (hash, _) = cocoon_image::packhash::of_file(std::path::Path::new(path)).unwrap();
    type Reader<'a> = Box<dyn Fn() -> usize + 'a>;
    let pairs: [(&str, Reader, Reader); 1] = [(
        "buffered (page cache)",
        Box::new(|| {
            let f = std::fs::File::open(path).unwrap();
            cocoon_engine::verify::read_unverified(f, size)
                .unwrap()
                .len()
        }),
        Box::new(|| {
            let f = std::fs::File::open(path).unwrap();
            cocoon_engine::verify::read_verified(&f, size, &hash)
                .unwrap()
                .len()
        }),
    )];
    for (name, plain_read, verified_read) in &pairs {
        let (mut plain, mut verified) = (vec![], vec![]);
        for _ in 0..7 {
            if cold {
                drop_caches();
            }
            let t = Instant::now();
            plain_read();
            plain.push(t.elapsed().as_secs_f64());
            if cold {
                drop_caches();
            }
            let t = Instant::now();
            verified_read();
            verified.push(t.elapsed().as_secs_f64());
        }
        plain.sort_by(f64::total_cmp);
        verified.sort_by(f64::total_cmp);
        let (p, v) = (plain[3], verified[3]);
        println!(
            "{name}, {}: read {:.1} ms, read+verify {:.1} ms ({:.2}×)",
            if cold { "cold" } else { "warm" },
            p * 1e3,
            v * 1e3,
            v / p
        );
    }
}
