//! berthd: config, socket, signals and wiring; the work is in berth-engine
//! and berth-api.

mod config;
mod listener;
mod network;
mod registries;
mod reload;
mod tls;
mod ulimits;

use std::sync::{Arc, RwLock};
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
use tls::TlsListener;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How long requests in flight may take to finish after SIGTERM.
const DRAIN: Duration = Duration::from_secs(30);

fn main() {
    let flags = Flags::parse();
    let r = if flags.validate {
        validate(&flags)
    } else {
        run(&flags)
    };
    if let Err(e) = r {
        eprintln!("berthd: {e:#}");
        std::process::exit(1);
    }
}

/// `--validate`: everything start-up checks before it touches the system.
fn validate(flags: &Flags) -> anyhow::Result<()> {
    let cfg = Config::from_flags(flags)?;
    if let Some(files) = &cfg.tls {
        tls::server_config(files)?;
    }
    for k in &cfg.unknown_keys {
        eprintln!("berthd: warning: daemon.json: unknown key {k:?} ignored");
    }
    println!("configuration OK");
    Ok(())
}

fn run(flags: &Flags) -> anyhow::Result<()> {
    let cfg = Config::from_flags(flags)?;
    // Read the TLS files before anything else: a bad one stops berthd
    // before it writes a pid file.
    let tls = cfg.tls.as_ref().map(tls::server_config).transpose()?;
    let (filter, level) =
        tracing_subscriber::reload::Layer::new(LevelFilter::from_level(cfg.log_level));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false),
        )
        .try_init()
        .context("set up logging")?;
    for k in &cfg.unknown_keys {
        tracing::warn!(key = %k, "daemon.json: unknown key ignored");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let registry = Arc::new(RwLock::new(cfg.registries.info()));
    let live = reload::Live { level, registry };
    rt.block_on(serve(flags, cfg, tls, live))
}

async fn serve(
    flags: &Flags,
    mut cfg: Config,
    tls: Option<Arc<rustls::ServerConfig>>,
    live: reload::Live,
) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM during start-up still cleans up, a SIGHUP
    // does not kill berthd.
    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("install SIGHUP handler")?;
    let pidfile = PidFile::create(&cfg.pidfile)?;
    let engine = Engine::open(EngineConfig {
        data_root: cfg.data_root.clone(),
        exec_root: cfg.exec_root.clone(),
        shim: None,
        default_ulimits: cfg.default_ulimits.clone(),
        insecure_registries: cfg.registries.insecure.clone(),
        loopback_registries_only: std::env::var("BERTH_LOOPBACK_REGISTRIES_ONLY")
            .is_ok_and(|v| v == "1"),
        network: cfg.network.clone(),
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
        registry: live.registry.clone(),
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
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<berth_api::ClientSocket>(),
            )
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|stop| *stop).await;
            })
            .await
        });
    }
    if let Some(tls) = &tls {
        for addr in &cfg.tcp {
            let listener = TlsListener::bind(addr, tls.clone()).await?;
            let local = axum::serve::Listener::local_addr(&listener)
                .with_context(|| format!("address of tcp://{addr}"))?;
            tracing::info!(address = %local, "API listening on TCP (mutual TLS)");
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
    }
    tracing::info!(
        data_root = %cfg.data_root.display(),
        pid = std::process::id(),
        "berthd started"
    );
    let failed = loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break None }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break None }
            _ = hup.recv() => reload::reload(flags, &mut cfg, &live),
            r = servers.join_next() => break Some(r),
        }
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
    state.engine.containers().shutdown().await;
    state.engine.networks().shutdown();
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
