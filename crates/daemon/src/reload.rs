//! SIGHUP: re-read daemon.json (merged with the same flags), apply what can
//! change while berthd runs, and say which changed keys need a restart. A
//! file that does not load leaves the running configuration as it is.

use std::sync::{Arc, PoisonError, RwLock};

use berth_api::models::system::RegistryConfig;
use tracing_subscriber::Registry;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::reload::Handle;

use crate::config::{Config, Flags};

/// What SIGHUP can change in the running daemon.
#[derive(Debug)]
pub struct Live {
    /// The log level filter.
    pub level: Handle<LevelFilter, Registry>,
    /// `/info`'s `RegistryConfig`.
    pub registry: Arc<RwLock<RegistryConfig>>,
}

/// Re-reads the configuration and applies it to `live` and `cur` (which
/// keeps describing what is in force).
pub fn reload(flags: &Flags, cur: &mut Config, live: &Live) {
    let file = cur.config_file.as_ref().map_or_else(
        || "(no daemon.json)".to_owned(),
        |p| p.display().to_string(),
    );
    let new = match Config::from_flags(flags) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(
                config_file = %file,
                error = format!("{e:#}"),
                "SIGHUP: configuration not reloaded; the running one stays in force"
            );
            return;
        }
    };
    let mut applied = Vec::new();
    if new.registries != cur.registries {
        *live
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner) = new.registries.info();
        if new.registries.insecure != cur.registries.insecure {
            applied.push(format!(
                "insecure-registries: {:?} -> {:?}",
                cur.registries.insecure, new.registries.insecure
            ));
        }
        if new.registries.mirrors != cur.registries.mirrors {
            applied.push(format!(
                "registry-mirrors: {:?} -> {:?}",
                cur.registries.mirrors, new.registries.mirrors
            ));
        }
        cur.registries = new.registries.clone();
    }
    let level_changed = new.log_level != cur.log_level;
    if level_changed {
        applied.push(format!(
            "log-level: {} -> {}",
            level_name(cur.log_level),
            level_name(new.log_level)
        ));
    }
    if new.debug != cur.debug {
        applied.push(format!("debug: {} -> {}", cur.debug, new.debug));
    }
    let mut restart = Vec::new();
    if new.sockets != cur.sockets || new.tcp != cur.tcp {
        restart.push("hosts");
    }
    if new.tls != cur.tls {
        restart.push("tls files");
    }
    if new.data_root != cur.data_root {
        restart.push("data-root");
    }
    if new.exec_root != cur.exec_root {
        restart.push("exec-root");
    }
    if new.pidfile != cur.pidfile {
        restart.push("pidfile");
    }
    if new.default_ulimits != cur.default_ulimits {
        // The engine copies them when it opens.
        restart.push("default-ulimits");
    }
    let new_unknown: Vec<&String> = new
        .unknown_keys
        .iter()
        .filter(|k| !cur.unknown_keys.contains(k))
        .collect();
    let report = |applied: &[String]| {
        if applied.is_empty() {
            tracing::info!(config_file = %file, "SIGHUP: configuration reloaded, nothing to change");
        } else {
            tracing::info!(
                config_file = %file,
                changed = %applied.join("; "),
                "SIGHUP: configuration reloaded"
            );
        }
        if !restart.is_empty() {
            tracing::warn!(
                keys = %restart.join(", "),
                "SIGHUP: these settings changed but take effect only when berthd restarts"
            );
        }
        for k in &new_unknown {
            tracing::warn!(key = %k, "daemon.json: unknown key ignored");
        }
    };
    // Say it at the level that lets it be seen: before a quieter level
    // takes effect, after a more verbose one did.
    let louder = new.log_level > cur.log_level;
    if level_changed && louder {
        set_level(live, new.log_level);
    }
    report(&applied);
    if level_changed && !louder {
        set_level(live, new.log_level);
    }
    cur.log_level = new.log_level;
    cur.debug = new.debug;
    cur.unknown_keys.clone_from(&new.unknown_keys);
}

fn set_level(live: &Live, level: tracing::Level) {
    if let Err(e) = live.level.reload(LevelFilter::from_level(level)) {
        tracing::error!(error = %e, "SIGHUP: could not change the log level");
    }
}

fn level_name(l: tracing::Level) -> &'static str {
    match l {
        tracing::Level::TRACE => "trace",
        tracing::Level::DEBUG => "debug",
        tracing::Level::INFO => "info",
        tracing::Level::WARN => "warn",
        tracing::Level::ERROR => "error",
    }
}
