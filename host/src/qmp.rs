//! A QMP client: commands in, replies and events out.
//!
//! One reader thread splits what QEMU sends into command replies and
//! asynchronous events (SHUTDOWN, POWERDOWN, ...), so the supervisor can
//! both issue commands and learn why a VM went away.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

pub struct Qmp {
    writer: UnixStream,
    replies: Receiver<Value>,
    pub events: Receiver<Value>,
}

impl Qmp {
    /// Connects (waiting up to `wait` for QEMU to create the socket) and
    /// negotiates capabilities.
    pub fn connect(path: &Path, wait: Duration) -> Result<Self> {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if start.elapsed() < wait => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("connecting to QMP at {}", path.display()));
                }
            }
        };
        let reader = BufReader::new(stream.try_clone()?);
        let (reply_tx, replies) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in reader.lines() {
                let Ok(line) = line else { break };
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let sent = if v.get("event").is_some() {
                    event_tx.send(v).is_ok()
                } else {
                    reply_tx.send(v).is_ok()
                };
                if !sent {
                    break;
                }
            }
        });
        let mut qmp = Qmp {
            writer: stream,
            replies,
            events,
        };
        let greeting = qmp.reply(Duration::from_secs(10))?;
        if greeting.get("QMP").is_none() {
            bail!("{} did not greet as QMP: {greeting}", path.display());
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    fn reply(&self, timeout: Duration) -> Result<Value> {
        match self.replies.recv_timeout(timeout) {
            Ok(v) => Ok(v),
            Err(RecvTimeoutError::Timeout) => {
                bail!("QMP did not answer within {} s", timeout.as_secs())
            }
            Err(RecvTimeoutError::Disconnected) => bail!("QMP connection closed (QEMU exited)"),
        }
    }

    /// Runs one command; returns its `return` value or fails with its `error`.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        writeln!(self.writer, "{msg}").with_context(|| format!("sending QMP {command}"))?;
        let reply = self.reply(Duration::from_secs(10))?;
        if let Some(r) = reply.get("return") {
            return Ok(r.clone());
        }
        bail!(
            "QMP {command} failed: {}",
            reply.get("error").unwrap_or(&reply)
        )
    }
}
