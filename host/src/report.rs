//! What `cocoon-host` tells its user: `cocoon-host: ...` lines, or one
//! JSON object per line with `--json` (what scripts and tests read).

use serde_json::{Value, json};

/// Progress output: `cocoon-host: ...` lines, or JSON lines with `--json`.
pub struct Report {
    json: bool,
}

impl Report {
    pub fn new(json: bool) -> Self {
        Report { json }
    }

    /// Never fails: a closed stdout must not take the supervisor (and the
    /// clean shutdown it owes the VM) down with it.
    pub fn say(&self, event: &str, message: &str, fields: Value) {
        use std::io::Write;
        let line = if self.json {
            let mut v = json!({ "event": event, "message": message });
            if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), fields) {
                obj.extend(extra);
            }
            v.to_string()
        } else {
            format!("cocoon-host: {message}")
        };
        let _ = writeln!(std::io::stdout(), "{line}");
    }
}
