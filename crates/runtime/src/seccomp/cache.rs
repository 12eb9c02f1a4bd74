//! A cache of compiled seccomp programs.
//!
//! libseccomp needs several milliseconds of CPU to compile Docker's default
//! profile, and nearly every container of an engine uses that same profile.
//! [`compile_cached`] keys the compiled program by a hash of everything the
//! compilation depends on (the profile, this crate's version, libseccomp's
//! version, the running kernel) and keeps it in a directory the caller
//! names (berth's shim: `<exec-root>/seccomp`), made mode 0700. A file that
//! does not parse as a program is ignored and replaced. Whoever can write
//! there can choose the filters of later containers: it must be as private
//! as the runtime's state.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;
use sha2::{Digest, Sha256};

use super::{MAX_INSNS, SeccompError, SeccompProgram, compile};

/// First bytes of a cache file (bump when the layout changes).
const MAGIC: &[u8; 8] = b"BSCMP\x00\x00\x01";
/// Programs kept at most; the oldest go first beyond it.
const MAX_ENTRIES: usize = 32;
/// Size of one `sock_filter` in a cache file.
const INSN: usize = 8;

/// [`compile_cached`] in `cache` if one is given, else [`compile`].
pub fn compile_with(
    spec: &LinuxSeccomp,
    cache: Option<&Path>,
) -> Result<SeccompProgram, SeccompError> {
    match cache {
        Some(dir) => compile_cached(spec, dir),
        None => compile(spec),
    }
}

/// [`compile`], with the result kept in `dir` for the next container with
/// the same profile. Failing to read or write the cache only costs the
/// compilation.
pub fn compile_cached(spec: &LinuxSeccomp, dir: &Path) -> Result<SeccompProgram, SeccompError> {
    let Some(key) = key(spec) else {
        return compile(spec);
    };
    let path = dir.join(&key);
    if let Some(p) = std::fs::read(&path).ok().and_then(|b| decode(&b)) {
        return Ok(p);
    }
    let prog = compile(spec)?;
    if let Err(e) = store(dir, &key, &encode(&prog)) {
        tracing::debug!("seccomp cache: {e}");
    }
    Ok(prog)
}

/// Hex sha256 of the profile and of what else shapes the program.
fn key(spec: &LinuxSeccomp) -> Option<String> {
    let json = serde_json::to_vec(spec).ok()?;
    let v = libseccomp::ScmpVersion::current().ok()?;
    let uname = rustix::system::uname();
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(format!("\0{}.{}.{}\0", v.major, v.minor, v.micro).as_bytes());
    h.update(uname.release().to_bytes());
    h.update(b"\0");
    h.update(uname.version().to_bytes());
    h.update(b"\0");
    h.update(&json);
    Some(
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    )
}

/// magic, flags (u64 LE), needs_listener (u8), then the instructions.
fn encode(p: &SeccompProgram) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 9 + p.filter.len() * INSN);
    out.extend_from_slice(MAGIC);
    // `c_ulong` is u32 on 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    out.extend_from_slice(&(p.flags as u64).to_le_bytes());
    out.push(u8::from(p.needs_listener));
    for i in &p.filter {
        out.extend_from_slice(&i.code.to_le_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend_from_slice(&i.k.to_le_bytes());
    }
    out
}

fn decode(b: &[u8]) -> Option<SeccompProgram> {
    let rest = b.strip_prefix(MAGIC.as_slice())?;
    let (flags, rest) = rest.split_first_chunk::<8>()?;
    let (&listener, insns) = rest.split_first()?;
    if insns.is_empty() || insns.len() % INSN != 0 || insns.len() / INSN > MAX_INSNS {
        return None;
    }
    let needs_listener = match listener {
        0 => false,
        1 => true,
        _ => return None,
    };
    let filter = insns
        .chunks_exact(INSN)
        .map(|c| libc::sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    #[allow(clippy::unnecessary_cast)]
    let flags = u64::from_le_bytes(*flags) as libc::c_ulong;
    Some(SeccompProgram {
        filter,
        flags,
        needs_listener,
    })
}

/// Writes `bytes` as `dir/key` (temp file + rename), then trims the cache.
fn store(dir: &Path, key: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(".{key}.{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        std::fs::rename(&tmp, dir.join(key))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res?;
    trim(dir);
    Ok(())
}

/// Removes the least recently modified programs beyond [`MAX_ENTRIES`].
fn trim(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((m.modified().ok()?, e.path()))
        })
        .collect();
    if files.len() <= MAX_ENTRIES {
        return;
    }
    files.sort();
    for (_, p) in files.iter().take(files.len() - MAX_ENTRIES) {
        let _ = std::fs::remove_file(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> LinuxSeccomp {
        serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],
                "syscalls":[{"names":["read","write","exit_group"],"action":"SCMP_ACT_ALLOW"}]}"#,
        )
        .expect("profile")
    }

    fn same(a: &SeccompProgram, b: &SeccompProgram) -> bool {
        a.flags == b.flags
            && a.needs_listener == b.needs_listener
            && a.filter.len() == b.filter.len()
            && a.filter
                .iter()
                .zip(&b.filter)
                .all(|(x, y)| (x.code, x.jt, x.jf, x.k) == (y.code, y.jt, y.jf, y.k))
    }

    #[test]
    fn cached_program_is_the_compiled_one_and_bad_files_are_replaced() {
        let dir = std::env::temp_dir().join(format!("berth-scmp-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spec = profile();
        let direct = compile(&spec).expect("compile");
        let first = compile_cached(&spec, &dir).expect("first");
        assert!(same(&direct, &first));
        let k = key(&spec).expect("key");
        let file = dir.join(&k);
        assert_eq!(
            std::fs::read(&file).expect("cache file"),
            encode(&direct),
            "the program is kept"
        );
        // A hit answers from the file: a program planted there is returned.
        let mut planted = direct.clone();
        planted.filter.truncate(1);
        std::fs::write(&file, encode(&planted)).expect("plant");
        assert!(same(&compile_cached(&spec, &dir).expect("hit"), &planted));
        // Garbage is ignored and replaced by the real program.
        for junk in [&b"nonsense"[..], &encode(&direct)[..20]] {
            std::fs::write(&file, junk).expect("junk");
            assert!(same(&compile_cached(&spec, &dir).expect("miss"), &direct));
            assert_eq!(std::fs::read(&file).expect("rewritten"), encode(&direct));
        }
        // Another profile, another entry.
        let mut other = profile();
        other.set_default_errno_ret(Some(1));
        assert_ne!(key(&other), Some(k));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn trim_keeps_the_newest() {
        let dir = std::env::temp_dir().join(format!("berth-scmp-trim-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        for i in 0..MAX_ENTRIES + 3 {
            let p = dir.join(format!("k{i:03}"));
            std::fs::write(&p, b"x").expect("write");
            let t =
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i as u64);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .and_then(|f| f.set_modified(t))
                .expect("mtime");
        }
        trim(&dir);
        let left = std::fs::read_dir(&dir).expect("read").count();
        assert_eq!(left, MAX_ENTRIES);
        assert!(
            !dir.join("k000").exists() && dir.join(format!("k{:03}", MAX_ENTRIES + 2)).exists()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
