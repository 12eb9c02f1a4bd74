//! `/images/…`: list, inspect, history, tag, delete, prune, load, save,
//! import, pull and push (progress streams); search answers that there is
//! no index to search.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_engine::images::{
    DeleteItem as EngineDelete, ImageEntry, ImportRequest, ListRequest, PruneRequest,
};

use super::blocking;
use super::system::drain;
use crate::AppState;
use crate::body::{BodyReader, BodyWriter};
use crate::error::ApiError;
use crate::models::image::{
    DeleteItem, Descriptor, GraphDriver, HistoryItem, ImageInspect, ImageSummary, Metadata,
    PruneResponse, RootFs,
};
use crate::query::Query;
use crate::version::ApiVersion;

/// Versions that still had `VirtualSize`.
const VIRTUAL_SIZE_UNTIL: ApiVersion = ApiVersion(1, 44);
/// Versions that have `Descriptor` in inspect.
const DESCRIPTOR_SINCE: ApiVersion = ApiVersion(1, 48);
/// `Container` and `ContainerConfig` of image inspect are gone from 1.45.
const CONTAINER_FIELDS_UNTIL: ApiVersion = ApiVersion(1, 45);

fn version_of(ext: &axum::http::Extensions) -> ApiVersion {
    ext.get::<ApiVersion>()
        .copied()
        .unwrap_or(crate::version::MAX_API)
}

/// `GET /images/json`.
pub async fn list(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    req: axum::extract::Request,
) -> Result<Json<Vec<ImageSummary>>, ApiError> {
    let q = Query::parse(q.as_deref());
    let v = version_of(req.extensions());
    let lr = ListRequest {
        all: q.bool("all"),
        filters: q.filters()?,
    };
    let engine = st.engine.clone();
    let entries = blocking(move || engine.images().list(&lr).map_err(ApiError::from)).await?;
    Ok(Json(
        entries
            .iter()
            .map(|e| ImageSummary {
                id: e.id.clone(),
                parent_id: String::new(),
                repo_tags: e.repo_tags(),
                repo_digests: e.repo_digests(),
                created: e.created_unix(),
                size: e.size(),
                shared_size: -1,
                virtual_size: (v < VIRTUAL_SIZE_UNTIL).then(|| e.size()),
                labels: e.labels(),
                containers: -1,
            })
            .collect(),
    ))
}

/// `GET /images/{name}/json|history|get`.
pub async fn get_dispatch(
    State(st): State<AppState>,
    Path(rest): Path<String>,
    RawQuery(q): RawQuery,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let v = version_of(req.extensions());
    if let Some(name) = rest.strip_suffix("/json") {
        return inspect(st, name.to_owned(), v).await;
    }
    if let Some(name) = rest.strip_suffix("/history") {
        return history(st, name.to_owned()).await;
    }
    if let Some(name) = rest.strip_suffix("/get") {
        return save(st, vec![name.to_owned()]).await;
    }
    let _ = q;
    Err(ApiError::new(StatusCode::NOT_FOUND, "page not found"))
}

/// `POST /images/{name}/tag|push`.
pub async fn post_dispatch(
    State(st): State<AppState>,
    Path(rest): Path<String>,
    RawQuery(q): RawQuery,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    if let Some(name) = rest.strip_suffix("/tag") {
        let (name, repo, tag) = (name.to_owned(), q.str("repo"), q.str("tag"));
        let engine = st.engine.clone();
        blocking(move || {
            engine
                .images()
                .tag(&name, &repo, &tag)
                .map_err(ApiError::from)
        })
        .await?;
        return Ok(StatusCode::CREATED.into_response());
    }
    if let Some(name) = rest.strip_suffix("/push") {
        let tag = q.str("tag");
        let reference = if tag.is_empty() {
            name.to_owned()
        } else {
            format!("{name}:{tag}")
        };
        let creds = registry_auth(&headers)?;
        let engine = st.engine.clone();
        return super::progress::stream(
            move |progress, cancel| {
                let opts = berth_registry::client::PushOptions {
                    credentials: creds,
                    cancel,
                    ..Default::default()
                };
                engine
                    .images()
                    .push(engine.registry(), &reference, &opts, progress)
                    .map(drop)
                    .map_err(ApiError::from)
            },
            |()| Vec::new(),
        )
        .await;
    }
    Err(ApiError::new(StatusCode::NOT_FOUND, "page not found"))
}

