//! Push: an image of the store to a repository. Blobs first (each checked
//! with HEAD, mounted from another repository of the same registry where
//! possible, else uploaded whole or in chunks), then the platform
//! manifests by digest, the index (or single manifest) last, by tag.

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use berth_image::content::{Digest, Provider};
use berth_image::media::{self, Kind};
use berth_image::reference::Reference;
use berth_image::store::ImageStore;
use http::Method;

use super::error::error_message;
use super::manifest::{Desc, Doc};
use super::progress::{Progress, ProgressFn, Status, short_id};
use super::session::{Body, Req, Response, Session, read_body};
use super::{Cancel, Client, ClientError, Credentials};

/// What to push, and how.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Who to sign in as.
    pub credentials: Credentials,
    /// The local image to push when it is not the one named by the
    /// reference (Docker pushes the image of that name: tag it first).
    pub source: Option<String>,
    /// Upload blobs in chunks of this many bytes (PATCH with
    /// `Content-Range`, then PUT); `None`: one PUT per blob.
    pub chunk_size: Option<u64>,
    /// Repositories of the same registry to mount blobs from, tried before
    /// those other names of this image in the store point at.
    pub mount_from: Vec<String>,
    /// Set to stop the push.
    pub cancel: Cancel,
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushReport {
    /// The tag pushed (empty when pushed by digest).
    pub tag: String,
    /// The digest of what the tag now names.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Blobs the repository already had.
    pub existing: usize,
}

/// A manifest to PUT.
struct Manifest {
    media_type: String,
    digest: String,
    bytes: Vec<u8>,
}

/// One blob to push.
struct Job {
    digest: Digest,
    size: u64,
    /// Short id for progress; None for configs (not shown).
    id: Option<String>,
}

enum Outcome {
    Uploaded,
    Mounted,
    Existing,
}

struct Ctx<'a> {
    session: &'a Session,
    store: &'a ImageStore,
    repo: &'a str,
    scope: &'a [String],
    mounts: &'a [String],
    chunk_size: Option<u64>,
    cancel: &'a Cancel,
    stop: &'a AtomicBool,
    progress: ProgressFn<'a>,
}

fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

