//! `/containers/{id}/exec` and `/exec/{id}/…`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use berth_engine::containers::{ExecConfig, ExecStarted};
use serde::Deserialize;
use serde_json::{Value, json};

use super::containers::{json_body, size_of};
use super::stream;
use crate::AppState;
use crate::error::ApiError;
use crate::query::Query;

/// `POST /containers/{id}/exec`.
pub async fn create(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let cfg: ExecConfig = json_body(body, false).await?;
    let exec_id = st.engine.containers().exec_create(&id, cfg)?;
    Ok((StatusCode::CREATED, Json(json!({ "Id": exec_id }))).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartBody {
    #[serde(default)]
    detach: Option<bool>,
    #[serde(default)]
    tty: Option<bool>,
}

/// `POST /exec/{id}/start`.
pub async fn start(
    State(st): State<AppState>,
    Path(id): Path<String>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let v = req
        .extensions()
        .get::<crate::version::ApiVersion>()
        .copied()
        .unwrap_or(crate::version::MAX_API);
    let body = std::mem::take(req.body_mut());
    let sb: StartBody = json_body(body, true).await?;
    let svc = st.engine.containers().clone();
    let info = svc.exec_inspect(&id)?;
    let detach_keys = stream::detach_keys(Some(&info.config.detach_keys))?;
    let claim = svc.exec_claim(&id)?;
    if sb.detach.unwrap_or(false) {
        let conn = match svc.exec_launch(claim).await {
            ExecStarted::Running(conn, _) => conn,
            ExecStarted::Failed(e, _) => return Err(e.into()),
        };
        // Nobody reads the output: drain it for the exit code.
        let svc2 = svc.clone();
        tokio::spawn(async move {
            let mut conn = conn;
            loop {
                match berth_engine::containers::shim::read_frame(&mut conn).await {
                    Ok(Some(berth_shim::proto::Frame::Exit(s))) => {
                        svc2.exec_finished(&id, s.code);
                        break;
                    }
                    Ok(Some(_)) => {}
                    _ => {
                        svc2.exec_finished(&id, 126);
                        break;
                    }
                }
            }
        });
        return Ok(StatusCode::OK.into_response());
    }
    let tty = sb.tty.unwrap_or(info.config.tty);
    let stdin = info.config.attach_stdin;
    // The answer goes out before the process starts (see exec_claim).
    stream::hijack(req, tty, v, move |mut client| async move {
        let conn = match svc.exec_launch(claim).await {
            ExecStarted::Running(conn, _) => conn,
            ExecStarted::Failed(e, _) => {
                // As dockerd: the client reads why on its stdout; the
                // exit code is 126.
                use tokio::io::AsyncWriteExt;
                let msg = format!("{e}\r\n").into_bytes();
                let mut out = Vec::with_capacity(msg.len() + 8);
                if !tty {
                    out.extend_from_slice(&stream::frame_header(1, msg.len()));
                }
                out.extend_from_slice(&msg);
                let _ = client.write_all(&out).await;
                let _ = client.shutdown().await;
                return;
            }
        };
        let svc3 = svc.clone();
        let id2 = id.clone();
        stream::pump(client, conn, tty, stdin, detach_keys, move |code| {
            svc3.exec_finished(&id2, code);
        })
        .await;
        // The client left early: the exit code still has to be recorded
        // (the shim ends the stream when the process exits).
        if svc.exec_inspect(&id).is_ok_and(|i| i.running) {
            tracing::debug!(exec = %id, "client left before the exec ended");
        }
    })
}

/// `POST /exec/{id}/resize`.
pub async fn resize(
    State(st): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref());
    let (h, w) = size_of(&q)?;
    st.engine.containers().exec_resize(&id, h, w).await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /exec/{id}/json`.
pub async fn inspect(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let i = st.engine.containers().exec_inspect(&id)?;
    let c = &i.config;
    Ok(Json(json!({
        "ID": i.id,
        "Running": i.running,
        "ExitCode": i.exit_code,
        "ProcessConfig": {
            "tty": c.tty,
            "entrypoint": c.cmd.first(),
            "arguments": c.cmd.get(1..).unwrap_or_default(),
            "privileged": c.privileged,
            "user": c.user,
        },
        "OpenStdin": c.attach_stdin,
        "OpenStderr": c.attach_stderr,
        "OpenStdout": c.attach_stdout,
        "CanRemove": false,
        "ContainerID": i.container,
        "DetachKeys": c.detach_keys,
        "Pid": i.pid,
    })))
}