async fn inspect(st: AppState, name: String, v: ApiVersion) -> Result<Response, ApiError> {
    let engine = st.engine.clone();
    let e = blocking(move || engine.images().lookup(&name).map_err(ApiError::from)).await?;
    Ok(Json(inspect_model(&e, v)).into_response())
}

/// `docker pull` as dockerd does it: download, then extract each layer
/// ("Extracting", then its "Pull complete"), then the closing Digest and
/// Status lines. The client's "Pull complete" and what follows it are held
/// back until the layers are unpacked.
fn pull_and_unpack(
    engine: &berth_engine::Engine,
    what: &str,
    opts: &berth_registry::client::PullOptions,
    progress: &(dyn Fn(&berth_registry::client::Progress) + Send + Sync),
) -> Result<(), ApiError> {
    use berth_image::store::LayerEvent;
    use berth_registry::client::{Progress, Status, short_id};
    let held: std::sync::Mutex<Vec<Progress>> = std::sync::Mutex::new(Vec::new());
    let hold = |p: &Progress| {
        let mut h = held.lock().unwrap_or_else(|e| e.into_inner());
        if h.is_empty() && p.status != Status::PullComplete {
            drop(h);
            progress(p);
        } else {
            h.push(p.clone());
        }
    };
    let report = engine
        .images()
        .pull(engine.registry(), what, opts, &hold)
        .map_err(ApiError::from)?;
    let mut completed = std::collections::HashSet::new();
    // Another platform's image is stored as pulled, not extracted: it
    // cannot run here (and its layers resolve only for that platform).
    let foreign = opts
        .platform
        .as_ref()
        .is_some_and(|p| p != engine.images().platform());
    if !foreign {
        engine
            .containers()
            .unpack_image(&report.image.target, &mut |digest, event| {
                let id = short_id(digest);
                match event {
                    LayerEvent::Extracting { done, total } => {
                        progress(&Progress::bytes(&id, Status::Extracting, done, total))
                    }
                    LayerEvent::Done => {
                        progress(&Progress::layer(&id, Status::PullComplete));
                        completed.insert(id);
                    }
                }
            })
            .map_err(ApiError::from)?;
    }
    let held = held.into_inner().unwrap_or_else(|e| e.into_inner());
    for p in held {
        if !(p.status == Status::PullComplete && completed.contains(&p.id)) {
            progress(&p);
        }
    }
    Ok(())
}

/// The ImageInspect of an image.
pub fn inspect_model(e: &ImageEntry, v: ApiVersion) -> ImageInspect {
    let history = e.history();
    let comment = history
        .last()
        .map(|h| h.comment.clone())
        .unwrap_or_default();
    let created = e
        .created()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default();
    let last_tag = if e.record_updated > 0 {
        chrono::DateTime::from_timestamp_nanos(e.record_updated)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    } else {
        "0001-01-01T00:00:00Z".to_owned()
    };
    let md = &e.resolved.manifest_desc;
    ImageInspect {
        id: e.id.clone(),
        repo_tags: e.repo_tags(),
        repo_digests: e.repo_digests(),
        parent: String::new(),
        container: (v < CONTAINER_FIELDS_UNTIL)
            .then(|| e.config_str("container").unwrap_or_default().to_owned()),
        container_config: (v < CONTAINER_FIELDS_UNTIL)
            .then(|| container_config(e.config_json.get("container_config"))),
        comment,
        created,
        docker_version: String::new(),
        author: e.config_str("author").unwrap_or_default().to_owned(),
        config: container_config(e.config_json.get("config")),
        architecture: e.config_str("architecture").unwrap_or_default().to_owned(),
        variant: e.config_str("variant").map(str::to_owned),
        os: e.config_str("os").unwrap_or("linux").to_owned(),
        size: e.size(),
        virtual_size: (v < VIRTUAL_SIZE_UNTIL).then(|| e.size()),
        graph_driver: GraphDriver {
            name: "overlayfs".into(),
            data: Default::default(),
        },
        root_fs: RootFs {
            kind: "layers".into(),
            layers: e.diff_ids(),
        },
        metadata: Metadata {
            last_tag_time: last_tag,
        },
        descriptor: (v >= DESCRIPTOR_SINCE).then(|| Descriptor {
            media_type: md.media_type.clone(),
            digest: md.digest.clone(),
            size: md.size,
        }),
    }
}

