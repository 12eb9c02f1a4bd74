//! berth-shim-monitor: the event loop that serves a container once
//! berth-shim has created it. Container output to the log and to attached
//! clients, client stdin to the container, requests on the socket, child
//! exits; execs through `berth-shim --exec`. No runtime library here: this
//! is the part of the shim that stays resident.

mod logs;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{ErrorKind, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::proto::{
    self, ExecJob, ExitStatus, Frame, Handoff, Reply, Request, ShimConfig, ShimState,
};
use crate::stdio::{self, Ends};
use logs::LogWriter;

/// Most bytes queued for one client before it is dropped as too slow.
const MAX_CLIENT_BUF: usize = 8 << 20;
/// Most stdin bytes queued for the container.
const MAX_STDIN_BUF: usize = 1 << 20;
/// How long output may still come after the init exited.
const DRAIN: Duration = Duration::from_secs(2);
/// How long the shim waits for clients to take their last bytes.
const LINGER: Duration = Duration::from_secs(3);
/// Most bytes taken from a container's output or a client per read.
const READ_CHUNK: usize = 32 * 1024;

/// Reads what `fd` has into `buf`, which need not be initialised: the
/// monitor reads into one heap buffer that is never zeroed, so only the
/// pages a read fills become resident. (A 32 KiB array on the stack is
/// zeroed and stack-probed page by page on every call: 32 KiB more
/// resident memory in every monitor.) Empty at end of file.
fn read_chunk(fd: impl AsFd, buf: &mut [MaybeUninit<u8>]) -> std::io::Result<&[u8]> {
    let (filled, _) = rustix::io::read(fd, buf)?;
    Ok(filled)
}

fn child_set() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set
}

/// Blocks SIGCHLD (the mask survives the exec of the monitor, and a
/// SIGCHLD that comes before its signalfd exists stays pending).
pub fn block_child_signals() -> nix::Result<()> {
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&child_set()), None)
}

