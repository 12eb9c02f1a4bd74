//! `/_ping`, `/version`, `/info`, `/build`, and the fallback.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_engine::images::ListRequest;
use berth_engine::system::goarch;
use futures_util::StreamExt;

use super::blocking;
use crate::AppState;
use crate::error::ApiError;
use crate::models::system::{
    Commit, Component, Info, PlatformName, Plugins, Runtime, Swarm, Version,
};
use crate::version::{ENGINE_VERSION, MAX_API, MIN_API};

fn ping_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert("Swarm", HeaderValue::from_static("inactive"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
}

/// `GET /_ping`: `OK`.
pub async fn ping() -> Response {
    let mut r = "OK".into_response();
    ping_headers(&mut r);
    r
}

/// `HEAD /_ping`: the same headers, no body.
pub async fn ping_head() -> Response {
    let mut r = Response::new(Body::empty());
    ping_headers(&mut r);
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// `GET /version`.
pub async fn version(State(st): State<AppState>) -> Json<Version> {
    let build_time = option_env!("BERTH_BUILD_TIME").map(str::to_owned);
    let git_commit = option_env!("BERTH_GIT_COMMIT")
        .unwrap_or_default()
        .to_owned();
    let mut details = BTreeMap::from([
        ("ApiVersion".to_owned(), MAX_API.to_string()),
        ("MinAPIVersion".to_owned(), MIN_API.to_string()),
        ("GitCommit".to_owned(), git_commit.clone()),
        ("GoVersion".to_owned(), "rust".to_owned()),
        ("Os".to_owned(), "linux".to_owned()),
        ("Arch".to_owned(), goarch()),
        ("KernelVersion".to_owned(), st.host.kernel_version.clone()),
        ("Experimental".to_owned(), "false".to_owned()),
    ]);
    if let Some(b) = &build_time {
        details.insert("BuildTime".into(), b.clone());
    }
    Json(Version {
        platform: PlatformName {
            name: format!("berth {ENGINE_VERSION}"),
        },
        components: vec![Component {
            name: "Engine".into(),
            version: ENGINE_VERSION.into(),
            details,
        }],
        version: ENGINE_VERSION.into(),
        api_version: MAX_API.to_string(),
        min_api_version: MIN_API.to_string(),
        git_commit,
        go_version: "rust".into(),
        os: "linux".into(),
        arch: goarch(),
        kernel_version: st.host.kernel_version.clone(),
        build_time,
    })
}

/// Open file descriptors of this process.
fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

/// `GET /info`.
pub async fn info(State(st): State<AppState>) -> Result<Json<Info>, ApiError> {
    let engine = st.engine.clone();
    let (images, counts) = blocking(move || {
        let images = engine
            .images()
            .list(&ListRequest::default())
            .map_err(ApiError::from)?
            .len() as u64;
        let mut counts = [0u64; 4];
        for r in engine.containers().list().map_err(ApiError::from)? {
            counts[0] += 1;
            match r.state.status {
                berth_engine::containers::Status::Running => counts[1] += 1,
                berth_engine::containers::Status::Paused => counts[2] += 1,
                _ => counts[3] += 1,
            }
        }
        Ok((images, counts))
    })
    .await?;
    let h = &st.host;
    let root = st.engine.config().data_root.display().to_string();
    let cgroup_v2 = h.cgroup_version == "2";
    Ok(Json(Info {
        id: st.engine.id().to_owned(),
        containers: counts[0],
        containers_running: counts[1],
        containers_paused: counts[2],
        containers_stopped: counts[3],
        images,
        driver: "overlayfs".into(),
        driver_status: vec![[
            "driver-type".to_owned(),
            "io.containerd.snapshotter.v1".to_owned(),
        ]],
        plugins: Plugins {
            volume: vec!["local".into()],
            network: vec!["bridge".into(), "host".into(), "none".into()],
            authorization: None,
            log: vec!["json-file".into()],
        },
        memory_limit: true,
        swap_limit: cgroup_v2,
        cpu_cfs_period: true,
        cpu_cfs_quota: true,
        cpu_shares: true,
        cpu_set: true,
        pids_limit: true,
        oom_kill_disable: !cgroup_v2,
        ipv4_forwarding: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .map(|s| s.trim() == "1")
            .unwrap_or(false),
        debug: st.debug,
        n_fd: open_fds(),
        n_goroutines: 0,
        system_time: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, false),
        logging_driver: "json-file".into(),
        cgroup_driver: "cgroupfs".into(),
        cgroup_version: h.cgroup_version.clone(),
        n_events_listener: 0,
        kernel_version: h.kernel_version.clone(),
        operating_system: h.operating_system.clone(),
        os_version: h.os_version.clone(),
        os_type: "linux".into(),
        architecture: h.architecture.clone(),
        index_server_address: "https://index.docker.io/v1/".into(),
        registry_config: st
            .registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone(),
        ncpu: h.ncpu as u64,
        mem_total: h.mem_total,
        docker_root_dir: root,
        http_proxy: String::new(),
        https_proxy: String::new(),
        no_proxy: String::new(),
        name: h.hostname.clone(),
        labels: Vec::new(),
        experimental_build: false,
        server_version: ENGINE_VERSION.into(),
        runtimes: BTreeMap::from([(
            "berth".to_owned(),
            Runtime {
                path: "berth-runtime".into(),
            },
        )]),
        default_runtime: "berth".into(),
        swarm: Swarm {
            node_id: String::new(),
            node_addr: String::new(),
            local_node_state: "inactive".into(),
            control_available: false,
            error: String::new(),
            remote_managers: None,
        },
        live_restore_enabled: false,
        isolation: String::new(),
        init_binary: String::new(),
        containerd_commit: Commit { id: String::new() },
        runc_commit: Commit { id: String::new() },
        init_commit: Commit { id: String::new() },
        security_options: vec!["name=seccomp,profile=builtin".into()],
        cdi_spec_dirs: Vec::new(),
        warnings: Vec::new(),
    }))
}

/// `GET /system/df`.
pub async fn df(State(st): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let engine = st.engine.clone();
    blocking(move || {
        let containers = engine.containers().list().map_err(ApiError::from)?;
        let images = engine
            .images()
            .list(&ListRequest { all: true, ..Default::default() })
            .map_err(ApiError::from)?;
        let mut layers = 0u64;
        let imgs: Vec<serde_json::Value> = images
            .iter()
            .map(|e| {
                layers += e.size();
                let users = containers.iter().filter(|c| c.image_id == e.id).count();
                serde_json::json!({
                    "Id": e.id, "ParentId": "", "RepoTags": e.repo_tags(), "RepoDigests": e.repo_digests(),
                    "Created": e.created_unix(), "Size": e.size(), "SharedSize": -1,
                    "Labels": e.labels(), "Containers": users,
                })
            })
            .collect();
        let snaps = engine.containers().snapshotter();
        let cs: Vec<serde_json::Value> = containers
            .iter()
            .map(|r| {
                let rw = snaps.usage(&r.id).map(|u| u.bytes).unwrap_or(0);
                serde_json::json!({
                    "Id": r.id, "Names": [r.name], "Image": r.config.image, "ImageID": r.image_id,
                    "Command": std::iter::once(r.path.clone()).chain(r.args.iter().cloned()).collect::<Vec<_>>().join(" "),
                    "Created": chrono::DateTime::parse_from_rfc3339(&r.created).map(|t| t.timestamp()).unwrap_or(0),
                    "State": r.state.status.as_str(),
                    "Status": super::containers::status_text(r),
                    "SizeRw": rw, "SizeRootFs": rw,
                    "Labels": r.config.labels, "Mounts": super::volumes::mounts_json(r),
                    "HostConfig": {"NetworkMode": "default"}, "NetworkSettings": {"Networks": {}},
                })
            })
            .collect();
        Ok(Json(serde_json::json!({
            "LayersSize": layers,
            "Images": imgs,
            "Containers": cs,
            "Volumes": super::volumes::df_volumes(&engine)?,
            "BuildCache": [],
        })))
    })
    .await
}

/// Reads a request body to its end (so the client, still sending, gets to
/// read the answer) and drops it.
pub(crate) async fn drain(body: Body) {
    let mut s = body.into_data_stream();
    while let Some(Ok(_)) = s.next().await {}
}

/// `POST /build`: 501 until image build exists.
pub async fn build(body: Body) -> ApiError {
    drain(body).await;
    ApiError::not_implemented(
        "build is not implemented yet in berthd: build the image elsewhere and `docker load` it",
    )
}

/// Anything unrouted: moby's text. The body is read first, so that a
/// client still sending it (`docker run`'s container create) gets the 404
/// rather than a broken pipe.
/// Swarm-mode endpoints: berthd is never part of a swarm (multi-host is
/// Kubernetes' job through CRI), so it answers as a dockerd that is not in
/// one: 503 with dockerd's words (clients such as docker-py treat a forced
/// leave that way as success).
pub async fn no_swarm(body: Body) -> ApiError {
    drain(body).await;
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "This node is not a swarm manager. berthd does not run swarm mode (use Kubernetes through CRI for many hosts); \"docker swarm init\" is not supported.",
    )
}

