//! The OCI Distribution client: pull into and push from berth's
//! [`ImageStore`](berth_image::store::ImageStore).
//!
//! ```no_run
//! use berth_registry::client::{Client, ClientOptions, PullOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = berth_image::store::ImageStore::open(std::path::Path::new("/tmp/store"))?;
//! let client = Client::new(ClientOptions::default());
//! let report = client.pull(&store, "localhost:5000/app:1", &PullOptions::default(), &|p| {
//!     println!("{}", p.to_json())
//! })?;
//! println!("{}", report.digest);
//! # Ok(()) }
//! ```
//!
//! The client is synchronous (ureq over rustls) and runs its concurrent
//! downloads and uploads on scoped threads; berthd calls it inside
//! `spawn_blocking`. A [`Client`] keeps one session per registry and
//! credentials, so bearer tokens are reused across calls until they expire.

mod credentials;
mod error;
mod manifest;
mod progress;
mod pull;
mod push;
mod session;
mod tls;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use credentials::{Credentials, DOCKER_HUB_KEY, DockerConfig, config_key};
pub use error::ClientError;
pub use progress::{Progress, ProgressFn, Status, short_id};
pub use pull::{PullOptions, PullReport};
pub use push::{PushOptions, PushReport};
pub use session::is_insecure;
pub use tls::DEFAULT_CERTS_DIR;

use session::Session;

/// How the client reaches registries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Insecure registries besides loopback ones: `host[:port]` or a CIDR,
    /// as dockerd's `insecure-registries`. As Docker does, the client tries
    /// HTTPS first without verifying the server's certificate, then plain
    /// HTTP.
    pub insecure_registries: Vec<String>,
    /// Whether loopback registries (`localhost`, 127.0.0.0/8, ::1) are
    /// insecure too, as Docker always has them. Off: they are verified like
    /// any other (tests use this to check verification on loopback).
    pub insecure_loopback: bool,
    /// Per-registry CAs and client certificates, `<dir>/<host[:port]>/`
    /// (Docker's `/etc/docker/certs.d`). For an insecure registry only the
    /// client certificate is used (Docker reads nothing there for those).
    pub certs_dir: PathBuf,
    /// Layers downloaded at once (Docker: 3).
    pub max_concurrent_downloads: usize,
    /// Blobs uploaded at once.
    pub max_concurrent_uploads: usize,
    /// Longest wait to connect.
    pub connect_timeout: Duration,
    /// Longest wait for any single read or write on a connection.
    pub read_timeout: Duration,
    /// The `User-Agent` header.
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure_registries: Vec::new(),
            insecure_loopback: true,
            certs_dir: PathBuf::from(DEFAULT_CERTS_DIR),
            max_concurrent_downloads: 3,
            max_concurrent_uploads: 3,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(120),
            user_agent: format!("berth/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// A registry client; cheap to share (`&Client` is all its methods need).
#[derive(Debug)]
pub struct Client {
    options: ClientOptions,
    sessions: Mutex<Vec<(String, Credentials, Arc<Session>)>>,
}

impl Client {
    /// A client with these options.
    pub fn new(options: ClientOptions) -> Client {
        Client {
            options,
            sessions: Mutex::new(Vec::new()),
        }
    }

    /// Its options.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// `docker login`: checks that `creds` are accepted by `registry`
    /// (`host[:port]`; Docker Hub's aliases count as `docker.io`). Anonymous
    /// credentials are refused up front.
    pub fn login(&self, registry: &str, creds: &Credentials) -> Result<(), ClientError> {
        if *creds == Credentials::Anonymous {
            return Err(ClientError::Credentials(
                "a username and password (or an identity token) are needed to log in".into(),
            ));
        }
        let registry = match registry
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
        {
            "" | "index.docker.io" | "index.docker.io/v1" | "registry-1.docker.io" => "docker.io",
            r => r,
        };
        let s = Session::connect(&self.options, registry, creds.clone())?;
        let req = session::Req::new(http::Method::GET, s.url("/v2/"), "log in".to_owned());
        let mut resp = s.send(&req, &[], "")?;
        let status = resp.status().as_u16();
        let _ = resp.body_mut().with_config().limit(64 * 1024).read_to_vec();
        if status != 200 {
            return Err(ClientError::Status {
                registry: registry.to_owned(),
                what: "log in".to_owned(),
                status,
                message: String::new(),
            });
        }
        Ok(())
    }

    /// The session for `registry` with `creds`, connecting on first use.
    fn session(&self, registry: &str, creds: &Credentials) -> Result<Arc<Session>, ClientError> {
        let lock = || self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, _, s)) = lock().iter().find(|(r, c, _)| r == registry && c == creds) {
            return Ok(s.clone());
        }
        let s = Arc::new(Session::connect(&self.options, registry, creds.clone())?);
        lock().push((registry.to_owned(), creds.clone(), s.clone()));
        Ok(s)
    }
}

/// A cancellation flag the caller can set from another thread.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag not set.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks the operation to stop at the next chunk.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub(crate) fn check(&self) -> Result<(), ClientError> {
        if self.is_cancelled() {
            Err(ClientError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// Runs `f` over `jobs` on at most `max` threads. The first error sets
/// `stop` (the running jobs see it and end with [`ClientError::Cancelled`])
/// and is returned; otherwise the results, in no particular order.
pub(crate) fn parallel<T: Sync, R: Send>(
    jobs: &[T],
    max: usize,
    stop: &AtomicBool,
    f: impl Fn(&T) -> Result<R, ClientError> + Sync,
) -> Result<Vec<R>, ClientError> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let first_error: Mutex<Option<ClientError>> = Mutex::new(None);
    let results: Mutex<Vec<R>> = Mutex::new(Vec::with_capacity(jobs.len()));
    std::thread::scope(|s| {
        for _ in 0..max.max(1).min(jobs.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(job) = jobs.get(i) else { break };
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    match f(job) {
                        Ok(r) => results.lock().unwrap_or_else(|p| p.into_inner()).push(r),
                        Err(e) => {
                            stop.store(true, Ordering::SeqCst);
                            let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                            // The first real error, not another job's "stopped".
                            if slot.is_none() || matches!(*slot, Some(ClientError::Cancelled)) {
                                *slot = Some(e);
                            }
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(results.into_inner().unwrap_or_else(|p| p.into_inner()))
}
