//! `GET /events`: past events since `since`, then live ones until `until`.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use berth_engine::events::Event;
use bytes::Bytes;

use super::containers::{async_stream_body, parse_time};
use crate::AppState;
use crate::error::ApiError;
use crate::filters::Filters;
use crate::query::Query;

fn wanted(e: &Event, f: &Filters) -> bool {
    f.iter().all(|(k, vals)| match k.as_str() {
        "type" => vals.contains(&e.kind),
        "event" | "action" => vals
            .iter()
            .any(|v| *v == e.action || e.action.starts_with(&format!("{v}:"))),
        "container" => {
            e.kind == "container"
                && vals.iter().any(|v| {
                    e.actor.id.starts_with(v.as_str()) || e.actor.attributes.get("name") == Some(v)
                })
        }
        "image" => vals.iter().any(|v| {
            e.actor.attributes.get("image") == Some(v) || (e.kind == "image" && e.actor.id == *v)
        }),
        "label" => vals.iter().all(|v| match v.split_once('=') {
            Some((lk, lv)) => e.actor.attributes.get(lk).is_some_and(|x| x == lv),
            None => e.actor.attributes.contains_key(v),
        }),
        "scope" => vals.iter().any(|v| v == "local"),
        _ => true,
    })
}

/// `GET /events`.
pub async fn events(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    let f = q.filters()?;
    for k in f.keys() {
        if !matches!(
            k.as_str(),
            "type"
                | "event"
                | "action"
                | "container"
                | "image"
                | "label"
                | "scope"
                | "network"
                | "volume"
                | "daemon"
                | "node"
                | "service"
                | "plugin"
                | "config"
                | "secret"
        ) {
            return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
        }
    }
    let since = q
        .get("since")
        .filter(|s| !s.is_empty())
        .map(parse_time)
        .transpose()?;
    let until = q
        .get("until")
        .filter(|s| !s.is_empty())
        .map(parse_time)
        .transpose()?;
    let (past, mut rx) = st.engine.events().subscribe();
    let nanos = |t: f64| (t * 1e9) as i64;
    let body = async_stream_body(move |tx| async move {
        let send = |e: &Event| {
            let mut b = serde_json::to_vec(e).unwrap_or_default();
            b.push(b'\n');
            Ok(Bytes::from(b))
        };
        if let Some(s) = since {
            for e in past.iter().filter(|e| e.time_nano >= nanos(s)) {
                if until.is_some_and(|u| e.time_nano > nanos(u)) {
                    return;
                }
                if wanted(e, &f) && tx.send(send(e)).await.is_err() {
                    return;
                }
            }
        }
        let deadline = until.map(|u| {
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
            tokio::time::Instant::now()
                + std::time::Duration::from_nanos(u64::try_from(nanos(u) - now).unwrap_or(0))
        });
        loop {
            let next = async {
                match deadline {
                    Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok(),
                    None => Some(rx.recv().await),
                }
            };
            tokio::select! {
                r = next => match r {
                    None => return,
                    Some(Ok(e)) => {
                        if wanted(&e, &f) && tx.send(send(&e)).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                    Some(Err(_)) => return,
                },
                () = tx.closed() => return,
            }
        }
    });
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}
