//! Bridges between async HTTP bodies and the engine's blocking readers and
//! writers (archives are read and written by sync code on blocking
//! threads).

use std::io::{self, Read, Write};

use axum::body::{Body, Bytes};
use futures_util::StreamExt;
use tokio::sync::mpsc;

/// A blocking reader of a request body; a task feeds it.
#[derive(Debug)]
pub struct BodyReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl BodyReader {
    /// Starts feeding `body` into a new reader. Call from the runtime;
    /// read from a blocking thread.
    pub fn spawn(body: Body) -> BodyReader {
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(16);
        tokio::spawn(async move {
            let mut s = body.into_data_stream();
            while let Some(chunk) = s.next().await {
                let item = chunk.map_err(io::Error::other);
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        BodyReader {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// A blocking writer whose bytes become a streamed response body.
#[derive(Debug)]
pub struct BodyWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
}

impl BodyWriter {
    /// A writer and the response body it feeds.
    pub fn new() -> (BodyWriter, Body) {
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(16);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        (BodyWriter { tx }, Body::from_stream(stream))
    }

    /// Ends the body with an error: the client sees a broken transfer
    /// rather than a short, well-formed one.
    pub fn fail(self, e: io::Error) {
        let _ = self.tx.blocking_send(Err(e));
    }
}

impl Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