impl Ctx<'_> {
    fn emit(&self, id: &Option<String>, status: Status) {
        if let Some(id) = id {
            (self.progress)(&Progress::layer(id, status));
        }
    }

    fn check(&self) -> Result<(), ClientError> {
        self.cancel.check()?;
        if self.stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ClientError::Cancelled);
        }
        Ok(())
    }

    fn status_error(&self, what: String, mut resp: Response) -> ClientError {
        let status = resp.status().as_u16();
        let body =
            read_body(&mut resp, 64 * 1024, &self.session.registry, &what).unwrap_or_default();
        ClientError::Status {
            registry: self.session.registry.clone(),
            what,
            status,
            message: error_message(&body),
        }
    }

    fn location(&self, resp: &Response, what: &str) -> Result<String, ClientError> {
        header(resp, "location")
            .map(|l| self.session.url(&l))
            .ok_or_else(|| ClientError::Status {
                registry: self.session.registry.clone(),
                what: what.to_owned(),
                status: resp.status().as_u16(),
                message: ": the answer has no Location header".into(),
            })
    }

    fn push_blob(&self, job: &Job) -> Result<Outcome, ClientError> {
        self.check()?;
        let (digest, size) = (&job.digest, job.size);
        let path = self.store.content().blob_path(digest);
        if !self.store.content().exists(digest)? {
            return Err(ClientError::Push {
                reference: format!("{}/{}", self.session.registry, self.repo),
                reason: format!("blob {digest} is not in the local content store"),
            });
        }
        let blob_url = self
            .session
            .url(&format!("/v2/{}/blobs/{digest}", self.repo));
        let what = format!("HEAD blob {}@{digest}", self.repo);
        let mut resp = self.session.send(
            &Req::new(Method::HEAD, blob_url, what.clone()),
            self.scope,
            self.repo,
        )?;
        let _ = read_body(&mut resp, 64 * 1024, &self.session.registry, &what);
        if resp.status() == 200 {
            self.emit(&job.id, Status::LayerAlreadyExists);
            return Ok(Outcome::Existing);
        }

        let uploads = self
            .session
            .url(&format!("/v2/{}/blobs/uploads/", self.repo));
        let mut location = None;
        for from in self.mounts {
            let what = format!("mount blob {digest} from {from} into {}", self.repo);
            let mut scope = self.scope.to_vec();
            scope.push(format!("repository:{from}:pull"));
            let url = format!("{uploads}?mount={digest}&from={from}");
            let mut resp = self.session.send(
                &Req::new(Method::POST, url, what.clone()),
                &scope,
                self.repo,
            )?;
            let _ = read_body(&mut resp, 64 * 1024, &self.session.registry, &what);
            match resp.status().as_u16() {
                201 => {
                    self.emit(&job.id, Status::MountedFrom(from.clone()));
                    return Ok(Outcome::Mounted);
                }
                // Not mountable from there: the registry opened an upload.
                202 => {
                    location = Some(self.location(&resp, &what)?);
                    break;
                }
                s => tracing::debug!(status = s, %digest, from, "mount refused"),
            }
        }
        let mut location = match location {
            Some(l) => l,
            None => {
                let what = format!("start upload of {digest} to {}", self.repo);
                let resp = self.session.send(
                    &Req::new(Method::POST, uploads, what.clone()),
                    self.scope,
                    self.repo,
                )?;
                if resp.status() != 202 {
                    return Err(self.status_error(what, resp));
                }
                self.location(&resp, &what)?
            }
        };

        let last = Mutex::new(Instant::now());
        let last = &last;
        let report = |base: u64| {
            move |done: u64| {
                let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
                if l.elapsed() >= Duration::from_millis(100)
                    && let Some(id) = &job.id
                {
                    *l = Instant::now();
                    (self.progress)(&Progress::bytes(id, Status::Pushing, base + done, size));
                }
            }
        };
        if let Some(id) = &job.id {
            (self.progress)(&Progress::bytes(id, Status::Pushing, 0, size));
        }
        let with_digest = |loc: &str| {
            let sep = if loc.contains('?') { '&' } else { '?' };
            format!("{loc}{sep}digest={digest}")
        };
        match self.chunk_size {
            Some(chunk) if chunk > 0 && size > 0 => {
                let mut offset = 0u64;
                while offset < size {
                    self.check()?;
                    let len = chunk.min(size - offset);
                    let what = format!(
                        "upload bytes {offset}-{} of {digest} to {}",
                        offset + len - 1,
                        self.repo
                    );
                    let sent = report(offset);
                    let req = Req::new(Method::PATCH, location.clone(), what.clone())
                        .header("Content-Type", "application/octet-stream")
                        .header("Content-Range", format!("{offset}-{}", offset + len - 1))
                        .body(Body::File {
                            path: &path,
                            offset,
                            len,
                            sent: &sent,
                        });
                    let resp = self.session.send(&req, self.scope, self.repo)?;
                    if resp.status() != 202 {
                        return Err(self.status_error(what, resp));
                    }
                    location = self.location(&resp, &what)?;
                    offset += len;
                }
                let what = format!("finish upload of {digest} to {}", self.repo);
                let resp = self.session.send(
                    &Req::new(Method::PUT, with_digest(&location), what.clone()),
                    self.scope,
                    self.repo,
                )?;
                if resp.status() != 201 {
                    return Err(self.status_error(what, resp));
                }
            }
            _ => {
                let what = format!("upload {digest} to {}", self.repo);
                let sent = report(0);
                let req = Req::new(Method::PUT, with_digest(&location), what.clone())
                    .header("Content-Type", "application/octet-stream")
                    .body(Body::File {
                        path: &path,
                        offset: 0,
                        len: size,
                        sent: &sent,
                    });
                let resp = self.session.send(&req, self.scope, self.repo)?;
                if resp.status() != 201 {
                    return Err(self.status_error(what, resp));
                }
            }
        }
        if let Some(id) = &job.id {
            (self.progress)(&Progress::bytes(id, Status::Pushing, size, size));
        }
        self.emit(&job.id, Status::Pushed);
        Ok(Outcome::Uploaded)
    }

    fn put_manifest(&self, reference: &str, m: &Manifest) -> Result<(), ClientError> {
        let what = format!("PUT manifest {}:{reference}", self.repo);
        let req = Req::new(
            Method::PUT,
            self.session
                .url(&format!("/v2/{}/manifests/{reference}", self.repo)),
            what.clone(),
        )
        .header("Content-Type", m.media_type.clone())
        .body(Body::Bytes(&m.bytes));
        let resp = self.session.send(&req, self.scope, self.repo)?;
        if resp.status() != 201 {
            return Err(self.status_error(what, resp));
        }
        if let Some(d) = header(&resp, "docker-content-digest")
            && d != m.digest
        {
            return Err(ClientError::DigestMismatch {
                registry: self.session.registry.clone(),
                repository: self.repo.to_owned(),
                what: "manifest",
                expected: m.digest.clone(),
                actual: d,
            });
        }
        Ok(())
    }

    /// Whether the repository already has manifest `digest`.
    fn has_manifest(&self, digest: &str) -> Result<bool, ClientError> {
        let what = format!("HEAD manifest {}@{digest}", self.repo);
        let req = Req::new(
            Method::HEAD,
            self.session
                .url(&format!("/v2/{}/manifests/{digest}", self.repo)),
            what.clone(),
        )
        .header("Accept", super::manifest::ACCEPT);
        let mut resp = self.session.send(&req, self.scope, self.repo)?;
        let _ = read_body(&mut resp, 64 * 1024, &self.session.registry, &what);
        Ok(resp.status() == 200)
    }
}

