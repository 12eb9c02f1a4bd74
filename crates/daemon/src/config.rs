//! berthd's configuration: flags like dockerd's, merged with daemon.json.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Parser;

/// Default socket.
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";
/// Default config file (read only if it exists).
pub const DEFAULT_CONFIG_FILE: &str = "/etc/berth/daemon.json";

/// berthd: the berth daemon. It speaks the Docker Engine API, so the
/// docker CLI works against it: `DOCKER_HOST=unix:///run/berth/berth.sock
/// docker images`.
#[derive(Debug, Parser)]
#[command(name = "berthd", version)]
pub struct Flags {
    /// Socket to listen on (`unix:///path`); may be repeated.
    #[arg(short = 'H', long = "host", value_name = "unix://PATH")]
    pub hosts: Vec<String>,
    /// Root of persistent state (images, state.redb).
    #[arg(long, env = "BERTH_ROOT", value_name = "DIR")]
    pub data_root: Option<PathBuf>,
    /// Root of runtime state.
    #[arg(long, value_name = "DIR")]
    pub exec_root: Option<PathBuf>,
    /// File to write berthd's pid to [default: <exec-root>/berthd.pid].
    #[arg(short = 'p', long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// daemon.json to read [default: /etc/berth/daemon.json, if present].
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Log level: debug, info, warn, error, fatal.
    #[arg(short = 'l', long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Debug logging (same as --log-level debug).
    #[arg(short = 'D', long)]
    pub debug: bool,
}

/// The configuration in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Socket paths.
    pub sockets: Vec<PathBuf>,
    /// Persistent state.
    pub data_root: PathBuf,
    /// Runtime state.
    pub exec_root: PathBuf,
    /// Pid file.
    pub pidfile: PathBuf,
    /// tracing level.
    pub log_level: tracing::Level,
    /// Whether the level is debug.
    pub debug: bool,
    /// Keys of daemon.json berthd does not know (warned about).
    pub unknown_keys: Vec<String>,
}

/// Keys of daemon.json berthd knows.
const KNOWN_KEYS: [&str; 6] = [
    "hosts",
    "data-root",
    "exec-root",
    "pidfile",
    "log-level",
    "debug",
];

impl Config {
    /// Merges flags with the config file. Like dockerd, a setting given
    /// both as a flag and in the file is refused.
    pub fn from_flags(flags: &Flags) -> anyhow::Result<Config> {
        let file = match &flags.config_file {
            Some(p) => Some(read_file(p)?),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                Some(read_file(Path::new(DEFAULT_CONFIG_FILE))?)
            }
            None => None,
        };
        let file = file.unwrap_or_default();
        let str_key = |k: &str| -> anyhow::Result<Option<String>> {
            match file.get(k) {
                None => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(v) => bail!("daemon.json: {k:?} must be a string, not {v}"),
            }
        };
        let mut both = Vec::new();
        let mut pick = |flag: Option<String>, key: &str| -> anyhow::Result<Option<String>> {
            let from_file = str_key(key)?;
            if flag.is_some() && from_file.is_some() {
                both.push(key.to_owned());
            }
            Ok(flag.or(from_file))
        };
        let data_root = pick(
            flags.data_root.as_ref().map(|p| p.display().to_string()),
            "data-root",
        )?;
        let exec_root = pick(
            flags.exec_root.as_ref().map(|p| p.display().to_string()),
            "exec-root",
        )?;
        let pidfile = pick(
            flags.pidfile.as_ref().map(|p| p.display().to_string()),
            "pidfile",
        )?;
        let log_level = pick(flags.log_level.clone(), "log-level")?;
        let hosts = match file.get("hosts") {
            None => flags.hosts.clone(),
            Some(v) => {
                let list: Vec<String> = serde_json::from_value(v.clone())
                    .context("daemon.json: \"hosts\" must be a list of strings")?;
                if !flags.hosts.is_empty() {
                    both.push("hosts".into());
                }
                list
            }
        };
        if !both.is_empty() {
            bail!(
                "the following directives are specified both as a flag and in the configuration file: {}",
                both.join(", ")
            );
        }
        let debug_file = match file.get("debug") {
            None => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(v) => bail!("daemon.json: \"debug\" must be a boolean, not {v}"),
        };
        let debug = flags.debug || debug_file;
        let log_level = match log_level.as_deref() {
            None if debug => tracing::Level::DEBUG,
            None => tracing::Level::INFO,
            Some(l) => parse_level(l)?,
        };
        let hosts = if hosts.is_empty() {
            vec![DEFAULT_HOST.to_owned()]
        } else {
            hosts
        };
        let sockets = hosts
            .iter()
            .map(|h| socket_path(h))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let exec_root = PathBuf::from(exec_root.unwrap_or_else(|| "/run/berth".into()));
        let pidfile = pidfile
            .map(PathBuf::from)
            .unwrap_or_else(|| exec_root.join("berthd.pid"));
        let mut unknown_keys: Vec<String> = file
            .keys()
            .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
            .cloned()
            .collect();
        unknown_keys.sort();
        Ok(Config {
            sockets,
            data_root: PathBuf::from(data_root.unwrap_or_else(|| "/var/lib/berth".into())),
            exec_root,
            pidfile,
            debug: log_level == tracing::Level::DEBUG,
            log_level,
            unknown_keys,
        })
    }
}

