//! Pull: a reference's manifest (or index, then the platform's manifest),
//! its config and layers into the image store, then the image record.
//!
//! Everything is written under a lease taken before the first blob, so gc
//! cannot take blobs away mid-pull; blobs go through the content store's
//! ingests under a ref named after their digest, so a pull that was cut
//! off (a dropped connection, a killed process) resumes where the bytes on
//! disk end, with a `Range` request. The image record is written last: a
//! pull that fails leaves no image, only content a later pull reuses or gc
//! removes.

use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use berth_image::content::{ContentError, Digest, Ingester, Provider};
use berth_image::media::{self, Kind};
use berth_image::reference::Reference;
use berth_image::store::{Image, ImageStore, LeaseGuard, Platform, Resource, Target};
use http::Method;

use super::manifest::{self, Desc};
use super::progress::{Progress, ProgressFn, Status, short_id};
use super::session::{Req, Session};
use super::{Cancel, Client, ClientError, Credentials};

/// Consecutive failed attempts (without a byte of progress) before a blob
/// download gives up.
const MAX_FAILURES: u32 = 5;

/// How often Downloading events are sent per layer, at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// What to pull, and how.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// The platform to pick from an index (default: the host's).
    pub platform: Option<Platform>,
    /// Who to sign in as.
    pub credentials: Credentials,
    /// Set to stop the pull; what was downloaded stays for a resume.
    pub cancel: Cancel,
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The image record written (name, target).
    pub image: Image,
    /// The target's digest: the index's when the reference names one.
    pub digest: String,
    /// The platform manifest's digest.
    pub manifest: String,
    /// The config's digest: the image id.
    pub config: String,
    /// Blobs downloaded (not already in the store).
    pub downloaded: usize,
    /// Bytes received for them.
    pub bytes: u64,
    /// Whether the image already pointed at this target.
    pub up_to_date: bool,
}

/// One blob to fetch.
struct Job<'a> {
    desc: &'a Desc,
    /// Short id for progress, or None for the config (not shown).
    id: Option<String>,
}

/// What the download threads share.
struct Ctx<'a> {
    session: &'a Session,
    store: &'a ImageStore,
    repo: &'a str,
    scope: &'a [String],
    cancel: &'a Cancel,
    /// Set when one download failed: the others stop.
    stop: &'a AtomicBool,
    progress: ProgressFn<'a>,
}

