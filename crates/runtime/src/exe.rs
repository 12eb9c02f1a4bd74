//! Run the runtime from a sealed, in-memory copy of its own binary.
//!
//! CVE-2019-5736: a container process that execs `/proc/self/exe` of the
//! runtime (for example through a `#!/proc/self/exe` script, or by opening
//! `/proc/<init>/exe` before init execs) can reopen the runtime's binary for
//! writing once the runtime exits, and replace it on the host. Running from a
//! sealed memfd means `/proc/self/exe` is a file that can never be written.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{MemfdFlags, SealFlags};

use crate::error::{Context, Result, RuntimeError};

const SEALS: SealFlags = SealFlags::SEAL
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW)
    .union(SealFlags::WRITE);

/// Whether this process already runs from a sealed memfd.
pub fn is_sealed() -> bool {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return false;
    };
    rustix::fs::fcntl_get_seals(&exe).is_ok_and(|s| s.contains(SEALS))
}

/// Re-execute the current program from a sealed memfd copy, unless it
/// already runs from one. On success this does not return.
pub fn ensure_sealed() -> Result<()> {
    if is_sealed() {
        return Ok(());
    }
    let mut exe = File::open("/proc/self/exe").context("open /proc/self/exe")?;
    let memfd = rustix::fs::memfd_create(
        "berth-runtime",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .context("memfd_create")?;
    let mut out = File::from(memfd);
    std::io::copy(&mut exe, &mut out).context("copy the runtime binary into a memfd")?;
    rustix::fs::fcntl_add_seals(&out, SEALS).context("seal the memfd copy")?;

    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| RuntimeError::InvalidArgument("argument contains a NUL byte".into()))?;
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv)
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| RuntimeError::InvalidArgument("environment contains a NUL byte".into()))?;
    let err = nix::unistd::fexecve(out.as_fd(), &args, &env);
    match err {
        Err(e) => Err(RuntimeError::sys("re-exec from the sealed memfd", e)),
        Ok(never) => match never {},
    }
}
