//! A snapshot's changes as an OCI layer tar.
//!
//! Entries come from the snapshot's own directory (the overlay upper dir, or
//! the copied tree) in path order: added and changed entries with their
//! mode, owner, mtime (whole seconds, as Docker writes them) and xattrs
//! (overlay's own `trusted.overlay.*`/`user.overlay.*` left out); a deleted
//! entry as `.wh.<name>`; an overlay opaque directory followed by
//! `.wh..wh..opq`. Regular files linked more than once inside the diff
//! become hardlink entries to the first path written. Names, link targets
//! and owners that do not fit ustar, and xattrs, go in PAX headers.
//! Sockets are skipped.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use super::changes::RawChange;
use super::copy::xattrs;
use super::snapshotter::Layout;
use super::{ChangeKind, DiffStats, SnapshotError};

/// Hashes and counts what goes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub(super) fn write(
    l: &Layout,
    changes: &[RawChange],
    out: impl Write,
) -> Result<DiffStats, SnapshotError> {
    let mut hw = HashingWriter {
        inner: out,
        hasher: Sha256::new(),
        written: 0,
    };
    {
        let mut b = tar::Builder::new(&mut hw);
        let mut links = HashMap::new();
        for c in changes {
            match c.kind {
                ChangeKind::Deleted if c.hidden => {}
                ChangeKind::Deleted => {
                    let name = c.rel.file_name().unwrap_or_default();
                    let wh = c
                        .rel
                        .with_file_name(format!(".wh.{}", name.to_string_lossy()));
                    let mut raw = c
                        .rel
                        .parent()
                        .unwrap_or(Path::new(""))
                        .as_os_str()
                        .as_bytes()
                        .to_vec();
                    if !raw.is_empty() {
                        raw.push(b'/');
                    }
                    raw.extend_from_slice(b".wh.");
                    raw.extend_from_slice(name.as_bytes());
                    whiteout(&mut b, &raw)
                        .map_err(|e| SnapshotError::io("write whiteout", &wh, e))?;
                }
                ChangeKind::Added | ChangeKind::Modified => {
                    let p = l.fs.join(&c.rel);
                    entry(&mut b, &p, c.rel.as_os_str().as_bytes(), &mut links)
                        .map_err(|e| SnapshotError::io("write diff entry", &p, e))?;
                    if c.opaque {
                        let mut raw = c.rel.as_os_str().as_bytes().to_vec();
                        raw.extend_from_slice(b"/.wh..wh..opq");
                        whiteout(&mut b, &raw)
                            .map_err(|e| SnapshotError::io("write opaque marker", &p, e))?;
                    }
                }
            }
        }
        b.finish()
            .map_err(|e| SnapshotError::io("finish diff of", &l.fs, e))?;
    }
    hw.flush()
        .map_err(|e| SnapshotError::io("flush diff of", &l.fs, e))?;
    Ok(DiffStats {
        diff_id: format!("sha256:{:x}", hw.hasher.finalize()),
        size: hw.written,
    })
}

/// One PAX record: `<len> <key>=<value>\n`, len counting itself.
pub(super) fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn set_field(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field.fill(0);
    field[..n].copy_from_slice(&value[..n]);
}

fn whiteout<W: Write>(b: &mut tar::Builder<W>, name: &[u8]) -> io::Result<()> {
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(0);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    let mut pax = Vec::new();
    if name.len() > 100 {
        pax_record(&mut pax, b"path", name);
    }
    set_field(&mut h.as_old_mut().name, name);
    append(b, h, &pax, io::empty())
}

fn append<W: Write>(
    b: &mut tar::Builder<W>,
    mut h: Header,
    pax: &[u8],
    data: impl io::Read,
) -> io::Result<()> {
    if !pax.is_empty() {
        let mut ph = Header::new_ustar();
        let mut pname = b"PaxHeaders/".to_vec();
        pname.extend_from_slice(&h.as_old().name[..]);
        let pname: Vec<u8> = pname.into_iter().take_while(|c| *c != 0).collect();
        set_field(&mut ph.as_old_mut().name, &pname);
        ph.set_entry_type(EntryType::XHeader);
        ph.set_mode(0o644);
        ph.set_size(pax.len() as u64);
        ph.set_mtime(0);
        ph.set_cksum();
        b.append(&ph, pax)?;
    }
    h.set_cksum();
    b.append(&h, data)
}

