//! Streaming, fd-relative extraction of one layer.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc;

use berth_runtime::rootfs::resolve;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};
use tar::EntryType;

use super::whiteout;
use super::{ApplyOptions, ApplyStats, Compression, LayerError};

/// Size of the buffers of uncompressed stream the decompressing thread hands
/// to the extracting one.
const CHUNK: usize = 256 << 10;
/// Chunks queued between the two threads (besides the one each side holds).
const CHUNKS_QUEUED: usize = 4;
/// Buffer for file contents: most files are written with one `write`.
const WRITE_BUF: usize = 1 << 20;

/// A filled chunk (`.1` bytes of `.0` are valid) or the read error that
/// ended the stream.
type Chunk = io::Result<(Vec<u8>, usize)>;

/// The extracting side of the pipeline: the uncompressed tar stream as
/// chunks from the decompressing thread, whose buffers go back to it for
/// reuse. The stream ends when the sender is gone.
struct ChunkReader {
    rx: mpsc::Receiver<Chunk>,
    recycle: mpsc::SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    len: usize,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.len {
            match self.rx.recv() {
                Ok(Ok((chunk, len))) => {
                    let old = std::mem::replace(&mut self.cur, chunk);
                    self.len = len;
                    self.pos = 0;
                    if !old.is_empty() {
                        // Full or gone: the buffer is simply freed.
                        let _ = self.recycle.try_send(old);
                    }
                }
                Ok(Err(e)) => return Err(e),
                Err(mpsc::RecvError) => return Ok(0),
            }
        }
        let n = buf.len().min(self.len - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The decompressing side: read `decoder` to its end in chunks and send
/// them on. Stops early when the next stage is gone (extraction failed); a
/// read error is sent on and ends the stream.
fn pump(decoder: &mut impl Read, tx: mpsc::SyncSender<Chunk>, recycle: mpsc::Receiver<Vec<u8>>) {
    loop {
        let mut buf = recycle.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
        let mut n = 0;
        while n < buf.len() {
            match decoder.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        let end = n < buf.len();
        if n > 0 && tx.send(Ok((buf, n))).is_err() {
            return;
        }
        if end {
            return;
        }
    }
}

/// The diffID stage between decompression and extraction: hash every chunk
/// (the diffID covers the whole stream, end-of-archive padding included;
/// extraction reads the stream to its end) and pass it on. Stops when
/// either side is gone.
fn hash_stage(
    mut hasher: Sha256,
    rx: mpsc::Receiver<Chunk>,
    tx: mpsc::SyncSender<Chunk>,
) -> Sha256 {
    for chunk in rx {
        if let Ok((buf, len)) = &chunk {
            hasher.update(&buf[..*len]);
        }
        if tx.send(chunk).is_err() {
            break;
        }
    }
    hasher
}

type Peeked<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

/// The decompressing reader for a detected compression.
enum Decoder<R: Read> {
    Plain(Peeked<R>),
    Gzip(Box<flate2::read::MultiGzDecoder<Peeked<R>>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, io::BufReader<Peeked<R>>>>),
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
        }
    }
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Read the first bytes, pick a decoder, and put the bytes back in front.
fn detect<R: Read>(mut reader: R) -> io::Result<(Compression, Decoder<R>)> {
    let mut magic = [0u8; 4];
    let mut n = 0;
    while n < magic.len() {
        match reader.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let head = &magic[..n];
    let peeked = io::Cursor::new(head.to_vec()).chain(reader);
    Ok(if head.starts_with(GZIP_MAGIC) {
        (
            Compression::Gzip,
            Decoder::Gzip(Box::new(flate2::read::MultiGzDecoder::new(peeked))),
        )
    } else if head.starts_with(ZSTD_MAGIC) {
        (
            Compression::Zstd,
            Decoder::Zstd(Box::new(zstd::stream::read::Decoder::new(peeked)?)),
        )
    } else {
        (Compression::None, Decoder::Plain(peeked))
    })
}

/// Apply a layer blob (gzip, zstd or plain tar) on top of the directory
/// `root`.
///
/// Entry paths are cleaned lexically (`..` cannot climb above the root) and
/// then resolved inside `root` with `RESOLVE_IN_ROOT`, so symlinks in the
/// root or earlier in the layer cannot redirect writes outside it. A symlink
/// at an entry's own path is replaced, never followed. Whiteouts
/// (`.wh.<name>`) remove `<name>`; an opaque marker (`.wh..wh..opq`) removes
/// everything in its directory that this layer did not create, wherever it
/// appears in the tar.
///
/// Directory entries that name the root itself (`./`) are skipped: the
/// root's own mode and owner are left alone.
pub fn apply_layer(
    reader: impl Read,
    root: &Path,
    opts: &ApplyOptions,
) -> Result<ApplyStats, LayerError> {
    let root_fd = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LayerError::Root {
        path: root.to_path_buf(),
        source: e.into(),
    })?;
    let (compression, mut decoder) = detect(reader).map_err(LayerError::Read)?;
    let stats = ApplyStats {
        compression: Some(compression),
        ..ApplyStats::default()
    };
    // A pipeline of scoped threads, all joined before this returns:
    // decompression on this thread, the diffID's sha256 on one (when asked
    // for), parsing and extraction on another. Chunks go through bounded
    // channels and their buffers come back for reuse.
    let (tx, rx) = mpsc::sync_channel::<Chunk>(CHUNKS_QUEUED);
    let (recycle_tx, recycle_rx) = mpsc::sync_channel::<Vec<u8>>(2 * CHUNKS_QUEUED + 2);
    let root = root_fd.as_fd();
    let (mut stats, hasher) = std::thread::scope(|scope| {
        let (rx, hashing) = if opts.compute_diff_id {
            let (htx, hrx) = mpsc::sync_channel::<Chunk>(CHUNKS_QUEUED);
            let hashing = std::thread::Builder::new()
                .name("layer-diffid".into())
                .spawn_scoped(scope, move || hash_stage(Sha256::new(), rx, htx))
                .map_err(LayerError::Read)?;
            (hrx, Some(hashing))
        } else {
            (rx, None)
        };
        let worker = std::thread::Builder::new()
            .name("layer-extract".into())
            .spawn_scoped(scope, move || {
                let reader = ChunkReader {
                    rx,
                    recycle: recycle_tx,
                    cur: Vec::new(),
                    len: 0,
                    pos: 0,
                };
                extract(reader, root, opts, stats)
            })
            .map_err(LayerError::Read)?;
        pump(&mut decoder, tx, recycle_rx);
        let stats = match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let hasher = match hashing.map(|h| h.join()) {
            None => None,
            Some(Ok(h)) => Some(h),
            Some(Err(panic)) => std::panic::resume_unwind(panic),
        };
        stats.map(|s| (s, hasher))
    })?;
    stats.diff_id = hasher.map(|h| format!("sha256:{:x}", h.finalize()));
    Ok(stats)
}

/// Parse the tar stream and apply its entries (the extracting thread).
fn extract(
    mut reader: ChunkReader,
    root: BorrowedFd<'_>,
    opts: &ApplyOptions,
    mut stats: ApplyStats,
) -> Result<ApplyStats, LayerError> {
    let mut state = State::new(root, opts);
    {
        let mut archive = tar::Archive::new(&mut reader);
        for entry in archive.entries().map_err(LayerError::Read)? {
            let mut entry = entry.map_err(LayerError::Read)?;
            stats.entries += 1;
            state.apply_entry(&mut entry, &mut stats)?;
        }
    }
    // Let the decompressing thread read (and hash) the stream to its end.
    io::copy(&mut reader, &mut io::sink()).map_err(LayerError::Read)?;
    state.finish();
    Ok(stats)
}

/// Metadata of one entry, PAX overrides applied.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timespec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct State<'a> {
    root: BorrowedFd<'a>,
    opts: &'a ApplyOptions,
    /// Paths (relative to the root) created or updated by this layer, and
    /// their ancestors: what an opaque marker keeps.
    touched: HashSet<PathBuf>,
    /// Directory mtimes, set at the end (creating children changes them).
    dir_times: Vec<(PathBuf, Timespec)>,
    /// The last parent directory entries were created in (entries of a
    /// directory come together in a tar). Dropped whenever anything is
    /// removed, so it never names a directory that was replaced since.
    parent: Option<Parent>,
    /// Who new files belong to before any chown.
    euid: u32,
    egid: u32,
    /// Content buffer, [`WRITE_BUF`] bytes once used.
    buf: Vec<u8>,
}

/// A resolved parent directory.
struct Parent {
    /// Its path relative to the root.
    rel: PathBuf,
    /// O_PATH fd of it, resolved inside the root.
    fd: Rc<OwnedFd>,
    /// The group a file created in it gets (its own when it is setgid).
    new_gid: u32,
}

impl<'a> State<'a> {
    fn new(root: BorrowedFd<'a>, opts: &'a ApplyOptions) -> Self {
        Self {
            root,
            opts,
            touched: HashSet::new(),
            dir_times: Vec::new(),
            parent: None,
            euid: rustix::process::geteuid().as_raw(),
            egid: rustix::process::getegid().as_raw(),
            buf: Vec::new(),
        }
    }
}

/// `path` relative to the root, `.` and `..` resolved lexically and clamped
/// at the root.
fn normalize(path: &Path) -> PathBuf {
    let mut out: Vec<&OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    out.iter().collect()
}

fn entry_err(path: &str, what: impl Into<String>, source: impl Into<io::Error>) -> LayerError {
    LayerError::Entry {
        path: path.to_string(),
        what: what.into(),
        source: source.into(),
    }
}

fn refused(path: &str, reason: impl Into<String>) -> LayerError {
    LayerError::Refused {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// The type of `name` in `dir`, without following a symlink.
fn existing(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<FileType>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Parse a PAX time (`123` or `123.456`).
fn pax_time(value: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(value).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let tv_nsec = if digits.is_empty() {
        0
    } else {
        let scale = 10i64.pow(9 - u32::try_from(digits.len()).ok()?);
        digits.parse::<i64>().ok()? * scale
    };
    // `Nsecs` is `c_long` on some 32-bit targets, `i64` elsewhere.
    #[allow(clippy::useless_conversion)]
    let tv_nsec = tv_nsec.try_into().ok()?;
    Some(Timespec { tv_sec, tv_nsec })
}

/// Copy an entry's content to `out` in writes of up to `buf.len()` bytes.
fn copy_content(entry: &mut impl Read, out: &mut impl Write, buf: &mut [u8]) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let mut n = 0;
        while n < buf.len() {
            match entry.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        out.write_all(&buf[..n])?;
        total += n as u64;
        if n < buf.len() {
            return Ok(total);
        }
    }
}

impl State<'_> {
    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        stats: &mut ApplyStats,
    ) -> Result<(), LayerError> {
        let raw_path = entry.path().map_err(LayerError::Read)?.into_owned();
        let shown = raw_path.display().to_string();
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            stats.skipped += 1;
            return Ok(());
        }
        if entry.size() > self.opts.max_entry_size {
            return Err(refused(
                &shown,
                format!(
                    "size {} exceeds the limit of {} bytes",
                    entry.size(),
                    self.opts.max_entry_size
                ),
            ));
        }
        let rel = normalize(&raw_path);
        let Some(name) = rel.file_name().map(OsStr::to_os_string) else {
            if kind.is_dir() {
                stats.skipped += 1;
                return Ok(());
            }
            return Err(refused(&shown, "the path names the root itself"));
        };
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();

        // Whiteouts.
        let name_bytes = name.as_bytes();
        if name_bytes == whiteout::OPAQUE.as_bytes() {
            self.parent = None;
            if let Some(dir) = self.lookup_dir(&shown, &parent_rel)? {
                whiteout::clear_opaque(dir.as_fd(), &parent_rel, &self.touched)
                    .map_err(|e| entry_err(&shown, "clear opaque directory", e))?;
            }
            stats.whiteouts += 1;
            return Ok(());
        }
        if let Some(hidden) = name_bytes.strip_prefix(whiteout::PREFIX.as_bytes()) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(refused(&shown, "whiteout without a name"));
            }
            self.parent = None;
            if let Some(dir) = self.lookup_dir(&shown, &parent_rel)? {
                whiteout::remove_all(dir.as_fd(), OsStr::from_bytes(hidden))
                    .map_err(|e| entry_err(&shown, "remove whited-out entry", e))?;
            }
            stats.whiteouts += 1;
            return Ok(());
        }

        let meta = self.meta(entry, &shown)?;
        let (parent, new_gid) = self.parent_dir(&shown, &parent_rel)?;
        let dir = parent.as_fd();
        let name = name.as_os_str();
        let regular = matches!(
            kind,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse
        );
        // A regular file is created with O_EXCL first; only if that finds
        // something in the way is it looked at (and removed).
        let have = if regular {
            None
        } else {
            existing(dir, name).map_err(|e| entry_err(&shown, "stat", e))?
        };
        let removed = std::cell::Cell::new(false);
        let mut replace = |keep_dir: bool| -> Result<(), LayerError> {
            match have {
                None => Ok(()),
                Some(FileType::Directory) if keep_dir => Ok(()),
                Some(_) => {
                    removed.set(true);
                    whiteout::remove_all(dir, name)
                        .map_err(|e| entry_err(&shown, "replace existing entry", e))
                }
            }
        };

        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let create = || {
                    rustix::fs::openat(
                        dir,
                        name,
                        OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::WRONLY
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                };
                let fd = match create() {
                    Err(Errno::EXIST) => {
                        removed.set(true);
                        whiteout::remove_all(dir, name)
                            .map_err(|e| entry_err(&shown, "replace existing entry", e))?;
                        create()
                    }
                    other => other,
                }
                .map_err(|e| entry_err(&shown, "create file", e))?;
                let mut file = std::fs::File::from(fd);
                if self.buf.is_empty() {
                    self.buf = vec![0u8; WRITE_BUF];
                }
                let written = copy_content(entry, &mut file, &mut self.buf)
                    .map_err(|e| entry_err(&shown, "write content", e))?;
                stats.bytes += written;
                stats.files += 1;
                // The fd is the inode just created (O_EXCL|O_NOFOLLOW): its
                // metadata is set through it, with no path lookup.
                let chown =
                    self.opts.preserve_owners && (meta.uid != self.euid || meta.gid != new_gid);
                self.set_file_meta(&shown, &file, &meta, chown)?;
                drop(file);
            }
            EntryType::Directory => {
                replace(true)?;
                if have != Some(FileType::Directory) {
                    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(entry_err(&shown, "mkdir", e)),
                    }
                }
                stats.dirs += 1;
                self.set_meta(&shown, dir, name, &meta, FileType::Directory)?;
                self.dir_times.push((rel.clone(), meta.mtime));
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(LayerError::Read)?
                    .ok_or_else(|| refused(&shown, "symlink without a target"))?;
                replace(false)?;
                rustix::fs::symlinkat(target.as_ref(), dir, name)
                    .map_err(|e| entry_err(&shown, "symlink", e))?;
                stats.symlinks += 1;
                self.set_meta(&shown, dir, name, &meta, FileType::Symlink)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(LayerError::Read)?
                    .ok_or_else(|| refused(&shown, "hardlink without a target"))?;
                let target = normalize(&target);
                if target.as_os_str().is_empty() {
                    return Err(refused(&shown, "hardlink to the root"));
                }
                if target != rel {
                    self.hardlink(&shown, &target, dir, name, &mut replace)?;
                }
                stats.hardlinks += 1;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (ftype, dev) = match kind {
                    EntryType::Fifo => (FileType::Fifo, 0),
                    _ if !self.opts.allow_devices => {
                        return Err(refused(&shown, "device nodes are not allowed"));
                    }
                    _ => {
                        let h = entry.header();
                        let major = h
                            .device_major()
                            .map_err(LayerError::Read)?
                            .ok_or_else(|| refused(&shown, "device without a number"))?;
                        let minor = h
                            .device_minor()
                            .map_err(LayerError::Read)?
                            .ok_or_else(|| refused(&shown, "device without a number"))?;
                        let ftype = if kind == EntryType::Char {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (ftype, rustix::fs::makedev(major, minor))
                    }
                };
                replace(false)?;
                rustix::fs::mknodat(dir, name, ftype, Mode::from_raw_mode(0o600), dev)
                    .map_err(|e| entry_err(&shown, "mknod", e))?;
                stats.special += 1;
                self.set_meta(&shown, dir, name, &meta, ftype)?;
            }
            other => {
                return Err(refused(
                    &shown,
                    format!("unsupported entry type {:?}", other.as_byte() as char),
                ));
            }
        }
        if removed.get() {
            self.parent = None;
        }
        // This entry and its ancestors survive an opaque marker.
        let mut p = rel.as_path();
        loop {
            if !self.touched.insert(p.to_path_buf()) {
                break;
            }
            match p.parent() {
                Some(up) if !up.as_os_str().is_empty() => p = up,
                _ => break,
            }
        }
        Ok(())
    }

    /// The directory `rel` (created if missing) inside the root, and the
    /// group a new file in it gets; the last one is kept for the next entry.
    fn parent_dir(&mut self, shown: &str, rel: &Path) -> Result<(Rc<OwnedFd>, u32), LayerError> {
        if let Some(p) = &self.parent
            && p.rel == rel
        {
            return Ok((p.fd.clone(), p.new_gid));
        }
        self.parent = None;
        let fd = resolve::mkdir_all(self.root, rel)
            .map_err(|e| entry_err(shown, "create parent directories", io::Error::other(e)))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| entry_err(shown, "stat parent", e))?;
        let new_gid = if st.st_mode & libc::S_ISGID != 0 {
            st.st_gid
        } else {
            self.egid
        };
        let fd = Rc::new(fd);
        self.parent = Some(Parent {
            rel: rel.to_path_buf(),
            fd: fd.clone(),
            new_gid,
        });
        Ok((fd, new_gid))
    }

    /// Owner (when `chown`), mode, xattrs and mtime of a regular file this
    /// layer just created, through the fd it was written with. The mode is
    /// set after the owner: chown clears setuid/setgid bits.
    fn set_file_meta(
        &self,
        shown: &str,
        file: &std::fs::File,
        meta: &Meta,
        chown: bool,
    ) -> Result<(), LayerError> {
        if chown {
            rustix::fs::fchown(
                file,
                Some(rustix::fs::Uid::from_raw(meta.uid)),
                Some(rustix::fs::Gid::from_raw(meta.gid)),
            )
            .map_err(|e| entry_err(shown, "chown", e))?;
        }
        // Always: the mode a file is created with depends on the umask and
        // on a default ACL of its directory, which a layer can set.
        rustix::fs::fchmod(file, Mode::from_raw_mode(meta.mode))
            .map_err(|e| entry_err(shown, "chmod", e))?;
        for (key, value) in &meta.xattrs {
            rustix::fs::fsetxattr(file, OsStr::from_bytes(key), value, XattrFlags::empty())
                .map_err(|e| {
                    entry_err(
                        shown,
                        format!("set xattr {}", String::from_utf8_lossy(key)),
                        e,
                    )
                })?;
        }
        let times = Timestamps {
            last_access: meta.mtime,
            last_modification: meta.mtime,
        };
        rustix::fs::futimens(file, &times).map_err(|e| entry_err(shown, "set mtime", e))
    }

    /// Link `name` in `dir` to the regular file `target` (inside the root).
    fn hardlink(
        &self,
        shown: &str,
        target: &Path,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        replace: &mut impl FnMut(bool) -> Result<(), LayerError>,
    ) -> Result<(), LayerError> {
        let tfd =
            resolve::open(self.root, target, OFlags::PATH | OFlags::NOFOLLOW).map_err(|e| {
                refused(
                    shown,
                    format!("hardlink target {} in the root: {e}", target.display()),
                )
            })?;
        let st = rustix::fs::fstat(&tfd).map_err(|e| entry_err(shown, "stat link target", e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(refused(
                shown,
                format!("hardlink target {} is not a regular file", target.display()),
            ));
        }
        replace(false)?;
        rustix::fs::linkat(&tfd, "", dir, name, AtFlags::EMPTY_PATH)
            .map_err(|e| entry_err(shown, "link", e))
    }

    /// An existing directory of the root, or `None` if it is missing.
    fn lookup_dir(&self, shown: &str, rel: &Path) -> Result<Option<OwnedFd>, LayerError> {
        match resolve::open(self.root, rel, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => Ok(None),
            Err(e) => Err(entry_err(shown, "open whiteout directory", e)),
        }
    }

    fn meta<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        shown: &str,
    ) -> Result<Meta, LayerError> {
        let h = entry.header();
        let old = h.as_old();
        let mode = numeric(h.mode().map(u64::from), &old.mode)? as u32 & 0o7777;
        let mut uid = numeric(h.uid(), &old.uid)?;
        let mut gid = numeric(h.gid(), &old.gid)?;
        let mut mtime = Timespec {
            tv_sec: i64::try_from(numeric(h.mtime(), &old.mtime)?).unwrap_or(i64::MAX),
            tv_nsec: 0,
        };
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(LayerError::Read)? {
            for ext in pax {
                let ext = ext.map_err(LayerError::Read)?;
                let key = ext.key_bytes();
                let value = ext.value_bytes();
                let number = || std::str::from_utf8(value).ok()?.parse::<u64>().ok();
                if let Some(x) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((x.to_vec(), value.to_vec()));
                } else if key == b"uid" {
                    uid = number().ok_or_else(|| refused(shown, "bad PAX uid"))?;
                } else if key == b"gid" {
                    gid = number().ok_or_else(|| refused(shown, "bad PAX gid"))?;
                } else if key == b"mtime" {
                    mtime = pax_time(value).ok_or_else(|| refused(shown, "bad PAX mtime"))?;
                }
            }
        }
        let shift = |id: u64, by: Option<u32>, what: &str| -> Result<u32, LayerError> {
            u32::try_from(id)
                .ok()
                .and_then(|id| id.checked_add(by.unwrap_or(0)))
                .ok_or_else(|| refused(shown, format!("{what} {id} out of range")))
        };
        Ok(Meta {
            mode,
            uid: shift(uid, self.opts.uid_shift, "uid")?,
            gid: shift(gid, self.opts.gid_shift, "gid")?,
            mtime,
            xattrs,
        })
    }

    /// Owner, mode, xattrs and (except for directories, see
    /// [`State::finish`]) mtime of the entry just created, through an
    /// O_PATH|O_NOFOLLOW fd that is checked to be of the expected type.
    fn set_meta(
        &self,
        shown: &str,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        meta: &Meta,
        expect: FileType,
    ) -> Result<(), LayerError> {
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| entry_err(shown, "reopen", e))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| entry_err(shown, "stat", e))?;
        if FileType::from_raw_mode(st.st_mode) != expect {
            return Err(refused(shown, "entry was replaced while being extracted"));
        }
        if self.opts.preserve_owners {
            rustix::fs::chownat(
                &fd,
                "",
                Some(rustix::fs::Uid::from_raw(meta.uid)),
                Some(rustix::fs::Gid::from_raw(meta.gid)),
                AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| entry_err(shown, "chown", e))?;
        }
        if expect != FileType::Symlink {
            // Through /proc/self/fd: chmod and setxattr follow that magic
            // link to exactly the inode we hold, never to a path.
            let proc = resolve::fd_path(&fd);
            rustix::fs::chmodat(
                rustix::fs::CWD,
                proc.as_str(),
                Mode::from_raw_mode(meta.mode),
                AtFlags::empty(),
            )
            .map_err(|e| entry_err(shown, "chmod", e))?;
            for (key, value) in &meta.xattrs {
                rustix::fs::setxattr(
                    proc.as_str(),
                    OsStr::from_bytes(key),
                    value,
                    XattrFlags::empty(),
                )
                .map_err(|e| {
                    entry_err(
                        shown,
                        format!("set xattr {}", String::from_utf8_lossy(key)),
                        e,
                    )
                })?;
            }
        }
        if expect != FileType::Directory {
            let times = Timestamps {
                last_access: meta.mtime,
                last_modification: meta.mtime,
            };
            rustix::fs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| entry_err(shown, "set mtime", e))?;
        }
        Ok(())
    }

    /// Set directory mtimes, deepest last-listed first. Directories removed
    /// or replaced later in the layer are skipped.
    fn finish(&self) {
        for (rel, mtime) in self.dir_times.iter().rev() {
            let Ok(fd) = resolve::open(
                self.root,
                rel,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::DIRECTORY,
            ) else {
                continue;
            };
            let times = Timestamps {
                last_access: *mtime,
                last_modification: *mtime,
            };
            // Best effort: a failure here loses a timestamp, not content.
            let _ = rustix::fs::utimensat(
                rustix::fs::CWD,
                resolve::fd_path(&fd).as_str(),
                &times,
                AtFlags::empty(),
            );
        }
    }
}

