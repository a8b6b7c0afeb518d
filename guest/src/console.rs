//! The serial console: human-readable logs and machine-readable events.
//!
//! The kernel hands PID 1 the console as stdin/stdout/stderr. Logs go there
//! through `tracing`, stamped with the time since the kernel started, like
//! the kernel's own lines. Milestones the host reads (boot phases, the
//! certificate fingerprint, a fatal error) are single `cocoon-event {json}`
//! lines. Nothing a client sends is ever logged.

use std::fmt;

use serde_json::{Map, Value};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// The prefix of machine-readable lines; `cocoon-host` parses these.
pub const EVENT_PREFIX: &str = "cocoon-event ";

/// Seconds since boot (CLOCK_BOOTTIME), as the kernel stamps its log.
pub fn uptime() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

struct Uptime;

impl FormatTime for Uptime {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        write!(w, "[{:>12.6}]", uptime())
    }
}

pub fn init() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_timer(Uptime)
        .with_target(false)
        .with_max_level(tracing::Level::INFO)
        .init();
}

/// Prints one `cocoon-event` line: `{"event": name, "uptime_ms": .., fields..}`.
pub fn event(name: &str, fields: &[(&str, Value)]) {
    eprintln!("{EVENT_PREFIX}{}", event_json(name, uptime(), fields));
}

fn event_json(name: &str, uptime: f64, fields: &[(&str, Value)]) -> String {
    let mut map = Map::new();
    map.insert("event".into(), name.into());
    map.insert(
        "uptime_ms".into(),
        ((uptime * 1000.0).round() as u64).into(),
    );
    for (k, v) in fields {
        map.insert((*k).into(), v.clone());
    }
    Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_one_line_of_json() {
        let line = event_json("fatal", 1.2345, &[("reason", "no\nlease".into())]);
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "fatal");
        assert_eq!(v["uptime_ms"], 1235);
        assert_eq!(v["reason"], "no\nlease");
    }
}
