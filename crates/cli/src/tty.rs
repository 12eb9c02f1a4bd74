//! The local terminal: raw mode for `-it` (restored when the guard drops,
//! on errors too), the window size, and docker's detach-key sequence.

use std::io::IsTerminal;

use anyhow::{Result, bail};
use rustix::termios::{self, OptionalActions, Termios};

/// Puts stdin in raw mode until dropped.
#[derive(Debug)]
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode on stdin, if stdin is a terminal.
    pub fn enable() -> Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = termios::tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(&stdin, OptionalActions::Now, &raw)?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// (rows, columns) of the terminal on stdout (or stdin), if any.
pub fn size() -> Option<(u16, u16)> {
    let try_fd = |ws: std::io::Result<rustix::termios::Winsize>| {
        ws.ok()
            .filter(|w| w.ws_row > 0 && w.ws_col > 0)
            .map(|w| (w.ws_row, w.ws_col))
    };
    let out = std::io::stdout();
    if out.is_terminal()
        && let Some(s) = try_fd(termios::tcgetwinsize(&out).map_err(Into::into))
    {
        return Some(s);
    }
    let inp = std::io::stdin();
    if inp.is_terminal() {
        return try_fd(termios::tcgetwinsize(&inp).map_err(Into::into));
    }
    None
}

/// docker's `--detach-keys` syntax: `ctrl-p,ctrl-q`, `a`, `ctrl-@`, …
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for k in s.split(',') {
        let k = k.trim();
        if let Some(c) = k.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [b @ b'a'..=b'z'] => b - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => bail!("Unknown character: '{k}'"),
            };
            out.push(b);
        } else if k.len() == 1 {
            out.push(k.as_bytes()[0]);
        } else {
            bail!("Unknown character: '{k}'");
        }
    }
    Ok(out)
}

/// Watches stdin bytes for the detach sequence. Bytes that begin the
/// sequence are held back until it is complete or broken.
#[derive(Debug)]
pub struct DetachWatch {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachWatch {
    pub fn new(keys: Vec<u8>) -> Self {
        DetachWatch { keys, matched: 0 }
    }

    /// Returns the bytes to forward, and whether the sequence was typed.
    pub fn filter(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        if self.keys.is_empty() {
            out.extend_from_slice(input);
            return (out, false);
        }
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
            } else {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b == self.keys[0] {
                    self.matched = 1;
                } else {
                    out.push(b);
                }
            }
        }
        (out, false)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(parse_detach_keys("a,ctrl-@").unwrap(), vec![b'a', 0]);
        assert!(parse_detach_keys("ctrl-pq").is_err());
        let mut w = DetachWatch::new(vec![16, 17]);
        assert_eq!(w.filter(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(w.filter(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(w.filter(b"x\x10\x10\x11"), (b"x\x10".to_vec(), true));
    }
}
