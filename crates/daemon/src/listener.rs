//! The unix socket and the pid file, removed again when berthd stops.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tokio::net::UnixListener;

/// A bound socket; its file is removed on drop.
#[derive(Debug)]
pub struct Socket {
    path: PathBuf,
}

impl Socket {
    /// Binds `path` (mode 0660, group `docker` when that group exists).
    /// A stale socket file is replaced; a live one (another daemon) is
    /// refused.
    pub fn bind(path: &Path) -> anyhow::Result<(Socket, UnixListener)> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("create socket directory {}", dir.display()))?;
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                bail!("{} exists and is not a socket", path.display());
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                bail!(
                    "{} is in use: is another daemon listening there?",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("remove stale socket {}", path.display()))?;
        }
        let listener = listen(path).with_context(|| format!("listen on {}", path.display()))?;
        let sock = Socket {
            path: path.to_owned(),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .with_context(|| format!("chmod {}", path.display()))?;
        match nix::unistd::Group::from_name("docker") {
            Ok(Some(g)) => nix::unistd::chown(path, None, Some(g.gid))
                .with_context(|| format!("chgrp docker {}", path.display()))?,
            Ok(None) => tracing::debug!("no docker group: the socket stays root-only"),
            Err(e) => tracing::warn!(error = %e, "looking up the docker group failed"),
        }
        Ok((sock, listener))
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "remove socket");
        }
    }
}

/// The pid file; removed on drop.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes our pid to `path`, refusing if it names a live process.
    pub fn create(path: &Path) -> anyhow::Result<PidFile> {
        if let Ok(old) = std::fs::read_to_string(path) {
            let old = old.trim();
            let me = std::process::id().to_string();
            if !old.is_empty() && old != me && Path::new("/proc").join(old).exists() {
                bail!(
                    "pid file found, ensure berthd is not running or delete {}",
                    path.display()
                );
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("create pid file directory {}", dir.display()))?;
        }
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("write pid file {}", path.display()))?;
        Ok(PidFile {
            path: path.to_owned(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "remove pid file");
        }
    }
}

/// A listening socket with a deep accept queue: bursts of clients (200
/// `docker run`s at once) must wait in the queue, not get EAGAIN.
fn listen(path: &Path) -> std::io::Result<UnixListener> {
    use nix::sys::socket::{AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, socket};
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &UnixAddr::new(path)?)?;
    nix::sys::socket::listen(&fd, Backlog::new(4096).unwrap_or(Backlog::MAXCONN))?;
    UnixListener::from_std(std::os::unix::net::UnixListener::from(fd))
}