/// A numeric header field; one left empty (all NUL or spaces) reads as 0,
/// as Go's archive/tar (and so `docker save`/`docker load`) reads it.
fn numeric(parsed: std::io::Result<u64>, raw: &[u8]) -> Result<u64, LayerError> {
    match parsed {
        Ok(v) => Ok(v),
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        Err(e) => Err(LayerError::Read(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// A raw tar header + data, bypassing the Builder's path checks.
    fn raw(name: &[u8], kind: EntryType, link: &[u8], data: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        if kind == EntryType::Char {
            h.set_device_major(1).expect("major");
            h.set_device_minor(3).expect("minor");
        }
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn tar_of(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut out: Vec<u8> = parts.concat();
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    fn sha(data: &[u8]) -> String {
        format!("sha256:{:x}", Sha256::digest(data))
    }

    /// A GNU header with owner 0:0 (Builder leaves numeric fields empty).
    fn gnu() -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_mode(0o644);
        h
    }

    #[test]
    fn empty_numeric_fields_read_as_zero() {
        // tar::Builder leaves uid, gid and mtime empty unless set; Go's
        // archive/tar reads them as 0, and so must berth.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o640);
        h.set_size(2);
        b.append_data(&mut h, "f", &b"hi"[..]).expect("file");
        let bytes = b.into_inner().expect("tar");
        let dir = tempfile::tempdir().expect("tmp");
        apply_layer(&bytes[..], dir.path(), &ApplyOptions::default()).expect("apply");
        let m = std::fs::metadata(dir.path().join("f")).expect("f");
        assert_eq!(m.mtime(), 0);
        if is_root() {
            assert_eq!((m.uid(), m.gid()), (0, 0));
        }
        assert!(numeric(Err(io::Error::other("x")), b"12\0zz").is_err());
    }

    fn normal_layer() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = gnu();
        h.set_entry_type(EntryType::Directory);
        h.set_mode(0o750);
        h.set_mtime(1_000_000);
        h.set_size(0);
        b.append_data(&mut h, "etc/", io::empty()).expect("dir");
        b.append_pax_extensions([("SCHILY.xattr.user.berth", &b"yes"[..])])
            .expect("pax");
        let mut h = gnu();
        h.set_mode(0o4640);
        h.set_uid(1000);
        h.set_gid(1001);
        h.set_mtime(1_234_567);
        h.set_size(5);
        b.append_data(&mut h, "etc/hello", &b"hello"[..])
            .expect("file");
        let mut h = gnu();
        h.set_entry_type(EntryType::Symlink);
        h.set_mtime(42);
        h.set_size(0);
        b.append_link(&mut h, "lnk", "etc/hello").expect("symlink");
        let mut h = gnu();
        h.set_entry_type(EntryType::Link);
        h.set_size(0);
        b.append_link(&mut h, "hl", "etc/hello").expect("hardlink");
        let mut h = gnu();
        h.set_entry_type(EntryType::Fifo);
        h.set_mode(0o600);
        h.set_size(0);
        b.append_data(&mut h, "run/fifo", io::empty())
            .expect("fifo");
        let long = format!("deep/{}/file", "x".repeat(150));
        let mut h = gnu();
        h.set_mode(0o644);
        h.set_size(4);
        b.append_data(&mut h, &long, &b"long"[..]).expect("long");
        b.into_inner().expect("finish")
    }

    fn check_normal(root: &Path) {
        let dir = std::fs::symlink_metadata(root.join("etc")).expect("etc");
        assert!(dir.is_dir());
        assert_eq!(dir.permissions().mode() & 0o7777, 0o750);
        assert_eq!(dir.mtime(), 1_000_000);
        let f = std::fs::symlink_metadata(root.join("etc/hello")).expect("hello");
        assert_eq!(
            std::fs::read(root.join("etc/hello")).expect("read"),
            b"hello"
        );
        assert_eq!(f.permissions().mode() & 0o7777, 0o4640);
        assert_eq!((f.uid(), f.gid()), (1000, 1001));
        assert_eq!(f.mtime(), 1_234_567);
        let mut buf = [0u8; 16];
        let n = rustix::fs::getxattr(root.join("etc/hello").as_path(), "user.berth", &mut buf)
            .expect("xattr");
        assert_eq!(&buf[..n], b"yes");
        assert_eq!(
            std::fs::read_link(root.join("lnk")).expect("readlink"),
            Path::new("etc/hello")
        );
        assert_eq!(
            std::fs::symlink_metadata(root.join("lnk"))
                .expect("lnk")
                .mtime(),
            42
        );
        assert_eq!(
            std::fs::metadata(root.join("hl")).expect("hl").ino(),
            f.ino()
        );
        let fifo = std::fs::symlink_metadata(root.join("run/fifo")).expect("fifo");
        assert_eq!(fifo.mode() & libc::S_IFMT, libc::S_IFIFO);
        let long = root.join(format!("deep/{}/file", "x".repeat(150)));
        assert_eq!(std::fs::read(long).expect("long"), b"long");
    }

    #[test]
    fn applies_a_normal_layer() {
        if !is_root() {
            return;
        }
        let tmp = tempfile::tempdir().expect("tmp");
        let layer = normal_layer();
        let stats = apply_layer(&layer[..], tmp.path(), &ApplyOptions::default()).expect("apply");
        check_normal(tmp.path());
        assert_eq!(stats.compression, Some(Compression::None));
        assert_eq!(stats.diff_id, Some(sha(&layer)));
        assert_eq!((stats.files, stats.dirs, stats.symlinks), (2, 1, 1));
        assert_eq!((stats.hardlinks, stats.special), (1, 1));

        // Shifted owners.
        let tmp = tempfile::tempdir().expect("tmp");
        let opts = ApplyOptions {
            uid_shift: Some(100_000),
            gid_shift: Some(200_000),
            ..ApplyOptions::default()
        };
        apply_layer(&layer[..], tmp.path(), &opts).expect("apply");
        let f = std::fs::metadata(tmp.path().join("etc/hello")).expect("hello");
        assert_eq!((f.uid(), f.gid()), (101_000, 201_001));
    }

    #[test]
    fn gzip_and_zstd_round_trip() {
        if !is_root() {
            return;
        }
        let layer = normal_layer();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&layer).expect("gz");
        let gz = gz.finish().expect("gz");
        let zst = zstd::encode_all(&layer[..], 3).expect("zstd");
        for (blob, kind) in [(gz, Compression::Gzip), (zst, Compression::Zstd)] {
            let tmp = tempfile::tempdir().expect("tmp");
            let stats =
                apply_layer(&blob[..], tmp.path(), &ApplyOptions::default()).expect("apply");
            assert_eq!(stats.compression, Some(kind));
            assert_eq!(stats.diff_id, Some(sha(&layer)));
            check_normal(tmp.path());
        }
    }

    #[test]
    fn whiteouts_and_opaque_directories() {
        if !is_root() {
            return;
        }
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        for d in ["a", "b/sub", "d", "e/keepdir"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        for f in [
            "a/x",
            "a/y",
            "b/old",
            "b/sub/deep",
            "c",
            "d/old",
            "e/keepdir/lower",
        ] {
            std::fs::write(root.join(f), "lower").expect("write");
        }
        std::os::unix::fs::symlink("/", root.join("a/sym")).expect("symlink");
        let layer = tar_of(&[
            raw(b"a/.wh.x", EntryType::Regular, b"", b""),
            raw(b"a/.wh.sym", EntryType::Regular, b"", b""),
            raw(b"b/", EntryType::Directory, b"", b""),
            raw(b"b/.wh..wh..opq", EntryType::Regular, b"", b""),
            raw(b"b/new", EntryType::Regular, b"", b"new"),
            raw(b".wh.c", EntryType::Regular, b"", b""),
            // Marker after this layer's own entries.
            raw(b"d/keep", EntryType::Regular, b"", b"keep"),
            raw(b"d/.wh..wh..opq", EntryType::Regular, b"", b""),
            raw(b"e/keepdir/new", EntryType::Regular, b"", b"n"),
            raw(b"e/.wh..wh..opq", EntryType::Regular, b"", b""),
            raw(b"nodir/.wh.gone", EntryType::Regular, b"", b""),
        ]);
        let stats = apply_layer(&layer[..], root, &ApplyOptions::default()).expect("apply");
        assert_eq!(stats.whiteouts, 7);
        assert!(!root.join("a/x").exists());
        assert!(root.join("a/y").exists());
        assert!(std::fs::symlink_metadata(root.join("a/sym")).is_err());
        assert!(Path::new("/").is_dir());
        assert!(!root.join("b/old").exists());
        assert!(!root.join("b/sub").exists());
        assert_eq!(std::fs::read(root.join("b/new")).expect("new"), b"new");
        assert!(!root.join("c").exists());
        assert!(root.join("d/keep").exists());
        assert!(!root.join("d/old").exists());
        assert!(root.join("e/keepdir/new").exists());
        assert!(!root.join("e/keepdir/lower").exists());
        assert!(!root.join("nodir").exists());
    }

    /// Everything under `dir` (not following symlinks): path → (kind,
    /// inode, content).
    fn snapshot(dir: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, (u32, u64, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("entry").path();
            if p == skip {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            let content = if m.is_file() {
                std::fs::read(&p).expect("read")
            } else {
                Vec::new()
            };
            out.insert(p.clone(), (m.mode(), m.ino(), content));
            if m.is_dir() {
                snapshot(&p, skip, out);
            }
        }
    }

    /// Apply `parts` to `T/root` with a sentinel in `T/outside`; assert that
    /// nothing outside the root changed and return the result.
    fn contained(parts: &[Vec<u8>]) -> (tempfile::TempDir, Result<ApplyStats, LayerError>) {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).expect("root");
        std::fs::create_dir(tmp.path().join("outside")).expect("outside");
        std::fs::write(tmp.path().join("outside/x"), "secret").expect("x");
        std::fs::write(tmp.path().join("outside/sentinel"), "keep").expect("sentinel");
        let mut before = BTreeMap::new();
        snapshot(tmp.path(), &root, &mut before);
        let passwd = std::fs::metadata("/etc/passwd").expect("passwd");
        let result = apply_layer(&tar_of(parts)[..], &root, &ApplyOptions::default());
        let mut after = BTreeMap::new();
        snapshot(tmp.path(), &root, &mut after);
        assert_eq!(before, after, "something changed outside the root");
        let passwd2 = std::fs::metadata("/etc/passwd").expect("passwd");
        assert_eq!(passwd.nlink(), passwd2.nlink());
        assert_eq!(passwd.mtime(), passwd2.mtime());
        for p in ["/pwn", "/pwn2", "/abs", "/outside"] {
            assert!(!Path::new(p).exists(), "{p} created on the host");
        }
        (tmp, result)
    }

    fn file(name: &[u8]) -> Vec<u8> {
        raw(name, EntryType::Regular, b"", b"pwned")
    }

    fn symlink(name: &[u8], target: &[u8]) -> Vec<u8> {
        raw(name, EntryType::Symlink, target, b"")
    }

    fn hardlink(name: &[u8], target: &[u8]) -> Vec<u8> {
        raw(name, EntryType::Link, target, b"")
    }

    #[test]
    fn malicious_paths_stay_inside_the_root() {
        if !is_root() {
            return;
        }
        let (t, r) = contained(&[file(b"../outside/pwn")]);
        r.expect("clamped");
        assert!(t.path().join("root/outside/pwn").is_file());

        let (t, r) = contained(&[file(b"/abs/pwn")]);
        r.expect("clamped");
        assert!(t.path().join("root/abs/pwn").is_file());

        let (t, r) = contained(&[symlink(b"link", b"/"), file(b"link/pwn")]);
        r.expect("in root");
        assert!(t.path().join("root/pwn").is_file());

        let (t, r) = contained(&[
            symlink(b"up", b"../.."),
            file(b"up/pwn2"),
            file(b"up/outside/pwn3"),
        ]);
        r.expect("in root");
        assert!(t.path().join("root/pwn2").is_file());
        assert!(t.path().join("root/outside/pwn3").is_file());

        let (t, r) = contained(&[
            raw(b"outside/", EntryType::Directory, b"", b""),
            symlink(b"c1", b"c2"),
            symlink(b"c2", b"../../outside"),
            file(b"c1/pwn"),
        ]);
        r.expect("in root");
        assert!(t.path().join("root/outside/pwn").is_file());

        // A dangling chain (its in-root target is missing) is an error.
        let (t, r) = contained(&[
            symlink(b"c1", b"c2"),
            symlink(b"c2", b"../../outside"),
            file(b"c1/pwn"),
        ]);
        assert!(r.is_err(), "{r:?}");
        assert!(!t.path().join("root/outside/pwn").exists());

        // A parent that is an absolute symlink to the real outside dir.
        let tmp_outside = tempfile::tempdir().expect("tmp");
        let target = tmp_outside.path().as_os_str().as_bytes().to_vec();
        // Dangling inside the root: refused.
        let (_t, r) = contained(&[symlink(b"d", &target), file(b"d/pwn")]);
        assert!(r.is_err(), "{r:?}");
        assert!(!tmp_outside.path().join("pwn").exists());
        // With the in-root counterpart present: lands there.
        let mut inside = Vec::new();
        inside.extend_from_slice(&target[1..]);
        inside.push(b'/');
        let (t, r) = contained(&[
            raw(&inside, EntryType::Directory, b"", b""),
            symlink(b"d", &target),
            file(b"d/pwn"),
        ]);
        r.expect("in root");
        assert!(
            t.path()
                .join("root")
                .join(tmp_outside.path().strip_prefix("/").expect("abs"))
                .join("pwn")
                .is_file()
        );
        assert!(!tmp_outside.path().join("pwn").exists());

        // A symlink at the entry's own path is replaced, not followed.
        let (t, r) = contained(&[
            symlink(b"f", b"../outside/sentinel"),
            file(b"f"),
            symlink(b"g", b"/"),
            raw(b"g", EntryType::Directory, b"", b""),
        ]);
        r.expect("replaced");
        let root = t.path().join("root");
        assert!(
            std::fs::symlink_metadata(root.join("f"))
                .expect("f")
                .is_file()
        );
        assert!(
            std::fs::symlink_metadata(root.join("g"))
                .expect("g")
                .is_dir()
        );

        // A symlink entry pointing outside is only text.
        let (t, r) = contained(&[symlink(b"esc", b"../outside/x")]);
        r.expect("symlink");
        assert!(std::fs::symlink_metadata(t.path().join("root/esc")).is_ok());

        // A whiteout through a symlinked parent removes nothing outside.
        let (_t, r) = contained(&[symlink(b"w", b"../outside"), file(b"w/.wh.x")]);
        r.expect("whiteout in root");
    }

    #[test]
    fn malicious_hardlinks_devices_and_sizes_are_refused() {
        if !is_root() {
            return;
        }
        for parts in [
            vec![hardlink(b"h", b"/etc/passwd")],
            vec![hardlink(b"h", b"../outside/x")],
            vec![symlink(b"s", b"../outside"), hardlink(b"h", b"s/x")],
            vec![symlink(b"s", b"/etc/passwd"), hardlink(b"h", b"s")],
            vec![
                raw(b"etc/", EntryType::Directory, b"", b""),
                hardlink(b"h", b"etc"),
            ],
            vec![raw(b"dev/null", EntryType::Char, b"", b"")],
        ] {
            let (t, r) = contained(&parts);
            assert!(
                matches!(r, Err(LayerError::Refused { .. })),
                "not refused: {r:?}"
            );
            let outside = std::fs::metadata(t.path().join("outside/x")).expect("x");
            let passwd = std::fs::metadata("/etc/passwd").expect("passwd");
            if let Ok(m) = std::fs::symlink_metadata(t.path().join("root/h")) {
                assert_ne!(m.ino(), outside.ino());
                assert_ne!(m.ino(), passwd.ino());
            }
            assert!(!t.path().join("root/dev/null").exists());
        }

        // A hardlink inside the root is fine.
        let (t, r) = contained(&[file(b"in"), hardlink(b"h", b"/in")]);
        r.expect("hardlink");
        let root = t.path().join("root");
        assert_eq!(
            std::fs::metadata(root.join("in")).expect("in").ino(),
            std::fs::metadata(root.join("h")).expect("h").ino()
        );

        // Huge size header, no data behind it.
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..4].copy_from_slice(b"huge");
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(1 << 40);
        h.set_cksum();
        let (_t, r) = contained(&[h.as_bytes().to_vec()]);
        let msg = format!("{}", r.expect_err("refused"));
        assert!(msg.contains("huge") && msg.contains("exceeds"), "{msg}");

        // Empty and root-naming non-directory entries.
        let (_t, r) = contained(&[file(b"./")]);
        assert!(matches!(r, Err(LayerError::Refused { .. })), "{r:?}");
        let (_t, r) = contained(&[raw(b"./", EntryType::Directory, b"", b"")]);
        assert_eq!(r.expect("skipped").skipped, 1);
    }

    #[test]
    fn devices_when_allowed() {
        if !is_root() {
            return;
        }
        let tmp = tempfile::tempdir().expect("tmp");
        let opts = ApplyOptions {
            allow_devices: true,
            ..ApplyOptions::default()
        };
        let layer = tar_of(&[raw(b"dev/null", EntryType::Char, b"", b"")]);
        apply_layer(&layer[..], tmp.path(), &opts).expect("apply");
        let m = std::fs::symlink_metadata(tmp.path().join("dev/null")).expect("null");
        assert_eq!(m.mode() & libc::S_IFMT, libc::S_IFCHR);
        assert_eq!(m.rdev(), rustix::fs::makedev(1, 3));
    }

    /// A file of `len` pseudo-random bytes (incompressible, so the
    /// compressed stream spans many reads too).
    fn noise(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 8) as u8
            })
            .collect()
    }

    #[test]
    fn big_files_span_chunks_and_the_diff_id_covers_trailing_bytes() {
        if !is_root() {
            return;
        }
        let big = noise(3 * WRITE_BUF + CHUNK + 12_345, 7);
        let mid = noise(CHUNK - 1, 9);
        let mut layer = tar_of(&[
            raw(b"big", EntryType::Regular, b"", &big),
            raw(b"mid", EntryType::Regular, b"", &mid),
            raw(b"empty", EntryType::Regular, b"", b""),
        ]);
        // Zero blocks past the end-of-archive marker are part of the stream.
        layer.extend_from_slice(&[0u8; 5 * 512]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&layer).expect("gz");
        let gz = gz.finish().expect("gz");
        let zst = zstd::encode_all(&layer[..], 1).expect("zstd");
        for blob in [layer.clone(), gz, zst] {
            let tmp = tempfile::tempdir().expect("tmp");
            let stats =
                apply_layer(&blob[..], tmp.path(), &ApplyOptions::default()).expect("apply");
            assert_eq!(stats.diff_id, Some(sha(&layer)));
            assert_eq!(stats.bytes, (big.len() + mid.len()) as u64);
            assert!(std::fs::read(tmp.path().join("big")).expect("big") == big);
            assert!(std::fs::read(tmp.path().join("mid")).expect("mid") == mid);
            assert_eq!(std::fs::read(tmp.path().join("empty")).expect("empty"), b"");
        }
    }

    #[test]
    fn corrupt_and_truncated_streams_fail_cleanly() {
        if !is_root() {
            return;
        }
        let layer = tar_of(&[raw(b"f", EntryType::Regular, b"", &noise(2 * CHUNK, 3))]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&layer).expect("gz");
        let gz = gz.finish().expect("gz");
        let zst = zstd::encode_all(&layer[..], 1).expect("zstd");
        let mut flipped = gz.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0xff;
        for blob in [
            gz[..gz.len() / 2].to_vec(),
            zst[..zst.len() / 2].to_vec(),
            layer[..layer.len() / 2].to_vec(),
            flipped,
        ] {
            let tmp = tempfile::tempdir().expect("tmp");
            let r = apply_layer(&blob[..], tmp.path(), &ApplyOptions::default());
            assert!(r.is_err(), "{r:?}");
        }
    }

    #[test]
    fn files_replace_what_is_in_the_way_and_whiteouts_reset_cached_parents() {
        if !is_root() {
            return;
        }
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        std::fs::create_dir_all(root.join("d/sub")).expect("mkdir");
        std::fs::write(root.join("d/sub/lower"), "lower").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", root.join("s")).expect("symlink");
        let layer = tar_of(&[
            file(b"d"),
            file(b"s"),
            file(b"a/b/x"),
            raw(b"a/.wh.b", EntryType::Regular, b"", b""),
            file(b"a/b/y"),
        ]);
        apply_layer(&layer[..], root, &ApplyOptions::default()).expect("apply");
        for f in ["d", "s", "a/b/y"] {
            let m = std::fs::symlink_metadata(root.join(f)).expect(f);
            assert!(m.is_file(), "{f}");
            assert_eq!(std::fs::read(root.join(f)).expect(f), b"pwned");
        }
        assert!(!root.join("a/b/x").exists());
        assert_ne!(std::fs::read("/etc/passwd").expect("passwd"), b"pwned");
    }

    #[test]
    fn modes_and_owners_are_exact_whatever_the_umask_and_setgid_parents() {
        if !is_root() {
            return;
        }
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        std::fs::create_dir(root.join("sg")).expect("mkdir");
        std::os::unix::fs::chown(root.join("sg"), Some(0), Some(5)).expect("chown");
        std::fs::set_permissions(root.join("sg"), std::fs::Permissions::from_mode(0o2777))
            .expect("chmod");
        let mut entries = Vec::new();
        for (name, mode, uid, gid) in [
            ("sg/root", 0o777, 0, 0),
            ("sg/user", 0o6755, 1000, 1000),
            ("sg/group5", 0o666, 0, 5),
            ("plain", 0o0, 0, 0),
        ] {
            let mut h = gnu();
            h.set_mode(mode);
            h.set_uid(uid);
            h.set_gid(gid);
            h.set_size(1);
            let mut b = tar::Builder::new(Vec::new());
            b.append_data(&mut h, name, &b"x"[..]).expect("append");
            let mut t = b.into_inner().expect("tar");
            t.truncate(t.len() - 1024);
            entries.push(t);
        }
        apply_layer(&tar_of(&entries)[..], root, &ApplyOptions::default()).expect("apply");
        for (name, mode, uid, gid) in [
            ("sg/root", 0o777, 0, 0),
            ("sg/user", 0o6755, 1000, 1000),
            ("sg/group5", 0o666, 0, 5),
            ("plain", 0o0, 0, 0),
        ] {
            let m = std::fs::symlink_metadata(root.join(name)).expect(name);
            assert_eq!(m.mode() & 0o7777, mode, "{name}");
            assert_eq!((m.uid(), m.gid()), (uid, gid), "{name}");
        }
    }

    /// Writes the malicious archives (and a few controls) as files into
    /// `$BERTH_FUZZ_SEEDS`: the fuzz target's seed corpus (`make fuzz`) and
    /// the input of bench/hostile-docker-load.sh; a no-op without it.
    #[test]
    fn fuzz_seeds() {
        let Some(dir) = std::env::var_os("BERTH_FUZZ_SEEDS") else {
            return;
        };
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("seed dir");
        let seeds: Vec<(&str, Vec<Vec<u8>>)> = vec![
            ("dotdot-file", vec![file(b"../outside/pwn")]),
            ("absolute-path", vec![file(b"/abs/pwn")]),
            (
                "symlink-to-slash-then-file",
                vec![symlink(b"link", b"/"), file(b"link/pwn")],
            ),
            (
                "symlink-dotdot-then-files",
                vec![
                    symlink(b"up", b"../.."),
                    file(b"up/pwn2"),
                    file(b"up/outside/pwn3"),
                ],
            ),
            (
                "symlink-chain-with-dir",
                vec![
                    raw(b"outside/", EntryType::Directory, b"", b""),
                    symlink(b"c1", b"c2"),
                    symlink(b"c2", b"../../outside"),
                    file(b"c1/pwn"),
                ],
            ),
            (
                "symlink-chain-dangling",
                vec![
                    symlink(b"c1", b"c2"),
                    symlink(b"c2", b"../../outside"),
                    file(b"c1/pwn"),
                ],
            ),
            (
                "absolute-symlink-to-host-dir",
                vec![symlink(b"d", b"/tmp/berth-hostile-outside"), file(b"d/pwn")],
            ),
            (
                "symlink-replaced-by-file-and-dir",
                vec![
                    symlink(b"f", b"../outside/sentinel"),
                    file(b"f"),
                    symlink(b"g", b"/"),
                    raw(b"g", EntryType::Directory, b"", b""),
                ],
            ),
            (
                "symlink-entry-outside",
                vec![symlink(b"esc", b"../outside/x")],
            ),
            (
                "whiteout-through-symlink",
                vec![symlink(b"w", b"../outside"), file(b"w/.wh.x")],
            ),
            (
                "opaque-through-symlink",
                vec![symlink(b"w", b"../sentinel"), file(b"w/.wh..wh..opq")],
            ),
            (
                "hardlink-to-etc-passwd",
                vec![hardlink(b"h", b"/etc/passwd")],
            ),
            ("hardlink-dotdot", vec![hardlink(b"h", b"../outside/x")]),
            (
                "hardlink-through-symlink",
                vec![symlink(b"s", b"../outside"), hardlink(b"h", b"s/x")],
            ),
            (
                "hardlink-to-symlink-to-passwd",
                vec![symlink(b"s", b"/etc/passwd"), hardlink(b"h", b"s")],
            ),
            (
                "hardlink-to-directory",
                vec![
                    raw(b"etc/", EntryType::Directory, b"", b""),
                    hardlink(b"h", b"etc"),
                ],
            ),
            (
                "char-device",
                vec![raw(b"dev/null", EntryType::Char, b"", b"")],
            ),
            ("file-named-root", vec![file(b"./")]),
            (
                "whiteouts-and-opaque",
                vec![
                    raw(b"a/", EntryType::Directory, b"", b""),
                    file(b"a/x"),
                    raw(b"a/.wh.x", EntryType::Regular, b"", b""),
                    raw(b".wh.a", EntryType::Regular, b"", b""),
                    file(b"a/b/c"),
                    raw(b"a/.wh..wh..opq", EntryType::Regular, b"", b""),
                ],
            ),
            (
                "control-hardlink-inside",
                vec![file(b"in"), hardlink(b"h", b"/in")],
            ),
            (
                "control-root-dir-entry",
                vec![raw(b"./", EntryType::Directory, b"", b"")],
            ),
        ];
        let mut blobs: Vec<(String, Vec<u8>)> = seeds
            .iter()
            .map(|(name, parts)| ((*name).to_string(), tar_of(parts)))
            .collect();
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..4].copy_from_slice(b"huge");
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(1 << 40);
        h.set_cksum();
        blobs.push(("huge-size-no-data".into(), tar_of(&[h.as_bytes().to_vec()])));
        let normal = normal_layer();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&normal).expect("gz");
        blobs.push(("control-normal-gzip".into(), gz.finish().expect("gz")));
        blobs.push((
            "control-normal-zstd".into(),
            zstd::encode_all(&normal[..], 1).expect("zstd"),
        ));
        blobs.push(("control-normal".into(), normal));
        for (name, blob) in &blobs {
            std::fs::write(dir.join(format!("{name}.tar")), blob).expect("write seed");
        }
    }
}