/// The image config's `config` with every field Docker's ContainerConfig
/// has, so clients that index into it find them (null where unset).
fn container_config(c: Option<&serde_json::Value>) -> serde_json::Value {
    let mut out = serde_json::json!({
        "Hostname": "", "Domainname": "", "User": "",
        "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
        "Tty": false, "OpenStdin": false, "StdinOnce": false,
        "Env": null, "Cmd": null, "Image": "", "Volumes": null,
        "WorkingDir": "", "Entrypoint": null, "OnBuild": null, "Labels": null,
    });
    if let (Some(serde_json::Value::Object(src)), Some(dst)) = (c, out.as_object_mut()) {
        for (k, v) in src {
            dst.insert(k.clone(), v.clone());
        }
    }
    out
}

async fn history(st: AppState, name: String) -> Result<Response, ApiError> {
    let engine = st.engine.clone();
    let e = blocking(move || engine.images().lookup(&name).map_err(ApiError::from)).await?;
    let unix = |t: &Option<String>| {
        t.as_deref()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.timestamp())
            .unwrap_or(0)
    };
    let mut items: Vec<HistoryItem> = e
        .history()
        .iter()
        .map(|h| HistoryItem {
            id: "<missing>".into(),
            created: unix(&h.created),
            created_by: h.created_by.clone(),
            tags: None,
            size: h.size,
            comment: h.comment.clone(),
        })
        .collect();
    if items.is_empty() {
        items.push(HistoryItem {
            id: String::new(),
            created: e.created_unix(),
            created_by: String::new(),
            tags: None,
            size: e.size(),
            comment: String::new(),
        });
    }
    items.reverse();
    if let Some(top) = items.first_mut() {
        top.id = e.id.clone();
        let tags = e.repo_tags();
        top.tags = (!tags.is_empty()).then_some(tags);
    }
    Ok(Json(items).into_response())
}

