//! `/volumes`: create, list, inspect, remove, prune; and the `Mounts` of
//! container inspect and list.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_engine::containers::Record;
use berth_engine::volumes::{ANONYMOUS_LABEL, CreateRequest, MountPoint, Volume};
use serde_json::{Value, json};

use super::blocking;
use crate::AppState;
use crate::error::ApiError;
use crate::filters::Filters;
use crate::query::Query;
use crate::version::ApiVersion;

/// A volume as the API shows it.
pub(crate) fn volume_json(v: &Volume, mountpoint: &std::path::Path) -> Value {
    json!({
        "Name": v.name,
        "Driver": v.driver,
        "Mountpoint": mountpoint.display().to_string(),
        "CreatedAt": v.created_at,
        "Labels": v.labels,
        "Options": v.options,
        "Scope": "local",
    })
}

/// One entry of a container's `Mounts`.
pub(crate) fn mount_json(m: &MountPoint) -> Value {
    let mut v = json!({
        "Type": m.kind,
        "Source": m.source,
        "Destination": m.destination,
        "Mode": m.mode,
        "RW": m.rw,
        "Propagation": m.propagation,
    });
    if m.kind == "volume" {
        v["Name"] = json!(m.name);
        v["Driver"] = json!(m.driver);
    }
    v
}

/// A container's `Mounts`.
pub(crate) fn mounts_json(r: &Record) -> Vec<Value> {
    r.mount_points.iter().map(mount_json).collect()
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    driver: Option<String>,
    #[serde(default)]
    driver_opts: Option<BTreeMap<String, String>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    cluster_volume_spec: Option<Value>,
}

/// `POST /volumes/create`.
pub async fn create(State(st): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let b: CreateBody = super::containers::json_body(body, true).await?;
    if b.cluster_volume_spec.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(ApiError::bad_request(
            "cluster volumes are not supported by berthd (no swarm)",
        ));
    }
    let engine = st.engine.clone();
    let v = blocking(move || {
        let vols = engine.volumes();
        let v = vols.create(CreateRequest {
            name: b.name,
            driver: b.driver.unwrap_or_default(),
            options: b.driver_opts.unwrap_or_default(),
            labels: b.labels.unwrap_or_default(),
        })?;
        Ok(volume_json(&v, &vols.mountpoint(&v.name)))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

fn has_label(v: &Volume, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, val)) => v.labels.get(k).is_some_and(|x| x == val),
        None => v.labels.contains_key(want),
    }
}

fn bool_filter(key: &str, vals: &[String]) -> Result<bool, ApiError> {
    let mut out = None;
    for s in vals {
        let b = match s.to_ascii_lowercase().as_str() {
            "1" | "true" => true,
            "0" | "false" => false,
            _ => {
                return Err(ApiError::bad_request(format!("invalid filter '{key}={s}'")));
            }
        };
        if out.is_some_and(|o| o != b) {
            return Err(ApiError::bad_request(format!(
                "invalid filter '{key}': conflicting values"
            )));
        }
        out = Some(b);
    }
    Ok(out.unwrap_or(false))
}

fn check_keys(f: &Filters, allowed: &[&str]) -> Result<(), ApiError> {
    for k in f.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
        }
    }
    Ok(())
}

/// `GET /volumes`.
pub async fn list(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(q.as_deref());
    let f = q.filters()?;
    check_keys(&f, &["name", "label", "dangling", "driver"])?;
    let dangling = f
        .get("dangling")
        .map(|v| bool_filter("dangling", v))
        .transpose()?;
    let engine = st.engine.clone();
    let out = blocking(move || {
        let vols = engine.volumes();
        let mut list = vols.list()?;
        list.sort_by(|a, b| a.name.cmp(&b.name));
        let keep = |v: &Volume| {
            f.get("name")
                .is_none_or(|n| n.iter().any(|n| v.name.contains(n.as_str())))
                && f.get("driver").is_none_or(|d| d.contains(&v.driver))
                && f.get("label")
                    .is_none_or(|l| l.iter().all(|l| has_label(v, l)))
                && dangling.is_none_or(|d| d == v.refs.is_empty())
        };
        let out: Vec<Value> = list
            .iter()
            .filter(|v| keep(v))
            .map(|v| volume_json(v, &vols.mountpoint(&v.name)))
            .collect();
        Ok(out)
    })
    .await?;
    Ok(Json(json!({ "Volumes": out, "Warnings": [] })))
}

/// `GET /volumes/{name}`.
pub async fn inspect(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let engine = st.engine.clone();
    blocking(move || {
        let vols = engine.volumes();
        let v = vols.get(&name)?;
        Ok(Json(volume_json(&v, &vols.mountpoint(&v.name))))
    })
    .await
}

/// `DELETE /volumes/{name}`.
pub async fn remove(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let force = Query::parse(q.as_deref()).bool("force");
    let engine = st.engine.clone();
    blocking(move || Ok(engine.volumes().remove(&name, force)?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /volumes/prune`: unused anonymous volumes (all unused ones with
/// the `all` filter, or for clients older than API 1.42, as Docker).
pub async fn prune(State(st): State<AppState>, req: Request) -> Result<Json<Value>, ApiError> {
    let version = req
        .extensions()
        .get::<ApiVersion>()
        .copied()
        .unwrap_or(crate::version::MAX_API);
    let q = Query::parse(req.uri().query());
    let f = q.filters()?;
    check_keys(&f, &["label", "label!", "all"])?;
    let all = match f.get("all").map(Vec::as_slice) {
        None => false,
        Some([one]) => bool_filter("all", std::slice::from_ref(one))?,
        Some(many) => {
            return Err(ApiError::bad_request(format!(
                "invalid filter 'all={}': only one value is expected",
                many.join(",")
            )));
        }
    } || version < ApiVersion(1, 42);
    let labels = f.get("label").cloned().unwrap_or_default();
    let not_labels = f.get("label!").cloned().unwrap_or_default();
    let engine = st.engine.clone();
    let (names, bytes) = blocking(move || {
        Ok(engine.volumes().prune(|v| {
            (!all && !v.labels.contains_key(ANONYMOUS_LABEL))
                || !labels.iter().all(|l| has_label(v, l))
                || not_labels.iter().any(|l| has_label(v, l))
        })?)
    })
    .await?;
    Ok(Json(
        json!({ "VolumesDeleted": names, "SpaceReclaimed": bytes }),
    ))
}

/// The `Volumes` of `/system/df`: local volumes without mount options,
/// with their size and how many containers use them.
pub(crate) fn df_volumes(engine: &berth_engine::Engine) -> Result<Vec<Value>, ApiError> {
    let vols = engine.volumes();
    let mut list = vols.list()?;
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(list
        .iter()
        .filter(|v| v.options.is_empty())
        .map(|v| {
            let mut j = volume_json(v, &vols.mountpoint(&v.name));
            j["UsageData"] = json!({"Size": vols.size(&v.name), "RefCount": v.refs.len()});
            j
        })
        .collect())
}
