//! `docker export`: a container's filesystem out as one tar stream.
//!
//! The tree may be hostile (it is whatever the container wrote), so it is
//! walked with directory fds: every entry is looked at with
//! `fstatat(AT_SYMLINK_NOFOLLOW)` and opened with `O_NOFOLLOW` relative to
//! its parent's fd, and a symlink is only ever read, never followed.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::ArchiveError;

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Entries written (directories, files, links, devices).
    pub entries: u64,
    /// Bytes of regular-file content.
    pub bytes: u64,
}

/// Writes the tree under `root` to `out` as a tar stream: names relative to
/// the root (`bin/sh`), owners, modes, mtimes, xattrs (PAX
/// `SCHILY.xattr.*`), hardlinks as links, devices and fifos; sockets are
/// skipped, as tar does. Entries are sorted by name, so the same tree gives
/// the same stream.
pub fn export(root: &Path, out: impl Write) -> Result<ExportStats, ArchiveError> {
    let fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        ArchiveError::Invalid(format!("open {}: {}", root.display(), io::Error::from(e)))
    })?;
    let mut w = Walker {
        tar: tar::Builder::new(out),
        links: HashMap::new(),
        stats: ExportStats::default(),
    };
    w.dir(&fd, "")?;
    w.tar
        .into_inner()
        .and_then(|mut o| o.flush())
        .map_err(ArchiveError::Write)?;
    Ok(w.stats)
}

struct Walker<W: Write> {
    tar: tar::Builder<W>,
    /// (dev, ino) of files with more than one link → first path written.
    links: HashMap<(u64, u64), String>,
    stats: ExportStats,
}

fn os_err(what: &str, path: &str, e: rustix::io::Errno) -> ArchiveError {
    ArchiveError::Invalid(format!("{what} {path:?}: {}", io::Error::from(e)))
}