impl Ctx<'_> {
    fn check(&self) -> Result<(), ClientError> {
        self.cancel.check()?;
        if self.stop.load(Ordering::SeqCst) {
            return Err(ClientError::Cancelled);
        }
        Ok(())
    }

    fn emit(&self, id: &Option<String>, status: Status) {
        if let Some(id) = id {
            (self.progress)(&Progress::layer(id, status));
        }
    }

    fn download_error(&self, desc: &Desc, what: &'static str, reason: String) -> ClientError {
        ClientError::Download {
            registry: self.session.registry.clone(),
            repository: self.repo.to_owned(),
            what,
            digest: desc.digest.clone(),
            reason,
        }
    }

    /// Fetches one blob into the content store (resuming an ingest left by
    /// an earlier attempt); returns the bytes received.
    fn fetch_blob(&self, job: &Job<'_>) -> Result<u64, ClientError> {
        let desc = job.desc;
        let what = if job.id.is_some() { "layer" } else { "config" };
        let digest: Digest = desc.digest.parse()?;
        let size = desc.size;
        let content = self.store.content();
        let wref = format!("pull-{digest}");
        let mut failures = 0u32;
        let mut received = 0u64;
        let mut last = Instant::now();
        let url = self
            .session
            .url(&format!("/v2/{}/blobs/{digest}", self.repo));
        'attempt: loop {
            self.check()?;
            if content.exists(&digest)? {
                // Committed meanwhile by another pull of the same blob.
                self.emit(&job.id, Status::DownloadComplete);
                return Ok(received);
            }
            let mut w = match content.writer(&wref, Some((&digest, size))) {
                Ok(w) => w,
                Err(ContentError::Locked(_)) => {
                    // Another pull is writing this blob: wait for it.
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                Err(ContentError::SizeMismatch { .. }) => {
                    content.abort(&wref)?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let offset = w.offset();
            if offset < size {
                let mut req = Req::new(
                    Method::GET,
                    url.clone(),
                    format!("GET blob {}@{digest}", self.repo),
                );
                if offset > 0 {
                    req = req.header("Range", format!("bytes={offset}-"));
                }
                let resp = match self.session.send(&req, self.scope, self.repo) {
                    Ok(r) => r,
                    Err(e @ ClientError::Transport { .. }) => {
                        failures += 1;
                        if failures > MAX_FAILURES {
                            return Err(e);
                        }
                        self.retry_pause(&job.id, failures);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let status = resp.status().as_u16();
                let mut resp = match (status, offset) {
                    (206, o) if o > 0 => {
                        let ok = resp
                            .headers()
                            .get(http::header::CONTENT_RANGE)
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|v| v.starts_with(&format!("bytes {o}-")));
                        if !ok {
                            // Not the range asked for: start over.
                            drop(w);
                            content.abort(&wref)?;
                            continue;
                        }
                        resp
                    }
                    (200, o) => {
                        if o > 0 {
                            // The registry ignored the Range: start over.
                            drop(w);
                            content.abort(&wref)?;
                            w = content.writer(&wref, Some((&digest, size)))?;
                        }
                        resp
                    }
                    (416, o) if o > 0 => {
                        drop(w);
                        content.abort(&wref)?;
                        continue;
                    }
                    (s, _) => {
                        let mut resp = resp;
                        let body = super::session::read_body(
                            &mut resp,
                            64 * 1024,
                            &self.session.registry,
                            "blob",
                        )
                        .unwrap_or_default();
                        return Err(ClientError::Status {
                            registry: self.session.registry.clone(),
                            what: format!("GET {what} {}@{digest}", self.repo),
                            status: s,
                            message: super::error::error_message(&body),
                        });
                    }
                };
                let mut reader = resp.body_mut().as_reader();
                let mut buf = vec![0u8; 128 * 1024];
                loop {
                    self.check()?;
                    match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if let Err(e) = w.write_all(&buf[..n]) {
                                if e.kind() == ErrorKind::InvalidInput {
                                    drop(w);
                                    content.abort(&wref)?;
                                    return Err(self.download_error(
                                        desc,
                                        what,
                                        format!(
                                            "the registry sent more than the {size} bytes \
                                             the manifest lists; nothing was stored"
                                        ),
                                    ));
                                }
                                return Err(ClientError::io(format!("write {wref}"), e));
                            }
                            received += n as u64;
                            failures = 0;
                            if job.id.is_some() && last.elapsed() >= PROGRESS_EVERY {
                                last = Instant::now();
                                if let Some(id) = &job.id {
                                    (self.progress)(&Progress::bytes(
                                        id,
                                        Status::Downloading,
                                        w.offset(),
                                        size,
                                    ));
                                }
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            failures += 1;
                            tracing::info!(digest = %digest, at = w.offset(), error = %e, "blob download broke off; resuming");
                            if failures > MAX_FAILURES {
                                return Err(self.download_error(
                                    desc,
                                    what,
                                    format!("download failed {MAX_FAILURES} times in a row: {e}"),
                                ));
                            }
                            drop(w);
                            self.retry_pause(&job.id, failures);
                            continue 'attempt;
                        }
                    }
                }
                if w.offset() < size {
                    failures += 1;
                    if failures > MAX_FAILURES {
                        return Err(self.download_error(
                            desc,
                            what,
                            format!("the body ended at byte {} of {size}", w.offset()),
                        ));
                    }
                    drop(w);
                    self.retry_pause(&job.id, failures);
                    continue;
                }
            }
            if let Some(id) = &job.id {
                (self.progress)(&Progress::bytes(id, Status::Downloading, size, size));
            }
            self.emit(&job.id, Status::VerifyingChecksum);
            match w.commit(&digest, size) {
                Ok(()) => {}
                Err(ContentError::DigestMismatch { expected, actual }) => {
                    return Err(ClientError::DigestMismatch {
                        registry: self.session.registry.clone(),
                        repository: self.repo.to_owned(),
                        what,
                        expected: expected.to_string(),
                        actual: actual.to_string(),
                    });
                }
                Err(e) => return Err(e.into()),
            }
            self.emit(&job.id, Status::DownloadComplete);
            return Ok(received);
        }
    }

    fn retry_pause(&self, id: &Option<String>, failures: u32) {
        self.emit(id, Status::Retrying(failures));
        let ms = (100u64 << failures.min(5)).min(3000);
        std::thread::sleep(Duration::from_millis(ms));
    }
}

impl Client {
    /// Pulls `reference` (`localhost:5000/a/b:tag`, `…@sha256:…`, `busybox`)
    /// into `store`, reporting progress to `progress` (from several threads).
    ///
    /// An index is stored whole, with only the manifest, config and layers
    /// of the chosen platform; the image record names the reference (as
    /// Docker normalises it) and points at the index or manifest.
    pub fn pull(
        &self,
        store: &ImageStore,
        reference: &str,
        opts: &PullOptions,
        progress: ProgressFn<'_>,
    ) -> Result<PullReport, ClientError> {
        let r = Reference::parse_normalized(reference)?;
        let repo = r.path().to_owned();
        let wanted = r.digest().or(r.tag()).unwrap_or("latest").to_owned();
        let display = r.familiar();
        let scope = vec![format!("repository:{repo}:pull")];
        let platform = opts.platform.clone().unwrap_or_else(Platform::host);
        let session = self.session(r.domain(), &opts.credentials)?;

        if r.digest().is_none() {
            progress(&Progress::message(&wanted, format!("Pulling from {repo}")));
        } else {
            progress(&Progress::message("", format!("Pulling from {repo}")));
        }
        let top = manifest::fetch(&session, &repo, &wanted, &display, &scope)?;
        let lease = store.lease(None)?;
        lease.put_bytes(&top.bytes)?;

        let chosen = if media::kind(&top.media_type) == Kind::Index {
            let desc =
                manifest::select(&top.doc, &platform).ok_or_else(|| ClientError::NoPlatform {
                    reference: display.clone(),
                    platform: platform.to_string(),
                })?;
            let m = manifest::fetch(&session, &repo, &desc.digest, &display, &scope)?;
            if media::kind(&m.media_type) != Kind::Manifest {
                return Err(ClientError::Invalid {
                    reference: display.clone(),
                    what: "index",
                    digest: top.digest.to_string(),
                    reason: format!(
                        "its entry for {platform} is not an image manifest ({})",
                        m.media_type
                    ),
                });
            }
            if m.bytes.len() as u64 != desc.size {
                return Err(ClientError::Invalid {
                    reference: display.clone(),
                    what: "manifest",
                    digest: desc.digest.clone(),
                    reason: format!("{} bytes, but the index says {}", m.bytes.len(), desc.size),
                });
            }
            lease.put_bytes(&m.bytes)?;
            m
        } else {
            top.clone()
        };
        let config = chosen
            .doc
            .config
            .clone()
            .ok_or_else(|| ClientError::Invalid {
                reference: display.clone(),
                what: "manifest",
                digest: chosen.digest.to_string(),
                reason: "no config".into(),
            })?;
        for l in &chosen.doc.layers {
            if l.urls.as_ref().is_some_and(|u| !u.is_empty())
                || media::kind(&l.media_type) == Kind::ForeignLayer
            {
                return Err(ClientError::Invalid {
                    reference: display.clone(),
                    what: "layer",
                    digest: l.digest.clone(),
                    reason: "foreign (non-distributable) layers are not supported".into(),
                });
            }
        }

        let stop = AtomicBool::new(false);
        let ctx = Ctx {
            session: &session,
            store,
            repo: &repo,
            scope: &scope,
            cancel: &opts.cancel,
            stop: &stop,
            progress,
        };
        let (downloaded, bytes, fetched_layers) =
            self.download_all(&ctx, &lease, &config, &chosen.doc.layers)?;

        let target = Target {
            media_type: top.media_type.clone(),
            digest: top.digest.to_string(),
            size: top.bytes.len() as u64,
        };
        let name = r.to_string();
        let up_to_date = store.get(&name).is_ok_and(|old| old.target == target);
        let image = store.put(&name, target)?;
        lease.release()?;
        for id in fetched_layers {
            progress(&Progress::layer(&id, Status::PullComplete));
        }
        progress(&Progress::message("", format!("Digest: {}", top.digest)));
        progress(&Progress::message(
            "",
            if up_to_date {
                format!("Status: Image is up to date for {display}")
            } else {
                format!("Status: Downloaded newer image for {display}")
            },
        ));
        Ok(PullReport {
            image,
            digest: top.digest.to_string(),
            manifest: chosen.digest.to_string(),
            config: config.digest,
            downloaded,
            bytes,
            up_to_date,
        })
    }

    /// Fetches the config and the layers not yet in the store, at most
    /// `max_concurrent_downloads` at once. Returns (blobs fetched, bytes,
    /// short ids of the layers fetched, bottom first).
    fn download_all(
        &self,
        ctx: &Ctx<'_>,
        lease: &LeaseGuard,
        config: &Desc,
        layers: &[Desc],
    ) -> Result<(usize, u64, Vec<String>), ClientError> {
        let content = ctx.store.content();
        let mut jobs = Vec::new();
        let mut fetched_ids = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        let all = std::iter::once((config, None))
            .chain(layers.iter().map(|l| (l, Some(short_id(&l.digest)))));
        for (desc, id) in all {
            let digest: Digest = desc.digest.parse()?;
            // Protect it before looking: gc must not take it in between.
            lease.add(&Resource::Content(digest.clone()))?;
            if !seen.insert(digest.clone()) {
                continue;
            }
            if content.exists(&digest)? {
                ctx.emit(&id, Status::AlreadyExists);
                continue;
            }
            lease.add(&Resource::Ingest(format!("pull-{digest}")))?;
            ctx.emit(&id, Status::PullingFsLayer);
            if let Some(i) = &id {
                fetched_ids.push(i.clone());
            }
            jobs.push(Job { desc, id });
        }
        let max = self.options.max_concurrent_downloads.max(1);
        for job in jobs.iter().skip(max) {
            ctx.emit(&job.id, Status::Waiting);
        }
        let done = super::parallel(&jobs, max, ctx.stop, |job| ctx.fetch_blob(job))?;
        Ok((jobs.len(), done.iter().sum(), fetched_ids))
    }
}