fn read_file(p: &Path) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("read config file {}", p.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("config file {} is not valid JSON", p.display()))?;
    match v {
        serde_json::Value::Object(m) => Ok(m),
        _ => bail!("config file {} must hold a JSON object", p.display()),
    }
}

fn parse_level(l: &str) -> anyhow::Result<tracing::Level> {
    Ok(match l.to_ascii_lowercase().as_str() {
        "trace" => tracing::Level::TRACE,
        "debug" => tracing::Level::DEBUG,
        "info" => tracing::Level::INFO,
        "warn" | "warning" => tracing::Level::WARN,
        "error" | "fatal" | "panic" => tracing::Level::ERROR,
        _ => bail!("unable to parse logging level: {l}"),
    })
}

/// `unix:///run/x.sock` → `/run/x.sock`; other schemes are refused (TCP
/// needs mutual TLS, which berthd does not do yet).
pub fn socket_path(host: &str) -> anyhow::Result<PathBuf> {
    match host.strip_prefix("unix://") {
        Some(p) if p.starts_with('/') => Ok(PathBuf::from(p)),
        Some(p) => bail!("invalid host {host:?}: the socket path {p:?} must be absolute"),
        None => bail!(
            "invalid host {host:?}: only unix:///path sockets are supported (TCP needs mutual TLS, not implemented)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        let mut v = vec!["berthd"];
        v.extend_from_slice(args);
        Flags::try_parse_from(v).unwrap()
    }

    #[test]
    fn defaults_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.json");
        std::fs::write(&empty, "{}").unwrap();
        let e = empty.to_str().unwrap();
        let c = Config::from_flags(&flags(&["--config-file", e])).unwrap();
        assert_eq!(c.sockets, vec![PathBuf::from("/run/berth/berth.sock")]);
        assert_eq!(c.exec_root, PathBuf::from("/run/berth"));
        assert_eq!(c.pidfile, PathBuf::from("/run/berth/berthd.pid"));
        let c = Config::from_flags(&flags(&[
            "--config-file",
            e,
            "-H",
            "unix:///tmp/x.sock",
            "--data-root",
            "/tmp/d",
            "--exec-root",
            "/tmp/e",
            "--log-level",
            "debug",
        ]))
        .unwrap();
        assert_eq!(c.sockets, vec![PathBuf::from("/tmp/x.sock")]);
        assert_eq!(c.data_root, PathBuf::from("/tmp/d"));
        assert_eq!(c.pidfile, PathBuf::from("/tmp/e/berthd.pid"));
        assert!(c.debug);
        assert!(Config::from_flags(&flags(&["--config-file", e, "-H", "tcp://0:1"])).is_err());
    }

    #[test]
    fn config_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("daemon.json");
        std::fs::write(
            &f,
            r#"{"data-root": "/tmp/dr", "log-level": "warn", "bip": "x", "storage-driver": "y"}"#,
        )
        .unwrap();
        let p = f.to_str().unwrap();
        let c = Config::from_flags(&flags(&["--config-file", p])).unwrap();
        assert_eq!(c.data_root, PathBuf::from("/tmp/dr"));
        assert_eq!(c.log_level, tracing::Level::WARN);
        assert_eq!(c.unknown_keys, vec!["bip", "storage-driver"]);
        let e = Config::from_flags(&flags(&["--config-file", p, "--data-root", "/x"])).unwrap_err();
        assert!(
            e.to_string()
                .contains("both as a flag and in the configuration file: data-root")
        );
        std::fs::write(&f, "{ not json").unwrap();
        let e = Config::from_flags(&flags(&["--config-file", p])).unwrap_err();
        assert!(format!("{e:#}").contains("is not valid JSON"), "{e:#}");
    }
}
