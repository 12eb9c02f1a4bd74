use nix::sys::signal::Signal;

use crate::error::{Result, RuntimeError};

/// Parse a signal as runc does: a number (`9`), a name (`KILL`, `SIGKILL`,
/// any case), or a real-time signal (`RTMIN+3`, `SIGRTMAX-1`).
pub fn parse(s: &str) -> Result<i32> {
    let unknown = || RuntimeError::UnknownSignal(s.to_string());
    if let Ok(n) = s.parse::<i32>() {
        return if n > 0 && n <= libc::SIGRTMAX() {
            Ok(n)
        } else {
            Err(unknown())
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let off = parse_offset(rest).ok_or_else(unknown)?;
        let n = libc::SIGRTMIN() + off;
        return if off >= 0 && n <= libc::SIGRTMAX() {
            Ok(n)
        } else {
            Err(unknown())
        };
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let off = parse_offset(rest).ok_or_else(unknown)?;
        let n = libc::SIGRTMAX() + off;
        return if off <= 0 && n >= libc::SIGRTMIN() {
            Ok(n)
        } else {
            Err(unknown())
        };
    }
    format!("SIG{name}")
        .parse::<Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| unknown())
}

fn parse_offset(rest: &str) -> Option<i32> {
    if rest.is_empty() {
        Some(0)
    } else {
        rest.parse::<i32>().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("9").ok(), Some(9));
        assert_eq!(parse("KILL").ok(), Some(9));
        assert_eq!(parse("SIGTERM").ok(), Some(15));
        assert_eq!(parse("term").ok(), Some(15));
        assert_eq!(parse("RTMIN+1").ok(), Some(libc::SIGRTMIN() + 1));
        assert_eq!(parse("SIGRTMAX").ok(), Some(libc::SIGRTMAX()));
    }

    #[test]
    fn unknown_signals() {
        for s in ["0", "-1", "999", "NOPE", "SIGFOO", "RTMIN+99", ""] {
            assert!(parse(s).is_err(), "{s}");
        }
    }
}
