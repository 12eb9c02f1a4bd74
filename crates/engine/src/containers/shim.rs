//! berthd's side of the shim protocol (see `berth_shim::proto`), over
//! tokio sockets.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_shim::launch::Zygote;
use berth_shim::proto::{self, ExitStatus, Reply, Request, ShimConfig, Spawned};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::pipe::Receiver;

use crate::error::EngineError;

/// Starts shims through one `berth-shim --zygote` (see
/// `berth_shim::launch`), started for the first container and again when
/// it has gone away.
#[derive(Debug)]
pub struct Launcher {
    bin: PathBuf,
    root: PathBuf,
    zygote: Mutex<Option<Zygote>>,
}

impl Launcher {
    /// Shims from the berth-shim executable `bin`, for state directories
    /// in `root`; nothing runs yet.
    pub fn new(bin: PathBuf, root: PathBuf) -> Self {
        Launcher {
            bin,
            root,
            zygote: Mutex::new(None),
        }
    }

    /// Asks the zygote for a shim on `dir`. A zygote that does not take
    /// the request (it was killed) is replaced, once. Blocks only while a
    /// zygote starts (an exec, once per daemon).
    fn request(
        &self,
        dir: &Path,
        report: BorrowedFd,
        stderr: BorrowedFd,
        go: BorrowedFd,
    ) -> Result<(), EngineError> {
        let mut z = self.zygote.lock().unwrap_or_else(|p| p.into_inner());
        let mut fresh = false;
        loop {
            let zygote = match z.as_ref() {
                Some(zygote) => zygote,
                None => {
                    let started = Zygote::start(&self.bin, &self.root)
                        .map_err(|e| EngineError::Internal(format!("shim: {e}")))?;
                    fresh = true;
                    z.insert(started)
                }
            };
            match zygote.request(dir, report, stderr, Some(go)) {
                Ok(()) => return Ok(()),
                Err(e) if fresh || e.kind() == std::io::ErrorKind::InvalidInput => {
                    return Err(shim_err("zygote", e));
                }
                Err(_) => *z = None,
            }
        }
    }
}

/// A shim started by [`Shim::begin`], waiting for its bundle.
#[derive(Debug)]
pub struct Spawning {
    report_r: std::os::fd::OwnedFd,
    err_r: std::os::fd::OwnedFd,
    go_w: Option<std::os::fd::OwnedFd>,
}

impl Spawning {
    /// The bundle is written: the shim creates the container. (A shim
    /// that has gone says why in its report.)
    pub fn go(&mut self) {
        if let Some(go) = self.go_w.take() {
            let _ = nix::unistd::write(&go, b"g");
        }
    }

    /// The shim's and the container init's pids, or the creation error
    /// (the runtime's words, for the user). Without [`Self::go`] first the
    /// shim gives up and this is its error (it has stopped writing to the
    /// state directory by then).
    pub async fn finish(mut self) -> Result<(i32, i32), EngineError> {
        drop(self.go_w.take());
        let (report_r, err_r) = (self.report_r, self.err_r);
        let mut report = Receiver::from_owned_fd(report_r).map_err(|e| shim_err("report", e))?;
        // One line: the container's init keeps a copy of the pipe until it
        // starts, so EOF does not come after it.
        let (buf, _) = read_to_newline(&mut report, 1 << 16)
            .await
            .map_err(|e| shim_err("read report", e))?;
        let line = String::from_utf8_lossy(&buf);
        match proto::parse_spawn_line(line.lines().next().unwrap_or("")) {
            Spawned::Ready { shim_pid, init_pid } => Ok((shim_pid, init_pid)),
            Spawned::Failed(msg) if msg.starts_with("the shim exited") => {
                // It died before its own log existed: what it said then.
                let mut said = Vec::new();
                if let Ok(mut err) = Receiver::from_owned_fd(err_r) {
                    let read = err.read_to_end(&mut said);
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), read).await;
                }
                let said = String::from_utf8_lossy(&said);
                let said = said.trim();
                Err(EngineError::StartFailed(if said.is_empty() {
                    msg
                } else {
                    said.to_owned()
                }))
            }
            Spawned::Failed(msg) => Err(EngineError::StartFailed(msg)),
        }
    }
}

/// How berthd finds and talks to one container's shim.
#[derive(Debug, Clone)]
pub struct Shim {
    /// The shim's state directory (also the bundle: config.json, rootfs).
    pub dir: PathBuf,
}

fn shim_err(context: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("shim: {context}: {e}"))
}

