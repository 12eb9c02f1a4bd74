//! Docker-style progress streams (pull, push): one JSON object per line;
//! an error before the first line is a real HTTP error, after it an
//! `errorDetail` line.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use berth_registry::client::{Cancel, Progress};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;

/// Runs `work` on a blocking thread, streaming its progress. `finish` turns
/// its result into the last lines.
pub(crate) async fn stream<T, W, F>(work: W, finish: F) -> Result<Response, ApiError>
where
    T: Send + 'static,
    W: FnOnce(&(dyn Fn(&Progress) + Send + Sync), Cancel) -> Result<T, ApiError> + Send + 'static,
    F: FnOnce(T) -> Vec<Value> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let (first_tx, first_rx) = oneshot::channel::<Result<(), ApiError>>();
    let first = Arc::new(Mutex::new(Some(first_tx)));
    let cancel = Cancel::new();
    let line = |v: &Value| {
        let mut b = serde_json::to_vec(v).unwrap_or_default();
        b.push(b'\n');
        Bytes::from(b)
    };
    {
        let first = first.clone();
        let cancel2 = cancel.clone();
        let tx2 = tx.clone();
        tokio::task::spawn_blocking(move || {
            let progress = |p: &Progress| {
                if let Some(f) = first.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = f.send(Ok(()));
                }
                if tx2.blocking_send(line(&p.to_json())).is_err() {
                    // The client went away: stop (what was fetched stays).
                    cancel2.cancel();
                }
            };
            let res = work(&progress, cancel2.clone());
            let pending_first = first.lock().unwrap_or_else(|p| p.into_inner()).take();
            match res {
                Ok(v) => {
                    if let Some(f) = pending_first {
                        let _ = f.send(Ok(()));
                    }
                    for l in finish(v) {
                        let _ = tx.blocking_send(line(&l));
                    }
                }
                Err(e) => match pending_first {
                    Some(f) => {
                        let _ = f.send(Err(e));
                    }
                    None => {
                        let msg = e.message;
                        let _ = tx.blocking_send(line(&json!({
                            "errorDetail": { "message": msg },
                            "error": msg,
                        })));
                    }
                },
            }
        });
    }
    match first_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(ApiError::internal("the worker stopped")),
    }
    let s = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    let mut r = Response::new(Body::from_stream(s));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}
