//! Following the guest's serial console as QEMU writes it to a file.
//!
//! The console is written by the guest and stored by the host: it is a
//! diagnostic channel, never a source of trust. The supervisor reads the
//! guest's `cocoon-event` lines from it to report progress and errors.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The prefix of the guest's machine-readable lines (see the guest's console module).
pub const EVENT_PREFIX: &str = "cocoon-event ";

/// Something seen on the console, with the time it was read.
#[derive(Debug, Clone)]
pub enum ConsoleLine {
    Event(Instant, Value),
    /// A kernel panic: the VM is about to stop.
    KernelPanic(String),
}

/// Classifies one console line.
pub fn classify(line: &str, at: Instant) -> Option<ConsoleLine> {
    if let Some(json) = line.strip_prefix(EVENT_PREFIX) {
        return serde_json::from_str(json)
            .ok()
            .map(|v| ConsoleLine::Event(at, v));
    }
    if line.contains("Kernel panic") {
        return Some(ConsoleLine::KernelPanic(line.trim().to_string()));
    }
    None
}

/// Polls `path` for new lines until the receiver is dropped.
pub fn follow(path: &Path) -> Receiver<ConsoleLine> {
    let (tx, rx) = mpsc::channel();
    let path: PathBuf = path.to_path_buf();
    std::thread::spawn(move || {
        let mut pos = 0u64;
        let mut pending = Vec::new();
        loop {
            let mut buf = Vec::new();
            if let Ok(mut f) = File::open(&path)
                && f.seek(SeekFrom::Start(pos)).is_ok()
                && let Ok(n) = f.read_to_end(&mut buf)
            {
                pos += n as u64;
                pending.extend_from_slice(&buf);
            }
            let now = Instant::now();
            while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=i).collect();
                let line = String::from_utf8_lossy(&line);
                if let Some(c) = classify(line.trim_end_matches(['\r', '\n']), now)
                    && tx.send(c).is_err()
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_events_and_panics() {
        let now = Instant::now();
        match classify(
            r#"cocoon-event {"event":"listening","uptime_ms":2120}"#,
            now,
        ) {
            Some(ConsoleLine::Event(_, v)) => assert_eq!(v["event"], "listening"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(
                "[    2.1] Kernel panic - not syncing: Attempted to kill init!",
                now
            ),
            Some(ConsoleLine::KernelPanic(_))
        ));
        assert!(classify("cocoon-event {not json", now).is_none());
        assert!(classify("[    1.0] INFO module loaded", now).is_none());
    }
}
