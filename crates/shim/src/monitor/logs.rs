//! The json-file log: one JSON object per line, as Docker writes it, with
//! size-based rotation (`<path>.1` is the newest rotated file).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use crate::proto::{LogConfig, LogLine};

/// Longest line kept whole; longer output is written in pieces (Docker
/// splits at 16 KiB too).
const MAX_LINE: usize = 16 * 1024;

/// The json-file writer of one container.
pub struct LogWriter {
    cfg: LogConfig,
    file: Option<File>,
    size: u64,
    /// Unfinished lines per stream (stdout, stderr).
    partial: [Vec<u8>; 2],
}

impl LogWriter {
    /// Opens `cfg`'s file for appending (its directory made if missing).
    pub fn open_file(cfg: &LogConfig) -> std::io::Result<File> {
        if let Some(dir) = cfg.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        OpenOptions::new().create(true).append(true).open(&cfg.path)
    }

    /// The writer of `file`, `cfg`'s file opened by [`Self::open_file`].
    pub fn with_file(cfg: LogConfig, file: File) -> std::io::Result<LogWriter> {
        let size = file.metadata()?.len();
        Ok(LogWriter {
            cfg,
            file: Some(file),
            size,
            partial: [Vec::new(), Vec::new()],
        })
    }

    /// Takes output of `stream` (0 stdout, 1 stderr); complete lines are
    /// written.
    pub fn write(&mut self, stream: usize, mut data: &[u8]) {
        while let Some(i) = data.iter().position(|b| *b == b'\n') {
            let mut line = std::mem::take(&mut self.partial[stream]);
            line.extend_from_slice(&data[..=i]);
            self.emit(stream, &line);
            data = &data[i + 1..];
        }
        self.partial[stream].extend_from_slice(data);
        while self.partial[stream].len() >= MAX_LINE {
            let rest = self.partial[stream].split_off(MAX_LINE);
            let piece = std::mem::replace(&mut self.partial[stream], rest);
            self.emit(stream, &piece);
        }
    }

    /// Writes what is left of unfinished lines.
    pub fn flush(&mut self) {
        for s in 0..2 {
            let p = std::mem::take(&mut self.partial[s]);
            if !p.is_empty() {
                self.emit(s, &p);
            }
        }
        if let Some(f) = &mut self.file {
            let _ = f.flush();
        }
    }

    fn emit(&mut self, stream: usize, bytes: &[u8]) {
        let line = LogLine {
            log: String::from_utf8_lossy(bytes).into_owned(),
            stream: if stream == 1 { "stderr" } else { "stdout" }.to_owned(),
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        };
        let mut json = match serde_json::to_vec(&line) {
            Ok(j) => j,
            Err(_) => return,
        };
        json.push(b'\n');
        if let Some(max) = self.cfg.max_size
            && self.size > 0
            && self.size + json.len() as u64 > max
        {
            self.rotate();
        }
        if let Some(f) = &mut self.file {
            match f.write_all(&json) {
                Ok(()) => self.size += json.len() as u64,
                Err(e) => eprintln!("berth-shim: write log {}: {e}", self.cfg.path.display()),
            }
        }
    }

    fn rotated(&self, n: u32) -> PathBuf {
        PathBuf::from(format!("{}.{n}", self.cfg.path.display()))
    }

    fn rotate(&mut self) {
        self.file = None;
        let keep = self.cfg.max_file.max(1);
        if keep == 1 {
            // One file: start it again.
        } else {
            let _ = std::fs::remove_file(self.rotated(keep - 1));
            for n in (1..keep - 1).rev() {
                let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
            }
            let _ = std::fs::rename(&self.cfg.path, self.rotated(1));
        }
        match OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.cfg.path)
        {
            Ok(f) => {
                self.file = Some(f);
                self.size = 0;
            }
            Err(e) => eprintln!("berth-shim: reopen log {}: {e}", self.cfg.path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(p: &std::path::Path) -> Vec<LogLine> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    #[test]
    fn lines_streams_and_rotation() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c-json.log");
        let cfg = LogConfig {
            path: path.clone(),
            max_size: Some(300),
            max_file: 2,
        };
        let file = LogWriter::open_file(&cfg).expect("open");
        let mut w = LogWriter::with_file(cfg, file).expect("writer");
        w.write(0, b"hel");
        w.write(0, b"lo\nwor");
        w.write(1, b"oops\n");
        w.flush();
        let l = lines(&path);
        assert_eq!(l.len(), 3);
        assert_eq!(
            (l[0].log.as_str(), l[0].stream.as_str()),
            ("hello\n", "stdout")
        );
        assert_eq!(
            (l[1].log.as_str(), l[1].stream.as_str()),
            ("oops\n", "stderr")
        );
        assert_eq!(l[2].log, "wor");
        for i in 0..20 {
            w.write(0, format!("line {i}\n").as_bytes());
        }
        w.flush();
        assert!(path.exists());
        assert!(dir.path().join("c-json.log.1").exists());
        assert!(!dir.path().join("c-json.log.2").exists());
        let all: Vec<String> = lines(&dir.path().join("c-json.log.1"))
            .into_iter()
            .chain(lines(&path))
            .map(|l| l.log)
            .collect();
        assert_eq!(all.last().map(String::as_str), Some("line 19\n"));
        assert!(std::fs::metadata(&path).expect("meta").len() <= 300);
    }
}