/// Largest id ustar's 7 octal digits hold.
const MAX_USTAR_ID: u64 = 0o7777777;

fn entry<W: Write>(
    b: &mut tar::Builder<W>,
    path: &Path,
    rel: &[u8],
    links: &mut HashMap<(u64, u64), Vec<u8>>,
) -> io::Result<()> {
    let m = fs::symlink_metadata(path)?;
    let ft = m.file_type();
    let mut name = rel.to_vec();
    let mut h = Header::new_ustar();
    let mut pax = Vec::new();
    let mut data: Option<File> = None;
    let mut link: Option<Vec<u8>> = None;
    h.set_size(0);
    if ft.is_dir() {
        h.set_entry_type(EntryType::Directory);
        name.push(b'/');
    } else if ft.is_symlink() {
        h.set_entry_type(EntryType::Symlink);
        link = Some(fs::read_link(path)?.as_os_str().as_bytes().to_vec());
    } else if ft.is_file() {
        let id = (m.dev(), m.ino());
        match links.get(&id) {
            Some(first) if m.nlink() > 1 => {
                h.set_entry_type(EntryType::Link);
                link = Some(first.clone());
            }
            _ => {
                if m.nlink() > 1 {
                    links.insert(id, rel.to_vec());
                }
                h.set_entry_type(EntryType::Regular);
                h.set_size(m.size());
                data = Some(File::open(path)?);
            }
        }
    } else if ft.is_char_device() || ft.is_block_device() {
        h.set_entry_type(if ft.is_char_device() {
            EntryType::Char
        } else {
            EntryType::Block
        });
        h.set_device_major(rustix::fs::major(m.rdev()))?;
        h.set_device_minor(rustix::fs::minor(m.rdev()))?;
    } else if ft.is_fifo() {
        h.set_entry_type(EntryType::Fifo);
    } else {
        // Sockets are not part of a layer.
        return Ok(());
    }
    h.set_mode(m.mode() & 0o7777);
    h.set_mtime(u64::try_from(m.mtime()).unwrap_or(0));
    for (id, key, set) in [
        (
            u64::from(m.uid()),
            &b"uid"[..],
            Header::set_uid as fn(&mut Header, u64),
        ),
        (u64::from(m.gid()), &b"gid"[..], Header::set_gid),
    ] {
        if id > MAX_USTAR_ID {
            pax_record(&mut pax, key, id.to_string().as_bytes());
            set(&mut h, 0);
        } else {
            set(&mut h, id);
        }
    }
    if name.len() > 100 {
        pax_record(&mut pax, b"path", &name);
    }
    set_field(&mut h.as_old_mut().name, &name);
    if let Some(target) = &link {
        if target.len() > 100 {
            pax_record(&mut pax, b"linkpath", target);
        }
        set_field(&mut h.as_old_mut().linkname, target);
    }
    for (key, value) in xattrs(path)? {
        let key = key.as_bytes();
        if key.starts_with(b"trusted.overlay.") || key.starts_with(b"user.overlay.") {
            continue;
        }
        let mut k = b"SCHILY.xattr.".to_vec();
        k.extend_from_slice(key);
        pax_record(&mut pax, &k, &value);
    }
    match data {
        Some(f) => append(b, h, &pax, f),
        None => append(b, h, &pax, io::empty()),
    }
}

#[cfg(test)]
mod unit {
    use super::pax_record;

    #[test]
    fn pax_record_lengths_count_themselves() {
        for n in [0usize, 1, 5, 90, 94, 95, 96, 990, 995, 1000, 5000] {
            let mut out = Vec::new();
            pax_record(&mut out, b"path", &vec![b'a'; n]);
            let s = String::from_utf8(out.clone()).expect("utf8");
            let (len, _) = s.split_once(' ').expect("len");
            assert_eq!(
                len.parse::<usize>().expect("num"),
                out.len(),
                "value of {n} bytes"
            );
        }
    }
}
