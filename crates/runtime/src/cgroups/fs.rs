//! Small file helpers shared by the v1 and v2 managers.
//!
//! Every helper takes the cgroup directory and the file name separately so
//! that errors can name both.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use super::CgroupError;

/// Writes `value` to `dir/file` (no create, truncate so plain files in tests
/// hold exactly the last value written).
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    tracing::debug!(path = %path.display(), value, "cgroup write");
    let result = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    result.map_err(|source| CgroupError::Write {
        path: dir.to_path_buf(),
        file: file.to_string(),
        value: value.to_string(),
        source,
    })
}

/// Reads `dir/file` as a string.
pub(crate) fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    fs::read_to_string(dir.join(file)).map_err(|source| CgroupError::Read {
        path: dir.to_path_buf(),
        file: file.to_string(),
        source,
    })
}

/// Reads `dir/file`, `None` when it does not exist.
pub(crate) fn read_opt(dir: &Path, file: &str) -> Result<Option<String>, CgroupError> {
    match fs::read_to_string(dir.join(file)) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: dir.to_path_buf(),
            file: file.to_string(),
            source,
        }),
    }
}

/// Whether `dir/file` exists.
pub(crate) fn exists(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

/// Parses a single unsigned value; "max" maps to `u64::MAX`, negative values
/// (v1 prints -1 for "unlimited" in some files) map to `u64::MAX` too.
pub(crate) fn parse_u64(dir: &Path, file: &str, content: &str) -> Result<u64, CgroupError> {
    let s = content.trim();
    if s == "max" {
        return Ok(u64::MAX);
    }
    if let Ok(v) = s.parse::<u64>() {
        return Ok(v);
    }
    if let Ok(v) = s.parse::<i64>()
        && v < 0
    {
        return Ok(u64::MAX);
    }
    Err(CgroupError::Parse {
        path: dir.to_path_buf(),
        file: file.to_string(),
        content: s.to_string(),
    })
}

/// Reads and parses a single-value file; a missing file yields 0.
pub(crate) fn read_u64_or_zero(dir: &Path, file: &str) -> Result<u64, CgroupError> {
    match read_opt(dir, file)? {
        Some(s) => parse_u64(dir, file, &s),
        None => Ok(0),
    }
}

/// Parses "key value" lines (memory.stat, cpu.stat, memory.events ...).
pub(crate) fn parse_flat_keyed(content: &str) -> Vec<(String, u64)> {
    content
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = it.next()?.parse::<u64>().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

/// `mkdir -p`, mapping errors to [`CgroupError::CreateDir`].
pub(crate) fn create_dir_all(path: &Path) -> Result<(), CgroupError> {
    fs::create_dir_all(path).map_err(|source| CgroupError::CreateDir {
        path: path.to_path_buf(),
        source,
    })
}

/// Removes `dir` and every directory below it (deepest first). Plain files
/// are left alone: cgroupfs lets rmdir remove a directory holding its
/// interface files. Retries EBUSY for about a second. A missing `dir` is Ok.
pub(crate) fn remove_cgroup_dir(dir: &Path) -> Result<(), CgroupError> {
    // Mostly an empty leaf: one rmdir. EBUSY (sub-cgroups, or tasks still
    // leaving) takes the long way below.
    match fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    let children = match fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.path())
            .collect::<Vec<PathBuf>>(),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::RemoveDir {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    for child in children {
        remove_cgroup_dir(&child)?;
    }
    let mut attempt = 0;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 20 => {
                attempt += 1;
                thread::sleep(Duration::from_millis(50));
            }
            Err(source) => {
                return Err(CgroupError::RemoveDir {
                    path: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// Writes a pid to `dir/cgroup.procs`, retrying EINVAL (a task still in
/// TASK_NEW) a few times as runc does.
pub(crate) fn write_pid(dir: &Path, pid: i32) -> Result<(), CgroupError> {
    let mut attempt = 0;
    loop {
        match write(dir, "cgroup.procs", &pid.to_string()) {
            Err(CgroupError::Write { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) && attempt < 5 =>
            {
                attempt += 1;
                thread::sleep(Duration::from_millis(30));
            }
            other => return other,
        }
    }
}

/// Collects the pids in `dir/cgroup.procs` and in every descendant.
pub(crate) fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let Some(content) = read_opt(dir, "cgroup.procs")? else {
        return Ok(());
    };
    for line in content.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let pid = line.parse::<i32>().map_err(|_| CgroupError::Parse {
            path: dir.to_path_buf(),
            file: "cgroup.procs".to_string(),
            content: line.to_string(),
        })?;
        out.push(pid);
    }
    if let Ok(rd) = fs::read_dir(dir) {
        for entry in rd.filter_map(Result::ok) {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_pids(&entry.path(), out)?;
            }
        }
    }
    Ok(())
}

/// Whether we may write into `dir`, or, when it does not exist yet, into the
/// nearest existing ancestor (where we would have to mkdir it).
pub(crate) fn writable(dir: &Path) -> bool {
    let mut cur = Some(dir);
    while let Some(p) = cur {
        if p.exists() {
            return nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok();
        }
        cur = p.parent();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_u64_handles_max_and_negative() {
        let d = Path::new("/x");
        assert_eq!(parse_u64(d, "f", "max\n").ok(), Some(u64::MAX));
        assert_eq!(parse_u64(d, "f", "-1").ok(), Some(u64::MAX));
        assert_eq!(parse_u64(d, "f", " 42\n").ok(), Some(42));
        let err = parse_u64(d, "pids.max", "junk")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("parse pids.max in /x: unexpected content \"junk\"")
        );
    }

    #[test]
    fn remove_dir_is_idempotent_and_recursive() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let d = tmp.path().join("a");
        fs::create_dir_all(d.join("b/c"))?;
        remove_cgroup_dir(&d)?;
        assert!(!d.exists());
        remove_cgroup_dir(&d)?;
        Ok(())
    }
}
