//! Docker's stdcopy framing for non-TTY streams (attach, logs, exec): each
//! frame is an 8-byte header `[stream, 0, 0, 0, len as u32 big-endian]`
//! followed by `len` bytes; stream 0 stdin, 1 stdout, 2 stderr, 3 a
//! daemon-side error.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Which stream a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdin,
    Stdout,
    Stderr,
    SysErr,
}

/// An incremental demultiplexer: feed it bytes as they arrive.
#[derive(Debug, Default)]
pub struct Demux {
    buf: Vec<u8>,
}

impl Demux {
    /// Appends `data` and returns every complete frame.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<(Stream, Vec<u8>)>, String> {
        self.buf.extend_from_slice(data);
        let mut frames = Vec::new();
        let mut off = 0;
        while self.buf.len() - off >= 8 {
            let h = &self.buf[off..off + 8];
            let stream = match h[0] {
                0 => Stream::Stdin,
                1 => Stream::Stdout,
                2 => Stream::Stderr,
                3 => Stream::SysErr,
                b => return Err(format!("unrecognized input header: {b}")),
            };
            let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
            if self.buf.len() - off - 8 < len {
                break;
            }
            frames.push((stream, self.buf[off + 8..off + 8 + len].to_vec()));
            off += 8 + len;
        }
        self.buf.drain(..off);
        Ok(frames)
    }

    /// Bytes of an unfinished frame left over.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// Copies a multiplexed stream to `out`/`err` until EOF. A stream-3 frame
/// (an error from the daemon) ends the copy with that message.
pub async fn demux_copy<R, O, E>(mut r: R, out: &mut O, err: &mut E) -> anyhow::Result<()>
where
    R: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let mut d = Demux::default();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        for (s, payload) in d.feed(&buf[..n]).map_err(anyhow::Error::msg)? {
            match s {
                Stream::Stdout | Stream::Stdin => {
                    out.write_all(&payload).await?;
                    out.flush().await?;
                }
                Stream::Stderr => {
                    err.write_all(&payload).await?;
                    err.flush().await?;
                }
                Stream::SysErr => {
                    anyhow::bail!("{}", String::from_utf8_lossy(&payload).trim_end());
                }
            }
        }
    }
}

/// One frame, as a daemon writes it (for tests).
#[cfg(test)]
pub fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![stream, 0, 0, 0];
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere() {
        let mut all = frame(1, b"hello ");
        all.extend(frame(2, b"oops\n"));
        all.extend(frame(1, b""));
        all.extend(frame(1, b"world\n"));
        // Byte by byte: the demuxer must reassemble headers and payloads.
        let mut d = Demux::default();
        let mut got = Vec::new();
        for b in &all {
            got.extend(d.feed(std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(
            got,
            vec![
                (Stream::Stdout, b"hello ".to_vec()),
                (Stream::Stderr, b"oops\n".to_vec()),
                (Stream::Stdout, Vec::new()),
                (Stream::Stdout, b"world\n".to_vec()),
            ]
        );
        assert_eq!(d.pending(), 0);
        let mut d = Demux::default();
        assert_eq!(d.feed(&all).unwrap().len(), 4);
    }

    #[test]
    fn bad_header_is_an_error() {
        let mut d = Demux::default();
        assert!(d.feed(b"\x07\0\0\0\0\0\0\x01x").is_err());
    }

    #[tokio::test]
    async fn copy_to_two_writers() {
        let mut all = frame(1, b"out");
        all.extend(frame(2, b"err"));
        all.extend(frame(1, b"!"));
        let (mut o, mut e) = (Vec::new(), Vec::new());
        demux_copy(all.as_slice(), &mut o, &mut e).await.unwrap();
        assert_eq!(o, b"out!");
        assert_eq!(e, b"err");
        let bad = frame(3, b"exec failed\n");
        let r = demux_copy(bad.as_slice(), &mut o, &mut e).await;
        assert_eq!(r.unwrap_err().to_string(), "exec failed");
    }
}
