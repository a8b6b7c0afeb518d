//! Progress output: a spinner per slow step on a terminal, plain lines
//! otherwise (CI logs, tests).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Step {
    bar: Option<ProgressBar>,
    what: String,
    start: Instant,
}

impl Step {
    pub fn start(what: impl Into<String>) -> Step {
        let what = what.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .expect("valid template"),
            );
            b.set_message(what.clone());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        if bar.is_none() {
            eprintln!("xtask: {what} ...");
        }
        Step {
            bar,
            what,
            start: Instant::now(),
        }
    }

    pub fn done(self, result: &str) {
        let line = format!(
            "xtask: {} {result} ({:.1} s)",
            self.what,
            self.start.elapsed().as_secs_f64()
        );
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
        eprintln!("{line}");
    }
}