/// Blocks SIGCHLD and returns a signalfd for it.
fn child_signals() -> nix::Result<SignalFd> {
    block_child_signals()?;
    SignalFd::with_flags(&child_set(), SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

/// Takes ownership of a descriptor berth-shim left open for the monitor,
/// and makes it close-on-exec again (exec helpers must not inherit it).
fn inherited(fd: i32) -> Result<OwnedFd, String> {
    // SAFETY: fcntl on a plain integer; F_SETFD fails (EBADF) on anything
    // that is not an open descriptor, which is checked before owning it.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(format!("descriptor {fd} of the handoff is not open"));
    }
    // SAFETY: open (checked above), and named once in the handoff: nothing
    // else in this process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The monitor's program: takes over what the handoff names and serves
/// until the container has exited (then exits the process). berth-shim has
/// reported to berthd already: on a failure before serving, the container's
/// init is killed (nobody would keep its stdio) and the error is returned
/// for the shim's log; berthd's wait then finds the shim gone.
pub fn run(dir: &Path, handoff: &str) -> Result<Infallible, String> {
    let h: Handoff = serde_json::from_str(handoff).map_err(|e| format!("bad handoff: {e}"))?;
    let shim = (|| {
        let own = |fd: Option<i32>| fd.map(inherited).transpose();
        let listener = UnixListener::from(inherited(h.listener)?);
        let ends = Ends {
            out: [own(h.out[0])?, own(h.out[1])?],
            stdin: own(h.stdin)?,
            master: own(h.master)?,
        };
        let cfg: ShimConfig = std::fs::read(dir.join(proto::CONFIG))
            .map_err(|e| format!("read {}: {e}", proto::CONFIG))
            .and_then(|b| {
                serde_json::from_slice(&b).map_err(|e| format!("bad {}: {e}", proto::CONFIG))
            })?;
        let log = match (&cfg.log, own(h.log)?) {
            (Some(l), Some(fd)) => Some(
                LogWriter::with_file(l.clone(), fd.into())
                    .map_err(|e| format!("the log {}: {e}", l.path.display()))?,
            ),
            (Some(l), None) => return Err(format!("the log {} is not open", l.path.display())),
            (None, _) => None,
        };
        let sigfd = child_signals().map_err(|e| format!("signalfd: {e}"))?;
        Ok(Shim::new(dir, cfg, &h, ends, listener, sigfd, log))
    })();
    let mut shim = match shim {
        Ok(s) => s,
        Err(e) => {
            // SAFETY: kill(2) on this process's own child, not yet reaped.
            unsafe { libc::kill(h.init_pid, libc::SIGKILL) };
            return Err(e);
        }
    };
    // The init may have exited before the exec: its SIGCHLD is pending.
    shim.reap();
    shim.serve()
}

/// Opens the json-file log of `cfg` for the monitor (berth-shim opens it
/// before the exec, so that a log that cannot be written fails the start).
pub fn open_log(cfg: &proto::LogConfig) -> std::io::Result<std::fs::File> {
    LogWriter::open_file(cfg)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    /// Reading its request line.
    Request,
    /// Answered; closes once its bytes are out.
    Done,
    /// Waits for the exit.
    Waiter,
    /// Receives container output.
    Attach {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    /// Receives an exec's output.
    Exec { exec: String },
}

struct Conn {
    sock: UnixStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    role: Role,
    /// The client half-closed (or we stopped reading).
    read_closed: bool,
}

impl Conn {
    fn queue(&mut self, bytes: &[u8]) -> bool {
        if self.out.len() + bytes.len() > MAX_CLIENT_BUF {
            return false;
        }
        self.out.extend_from_slice(bytes);
        true
    }
    fn reply(&mut self, r: &Reply) {
        let line = proto::to_line(r);
        self.out.extend_from_slice(&line);
    }
}

/// One exec'd process.
struct Exec {
    pid: i32,
    ends: Ends,
    stdin_buf: Vec<u8>,
    close_stdin: bool,
    code: Option<i32>,
    exited_at: Option<Instant>,
    conn: Option<usize>,
}

/// The shim's whole state.
struct Shim {
    dir: PathBuf,
    cfg: ShimConfig,
    init_pid: i32,
    exit_raw: Option<(i32, Instant)>,
    exit: Option<ExitStatus>,
    ends: Ends,
    stdin_buf: Vec<u8>,
    close_stdin: bool,
    stdin_claimed: bool,
    log: Option<LogWriter>,
    listener: Option<UnixListener>,
    sigfd: SignalFd,
    conns: Vec<Option<Conn>>,
    execs: HashMap<String, Exec>,
    exec_fifo: PathBuf,
    oom_file: Option<PathBuf>,
    oom_base: u64,
    done_at: Option<Instant>,
    /// The buffer of every read (see `read_chunk`); taken while in use.
    scratch: Box<[MaybeUninit<u8>]>,
}

#[derive(Clone, Copy)]
enum Src {
    Listener,
    Signal,
    Out(usize),
    Stdin,
    Conn(usize),
    ExecOut(usize, usize),
    ExecStdin(usize),
}

impl Shim {
    /// The shim of a container just created.
    fn new(
        dir: &Path,
        cfg: ShimConfig,
        h: &Handoff,
        ends: Ends,
        listener: UnixListener,
        sigfd: SignalFd,
        log: Option<LogWriter>,
    ) -> Shim {
        Shim {
            dir: dir.to_owned(),
            cfg,
            init_pid: h.init_pid,
            exit_raw: None,
            exit: None,
            ends,
            stdin_buf: Vec::new(),
            close_stdin: false,
            stdin_claimed: false,
            log,
            listener: Some(listener),
            sigfd,
            conns: Vec::new(),
            execs: HashMap::new(),
            exec_fifo: h.exec_fifo.clone(),
            oom_file: h.oom_file.clone(),
            oom_base: h.oom_base,
            done_at: None,
            scratch: Box::new_uninit_slice(READ_CHUNK),
        }
    }

    /// Serves until the container has exited and clients have their
    /// answers; then exits the process.
    fn serve(mut self) -> ! {
        loop {
            if let Some(t) = self.done_at {
                let busy = self.conns.iter().flatten().any(|c| !c.out.is_empty());
                if !busy || t.elapsed() > LINGER {
                    let _ = std::fs::remove_file(self.dir.join(proto::SOCKET));
                    std::process::exit(0);
                }
            }
            self.poll_once();
            self.check_exit();
        }
    }

    fn poll_once(&mut self) {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut srcs: Vec<Src> = Vec::new();
        let mut add = |fd: RawFd, events: i16, src: Src| {
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            srcs.push(src);
        };
        if let Some(l) = &self.listener {
            add(l.as_raw_fd(), libc::POLLIN, Src::Listener);
        }
        add(self.sigfd.as_fd().as_raw_fd(), libc::POLLIN, Src::Signal);
        for (i, o) in self.ends.out.iter().enumerate() {
            if let Some(fd) = o {
                add(fd.as_raw_fd(), libc::POLLIN, Src::Out(i));
            }
        }
        if let Some(fd) = &self.ends.stdin
            && !self.stdin_buf.is_empty()
        {
            add(fd.as_raw_fd(), libc::POLLOUT, Src::Stdin);
        }
        let exec_ids: Vec<String> = self.execs.keys().cloned().collect();
        for (n, id) in exec_ids.iter().enumerate() {
            let e = &self.execs[id];
            for (i, o) in e.ends.out.iter().enumerate() {
                if let Some(fd) = o {
                    add(fd.as_raw_fd(), libc::POLLIN, Src::ExecOut(n, i));
                }
            }
            if let Some(fd) = &e.ends.stdin
                && !e.stdin_buf.is_empty()
            {
                add(fd.as_raw_fd(), libc::POLLOUT, Src::ExecStdin(n));
            }
        }
        let stdin_full = self.stdin_buf.len() >= MAX_STDIN_BUF;
        for (i, c) in self.conns.iter().enumerate() {
            let Some(c) = c else { continue };
            let mut ev = 0;
            if !(c.read_closed || stdin_full && matches!(c.role, Role::Attach { stdin: true, .. }))
            {
                ev |= libc::POLLIN;
            }
            if !c.out.is_empty() {
                ev |= libc::POLLOUT;
            }
            add(c.sock.as_raw_fd(), ev, Src::Conn(i));
        }
        let timeout = if self.exit_raw.is_some()
            || self.done_at.is_some()
            || self.execs.values().any(|e| e.code.is_some())
        {
            50
        } else {
            -1
        };
        // SAFETY: `fds` is a valid array of pollfd for its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            return;
        }
        for (pfd, src) in fds.iter().zip(srcs) {
            if pfd.revents == 0 {
                continue;
            }
            let ev = pfd.revents;
            match src {
                Src::Listener => self.accept(),
                Src::Signal => self.reap(),
                Src::Out(i) => self.read_output(i),
                Src::Stdin => self.write_stdin(),
                Src::Conn(i) => self.conn_event(i, ev),
                Src::ExecOut(n, i) => {
                    if let Some(id) = exec_ids.get(n) {
                        self.read_exec_output(&id.clone(), i);
                    }
                }
                Src::ExecStdin(n) => {
                    if let Some(id) = exec_ids.get(n) {
                        self.write_exec_stdin(&id.clone());
                    }
                }
            }
        }
        self.finish_execs();
        self.conns.iter_mut().for_each(|c| {
            if c.as_ref()
                .is_some_and(|c| c.role == Role::Done && c.out.is_empty())
            {
                *c = None;
            }
        });
    }

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        while let Ok((sock, _)) = l.accept() {
            if sock.set_nonblocking(true).is_err() {
                continue;
            }
            let conn = Conn {
                sock,
                inbuf: Vec::new(),
                out: Vec::new(),
                role: Role::Request,
                read_closed: false,
            };
            match self.conns.iter().position(Option::is_none) {
                Some(i) => self.conns[i] = Some(conn),
                None => self.conns.push(Some(conn)),
            }
        }
    }

    fn reap(&mut self) {
        while let Ok(Some(_)) = self.sigfd.read_signal() {}
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.exited(pid.as_raw(), code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.exited(pid.as_raw(), 128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    fn exited(&mut self, pid: i32, code: i32) {
        if pid == self.init_pid {
            self.exit_raw = Some((code, Instant::now()));
            return;
        }
        for e in self.execs.values_mut() {
            if e.pid == pid {
                e.code = Some(code);
                e.exited_at = Some(Instant::now());
            }
        }
    }

    /// Output of the container (stream 0 stdout, 1 stderr).
    fn read_output(&mut self, i: usize) {
        self.with_scratch(|s, buf| {
            let Some(fd) = &s.ends.out[i] else { return };
            match read_chunk(fd, buf) {
                Ok([]) => s.ends.out[i] = None,
                Ok(data) => s.output(i, data),
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                // EIO: the terminal's other side is closed.
                Err(_) => s.ends.out[i] = None,
            }
        });
    }

    /// Runs `f` with the read buffer (see `read_chunk`), put back after.
    /// A reader called while another holds it gets a buffer of its own
    /// (an empty one would read as end of file).
    fn with_scratch(&mut self, f: impl FnOnce(&mut Self, &mut [MaybeUninit<u8>])) {
        let mut buf = std::mem::take(&mut self.scratch);
        if buf.is_empty() {
            buf = Box::new_uninit_slice(READ_CHUNK);
        }
        f(self, &mut buf);
        self.scratch = buf;
    }

    fn output(&mut self, stream: usize, data: &[u8]) {
        if let Some(l) = &mut self.log {
            l.write(stream, data);
        }
        let frame = if stream == 1 {
            Frame::Stderr(data.to_vec())
        } else {
            Frame::Stdout(data.to_vec())
        }
        .encode();
        for slot in &mut self.conns {
            let drop_it = match slot {
                Some(c) => match c.role {
                    Role::Attach { stdout, stderr, .. } => {
                        let wanted = if stream == 1 { stderr } else { stdout };
                        wanted && !c.queue(&frame)
                    }
                    _ => false,
                },
                None => false,
            };
            if drop_it {
                eprintln!("berth-shim: dropping an attached client that does not read");
                *slot = None;
            }
        }
    }

    fn write_stdin(&mut self) {
        feed_stdin(&mut self.ends, &mut self.stdin_buf, self.close_stdin);
    }

    fn conn_event(&mut self, i: usize, ev: i16) {
        if ev & libc::POLLOUT != 0 {
            self.flush_conn(i);
        }
        if ev & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            self.read_conn(i);
        }
    }

    fn flush_conn(&mut self, i: usize) {
        let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        match c.sock.write(&c.out) {
            Ok(n) => {
                c.out.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            Err(_) => self.conns[i] = None,
        }
    }

    fn read_conn(&mut self, i: usize) {
        self.with_scratch(|s, buf| s.conn_input(i, buf));
    }

    fn conn_input(&mut self, i: usize, buf: &mut [MaybeUninit<u8>]) {
        let Some(c) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let data = match read_chunk(&c.sock, buf) {
            Ok(data) => data,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                return;
            }
            Err(_) => {
                self.conns[i] = None;
                return;
            }
        };
        if data.is_empty() {
            c.read_closed = true;
            match c.role.clone() {
                Role::Request if c.inbuf.is_empty() => self.conns[i] = None,
                Role::Request => {
                    c.reply(&Reply::Error {
                        message: "incomplete request: the connection ended before a newline".into(),
                    });
                    c.role = Role::Done;
                }
                Role::Attach { stdin: true, .. } if self.cfg.stdin_once => {
                    self.close_stdin = true;
                    if self.stdin_buf.is_empty() && self.ends.master.is_none() {
                        self.ends.stdin = None;
                    }
                }
                Role::Exec { exec } => {
                    if let Some(e) = self.execs.get_mut(&exec) {
                        e.close_stdin = true;
                        if e.stdin_buf.is_empty() && e.ends.master.is_none() {
                            e.ends.stdin = None;
                        }
                    }
                }
                _ => {}
            }
            return;
        }
        match c.role.clone() {
            Role::Request => {
                c.inbuf.extend_from_slice(data);
                if let Some(pos) = c.inbuf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = c.inbuf.drain(..=pos).collect();
                    let rest = std::mem::take(&mut c.inbuf);
                    self.request(i, &line, rest);
                } else if c.inbuf.len() > (4 << 20) {
                    c.reply(&Reply::Error {
                        message: "request too long".into(),
                    });
                    c.role = Role::Done;
                    c.read_closed = true;
                }
            }
            Role::Attach { stdin: true, .. } if self.ends.stdin.is_some() => {
                self.stdin_buf.extend_from_slice(data);
            }
            Role::Exec { exec } => {
                if let Some(e) = self.execs.get_mut(&exec)
                    && e.ends.stdin.is_some()
                {
                    e.stdin_buf.extend_from_slice(data);
                }
            }
            _ => {}
        }
    }

    fn request(&mut self, i: usize, line: &[u8], rest: Vec<u8>) {
        let req: Request = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => {
                if let Some(c) = self.conns[i].as_mut() {
                    c.reply(&Reply::Error {
                        message: format!("bad request: {e}"),
                    });
                    c.role = Role::Done;
                    c.read_closed = true;
                }
                return;
            }
        };
        let id = self.cfg.id.clone();
        let mut role = Role::Done;
        let reply = match req {
            Request::State => Reply::State(self.state()),
            Request::Wait => match &self.exit {
                Some(s) => Reply::Exited(s.clone()),
                None => {
                    role = Role::Waiter;
                    if let Some(c) = self.conns[i].as_mut() {
                        c.role = role;
                    }
                    return;
                }
            },
            Request::Attach {
                stdin,
                stdout,
                stderr,
            } => {
                let stdin = stdin && self.ends.stdin.is_some();
                if stdin {
                    self.stdin_claimed = true;
                    if !rest.is_empty() {
                        self.stdin_buf.extend_from_slice(&rest);
                    }
                }
                role = Role::Attach {
                    stdin,
                    stdout,
                    stderr,
                };
                Reply::Ok
            }
            Request::Resize {
                exec_id,
                height,
                width,
            } => {
                let master = match &exec_id {
                    None => self.ends.master.as_ref(),
                    Some(e) => self.execs.get(e).and_then(|x| x.ends.master.as_ref()),
                };
                match master {
                    Some(m) => match stdio::resize(m, height, width) {
                        Ok(()) => Reply::Ok,
                        Err(e) => Reply::Error {
                            message: format!("resize: {e}"),
                        },
                    },
                    None => Reply::Error {
                        message: "the process has no terminal".into(),
                    },
                }
            }
            Request::Exec {
                exec_id,
                process,
                stdin,
                console_size,
            } => {
                // Created, not started (the runtime's FIFO is there), or
                // exited: nothing to run a process in.
                if self.exit_raw.is_some() || self.exec_fifo.exists() {
                    Reply::Error {
                        message: format!("container {id} is not running"),
                    }
                } else if self.execs.contains_key(&exec_id) {
                    Reply::Error {
                        message: format!("exec {exec_id} exists already"),
                    }
                } else {
                    match self.exec(&exec_id, process, stdin, console_size) {
                        Ok(mut e) => {
                            e.conn = Some(i);
                            if !rest.is_empty() && e.ends.stdin.is_some() {
                                e.stdin_buf.extend_from_slice(&rest);
                            }
                            self.execs.insert(exec_id.clone(), e);
                            role = Role::Exec { exec: exec_id };
                            Reply::Ok
                        }
                        Err(m) => Reply::Error { message: m },
                    }
                }
            }
        };
        if let Some(c) = self.conns[i].as_mut() {
            c.reply(&reply);
            c.role = role.clone();
            if role == Role::Done {
                c.read_closed = true;
            }
            // An attach to a container that has exited ends at once.
            if matches!(role, Role::Attach { .. })
                && let Some(s) = &self.exit
            {
                c.out.extend_from_slice(&Frame::Exit(s.clone()).encode());
                c.role = Role::Done;
                c.read_closed = true;
            }
        }
    }

    fn state(&self) -> ShimState {
        let stopped = self.exit.is_some() || self.exit_raw.is_some();
        ShimState {
            status: if stopped { "stopped" } else { "running" }.to_owned(),
            pid: self.init_pid,
            exit: self.exit.clone(),
        }
    }

    /// Runs an exec through `berth-shim --exec`; the process is running
    /// when this returns.
    fn exec(
        &mut self,
        exec_id: &str,
        mut process: serde_json::Value,
        stdin: bool,
        size: Option<(u16, u16)>,
    ) -> Result<Exec, String> {
        let tty = process["terminal"].as_bool().unwrap_or(false);
        // The terminal has its size before the program runs.
        if tty && let Some((h, w)) = size {
            process["consoleSize"] = serde_json::json!({ "height": h, "width": w });
        }
        let n: String = exec_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(16)
            .collect();
        let (prepared, child) = if tty {
            let p = stdio::console(Path::new(&format!("exec-{n}.sock")));
            (p, None)
        } else {
            match stdio::pipes(stdin) {
                Ok((p, c)) => (Ok(p), Some(c)),
                Err(e) => (Err(e), None),
            }
        };
        let prepared = prepared.map_err(|e| format!("exec stdio: {e}"))?;
        let job_file = PathBuf::from(format!("exec-{n}.json"));
        let job = ExecJob {
            root: self.cfg.runtime_root.clone(),
            id: self.cfg.id.clone(),
            process,
            console_socket: stdio::console_path(&prepared),
            seccomp_cache: self.cfg.seccomp_cache.clone(),
        };
        // The job holds the process's environment: 0600.
        let ran = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&job_file)
            .and_then(|mut f| f.write_all(&proto::to_line(&job)))
            .map_err(|e| format!("write {}: {e}", job_file.display()))
            .and_then(|()| run_helper(&job_file, child));
        let _ = std::fs::remove_file(&job_file);
        let pid = match ran {
            Ok(pid) => pid,
            Err(e) => {
                if let Some(p) = stdio::console_path(&prepared) {
                    let _ = std::fs::remove_file(p);
                }
                return Err(e);
            }
        };
        let mut ends = match stdio::finish(prepared, size) {
            Ok(e) => e,
            Err(e) => {
                // Running without anyone to keep its stdio: end it.
                // SAFETY: kill(2) on an exec'd process of this container,
                // inherited by this subreaper and not reaped yet.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return Err(format!("exec stdio: {e}"));
            }
        };
        if !stdin && ends.master.is_none() {
            ends.stdin = None;
        }
        Ok(Exec {
            pid,
            ends,
            stdin_buf: Vec::new(),
            close_stdin: false,
            code: None,
            exited_at: None,
            conn: None,
        })
    }

    fn read_exec_output(&mut self, id: &str, i: usize) {
        self.with_scratch(|s, buf| s.exec_output(id, i, buf));
    }

    fn exec_output(&mut self, id: &str, i: usize, buf: &mut [MaybeUninit<u8>]) {
        let Some(e) = self.execs.get_mut(id) else {
            return;
        };
        let Some(fd) = &e.ends.out[i] else { return };
        match read_chunk(fd, buf) {
            Ok([]) => e.ends.out[i] = None,
            Ok(data) => {
                let frame = if i == 1 {
                    Frame::Stderr(data.to_vec())
                } else {
                    Frame::Stdout(data.to_vec())
                };
                if let Some(ci) = e.conn
                    && let Some(c) = self.conns.get_mut(ci).and_then(Option::as_mut)
                    && !c.queue(&frame.encode())
                {
                    self.conns[ci] = None;
                    e.conn = None;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            Err(_) => e.ends.out[i] = None,
        }
    }

    fn write_exec_stdin(&mut self, id: &str) {
        if let Some(e) = self.execs.get_mut(id) {
            feed_stdin(&mut e.ends, &mut e.stdin_buf, e.close_stdin);
        }
    }

    /// Execs that exited and whose output is drained get their exit frame.
    fn finish_execs(&mut self) {
        let done: Vec<String> = self
            .execs
            .iter()
            .filter(|(_, e)| {
                e.code.is_some()
                    && (e.ends.out.iter().all(Option::is_none)
                        || e.exited_at.is_some_and(|t| t.elapsed() > DRAIN))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for id in done {
            let Some(e) = self.execs.remove(&id) else {
                continue;
            };
            let status = ExitStatus {
                code: e.code.unwrap_or(-1),
                oom_killed: false,
                finished_at: now(),
            };
            if let Some(ci) = e.conn
                && let Some(c) = self.conns.get_mut(ci).and_then(Option::as_mut)
            {
                c.out.extend_from_slice(&Frame::Exit(status).encode());
                c.role = Role::Done;
                c.read_closed = true;
            }
        }
    }

    /// After the init exited and its output is drained: the exit status
    /// on disk, answers to everyone, the runtime's state removed.
    fn check_exit(&mut self) {
        if self.exit.is_some() {
            return;
        }
        let Some((code, at)) = self.exit_raw else {
            return;
        };
        let drained = self.ends.out.iter().all(Option::is_none);
        if !drained && at.elapsed() < DRAIN {
            return;
        }
        // What is still readable now goes in; then the pipes close.
        for i in 0..2 {
            for _ in 0..64 {
                if self.ends.out[i].is_none() {
                    break;
                }
                self.read_output(i);
            }
            self.ends.out[i] = None;
        }
        if let Some(l) = &mut self.log {
            l.flush();
        }
        let oom = self
            .oom_file
            .as_deref()
            .and_then(read_oom_kills)
            .is_some_and(|n| n > self.oom_base);
        let status = ExitStatus {
            code,
            oom_killed: oom,
            finished_at: now(),
        };
        if let Err(e) = write_exit(&self.dir, &status) {
            eprintln!("berth-shim: write {}: {e}", proto::EXIT_FILE);
        }
        for c in self.conns.iter_mut().flatten() {
            {
                match c.role {
                    Role::Waiter => {
                        c.reply(&Reply::Exited(status.clone()));
                        c.role = Role::Done;
                    }
                    Role::Attach { .. } => {
                        c.out
                            .extend_from_slice(&Frame::Exit(status.clone()).encode());
                        c.role = Role::Done;
                    }
                    Role::Exec { .. } => {
                        c.out.extend_from_slice(
                            &Frame::Exit(ExitStatus {
                                code: 137,
                                oom_killed: false,
                                finished_at: now(),
                            })
                            .encode(),
                        );
                        c.role = Role::Done;
                    }
                    _ => {}
                }
                c.read_closed = true;
            }
        }
        self.execs.clear();
        self.ends.stdin = None;
        self.ends.master = None;
        self.exit = Some(status);
        self.done_at = Some(Instant::now());
        let _ = self.stdin_claimed;
    }
}

/// Runs `berth-shim --exec job` (beside this program) with the process's
/// stdio (`child`, or /dev/null for a terminal) and a report pipe on fd 3;
/// the process's pid.
fn run_helper(job: &Path, child: Option<[OwnedFd; 3]>) -> Result<i32, String> {
    let helper = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("berth-shim")))
        .ok_or("berth-shim is not found beside the monitor")?;
    let (report_r, report_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let mut cmd = Command::new(&helper);
    cmd.arg("--exec").arg(job);
    match child {
        Some([i, o, e]) => cmd.stdin(i).stdout(o).stderr(e),
        None => cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    };
    let w = report_w.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and only
    // calls dup2 and fcntl, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let r = if w == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(w, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = cmd
        .spawn()
        .and_then(|mut c| {
            drop(cmd);
            c.wait()
        })
        .map_err(|e| format!("run {}: {e}", helper.display()))?;
    drop(report_w);
    let mut line = Vec::new();
    let mut f = std::fs::File::from(report_r);
    let mut b = [0u8; 512];
    while let Ok(n @ 1..) = f.read(&mut b) {
        line.extend_from_slice(&b[..n]);
        if line.contains(&b'\n') {
            break;
        }
    }
    match proto::parse_spawn_line(&String::from_utf8_lossy(&line)) {
        proto::Spawned::Ready { init_pid, .. } => Ok(init_pid),
        proto::Spawned::Failed(m) if line.is_empty() => Err(format!("exec failed ({status}): {m}")),
        proto::Spawned::Failed(m) => Err(m),
    }
}

/// Writes what `buf` holds to a process's stdin; closes stdin on an error,
/// and once `buf` is empty when `close` (a terminal's stays open).
fn feed_stdin(ends: &mut Ends, buf: &mut Vec<u8>, close: bool) {
    let Some(fd) = &ends.stdin else {
        buf.clear();
        return;
    };
    match nix::unistd::write(fd, buf) {
        Ok(n) => {
            buf.drain(..n);
        }
        Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
        Err(_) => {
            buf.clear();
            ends.stdin = None;
        }
    }
    if buf.is_empty() && close && ends.master.is_none() {
        ends.stdin = None;
    }
}

/// The count of an `oom_kill N` line in a cgroup file.
fn read_oom_kills(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))?
        .trim()
        .parse()
        .ok()
}

fn write_exit(dir: &Path, s: &ExitStatus) -> std::io::Result<()> {
    let tmp = dir.join(format!("{}.tmp", proto::EXIT_FILE));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(s).unwrap_or_default())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(proto::EXIT_FILE))
}