/// `DELETE /images/{name}`.
pub async fn delete(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<DeleteItem>>, ApiError> {
    let q = Query::parse(q.as_deref());
    let force = q.bool("force");
    let engine = st.engine.clone();
    let items =
        blocking(move || engine.images().delete(&name, force).map_err(ApiError::from)).await?;
    Ok(Json(items.into_iter().map(delete_item).collect()))
}

fn delete_item(d: EngineDelete) -> DeleteItem {
    match d {
        EngineDelete::Untagged(s) => DeleteItem::Untagged(s),
        EngineDelete::Deleted(s) => DeleteItem::Deleted(s),
    }
}

/// `POST /images/prune`.
pub async fn prune(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<PruneResponse>, ApiError> {
    let q = Query::parse(q.as_deref());
    let req = PruneRequest {
        filters: q.filters()?,
    };
    let engine = st.engine.clone();
    let r = blocking(move || engine.images().prune(&req).map_err(ApiError::from)).await?;
    let deleted: Vec<DeleteItem> = r.deleted.into_iter().map(delete_item).collect();
    Ok(Json(PruneResponse {
        images_deleted: (!deleted.is_empty()).then_some(deleted),
        space_reclaimed: r.space_reclaimed,
    }))
}

/// A JSON-lines progress answer (`application/json`, one object a line).
fn json_lines(lines: &[serde_json::Value]) -> Response {
    let mut body = Vec::new();
    for l in lines {
        body.extend_from_slice(l.to_string().as_bytes());
        body.push(b'\n');
    }
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `POST /images/load`: the archive streams in; the answer lists what was
/// loaded as dockerd words it (the same with `quiet`, which only silences
/// progress bars berth does not draw).
pub async fn load(State(st): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let reader = BodyReader::spawn(body);
    let engine = st.engine.clone();
    let out = match blocking(move || engine.images().load(reader).map_err(ApiError::from)).await {
        Ok(out) => out,
        // As dockerd: the answer has begun, so a load that fails is a
        // 200 whose stream carries the error (clients raise on it).
        Err(e) => {
            let m = e.message;
            return Ok(json_lines(&[
                serde_json::json!({ "errorDetail": { "message": m }, "error": m }),
            ]));
        }
    };
    let lines: Vec<serde_json::Value> = out
        .messages
        .iter()
        .map(|m| serde_json::json!({ "stream": format!("{m}\n") }))
        .collect();
    Ok(json_lines(&lines))
}

/// `GET /images/get?names=…`.
pub async fn save_many(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    save(st, q.all("names")).await
}

/// Checks the names (404 before any byte), then streams the archive.
async fn save(st: AppState, names: Vec<String>) -> Result<Response, ApiError> {
    let engine = st.engine.clone();
    let records =
        blocking(move || engine.images().save_records(&names).map_err(ApiError::from)).await?;
    let (writer, body) = BodyWriter::new();
    let engine = st.engine.clone();
    tokio::task::spawn_blocking(move || {
        let mut buffered = std::io::BufWriter::with_capacity(1 << 16, writer);
        let result = engine.images().save(&records, &mut buffered);
        match (result, buffered.into_inner()) {
            (Ok(()), Ok(_)) => {}
            (Err(e), Ok(w)) => {
                tracing::warn!(error = %e, "save failed while streaming");
                w.fail(std::io::Error::other(e.to_string()));
            }
            (_, Err(e)) => tracing::warn!(error = %e.error(), "save: client went away"),
        }
    });
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    Ok(r)
}

/// `POST /images/create`: `fromSrc=-` imports the body; `fromImage`
/// (pull) and `fromSrc=<url>` are not there yet.
pub async fn create(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    if let Some(image) = q.get("fromImage").filter(|s| !s.is_empty()) {
        drain(body).await;
        let tag = q.str("tag");
        let what = if tag.is_empty() {
            image.to_owned()
        } else if tag.contains(':') {
            format!("{image}@{tag}")
        } else {
            format!("{image}:{tag}")
        };
        let platform = match q.get("platform").filter(|p| !p.is_empty()) {
            Some(p) => Some(berth_image::store::Platform::parse(p).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid platform {p:?}: expected os/arch[/variant]"
                ))
            })?),
            None => None,
        };
        let creds = registry_auth(&headers)?;
        let engine = st.engine.clone();
        return super::progress::stream(
            move |progress, cancel| {
                let opts = berth_registry::client::PullOptions {
                    platform,
                    credentials: creds,
                    cancel,
                };
                pull_and_unpack(&engine, &what, &opts, progress)
            },
            |()| Vec::new(),
        )
        .await;
    }
    match q.get("fromSrc") {
        Some("-") => {}
        Some(src) if !src.is_empty() => {
            drain(body).await;
            return Err(ApiError::not_implemented(format!(
                "import from a URL ({src}) is not supported by berthd: pipe the tarball instead (`docker import - < file`)"
            )));
        }
        _ => {
            drain(body).await;
            return Err(ApiError::bad_request(
                "one of fromImage or fromSrc is required",
            ));
        }
    }
    let req = ImportRequest {
        repo: q.str("repo"),
        tag: q.str("tag"),
        message: q.get("message").map(str::to_owned),
        changes: q.all("changes"),
        platform: q.get("platform").map(str::to_owned),
    };
    let reader = BodyReader::spawn(body);
    let engine = st.engine.clone();
    let id = blocking(move || engine.images().import(&req, reader).map_err(ApiError::from)).await?;
    Ok(json_lines(&[serde_json::json!({ "status": id })]))
}

/// The credentials of an `X-Registry-Auth` header (anonymous without one).
fn registry_auth(
    headers: &axum::http::HeaderMap,
) -> Result<berth_registry::client::Credentials, ApiError> {
    match headers.get("X-Registry-Auth").and_then(|v| v.to_str().ok()) {
        None => Ok(berth_registry::client::Credentials::Anonymous),
        Some(v) => berth_registry::client::Credentials::from_x_registry_auth(v)
            .map(|(c, _)| c)
            .map_err(|e| ApiError::bad_request(format!("invalid X-Registry-Auth header: {e}"))),
    }
}

/// `GET /images/search`: berth has no registry index to search.
pub async fn search() -> ApiError {
    ApiError::not_implemented(
        "search is not supported by berthd: it has no registry index to search",
    )
}