impl Shim {
    /// The shim of state directory `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Shim { dir }
    }

    /// Writes `shim.json` and has `launcher` start a shim on it, which
    /// prepares itself meanwhile and creates the container once
    /// [`Spawning::go`] says the bundle is written; [`Spawning::finish`]
    /// has its outcome.
    pub fn begin(&self, launcher: &Launcher, cfg: &ShimConfig) -> Result<Spawning, EngineError> {
        let cfg_path = self.dir.join(proto::CONFIG);
        let bytes = serde_json::to_vec_pretty(cfg).map_err(|e| shim_err("encode config", e))?;
        // Small files in the exec root, written in place like the bundle's
        // config.json: not worth a trip through the blocking pool.
        std::fs::write(&cfg_path, bytes)
            .map_err(|e| EngineError::io(format!("write {}", cfg_path.display()), e))?;
        let _ = std::fs::remove_file(self.dir.join(proto::EXIT_FILE));
        let pipe = || {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| EngineError::io("pipe", e.into()))
        };
        let (report_r, report_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (go_r, go_w) = pipe()?;
        launcher.request(&self.dir, report_w.as_fd(), err_w.as_fd(), go_r.as_fd())?;
        // Only the shim has these ends now: EOF is its end.
        drop((report_w, err_w, go_r));
        Ok(Spawning {
            report_r,
            err_r,
            go_w: Some(go_w),
        })
    }

    /// Connects to the shim's socket. The path goes through an fd of the
    /// state directory (`/proc/self/fd/N/shim.sock`): the full path can be
    /// longer than a socket address allows.
    async fn connect(&self) -> Result<UnixStream, EngineError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&self.dir)
            .map_err(|e| shim_err(&format!("open {}", self.dir.display()), e))?;
        let short = format!("/proc/self/fd/{}/{}", dir.as_raw_fd(), proto::SOCKET);
        let s = UnixStream::connect(&short).await.map_err(|e| {
            shim_err(
                &format!("connect {}", self.dir.join(proto::SOCKET).display()),
                e,
            )
        })?;
        drop(dir);
        Ok(s)
    }

    /// Connects and sends `req`; returns the reply and the connection.
    pub async fn call(&self, req: &Request) -> Result<(Reply, UnixStream), EngineError> {
        let mut s = self.connect().await?;
        s.write_all(&proto::to_line(req))
            .await
            .map_err(|e| shim_err("send", e))?;
        let line = read_line(&mut s).await?;
        let reply: Reply = serde_json::from_slice(&line).map_err(|e| shim_err("bad reply", e))?;
        Ok((reply, s))
    }

    /// Sends `req` and expects `Reply::Ok`.
    pub async fn call_ok(&self, req: &Request) -> Result<UnixStream, EngineError> {
        match self.call(req).await? {
            (Reply::Ok, s) => Ok(s),
            (Reply::Error { message }, _) => Err(EngineError::ShimRefused(message)),
            (other, _) => Err(shim_err("unexpected reply", format!("{other:?}"))),
        }
    }

    /// Connects and sends `req` without reading the reply (see [`read_reply`]).
    pub async fn send(&self, req: &Request) -> Result<UnixStream, EngineError> {
        let mut s = self.connect().await?;
        s.write_all(&proto::to_line(req))
            .await
            .map_err(|e| shim_err("send", e))?;
        Ok(s)
    }

    /// Waits until the container exits. Errors when the shim goes away
    /// without an answer (then see [`Shim::exit_file`]).
    pub async fn wait(&self) -> Result<ExitStatus, EngineError> {
        match self.call(&Request::Wait).await? {
            (Reply::Exited(s), _) => Ok(s),
            (Reply::Error { message }, _) => Err(EngineError::ShimRefused(message)),
            (other, _) => Err(shim_err("unexpected reply", format!("{other:?}"))),
        }
    }

    /// The exit status the shim left, if any.
    pub fn exit_file(&self) -> Option<ExitStatus> {
        let bytes = std::fs::read(self.dir.join(proto::EXIT_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Whether a shim listens.
    pub async fn alive(&self) -> bool {
        self.connect().await.is_ok()
    }
}

/// Reads a reply line from `s` that is the last thing the shim sends on
/// it (a `Wait`'s answer): in chunks, not byte by byte as [`read_line`].
pub async fn read_reply(s: &mut UnixStream) -> Result<Reply, EngineError> {
    let (buf, end) = read_to_newline(s, 1 << 20)
        .await
        .map_err(|e| shim_err("read", e))?;
    let Some(end) = end else {
        return Err(shim_err(
            "read",
            if buf.len() > 1 << 20 {
                "reply too long"
            } else {
                "connection closed before a reply"
            },
        ));
    };
    serde_json::from_slice(&buf[..end]).map_err(|e| shim_err("bad reply", e))
}

/// Reads `r` in chunks until a newline, EOF or more than `limit` bytes;
/// returns what came and where its first newline is.
async fn read_to_newline(
    r: &mut (impl AsyncReadExt + Unpin),
    limit: usize,
) -> std::io::Result<(Vec<u8>, Option<usize>)> {
    let mut buf = Vec::with_capacity(256);
    loop {
        let n = r.read_buf(&mut buf).await?;
        if let Some(end) = buf.iter().position(|b| *b == b'\n') {
            return Ok((buf, Some(end)));
        }
        if n == 0 || buf.len() > limit {
            return Ok((buf, None));
        }
    }
}

/// Reads one line byte by byte (so nothing after it is consumed).
async fn read_line(s: &mut UnixStream) -> Result<Vec<u8>, EngineError> {
    let mut line = Vec::with_capacity(128);
    let mut b = [0u8; 1];
    loop {
        let n = s.read(&mut b).await.map_err(|e| shim_err("read", e))?;
        if n == 0 {
            return Err(shim_err("read", "connection closed before a reply"));
        }
        if b[0] == b'\n' {
            return Ok(line);
        }
        line.push(b[0]);
        if line.len() > 1 << 20 {
            return Err(shim_err("read", "reply too long"));
        }
    }
}

/// Reads the next frame of an attach or exec stream; `None` at the end.
pub async fn read_frame(
    s: &mut (impl AsyncReadExt + Unpin),
) -> Result<Option<proto::Frame>, EngineError> {
    let mut head = [0u8; 8];
    match s.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(shim_err("read frame", e)),
    }
    let len = proto::frame_len(&head).map_err(|e| shim_err("frame", e))?;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload)
        .await
        .map_err(|e| shim_err("read frame", e))?;
    proto::Frame::decode(head, payload)
        .map(Some)
        .map_err(|e| shim_err("frame", e))
}
