//! berthd: config, socket, signals and wiring; the work is in berth-engine
//! and berth-api.

mod config;
mod listener;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::ServiceExt;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use berth_api::AppState;
use berth_engine::{Engine, EngineConfig};
use config::{Config, Flags};
use listener::{PidFile, Socket};

/// How long requests in flight may take to finish after SIGTERM.
const DRAIN: Duration = Duration::from_secs(30);

fn main() {
    let flags = Flags::parse();
    if let Err(e) = run(&flags) {
        eprintln!("berthd: {e:#}");
        std::process::exit(1);
    }
}

fn run(flags: &Flags) -> anyhow::Result<()> {
    let cfg = Config::from_flags(flags)?;
    tracing_subscriber::fmt()
        .with_max_level(cfg.log_level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    for k in &cfg.unknown_keys {
        tracing::warn!(key = %k, "daemon.json: unknown key ignored");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(serve(cfg))
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM during start-up still cleans up.
    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    let pidfile = PidFile::create(&cfg.pidfile)?;
    let engine = Engine::open(EngineConfig {
        data_root: cfg.data_root.clone(),
        exec_root: cfg.exec_root.clone(),
        shim: None,
        default_ulimits: Vec::new(),
        insecure_registries: Vec::new(),
        loopback_registries_only: std::env::var("BERTH_LOOPBACK_REGISTRIES_ONLY")
            .is_ok_and(|v| v == "1"),
    })
    .with_context(|| format!("open state in {}", cfg.data_root.display()))?;
    // Reattach to the shims of running containers, record the exits
    // that happened while berthd was away.
    engine
        .containers()
        .recover()
        .await
        .context("recover containers")?;
    let state = AppState {
        engine: Arc::new(engine),
        host: Arc::new(berth_engine::system::HostInfo::read()),
        debug: cfg.debug,
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sockets = Vec::new();
    let mut servers = tokio::task::JoinSet::new();
    for path in &cfg.sockets {
        let (sock, listener) = Socket::bind(path)?;
        tracing::info!(socket = %sock.path().display(), "API listening");
        sockets.push(sock);
        let app = berth_api::app(state.clone());
        let mut rx = stop_rx.clone();
        servers.spawn(async move {
            axum::serve(listener, app.into_make_service())
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await
        });
    }
    tracing::info!(
        data_root = %cfg.data_root.display(),
        pid = std::process::id(),
        "berthd started"
    );
    let failed = tokio::select! {
        _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); None }
        _ = int.recv() => { tracing::info!("SIGINT: shutting down"); None }
        r = servers.join_next() => Some(r),
    };
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN, async {
        while let Some(r) = servers.join_next().await {
            if let Ok(Err(e)) = r {
                tracing::warn!(error = %e, "server ended with an error");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("requests still running after {DRAIN:?}; stopping anyway");
    }
    drop(sockets);
    drop(pidfile);
    if let Some(r) = failed {
        match r {
            Some(Ok(Ok(()))) | None => anyhow::bail!("the API server stopped by itself"),
            Some(Ok(Err(e))) => return Err(e).context("API server"),
            Some(Err(e)) => return Err(e).context("API server task"),
        }
    }
    tracing::info!("berthd stopped");
    Ok(())
}