fn parse_doc(
    store: &ImageStore,
    digest: &Digest,
    reference: &str,
) -> Result<(Vec<u8>, Doc), ClientError> {
    let bytes = store.read_blob(digest)?;
    let doc = serde_json::from_slice(&bytes).map_err(|e| ClientError::Invalid {
        reference: reference.to_owned(),
        what: "manifest",
        digest: digest.to_string(),
        reason: e.to_string(),
    })?;
    Ok((bytes, doc))
}

impl Client {
    /// Pushes the image named `reference` (or `opts.source`) from `store`
    /// to `reference`'s repository, reporting progress to `progress`. The
    /// last event carries Docker's aux `{"Tag","Digest","Size"}`.
    pub fn push(
        &self,
        store: &ImageStore,
        reference: &str,
        opts: &PushOptions,
        progress: ProgressFn<'_>,
    ) -> Result<PushReport, ClientError> {
        let r = Reference::parse_normalized(reference)?;
        let repo = r.path().to_owned();
        let display = r.familiar();
        let source = opts.source.as_deref().unwrap_or(reference);
        let image = store.get(source)?;
        let target = image.target.clone();
        progress(&Progress::message(
            "",
            format!("The push refers to repository [{}]", r.name()),
        ));

        // Other names of this image on the same registry: blobs can be
        // mounted from there.
        let mut mounts = opts.mount_from.clone();
        for other in store.list()? {
            if other.target.digest != target.digest {
                continue;
            }
            if let Ok(o) = Reference::parse_normalized(&other.name)
                && o.domain() == r.domain()
                && o.path() != repo
                && !mounts.iter().any(|m| m == o.path())
            {
                mounts.push(o.path().to_owned());
            }
        }
        mounts.retain(|m| *m != repo);

        let scope = vec![format!("repository:{repo}:pull,push")];
        let session = self.session(r.domain(), &opts.credentials)?;
        let stop = AtomicBool::new(false);
        let ctx = Ctx {
            session: &session,
            store,
            repo: &repo,
            scope: &scope,
            mounts: &mounts,
            chunk_size: opts.chunk_size,
            cancel: &opts.cancel,
            stop: &stop,
            progress,
        };

        // The manifests: the target's, or the index's present children.
        let top_digest = target.digest()?;
        let (top_bytes, top_doc) = parse_doc(store, &top_digest, &display)?;
        let mut children: Vec<(Manifest, Doc)> = Vec::new();
        match media::kind(&target.media_type) {
            Kind::Manifest => {}
            Kind::Index => {
                for entry in &top_doc.manifests {
                    push_child(&ctx, store, &display, entry, &mut children)?;
                }
            }
            _ => {
                return Err(ClientError::Push {
                    reference: display,
                    reason: format!("unsupported media type {:?}", target.media_type),
                });
            }
        }
        let top = Manifest {
            media_type: target.media_type.clone(),
            digest: target.digest.clone(),
            bytes: top_bytes,
        };

        // Every blob once: configs (not shown) and layers.
        let mut jobs = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        let docs: Vec<&Doc> =
            if children.is_empty() && media::kind(&target.media_type) == Kind::Manifest {
                vec![&top_doc]
            } else {
                children.iter().map(|(_, d)| d).collect()
            };
        for doc in docs {
            let blobs = doc
                .layers
                .iter()
                .map(|l| (l, true))
                .chain(doc.config.iter().map(|c| (c, false)));
            for (d, shown) in blobs {
                let digest: Digest = d.digest.parse()?;
                if !seen.insert(digest.clone()) {
                    continue;
                }
                let id = shown.then(|| short_id(&d.digest));
                ctx.emit(&id, Status::Preparing);
                jobs.push(Job {
                    digest,
                    size: d.size,
                    id,
                });
            }
        }
        let max = self.options.max_concurrent_uploads.max(1);
        for job in jobs.iter().skip(max) {
            ctx.emit(&job.id, Status::Waiting);
        }
        let outcomes = super::parallel(&jobs, max, &stop, |job| ctx.push_blob(job))?;

        for (m, _) in &children {
            opts.cancel.check()?;
            ctx.put_manifest(&m.digest, m)?;
        }
        let tag = r.tag().unwrap_or("").to_owned();
        let reference_part = if tag.is_empty() {
            r.digest().unwrap_or(&top.digest).to_owned()
        } else {
            tag.clone()
        };
        ctx.put_manifest(&reference_part, &top)?;

        let size = top.bytes.len() as u64;
        progress(&Progress::message(
            "",
            format!("{reference_part}: digest: {} size: {size}", top.digest),
        ));
        let mut aux = Progress::message("", "");
        aux.aux = Some(serde_json::json!({"Tag": tag, "Digest": top.digest, "Size": size}));
        progress(&aux);
        let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
        Ok(PushReport {
            tag,
            digest: top.digest.clone(),
            size,
            media_type: top.media_type.clone(),
            uploaded: count(|o| matches!(o, Outcome::Uploaded)),
            mounted: count(|o| matches!(o, Outcome::Mounted)),
            existing: count(|o| matches!(o, Outcome::Existing)),
        })
    }
}

