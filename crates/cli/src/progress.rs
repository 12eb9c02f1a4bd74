//! The JSON-message streams of pull, push, load and import, shown the way
//! docker's jsonmessage package does: on a terminal one line per layer id,
//! redrawn in place with a progress bar; elsewhere one line per message.

use std::io::Write;

use anyhow::Result;
use serde_json::Value;

use crate::format::human_size;

/// Renders messages to a writer; keeps the per-id line bookkeeping.
#[derive(Debug)]
pub struct Display<W: Write> {
    out: W,
    terminal: bool,
    width: u16,
    /// Layer id → its line (0 = the first one shown since the last plain message).
    ids: Vec<String>,
    /// `aux` objects (push digests, build ids), in order.
    pub aux: Vec<Value>,
}

impl<W: Write> Display<W> {
    pub fn new(out: W, terminal: bool) -> Self {
        let width = crate::tty::size().map(|s| s.1).unwrap_or(200);
        Display {
            out,
            terminal,
            width,
            ids: Vec::new(),
            aux: Vec::new(),
        }
    }

    /// Shows one message; a message with `error` ends the stream with it.
    pub fn message(&mut self, line: &str) -> Result<()> {
        let jm: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => {
                writeln!(self.out, "{line}")?;
                return Ok(());
            }
        };
        if let Some(e) = jm
            .get("errorDetail")
            .and_then(|d| d.get("message"))
            .and_then(Value::as_str)
        {
            anyhow::bail!("{e}");
        }
        if let Some(e) = jm.get("error").and_then(Value::as_str) {
            anyhow::bail!("{e}");
        }
        if let Some(a) = jm.get("aux").filter(|a| !a.is_null()) {
            self.aux.push(a.clone());
            return Ok(());
        }
        let id = jm.get("id").and_then(Value::as_str).unwrap_or("");
        let has_progress = jm.get("progressDetail").is_some_and(Value::is_object);
        let progress_msg = jm.get("progress").and_then(Value::as_str).unwrap_or("");
        // Like jsonmessage: no progress bars (not even their text) when the
        // output is not a terminal; the status lines around them remain.
        if !self.terminal && has_progress && !progress_bar(&jm["progressDetail"], 0).is_empty() {
            return Ok(());
        }
        let mut diff = 0;
        if !id.is_empty() && (has_progress || !progress_msg.is_empty()) {
            let line = match self.ids.iter().position(|i| i == id) {
                Some(l) => l,
                None => {
                    self.ids.push(id.to_owned());
                    if self.terminal {
                        writeln!(self.out)?;
                    }
                    self.ids.len() - 1
                }
            };
            diff = self.ids.len() - line;
            if self.terminal {
                write!(self.out, "\x1b[{diff}A")?;
            }
        } else {
            self.ids.clear();
        }
        self.display(&jm, id, has_progress, progress_msg)?;
        if !id.is_empty() && self.terminal && diff > 0 {
            write!(self.out, "\x1b[{diff}B")?;
        }
        self.out.flush()?;
        Ok(())
    }

    fn display(
        &mut self,
        jm: &Value,
        id: &str,
        has_progress: bool,
        progress_msg: &str,
    ) -> Result<()> {
        let status = jm.get("status").and_then(Value::as_str).unwrap_or("");
        let stream = jm.get("stream").and_then(Value::as_str).unwrap_or("");
        if self.terminal {
            write!(self.out, "\r\x1b[2K")?;
        }
        let endl = if self.terminal && stream.is_empty() && has_progress {
            "\r"
        } else {
            ""
        };
        if !id.is_empty() {
            write!(self.out, "{id}: ")?;
        }
        if has_progress && self.terminal {
            let bar = progress_bar(&jm["progressDetail"], self.width);
            write!(self.out, "{status} {bar}{endl}")?;
        } else if !progress_msg.is_empty() {
            write!(self.out, "{status} {progress_msg}{endl}")?;
        } else if !stream.is_empty() {
            write!(self.out, "{stream}{endl}")?;
        } else {
            writeln!(self.out, "{status}{endl}")?;
        }
        Ok(())
    }

    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// jsonmessage's JSONProgress.String: `[=====>     ]  1.2MB/3.4MB`.
pub fn progress_bar(detail: &Value, width: u16) -> String {
    let current = detail["current"].as_i64().unwrap_or(0);
    let total = detail["total"].as_i64().unwrap_or(0);
    if current <= 0 && total <= 0 {
        return String::new();
    }
    if total <= 0 {
        return format!("{:>8}", human_size(current as f64));
    }
    let pct = ((current as f64 / total as f64 * 100.0) as i64 / 2).clamp(0, 50) as usize;
    let mut s = String::new();
    if width > 110 {
        s.push_str(&format!("[{}>{}] ", "=".repeat(pct), " ".repeat(50 - pct)));
    }
    s.push_str(&format!(
        "{:>8}/{}",
        human_size(current as f64),
        human_size(total as f64)
    ));
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_output_one_line_per_message() {
        let mut d = Display::new(Vec::new(), false);
        for m in [
            r#"{"status":"Pulling from library/busybox","id":"latest"}"#,
            r#"{"status":"Pulling fs layer","progressDetail":{},"id":"abc"}"#,
            r#"{"status":"Downloading","progressDetail":{"current":5,"total":10},"progress":"[=>] 5B/10B","id":"abc"}"#,
            r#"{"stream":"Loaded image: bb:latest\n"}"#,
            r#"{"aux":{"Tag":"latest","Digest":"sha256:1","Size":5}}"#,
        ] {
            d.message(m).unwrap();
        }
        assert_eq!(
            d.aux,
            vec![json!({"Tag":"latest","Digest":"sha256:1","Size":5})]
        );
        let out = String::from_utf8(d.into_inner()).unwrap();
        assert_eq!(
            out,
            "latest: Pulling from library/busybox\nabc: Pulling fs layer\nLoaded image: bb:latest\n"
        );
    }

    #[test]
    fn errors_end_the_stream() {
        let mut d = Display::new(Vec::new(), false);
        let e = d
            .message(r#"{"errorDetail":{"message":"manifest unknown"},"error":"manifest unknown"}"#)
            .unwrap_err();
        assert_eq!(e.to_string(), "manifest unknown");
    }

    #[test]
    fn terminal_redraws_each_layer_in_place() {
        let mut d = Display::new(Vec::new(), true);
        d.width = 200;
        d.message(r#"{"status":"Waiting","progressDetail":{},"id":"a"}"#)
            .unwrap();
        d.message(r#"{"status":"Waiting","progressDetail":{},"id":"b"}"#)
            .unwrap();
        d.message(
            r#"{"status":"Downloading","progressDetail":{"current":50,"total":100},"id":"a"}"#,
        )
        .unwrap();
        let out = String::from_utf8(d.into_inner()).unwrap();
        // Layer a is two lines up when b exists: up 2, redraw, down 2.
        assert!(
            out.ends_with(&format!(
                "\x1b[2A\r\x1b[2Ka: Downloading [{}>{}]      50B/100B\r\x1b[2B",
                "=".repeat(25),
                " ".repeat(25)
            )),
            "{out:?}"
        );
    }

    #[test]
    fn bars() {
        assert_eq!(progress_bar(&json!({}), 200), "");
        assert_eq!(progress_bar(&json!({"current": 1500}), 200), "   1.5kB");
        assert_eq!(
            progress_bar(&json!({"current": 10, "total": 10}), 80),
            "     10B/10B"
        );
    }
}
