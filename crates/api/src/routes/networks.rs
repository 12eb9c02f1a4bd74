//! `/networks/…`: list, inspect, create, remove, connect, disconnect, prune.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_engine::containers::Record;
use berth_engine::networks::{CreateNetwork, EndpointConfig, Network};
use serde::Deserialize;
use serde_json::{Value, json};

use super::containers::json_body;
use crate::AppState;
use crate::error::ApiError;
use crate::query::Query;

fn unix(t: &str) -> f64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|t| t.timestamp() as f64)
        .unwrap_or_default()
}

/// The document `docker network inspect` shows.
fn network_json(n: &Network, users: &[Record]) -> Value {
    let mut containers = serde_json::Map::new();
    for r in users {
        if !r.state.status.is_live() {
            continue;
        }
        let Some(ep) = r.networks.get(&n.name) else {
            continue;
        };
        let cidr = |ip: Option<std::net::IpAddr>, len: u8| {
            ip.map(|i| format!("{i}/{len}")).unwrap_or_default()
        };
        containers.insert(
            r.id.clone(),
            json!({
                "Name": r.short_name(),
                "EndpointID": ep.endpoint_id,
                "MacAddress": ep.mac,
                "IPv4Address": cidr(ep.ip, ep.prefix_len),
                "IPv6Address": cidr(ep.ipv6, ep.ipv6_prefix_len),
            }),
        );
    }
    let config: Vec<Value> = n
        .subnets
        .iter()
        .map(|s| {
            let mut v = json!({"Subnet": s.subnet, "Gateway": s.gateway});
            if !s.ip_range.is_empty() {
                v["IPRange"] = json!(s.ip_range);
            }
            if !s.aux_addresses.is_empty() {
                v["AuxiliaryAddresses"] = json!(s.aux_addresses);
            }
            v
        })
        .collect();
    // As dockerd: a user network shows only the options it was given
    // (compose recreates a network whose options differ from its file).
    let options = &n.options;
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv4": true,
        "EnableIPv6": n.enable_ipv6,
        "IPAM": {
            "Driver": "default",
            "Options": if n.ipam_options.is_empty() { Value::Null } else { json!(n.ipam_options) },
            "Config": config,
        },
        "Internal": n.internal,
        "Attachable": n.attachable,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": options,
        "Labels": n.labels,
    })
}

fn label_match(n: &Network, v: &str) -> bool {
    match v.split_once('=') {
        Some((k, val)) => n.labels.get(k).is_some_and(|x| x == val),
        None => n.labels.contains_key(v),
    }
}

/// `GET /networks`.
pub async fn list(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<Value>>, ApiError> {
    let q = Query::parse(q.as_deref());
    let f = q.filters()?;
    for k in f.keys() {
        if !matches!(
            k.as_str(),
            "name" | "id" | "driver" | "label" | "type" | "scope" | "dangling"
        ) {
            return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
        }
    }
    for t in f.get("type").into_iter().flatten() {
        if t != "custom" && t != "builtin" {
            return Err(ApiError::bad_request(format!(
                "invalid filter: 'type'='{t}'"
            )));
        }
    }
    let c = st.engine.containers().clone();
    let nets = st.engine.networks().list()?;
    let records = c.list()?;
    let mut out = Vec::new();
    for n in &nets {
        let users: Vec<Record> = records
            .iter()
            .filter(|r| r.networks.values().any(|e| e.network_id == n.id))
            .cloned()
            .collect();
        let ok = f.iter().all(|(k, vals)| match k.as_str() {
            "name" => vals.iter().any(|v| n.name.contains(v.as_str())),
            "id" => vals.iter().any(|v| n.id.starts_with(v.as_str())),
            "driver" => vals.contains(&n.driver),
            "label" => vals.iter().all(|v| label_match(n, v)),
            "type" => vals.iter().any(|v| (v == "builtin") == n.is_predefined()),
            "scope" => vals.iter().any(|v| v == "local"),
            "dangling" => vals.iter().any(|v| {
                let dangling = users.is_empty() && !n.is_predefined();
                (v == "true" || v == "1") == dangling
            }),
            _ => true,
        });
        if ok {
            let mut v = network_json(n, &users);
            // The list has no per-container detail, as dockerd.
            v["Containers"] = json!({});
            out.push(v);
        }
    }
    Ok(Json(out))
}

/// `GET /networks/{id}`.
pub async fn inspect(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let n = st.engine.networks().get(&id)?;
    let users = st.engine.containers().network_users(&n)?;
    Ok(Json(network_json(&n, &users)))
}

/// `POST /networks/create`.
pub async fn create(State(st): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let req: CreateNetwork = json_body(body, false).await?;
    if req.name.is_empty() {
        return Err(ApiError::bad_request("network name is required"));
    }
    let n = st.engine.containers().network_create(req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"Id": n.id, "Warning": ""})),
    )
        .into_response())
}

/// `DELETE /networks/{id}`.
pub async fn remove(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    st.engine.containers().network_remove(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConnectBody {
    #[serde(default)]
    container: String,
    #[serde(default)]
    endpoint_config: Option<EndpointConfig>,
    #[serde(default)]
    force: bool,
}

/// `POST /networks/{id}/connect`.
pub async fn connect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let b: ConnectBody = json_body(body, false).await?;
    if b.container.is_empty() {
        return Err(ApiError::bad_request("container is required"));
    }
    st.engine
        .containers()
        .network_connect(&id, &b.container, b.endpoint_config.unwrap_or_default())
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /networks/{id}/disconnect`.
pub async fn disconnect(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let b: ConnectBody = json_body(body, false).await?;
    if b.container.is_empty() {
        return Err(ApiError::bad_request("container is required"));
    }
    st.engine
        .containers()
        .network_disconnect(&id, &b.container, b.force)
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /networks/prune`.
pub async fn prune(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = Query::parse(q.as_deref());
    let f = crate::filters::PruneFilters::parse(&q.filters()?)?;
    let removed = st
        .engine
        .containers()
        .network_prune(move |n| f.keeps(unix(&n.created), &n.labels))
        .await?;
    Ok(Json(json!({"NetworksDeleted": removed})))
}