/// `POST /swarm/leave`: not part of a swarm.
pub async fn swarm_leave(body: Body) -> ApiError {
    drain(body).await;
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "This node is not part of a swarm",
    )
}

pub async fn not_found(body: Body) -> ApiError {
    drain(body).await;
    ApiError::new(StatusCode::NOT_FOUND, "page not found")
}

#[derive(Debug, Default, serde::Deserialize)]
struct AuthBody {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    serveraddress: String,
    #[serde(default)]
    identitytoken: String,
}

/// `POST /auth`: checks credentials against a registry (`docker login`).
pub async fn auth(
    State(st): State<AppState>,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    use berth_registry::client::Credentials;
    let b: AuthBody = super::containers::json_body(body, false).await?;
    let creds = if !b.identitytoken.is_empty() {
        Credentials::IdentityToken(b.identitytoken.clone())
    } else {
        Credentials::Basic {
            username: b.username.clone(),
            password: b.password.clone(),
        }
    };
    let server = if b.serveraddress.is_empty() {
        "docker.io".to_owned()
    } else {
        b.serveraddress.clone()
    };
    let engine = st.engine.clone();
    blocking(move || {
        let host = server
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .trim_end_matches("/v1")
            .to_owned();
        engine
            .images()
            .check_registry_allowed(&format!("{host}/x"))
            .map_err(ApiError::from)?;
        engine.registry().login(&server, &creds).map_err(|e| {
            use berth_registry::client::ClientError as C;
            let status = match &e {
                C::Unauthorized { .. } | C::Token { .. } | C::Denied { .. } => {
                    StatusCode::UNAUTHORIZED
                }
                C::Credentials(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            ApiError::new(status, format!("login to {server} failed: {e}"))
        })
    })
    .await?;
    Ok(Json(
        serde_json::json!({ "Status": "Login Succeeded", "IdentityToken": "" }),
    ))
}
