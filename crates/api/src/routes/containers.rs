//! `/containers/…`: create, list, inspect, start, stop, restart, kill,
//! pause, unpause, wait, attach, resize, logs, top, stats, changes, export,
//! rename, remove, prune; and `/commit`.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_engine::containers::{
    AttachStream, CreateBody, LogEntry, LogOptions, Record, Status, StreamKind, WaitCondition,
};
use bytes::Bytes;
use serde_json::{Value, json};

use super::blocking;
use super::stream;
use crate::AppState;
use crate::error::ApiError;
use crate::query::Query;
use crate::version::ApiVersion;

/// The largest JSON body accepted.
pub(crate) const MAX_JSON: usize = 4 << 20;

/// Reads a JSON body of at most [`MAX_JSON`] bytes (413 beyond).
pub(crate) async fn json_body<T: serde::de::DeserializeOwned + Default>(
    body: Body,
    empty_ok: bool,
) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_JSON).await.map_err(|e| {
        if format!("{e:?}").contains("LengthLimit") {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than {MAX_JSON} bytes"),
            )
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        if empty_ok {
            return Ok(T::default());
        }
        return Err(ApiError::bad_request(
            "the request body is empty: a JSON object is needed",
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON in the request body: {e}")))
}

fn version_of(req: &Request) -> ApiVersion {
    req.extensions()
        .get::<ApiVersion>()
        .copied()
        .unwrap_or(crate::version::MAX_API)
}

/// `POST /containers/create`.
pub async fn create(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    let body: CreateBody = json_body(body, false).await?;
    let name = q.get("name").map(str::to_owned);
    let engine = st.engine.clone();
    let (id, warnings) = blocking(move || {
        engine
            .containers()
            .create(name.as_deref(), body)
            .map_err(ApiError::from)
    })
    .await?;
    st.engine.containers().prepare_soon(&id);
    Ok((
        StatusCode::CREATED,
        Json(json!({ "Id": id, "Warnings": warnings })),
    )
        .into_response())
}

/// "Up 5 minutes", "Exited (0) 2 seconds ago", as `docker ps` shows.
pub(crate) fn status_text(r: &Record) -> String {
    let since = |t: &Option<String>| {
        t.as_deref()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| human_duration(chrono::Utc::now().signed_duration_since(t)))
            .unwrap_or_default()
    };
    match r.state.status {
        Status::Running | Status::Paused => {
            let mut s = format!("Up {}", since(&r.state.started_at));
            if r.state.status == Status::Paused {
                s.push_str(" (Paused)");
            } else if let Some(h) = &r.state.health {
                match h.status.as_str() {
                    "starting" => s.push_str(" (health: starting)"),
                    "healthy" => s.push_str(" (healthy)"),
                    "unhealthy" => s.push_str(" (unhealthy)"),
                    _ => {}
                }
            }
            s
        }
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            r.state.exit_code,
            since(&r.state.finished_at)
        ),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            r.state.exit_code,
            since(&r.state.finished_at)
        ),
        Status::Created => "Created".into(),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
    }
}

/// Go's `units.HumanDuration`.
fn human_duration(d: chrono::TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s / 60 == 1 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if (s as f64 / 3600.0).round() as i64 == 1 => "About an hour".into(),
        s if s < 48 * 3600 => format!("{} hours", (s as f64 / 3600.0).round() as i64),
        s if s < 7 * 24 * 3600 * 2 => format!("{} days", s / 86400),
        s if s < 30 * 24 * 3600 * 3 => format!("{} weeks", s / (7 * 86400)),
        s if s < 365 * 24 * 3600 * 2 => format!("{} months", s / (30 * 86400)),
        s => format!("{} years", s / (365 * 86400)),
    }
}

fn command_text(r: &Record) -> String {
    let mut parts = vec![r.path.clone()];
    parts.extend(r.args.iter().cloned());
    parts.join(" ")
}

fn unix(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|t| t.timestamp())
        .unwrap_or_default()
}

fn network_mode(r: &Record) -> String {
    match r.host_config.network_mode.as_str() {
        "" | "default" => "bridge".into(),
        m => m.to_owned(),
    }
}

fn mounts_json(r: &Record) -> Vec<Value> {
    super::volumes::mounts_json(r)
}