/// Adds an index entry to the manifests to push if the store has it; an
/// entry the store lacks (a platform never pulled) must already be in the
/// repository.
fn push_child(
    ctx: &Ctx<'_>,
    store: &ImageStore,
    display: &str,
    entry: &Desc,
    children: &mut Vec<(Manifest, Doc)>,
) -> Result<(), ClientError> {
    let digest: Digest = entry.digest.parse()?;
    if !store.content().exists(&digest)? {
        if ctx.has_manifest(&entry.digest)? {
            return Ok(());
        }
        let platform = entry.platform.as_ref().map_or(String::new(), |p| {
            format!(
                " ({}/{}{})",
                p.os,
                p.architecture,
                p.variant
                    .as_ref()
                    .map_or(String::new(), |v| format!("/{v}"))
            )
        });
        return Err(ClientError::Push {
            reference: display.to_owned(),
            reason: format!(
                "its index lists manifest {}{platform}, which is neither in the local store \
                 (only the pulled platform is) nor in {}/{}",
                entry.digest, ctx.session.registry, ctx.repo
            ),
        });
    }
    if media::kind(&entry.media_type) != Kind::Manifest {
        return Err(ClientError::Push {
            reference: display.to_owned(),
            reason: format!(
                "nested index {} ({}) is not supported",
                entry.digest, entry.media_type
            ),
        });
    }
    let (bytes, doc) = parse_doc(store, &digest, display)?;
    children.push((
        Manifest {
            media_type: entry.media_type.clone(),
            digest: entry.digest.clone(),
            bytes,
        },
        doc,
    ));
    Ok(())
}