impl<W: Write> Walker<W> {
    fn dir(&mut self, dir: &OwnedFd, prefix: &str) -> Result<(), ArchiveError> {
        let mut names: Vec<OsString> = Vec::new();
        let mut rd = rustix::fs::Dir::read_from(dir).map_err(|e| os_err("read dir", prefix, e))?;
        while let Some(ent) = rd.read() {
            let ent = ent.map_err(|e| os_err("read dir", prefix, e))?;
            let name = ent.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(std::ffi::OsStr::from_bytes(name).to_owned());
            }
        }
        names.sort();
        for name in names {
            let rel = format!("{prefix}{}", name.to_string_lossy());
            let st = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| os_err("stat", &rel, e))?;
            let ft = FileType::from_raw_mode(st.st_mode);
            let mut h = tar::Header::new_gnu();
            h.set_mode(st.st_mode & 0o7777);
            h.set_uid(u64::from(st.st_uid));
            h.set_gid(u64::from(st.st_gid));
            h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
            h.set_size(0);
            match ft {
                FileType::Directory => {
                    let sub = rustix::fs::openat(
                        dir,
                        &name,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| os_err("open", &rel, e))?;
                    h.set_entry_type(tar::EntryType::Directory);
                    self.xattrs(&sub, &rel)?;
                    self.append(&mut h, &format!("{rel}/"), io::empty())?;
                    self.dir(&sub, &format!("{rel}/"))?;
                }
                FileType::RegularFile => {
                    let key = (st.st_dev, st.st_ino);
                    if st.st_nlink > 1 {
                        if let Some(first) = self.links.get(&key).cloned() {
                            h.set_entry_type(tar::EntryType::Link);
                            self.tar
                                .append_link(&mut h, &rel, &first)
                                .map_err(ArchiveError::Write)?;
                            self.stats.entries += 1;
                            continue;
                        }
                        self.links.insert(key, rel.clone());
                    }
                    let f = rustix::fs::openat(
                        dir,
                        &name,
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
                        Mode::empty(),
                    )
                    .map_err(|e| os_err("open", &rel, e))?;
                    self.xattrs(&f, &rel)?;
                    let size = u64::try_from(st.st_size).unwrap_or(0);
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(size);
                    // A file that changes size while it is read would
                    // corrupt the stream: read exactly `size` bytes, pad
                    // with zeros if it shrank.
                    let file = io::Read::take(std::fs::File::from(f), size);
                    let body = io::Read::take(io::Read::chain(file, io::repeat(0)), size);
                    self.append(&mut h, &rel, body)?;
                    self.stats.bytes += size;
                }
                FileType::Symlink => {
                    let target = rustix::fs::readlinkat(dir, &name, Vec::new())
                        .map_err(|e| os_err("readlink", &rel, e))?;
                    h.set_entry_type(tar::EntryType::Symlink);
                    let target = std::ffi::OsStr::from_bytes(target.as_bytes()).to_owned();
                    self.tar
                        .append_link(&mut h, &rel, Path::new(&target))
                        .map_err(ArchiveError::Write)?;
                    self.stats.entries += 1;
                }
                FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                    h.set_entry_type(match ft {
                        FileType::CharacterDevice => tar::EntryType::Char,
                        FileType::BlockDevice => tar::EntryType::Block,
                        _ => tar::EntryType::Fifo,
                    });
                    let rdev = st.st_rdev;
                    h.set_device_major(rustix::fs::major(rdev))
                        .map_err(ArchiveError::Write)?;
                    h.set_device_minor(rustix::fs::minor(rdev))
                        .map_err(ArchiveError::Write)?;
                    self.append(&mut h, &rel, io::empty())?;
                }
                _ => {} // sockets and unknown types: not archivable
            }
        }
        Ok(())
    }

    fn append(
        &mut self,
        h: &mut tar::Header,
        path: &str,
        data: impl io::Read,
    ) -> Result<(), ArchiveError> {
        self.tar
            .append_data(h, path, data)
            .map_err(ArchiveError::Write)?;
        self.stats.entries += 1;
        Ok(())
    }

    /// Writes a PAX header with the xattrs of `fd`, if it has any.
    fn xattrs(&mut self, fd: &OwnedFd, rel: &str) -> Result<(), ArchiveError> {
        let mut names = vec![0u8; 4096];
        let n = match rustix::fs::flistxattr(fd.as_fd(), &mut names[..]) {
            Ok(n) => n,
            Err(rustix::io::Errno::NOTSUP) => return Ok(()),
            Err(rustix::io::Errno::RANGE) => {
                let len = rustix::fs::flistxattr_query(fd.as_fd())
                    .map_err(|e| os_err("list xattrs", rel, e))?;
                names = vec![0u8; len];
                rustix::fs::flistxattr(fd.as_fd(), &mut names[..])
                    .map_err(|e| os_err("list xattrs", rel, e))?
            }
            Err(e) => return Err(os_err("list xattrs", rel, e)),
        };
        let mut records = Vec::new();
        for name in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
            let len = match rustix::fs::fgetxattr_query(fd.as_fd(), name) {
                Ok(l) => l,
                Err(rustix::io::Errno::NODATA) => continue,
                Err(e) => return Err(os_err("read xattr", rel, e)),
            };
            let mut value = vec![0u8; len];
            let got = rustix::fs::fgetxattr(fd.as_fd(), name, &mut value[..])
                .map_err(|e| os_err("read xattr", rel, e))?;
            value.truncate(got);
            let mut rec = b"SCHILY.xattr.".to_vec();
            rec.extend_from_slice(name);
            rec.push(b'=');
            rec.extend_from_slice(&value);
            rec.push(b'\n');
            records.extend(pax_record(&rec));
        }
        if records.is_empty() {
            return Ok(());
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(records.len() as u64);
        h.set_mode(0o644);
        let name = format!("PaxHeaders/{}", rel.rsplit('/').next().unwrap_or(rel));
        let short: String = name.chars().take(99).collect();
        h.set_path(&short).map_err(ArchiveError::Write)?;
        h.set_cksum();
        self.tar
            .append(&h, records.as_slice())
            .map_err(ArchiveError::Write)
    }
}

/// A PAX record: `"<len> <key>=<value>\n"` where `<len>` counts itself.
fn pax_record(key_value_nl: &[u8]) -> Vec<u8> {
    let body = key_value_nl.len() + 1; // the space
    let mut digits = body.to_string().len();
    if (body + digits).to_string().len() != digits {
        digits += 1;
    }
    let mut out = (body + digits).to_string().into_bytes();
    out.push(b' ');
    out.extend_from_slice(key_value_nl);
    out
}

#[cfg(test)]
mod tests {
    use super::pax_record;

    #[test]
    fn pax_lengths_count_themselves() {
        let r = pax_record(b"k=v\n");
        assert_eq!(r, b"6 k=v\n");
        let long = vec![b'a'; 95];
        let r = pax_record(&long);
        assert_eq!(
            r.len(),
            String::from_utf8_lossy(&r[..r.iter().position(|b| *b == b' ').unwrap()])
                .parse::<usize>()
                .unwrap()
        );
    }
}