/// `Networks` of inspect and of the list.
fn networks_json(r: &Record) -> Value {
    let live = r.state.status.is_live();
    let mut m = serde_json::Map::new();
    for (name, ep) in &r.networks {
        m.insert(
            name.clone(),
            berth_engine::networks::endpoint_json(&r.id, r.short_name(), ep, live),
        );
    }
    Value::Object(m)
}

/// `NetworkSettings.Ports` of inspect: exposed ports (null) and published
/// ones, while running.
fn ports_map(r: &Record) -> Value {
    let mut m = serde_json::Map::new();
    if !r.state.status.is_live() {
        return Value::Object(m);
    }
    if let Some(e) = &r.config.exposed_ports {
        for k in e.keys() {
            let k = if k.contains('/') {
                k.clone()
            } else {
                format!("{k}/tcp")
            };
            m.insert(k, Value::Null);
        }
    }
    for p in &r.ports {
        let k = format!("{}/{}", p.container_port, p.protocol);
        let entry = m.entry(k).or_insert_with(|| json!([]));
        if !entry.is_array() {
            *entry = json!([]);
        }
        if let Some(a) = entry.as_array_mut() {
            a.push(json!({"HostIp": p.host_ip, "HostPort": p.host_port.to_string()}));
        }
    }
    Value::Object(m)
}

/// `Ports` of the list.
fn ports_list(r: &Record) -> Vec<Value> {
    let mut v = Vec::new();
    if !r.state.status.is_live() {
        return v;
    }
    for p in &r.ports {
        v.push(json!({"IP": p.host_ip, "PrivatePort": p.container_port, "PublicPort": p.host_port, "Type": p.protocol}));
    }
    if let Some(e) = &r.config.exposed_ports {
        for k in e.keys() {
            let (port, proto) = k.split_once('/').unwrap_or((k.as_str(), "tcp"));
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            if !r
                .ports
                .iter()
                .any(|p| p.container_port == port && p.protocol == proto)
            {
                v.push(json!({"PrivatePort": port, "Type": proto}));
            }
        }
    }
    v
}

fn summary(r: &Record, all: &[Record]) -> Value {
    // A container is also known by the links to it: `/parent/alias`.
    let mut names = vec![r.name.clone()];
    for p in all {
        for l in p.links.iter().filter(|l| l.id == r.id) {
            names.push(format!("{}/{}", p.name, l.alias));
        }
    }
    json!({
        "Id": r.id,
        "Names": names,
        "Image": r.config.image,
        "ImageID": r.image_id,
        "Command": command_text(r),
        "Created": unix(&r.created),
        "Ports": ports_list(r),
        "Labels": r.config.labels,
        "State": r.state.status.as_str(),
        "Status": status_text(r),
        "HostConfig": { "NetworkMode": network_mode(r) },
        "NetworkSettings": { "Networks": networks_json(r) },
        "Mounts": mounts_json(r),
    })
}

/// Does `r` pass the `docker ps` filters?
fn matches(
    r: &Record,
    f: &BTreeMap<String, Vec<String>>,
    all: &[Record],
) -> Result<bool, ApiError> {
    let created_of = |x: &str| {
        all.iter()
            .find(|o| o.id.starts_with(x) || o.short_name() == x.trim_start_matches('/'))
            .map(|o| o.created.clone())
    };
    for (k, vals) in f {
        let ok = match k.as_str() {
            "id" => vals.iter().any(|v| r.id.starts_with(v.as_str())),
            "name" => vals
                .iter()
                .any(|v| r.short_name().contains(v.trim_start_matches('/'))),
            "status" => {
                for v in vals {
                    if !matches!(
                        v.as_str(),
                        "created"
                            | "restarting"
                            | "running"
                            | "removing"
                            | "paused"
                            | "exited"
                            | "dead"
                    ) {
                        return Err(ApiError::bad_request(format!(
                            "invalid filter 'status={v}'"
                        )));
                    }
                }
                vals.iter().any(|v| v == r.state.status.as_str())
            }
            "exited" => {
                r.state.status == Status::Exited
                    && vals
                        .iter()
                        .any(|v| v.parse::<i32>().ok() == Some(r.state.exit_code))
            }
            "label" => vals.iter().all(|v| match v.split_once('=') {
                Some((lk, lv)) => r.config.labels.get(lk).is_some_and(|x| x == lv),
                None => r.config.labels.contains_key(v),
            }),
            "ancestor" => vals.iter().any(|v| {
                r.config.image == *v
                    || r.image_id == *v
                    || r.image_id
                        .trim_start_matches("sha256:")
                        .starts_with(v.trim_start_matches("sha256:"))
                    || r.config.image == format!("{v}:latest")
            }),
            "before" => vals
                .iter()
                .any(|v| created_of(v).is_some_and(|c| r.created < c)),
            "since" => vals
                .iter()
                .any(|v| created_of(v).is_some_and(|c| r.created > c)),
            "health" => {
                let h = r
                    .state
                    .health
                    .as_ref()
                    .map(|h| h.status.as_str())
                    .unwrap_or("none");
                vals.iter().any(|v| v == h)
            }
            "is-task" => vals.iter().any(|v| v == "false"),
            "network" => vals.iter().any(|v| {
                *v == network_mode(r)
                    || r.networks
                        .iter()
                        .any(|(name, e)| name == v || e.network_id.starts_with(v.as_str()))
            }),
            "volume" => vals.iter().any(|v| {
                r.mount_points
                    .iter()
                    .any(|m| m.name == *v || m.destination == *v || m.source == *v)
            }),
            "publish" | "expose" => false,
            other => {
                return Err(ApiError::bad_request(format!("invalid filter '{other}'")));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `GET /containers/json`.
pub async fn list(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<Value>>, ApiError> {
    let q = Query::parse(q.as_deref());
    let filters = q.filters()?;
    let all_flag = q.bool("all");
    let limit: i64 = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(-1);
    let engine = st.engine.clone();
    let records = blocking(move || engine.containers().list().map_err(ApiError::from)).await?;
    let mut out = Vec::new();
    for r in &records {
        let show = all_flag
            || limit > 0
            || filters.contains_key("status")
            || r.state.status.is_live()
            || r.state.status == Status::Restarting;
        if !show || !matches(r, &filters, &records)? {
            continue;
        }
        out.push(summary(r, &records));
        if limit > 0 && out.len() as i64 >= limit {
            break;
        }
    }
    Ok(Json(out))
}

fn go_zero() -> String {
    "0001-01-01T00:00:00Z".into()
}

/// The inspect document of a record.
pub(crate) fn inspect_json(r: &Record, rootfs: &std::path::Path) -> Value {
    let s = &r.state;
    let mut host_config = serde_json::to_value(&r.host_config).unwrap_or_else(|_| json!({}));
    if let Some(h) = host_config.as_object_mut() {
        if r.host_config.log_config.kind.is_empty() {
            h.insert(
                "LogConfig".into(),
                json!({"Type": "json-file", "Config": r.host_config.log_config.config}),
            );
        }
        if r.host_config.network_mode.is_empty() {
            h.insert("NetworkMode".into(), json!("bridge"));
        }
        if r.host_config.restart_policy.name.is_empty() {
            h.insert(
                "RestartPolicy".into(),
                json!({"Name": "no", "MaximumRetryCount": 0}),
            );
        }
        // The one runtime, under the name dockerd gives its default.
        if h.get("Runtime")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            h.insert("Runtime".into(), json!("runc"));
        }
    }
    let mut config = serde_json::to_value(&r.config).unwrap_or_else(|_| json!({}));
    if let Some(c) = config.as_object_mut() {
        c.entry("Cmd").or_insert(Value::Null);
        c.entry("Entrypoint").or_insert(Value::Null);
    }
    json!({
        "Id": r.id,
        "Created": r.created,
        "Path": r.path,
        "Args": r.args,
        "State": {
            "Status": s.status.as_str(),
            "Running": s.status.is_live(),
            "Paused": s.status == Status::Paused,
            "Restarting": s.status == Status::Restarting,
            "OOMKilled": s.oom_killed,
            "Dead": s.status == Status::Dead,
            "Pid": s.pid,
            "ExitCode": s.exit_code,
            "Error": s.error,
            "StartedAt": s.started_at.clone().unwrap_or_else(go_zero),
            "FinishedAt": s.finished_at.clone().unwrap_or_else(go_zero),
            "Health": s.health.as_ref().map(|h| json!({
                "Status": h.status,
                "FailingStreak": h.failing_streak,
                "Log": h.log.iter().map(|p| json!({
                    "Start": p.start, "End": p.end, "ExitCode": p.exit_code, "Output": p.output,
                })).collect::<Vec<_>>(),
            })),
        },
        "Image": r.image_id,
        "ResolvConfPath": r.resolv_conf_path,
        "HostnamePath": r.hostname_path,
        "HostsPath": r.hosts_path,
        "LogPath": r.log_path,
        "Name": r.name,
        "RestartCount": r.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": Value::Null,
        "HostConfig": host_config,
        "GraphDriver": { "Name": "overlay2", "Data": { "MergedDir": rootfs.display().to_string() } },
        "Mounts": mounts_json(r),
        "Config": config,
        "NetworkSettings": network_settings(r),
    })
}

fn network_settings(r: &Record) -> Value {
    let live = r.state.status.is_live();
    let bridge = r.networks.get("bridge").filter(|_| live);
    let s = |ip: Option<std::net::IpAddr>| ip.map(|i| i.to_string()).unwrap_or_default();
    json!({
        "Bridge": "",
        "SandboxID": if r.sandbox_key.is_empty() { String::new() } else { r.id.clone() },
        "SandboxKey": r.sandbox_key,
        "Ports": ports_map(r),
        "HairpinMode": false,
        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
        "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null,
        "EndpointID": bridge.map(|e| e.endpoint_id.clone()).unwrap_or_default(),
        "Gateway": s(bridge.and_then(|e| e.gateway)),
        "GlobalIPv6Address": s(bridge.and_then(|e| e.ipv6)),
        "GlobalIPv6PrefixLen": bridge.map_or(0, |e| e.ipv6_prefix_len),
        "IPAddress": s(bridge.and_then(|e| e.ip)),
        "IPPrefixLen": bridge.map_or(0, |e| e.prefix_len),
        "IPv6Gateway": s(bridge.and_then(|e| e.ipv6_gateway)),
        "MacAddress": bridge.map(|e| e.mac.clone()).unwrap_or_default(),
        "Networks": networks_json(r),
    })
}

/// `GET /containers/{id}/json`.
pub async fn inspect(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let engine = st.engine.clone();
    blocking(move || {
        let c = engine.containers();
        let r = c.get(&id)?;
        let mut v = inspect_json(&r, &c.rootfs_path(&r.id));
        // Links as Docker shows them (`/child:/parent/alias`), or null.
        let links = c.link_names(&r);
        v["HostConfig"]["Links"] = if links.is_empty() {
            Value::Null
        } else {
            json!(links)
        };
        Ok(Json(v))
    })
    .await
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /containers/{id}/start`.
pub async fn start(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    super::system::drain(body).await;
    st.engine.containers().start(&id).await?;
    Ok(no_content())
}

fn timeout_of(q: &Query) -> Result<Option<i64>, ApiError> {
    match q.get("t").filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => t.parse::<i64>().map(Some).map_err(|_| {
            ApiError::bad_request(format!("invalid value for t: {t:?}: expected seconds"))
        }),
    }
}

/// `POST /containers/{id}/stop`.
pub async fn stop(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    let t = timeout_of(&q)?;
    st.engine.containers().stop(&id, t, q.get("signal")).await?;
    Ok(no_content())
}

/// `POST /containers/{id}/restart`.
pub async fn restart(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    let t = timeout_of(&q)?;
    st.engine
        .containers()
        .restart(&id, t, q.get("signal"))
        .await?;
    Ok(no_content())
}

/// `POST /containers/{id}/kill`.
pub async fn kill(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    st.engine.containers().kill(&id, &q.str("signal")).await?;
    Ok(no_content())
}

/// `POST /containers/{id}/pause`.
pub async fn pause(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    st.engine.containers().pause(&id, true).await?;
    Ok(no_content())
}

/// `POST /containers/{id}/unpause`.
pub async fn unpause(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    st.engine.containers().pause(&id, false).await?;
    Ok(no_content())
}

/// `POST /containers/{id}/rename`.
pub async fn rename(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    let name = q.str("name");
    let engine = st.engine.clone();
    blocking(move || {
        engine
            .containers()
            .rename(&id, &name)
            .map_err(ApiError::from)
    })
    .await?;
    Ok(no_content())
}

/// `DELETE /containers/{id}`.
pub async fn remove(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    if q.bool("link") {
        let engine = st.engine.clone();
        blocking(move || engine.containers().remove_link(&id).map_err(ApiError::from)).await?;
        return Ok(no_content());
    }
    st.engine
        .containers()
        .remove(&id, q.bool("force"), q.bool("v"))
        .await?;
    Ok(no_content())
}

/// `DELETE /containers/{parent}/{alias}?link=1`: a link's name has a slash.
pub async fn remove_link(
    State(st): State<AppState>,
    Path((parent, alias)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    if !q.bool("link") {
        return Err(ApiError::bad_request(format!(
            "No such container: {parent}/{alias}"
        )));
    }
    let engine = st.engine.clone();
    let name = format!("{parent}/{alias}");
    blocking(move || {
        engine
            .containers()
            .remove_link(&name)
            .map_err(ApiError::from)
    })
    .await?;
    Ok(no_content())
}

/// `POST /containers/prune`.
pub async fn prune(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(q.as_deref());
    let f = crate::filters::PruneFilters::parse(&q.filters()?)?;
    let (removed, reclaimed) = st
        .engine
        .containers()
        .prune(move |r| f.keeps(unix(&r.created) as f64, &r.config.labels))
        .await?;
    Ok(Json(
        json!({ "ContainersDeleted": removed, "SpaceReclaimed": reclaimed }),
    ))
}

/// Unix seconds from `1700000000`, `1700000000.5`, RFC 3339, or a Go
/// duration back from now (`10m`).
pub(crate) fn parse_time(s: &str) -> Result<f64, ApiError> {
    if let Ok(f) = s.parse::<f64>() {
        return Ok(f);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9);
    }
    if let Some(d) = go_duration(s) {
        return Ok(chrono::Utc::now().timestamp() as f64 - d);
    }
    Err(ApiError::bad_request(format!(
        "invalid time {s:?}: expected Unix seconds, RFC 3339 or a duration like 10m"
    )))
}

fn go_duration(s: &str) -> Option<f64> {
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * mult)
}

/// `POST /containers/{id}/wait`: headers at once, the body at the exit.
pub async fn wait(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    let cond = WaitCondition::parse(&q.str("condition"))?;
    let waiter = st.engine.containers().waiter(&id, cond)?;
    let body = futures_util::stream::once(async move {
        let (code, err) = waiter.wait().await;
        let v = json!({
            "StatusCode": code,
            "Error": err.map(|m| json!({ "Message": m })),
        });
        let mut b = serde_json::to_vec(&v).unwrap_or_default();
        b.push(b'\n');
        Ok::<_, std::io::Error>(Bytes::from(b))
    });
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// `POST /containers/{id}/resize`.
pub async fn resize(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    let (h, w) = size_of(&q)?;
    st.engine.containers().resize(&id, h, w).await?;
    Ok(StatusCode::OK.into_response())
}

pub(crate) fn size_of(q: &Query) -> Result<(u16, u16), ApiError> {
    let num = |k: &str| -> Result<u16, ApiError> {
        q.get(k)
            .unwrap_or("0")
            .parse::<u16>()
            .map_err(|_| ApiError::bad_request(format!("invalid value for {k}: {:?}", q.str(k))))
    };
    Ok((num("h")?, num("w")?))
}

/// `POST /containers/{id}/attach`.
pub async fn attach(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    let v = version_of(&req);
    let (want_stream, want_logs) = (q.bool("stream"), q.bool("logs"));
    if !want_stream && !want_logs {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let (stdin, stdout, stderr) = (q.bool("stdin"), q.bool("stdout"), q.bool("stderr"));
    let svc = st.engine.containers().clone();
    let past = past_logs(&svc, &id, want_logs, stdout, stderr)?;
    let (source, tty, cid) = if want_stream {
        svc.attach(&id, stdin, stdout, stderr).await?
    } else {
        let r = svc.get(&id)?;
        (AttachStream::Ended, r.config.tty, String::new())
    };
    let detach_keys = stream::detach_keys(q.get("detachKeys"))?;
    stream::hijack(req, tty, v, move |mut client| async move {
        if let Some(rx) = past
            && write_logs(&mut client, rx, tty).await.is_err()
        {
            return;
        }
        let conn = match source {
            AttachStream::Live(s) => Some(s),
            AttachStream::Pending(rx) => rx.await.ok().and_then(Result::ok),
            AttachStream::Ended => None,
        };
        match conn {
            Some(conn) => {
                stream::pump(client, conn, tty, stdin, detach_keys, |_| {}).await;
            }
            None if want_stream => svc.cancel_pending_attach(&cid),
            None => {
                use tokio::io::AsyncWriteExt;
                let _ = client.shutdown().await;
            }
        }
    })
}

/// The log so far, for `logs=1` of attach.
fn past_logs(
    svc: &std::sync::Arc<berth_engine::containers::ContainerService>,
    id: &str,
    want: bool,
    stdout: bool,
    stderr: bool,
) -> Result<Option<tokio::sync::mpsc::Receiver<LogEntry>>, ApiError> {
    if !want || !(stdout || stderr) {
        return Ok(None);
    }
    let opts = LogOptions {
        stdout,
        stderr,
        since: None,
        until: None,
        tail: None,
        follow: false,
    };
    // A log driver that cannot be read gives nothing, as with dockerd.
    svc.get(id)?;
    Ok(svc.logs(id, opts).ok().map(|(rx, _)| rx))
}

/// Writes past log entries as attach output (frames, or raw with a TTY).
async fn write_logs(
    client: &mut stream::Client,
    mut rx: tokio::sync::mpsc::Receiver<LogEntry>,
    raw: bool,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    while let Some(e) = rx.recv().await {
        if raw {
            client.write_all(&e.bytes).await?;
        } else {
            let kind = if e.stream == StreamKind::Stderr { 2 } else { 1 };
            client
                .write_all(&stream::frame_header(kind, e.bytes.len()))
                .await?;
            client.write_all(&e.bytes).await?;
        }
    }
    client.flush().await
}

/// `GET /containers/{id}/attach/ws`: the same streams over a websocket,
/// raw (never multiplexed), binary messages both ways.
pub async fn attach_ws(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Result<Response, ApiError> {
    use axum::extract::ws::Message;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let q = Query::parse(q.as_deref());
    let (stdin, stdout, stderr) = (q.bool("stdin"), q.bool("stdout"), q.bool("stderr"));
    let (want_stream, want_logs) = (q.bool("stream"), q.bool("logs"));
    let svc = st.engine.containers().clone();
    let past = past_logs(&svc, &id, want_logs, stdout, stderr)?;
    let (source, _tty, cid) = if want_stream {
        svc.attach(&id, stdin, stdout, stderr).await?
    } else {
        svc.get(&id)?;
        (AttachStream::Ended, false, String::new())
    };
    let detach_keys = stream::detach_keys(q.get("detachKeys"))?;
    Ok(ws.on_upgrade(move |socket| async move {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let pumped = tokio::spawn(async move {
            let mut client: stream::Client = Box::new(theirs);
            if let Some(rx) = past
                && write_logs(&mut client, rx, true).await.is_err()
            {
                return;
            }
            let conn = match source {
                AttachStream::Live(s) => Some(s),
                AttachStream::Pending(rx) => rx.await.ok().and_then(Result::ok),
                AttachStream::Ended => None,
            };
            match conn {
                Some(conn) => stream::pump(client, conn, true, stdin, detach_keys, |_| {}).await,
                None if want_stream => svc.cancel_pending_attach(&cid),
                None => {
                    let _ = client.shutdown().await;
                }
            }
        });
        let (mut rd, mut wr) = tokio::io::split(ours);
        let (mut tx, mut rx) = socket.split();
        let to_ws = async {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx
                            .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
            let _ = tx.send(Message::Close(None)).await;
        };
        let from_ws = async {
            while let Some(Ok(m)) = rx.next().await {
                let data = match m {
                    Message::Binary(b) => b.to_vec(),
                    Message::Text(t) => t.as_bytes().to_vec(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                if wr.write_all(&data).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
            std::future::pending::<()>().await;
        };
        tokio::select! {
            () = to_ws => {}
            () = from_ws => {}
        }
        pumped.abort();
    }))
}

/// `GET /containers/{id}/logs`.
pub async fn logs(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    let v = version_of(&req);
    let opts = LogOptions {
        stdout: q.bool("stdout"),
        stderr: q.bool("stderr"),
        since: q
            .get("since")
            .filter(|s| !s.is_empty() && *s != "0")
            .map(parse_time)
            .transpose()?,
        until: q
            .get("until")
            .filter(|s| !s.is_empty() && *s != "0")
            .map(parse_time)
            .transpose()?,
        tail: match q.get("tail") {
            None | Some("") | Some("all") => None,
            Some(t) => Some(t.parse::<usize>().map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid value for tail: {t:?}: expected a number or all"
                ))
            })?),
        },
        follow: q.bool("follow"),
    };
    if !opts.stdout && !opts.stderr {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let timestamps = q.bool("timestamps");
    let (mut rx, tty) = st.engine.containers().logs(&id, opts)?;
    let body = async_stream_body(move |tx| async move {
        while let Some(e) = rx.recv().await {
            let mut payload = Vec::with_capacity(e.bytes.len() + 40);
            if timestamps {
                payload.extend_from_slice(e.time.as_bytes());
                payload.push(b' ');
            }
            payload.extend_from_slice(&e.bytes);
            let chunk = if tty {
                payload
            } else {
                let kind = if e.stream == StreamKind::Stderr { 2 } else { 1 };
                let mut f = stream::frame_header(kind, payload.len()).to_vec();
                f.extend_from_slice(&payload);
                f
            };
            if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                break;
            }
        }
    });
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(stream::content_type(tty, v)),
    );
    Ok(r)
}

/// A body fed by a task through a channel.
pub(crate) fn async_stream_body<F, Fut>(f: F) -> Body
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    tokio::spawn(f(tx));
    let s = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Body::from_stream(s)
}

/// `GET /containers/{id}/top`.
pub async fn top(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(q.as_deref());
    let args = q
        .get("ps_args")
        .filter(|a| !a.is_empty())
        .unwrap_or("-ef")
        .to_owned();
    let engine = st.engine.clone();
    blocking(move || {
        let c = engine.containers();
        let r = c.get(&id)?;
        if !r.state.status.is_live() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("Container {} is not running", r.id),
            ));
        }
        let pids = berth_runtime::container::ps(c.runtime_root(), &r.id)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let out = std::process::Command::new("ps")
            .args(args.split_whitespace())
            .output()
            .map_err(|e| ApiError::internal(format!("run ps: {e}")))?;
        if !out.status.success() {
            return Err(ApiError::internal(format!(
                "ps: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let header_line = lines.next().unwrap_or_default();
        let titles: Vec<&str> = header_line.split_whitespace().collect();
        let pid_col = titles
            .iter()
            .position(|t| *t == "PID")
            .ok_or_else(|| ApiError::internal("Couldn't find PID field in ps output"))?;
        let mut procs = Vec::new();
        for l in lines {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let Some(pid) = fields.get(pid_col).and_then(|p| p.parse::<i32>().ok()) else {
                continue;
            };
            if !pids.contains(&pid) {
                continue;
            }
            let n = titles.len();
            let mut row: Vec<String> = fields.iter().take(n - 1).map(|s| (*s).to_owned()).collect();
            row.push(fields.get(n - 1..).map(|r| r.join(" ")).unwrap_or_default());
            procs.push(row);
        }
        Ok(Json(json!({ "Titles": titles, "Processes": procs })))
    })
    .await
}

/// `GET /containers/{id}/changes`.
pub async fn changes(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let engine = st.engine.clone();
    blocking(move || {
        let c = engine.containers();
        let r = c.get(&id)?;
        let list = c
            .snapshotter()
            .changes(&r.id)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let list = berth_engine::containers::archive::hide_init_layer(list);
        let v: Vec<Value> = list
            .iter()
            .map(|ch| {
                let kind = match ch.kind {
                    berth_image::snapshot::ChangeKind::Modified => 0,
                    berth_image::snapshot::ChangeKind::Added => 1,
                    berth_image::snapshot::ChangeKind::Deleted => 2,
                };
                json!({ "Path": ch.path.display().to_string(), "Kind": kind })
            })
            .collect();
        Ok(Json(Value::Array(v)))
    })
    .await
}

/// `GET /containers/{id}/export`.
pub async fn export(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let c = st.engine.containers().clone();
    let r = c.get(&id)?;
    let (mut w, body) = crate::body::BodyWriter::new();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = c.export(&r.id, &mut w) {
            w.fail(std::io::Error::other(e.to_string()));
        }
    });
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    Ok(resp)
}

/// `POST /commit`.
pub async fn commit(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    let config: Option<Value> = json_body(body, true).await?;
    let req = berth_engine::containers::CommitRequest {
        repo: q.str("repo"),
        tag: q.str("tag"),
        comment: q.str("comment"),
        author: q.str("author"),
        changes: q
            .all("changes")
            .into_iter()
            .filter(|c| !c.is_empty())
            .collect(),
        config,
    };
    let container = q.str("container");
    let engine = st.engine.clone();
    let id = blocking(move || {
        engine
            .containers()
            .commit(&container, &req)
            .map_err(ApiError::from)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "Id": id }))).into_response())
}

fn stat_header(st: &berth_engine::containers::archive::PathStat) -> Option<HeaderValue> {
    use base64::Engine as _;
    let json = serde_json::to_vec(st).ok()?;
    HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(json)).ok()
}

fn archive_path(q: &Query) -> Result<String, ApiError> {
    let p = q.str("path");
    if p.is_empty() {
        return Err(ApiError::bad_request("path cannot be empty"));
    }
    Ok(p)
}

/// `HEAD /containers/{id}/archive`.
pub async fn archive_head(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    let path = archive_path(&q)?;
    let engine = st.engine.clone();
    let stat = blocking(move || {
        engine
            .containers()
            .path_stat(&id, &path)
            .map_err(ApiError::from)
    })
    .await?;
    let mut r = StatusCode::OK.into_response();
    if let Some(h) = stat_header(&stat) {
        r.headers_mut().insert("X-Docker-Container-Path-Stat", h);
    }
    Ok(r)
}

/// `GET /containers/{id}/archive`.
pub async fn archive_get(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    let path = archive_path(&q)?;
    let engine = st.engine.clone();
    let (head_tx, head_rx) = tokio::sync::oneshot::channel::<Result<HeaderValue, ApiError>>();
    let (mut w, body) = crate::body::BodyWriter::new();
    tokio::task::spawn_blocking(move || {
        let mut head_tx = Some(head_tx);
        let res = engine.containers().archive_out(
            &id,
            &path,
            |st| {
                if let Some(tx) = head_tx.take() {
                    let _ = tx.send(
                        stat_header(st).ok_or_else(|| ApiError::internal("encode the path stat")),
                    );
                }
            },
            &mut w,
        );
        match res {
            Ok(()) => {}
            Err(e) => match head_tx.take() {
                Some(tx) => {
                    let _ = tx.send(Err(ApiError::from(e)));
                }
                None => w.fail(std::io::Error::other(e.to_string())),
            },
        }
    });
    let h = head_rx
        .await
        .map_err(|_| ApiError::internal("the archive worker stopped"))??;
    let mut r = Response::new(body);
    r.headers_mut().insert("X-Docker-Container-Path-Stat", h);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    Ok(r)
}

/// `PUT /containers/{id}/archive`.
pub async fn archive_put(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    let path = archive_path(&q)?;
    let reader = crate::body::BodyReader::spawn(body);
    let engine = st.engine.clone();
    blocking(move || {
        engine
            .containers()
            .archive_in(&id, &path, reader)
            .map_err(ApiError::from)
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /containers/{id}/update`.
pub async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let v: Value = json_body(body, false).await?;
    let engine = st.engine.clone();
    let warnings =
        blocking(move || engine.containers().update(&id, &v).map_err(ApiError::from)).await?;
    Ok(Json(json!({ "Warnings": warnings })))
}
