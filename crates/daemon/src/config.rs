//! berthd's configuration: flags like dockerd's, merged with daemon.json.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use berth_engine::containers::config::Ulimit;
use clap::Parser;

use crate::registries::Registries;
use crate::tls::{self, TlsFiles};
use crate::ulimits;

/// Default socket.
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";
/// Default config file (read only if it exists).
pub const DEFAULT_CONFIG_FILE: &str = "/etc/berth/daemon.json";

/// berthd: the berth daemon. It speaks the Docker Engine API, so the
/// docker CLI works against it: `DOCKER_HOST=unix:///run/berth/berth.sock
/// docker images`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "berthd",
    version,
    after_help = "Every setting except --config-file and --validate can also be given in \
daemon.json under dockerd's key (hosts, data-root, exec-root, pidfile, log-level, debug, tls, \
tlsverify, tlscacert, tlscert, tlskey, default-ulimits, insecure-registries, registry-mirrors, \
bridge, bip, default-address-pools, icc, ip-masq, firewall-table, dns-forward). \
A setting given both as a flag and in the file is refused. SIGHUP re-reads daemon.json: \
log-level, debug, insecure-registries and registry-mirrors change at once; other keys need a \
restart (berthd logs which). SIGTERM or SIGINT stops berthd; running containers keep running."
)]
pub struct Flags {
    /// Where to serve the API; may be repeated. `unix:///PATH` is a socket
    /// (mode 0660, group docker); `tcp://ADDR:PORT` requires mutual TLS
    /// (--tlsverify with --tlscacert, --tlscert and --tlskey)
    /// [default: unix:///run/berth/berth.sock].
    #[arg(short = 'H', long = "host", value_name = "unix://PATH|tcp://ADDR:PORT")]
    pub hosts: Vec<String>,
    /// Root of persistent state (images, containers, state.redb)
    /// [default: /var/lib/berth].
    #[arg(long, env = "BERTH_ROOT", value_name = "DIR")]
    pub data_root: Option<PathBuf>,
    /// Root of runtime state (bundles, shim sockets) [default: /run/berth].
    #[arg(long, value_name = "DIR")]
    pub exec_root: Option<PathBuf>,
    /// File to write berthd's pid to [default: <exec-root>/berthd.pid].
    #[arg(short = 'p', long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// daemon.json to read [default: /etc/berth/daemon.json, if present].
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Log level: debug, info, warn, error, fatal [default: info].
    #[arg(short = 'l', long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Debug logging (same as --log-level debug).
    #[arg(short = 'D', long)]
    pub debug: bool,
    /// Use TLS on tcp:// hosts; implied by --tlsverify. berthd refuses TLS
    /// without client verification, so this alone is not enough.
    #[arg(long)]
    pub tls: bool,
    /// Use TLS on tcp:// hosts and require a client certificate that chains
    /// to --tlscacert (mutual TLS). Required for every tcp:// host.
    #[arg(long)]
    pub tlsverify: bool,
    /// CA certificate(s), PEM: client certificates must chain to it.
    #[arg(long = "tlscacert", value_name = "FILE")]
    pub tlscacert: Option<PathBuf>,
    /// The server's certificate (chain), PEM.
    #[arg(long = "tlscert", value_name = "FILE")]
    pub tlscert: Option<PathBuf>,
    /// The server's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long = "tlskey", value_name = "FILE")]
    pub tlskey: Option<PathBuf>,
    /// Default ulimit for new containers, `name=soft[:hard]` (e.g.
    /// nofile=1024:2048; -1 is unlimited); may be repeated. A container's
    /// own --ulimit of the same name wins. Names: core cpu data fsize locks
    /// memlock msgqueue nice nofile nproc rss rtprio rttime sigpending
    /// stack.
    #[arg(long = "default-ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub default_ulimits: Vec<String>,
    /// Registry reached over plain HTTP (or TLS without verification):
    /// `host[:port]` or a CIDR such as 10.0.0.0/8; may be repeated.
    /// Loopback (127.0.0.0/8, ::1) always is.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]|CIDR")]
    pub insecure_registries: Vec<String>,
    /// Mirror of Docker Hub, an http:// or https:// URL without a path;
    /// may be repeated.
    #[arg(long = "registry-mirror", value_name = "URL")]
    pub registry_mirrors: Vec<String>,
    /// Name of the default bridge's device (daemon.json "bridge")
    /// [default: berth0].
    #[arg(short = 'b', long, value_name = "NAME")]
    pub bridge: Option<String>,
    /// The default bridge's address and prefix, such as 10.213.0.1/24
    /// (daemon.json "bip") [default: 10.88.0.1/16].
    #[arg(long, value_name = "CIDR")]
    pub bip: Option<String>,
    /// Where user networks created without --subnet get theirs:
    /// `base=CIDR,size=PREFIX`; may be repeated (daemon.json
    /// "default-address-pools") [default: /16s of 10.88.0.0/13, then
    /// 172.18-31].
    #[arg(long = "default-address-pool", value_name = "base=CIDR,size=N")]
    pub default_address_pools: Vec<String>,
    /// Containers on the default bridge may talk to each other
    /// (--icc=false isolates them) [default: true].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub icc: Option<bool>,
    /// Masquerade (source-NAT) traffic leaving the bridges for other
    /// interfaces, so containers reach other machines [default: false].
    #[arg(long = "ip-masq", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub ip_masq: Option<bool>,
    /// nftables table (ip and ip6 families) that holds berth's rules; berth
    /// touches no other [default: berth].
    #[arg(long = "firewall-table", value_name = "NAME")]
    pub firewall_table: Option<String>,
    /// The embedded DNS server of user networks forwards names it does not
    /// know to the host's resolvers (or the container's --dns)
    /// [default: true].
    #[arg(long = "dns-forward", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub dns_forward: Option<bool>,
    /// Check the flags, daemon.json and the TLS files, print
    /// "configuration OK" and exit (0), or print the problem and exit (1).
    #[arg(long)]
    pub validate: bool,
}

/// The configuration in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The daemon.json that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Socket paths.
    pub sockets: Vec<PathBuf>,
    /// `tcp://` hosts as addresses to bind (`host:port`).
    pub tcp: Vec<String>,
    /// Mutual-TLS files for the tcp hosts (always set when `tcp` is not
    /// empty).
    pub tls: Option<TlsFiles>,
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
    /// `--default-ulimit`s, one per name.
    pub default_ulimits: Vec<Ulimit>,
    /// `--insecure-registry`, `--registry-mirror`.
    pub registries: Registries,
    /// Networks.
    pub network: berth_engine::networks::NetworkConfig,
    /// Keys of daemon.json berthd does not know (warned about).
    pub unknown_keys: Vec<String>,
}

/// Keys of daemon.json berthd knows.
const KNOWN_KEYS: [&str; 21] = [
    "bridge",
    "bip",
    "default-address-pools",
    "icc",
    "ip-masq",
    "firewall-table",
    "dns-forward",
    "hosts",
    "data-root",
    "exec-root",
    "pidfile",
    "log-level",
    "debug",
    "tls",
    "tlsverify",
    "tlscacert",
    "tlscert",
    "tlskey",
    "default-ulimits",
    "insecure-registries",
    "registry-mirrors",
];

/// Reads daemon.json's values and notes the keys also given as flags.
struct Merge<'a> {
    file: &'a serde_json::Map<String, serde_json::Value>,
    both: Vec<String>,
}

impl Merge<'_> {
    fn conflict(&mut self, flag_given: bool, key: &str) {
        if flag_given && self.file.contains_key(key) {
            self.both.push(key.to_owned());
        }
    }

    fn string(&mut self, flag: Option<String>, key: &str) -> anyhow::Result<Option<String>> {
        self.conflict(flag.is_some(), key);
        let from_file = match self.file.get(key) {
            None => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(v) => bail!("daemon.json: {key:?} must be a string, not {v}"),
        };
        Ok(flag.or(from_file))
    }

    fn path(&mut self, flag: Option<&PathBuf>, key: &str) -> anyhow::Result<Option<PathBuf>> {
        Ok(self
            .string(flag.map(|p| p.display().to_string()), key)?
            .map(PathBuf::from))
    }

    fn bool(&mut self, flag: bool, key: &str) -> anyhow::Result<bool> {
        self.conflict(flag, key);
        match self.file.get(key) {
            None => Ok(flag),
            Some(serde_json::Value::Bool(b)) => Ok(flag || *b),
            Some(v) => bail!("daemon.json: {key:?} must be a boolean, not {v}"),
        }
    }

    fn list(&mut self, flag: &[String], key: &str) -> anyhow::Result<Vec<String>> {
        self.conflict(!flag.is_empty(), key);
        match self.file.get(key) {
            None => Ok(flag.to_vec()),
            Some(v) => serde_json::from_value(v.clone())
                .with_context(|| format!("daemon.json: {key:?} must be a list of strings")),
        }
    }
}

impl Config {
    /// Merges flags with the config file. Like dockerd, a setting given
    /// both as a flag and in the file is refused.
    pub fn from_flags(flags: &Flags) -> anyhow::Result<Config> {
        let config_file = match &flags.config_file {
            Some(p) => Some(p.clone()),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => Some(DEFAULT_CONFIG_FILE.into()),
            None => None,
        };
        let file = match &config_file {
            Some(p) => read_file(p)?,
            None => serde_json::Map::new(),
        };
        let mut m = Merge {
            file: &file,
            both: Vec::new(),
        };
        let data_root = m.path(flags.data_root.as_ref(), "data-root")?;
        let exec_root = m.path(flags.exec_root.as_ref(), "exec-root")?;
        let pidfile = m.path(flags.pidfile.as_ref(), "pidfile")?;
        let log_level = m.string(flags.log_level.clone(), "log-level")?;
        let hosts = m.list(&flags.hosts, "hosts")?;
        let tls = m.bool(flags.tls, "tls")?;
        let tlsverify = m.bool(flags.tlsverify, "tlsverify")?;
        let tlscacert = m.path(flags.tlscacert.as_ref(), "tlscacert")?;
        let tlscert = m.path(flags.tlscert.as_ref(), "tlscert")?;
        let tlskey = m.path(flags.tlskey.as_ref(), "tlskey")?;
        let insecure = m.list(&flags.insecure_registries, "insecure-registries")?;
        let mirrors = m.list(&flags.registry_mirrors, "registry-mirrors")?;
        m.conflict(!flags.default_ulimits.is_empty(), "default-ulimits");
        let network = crate::network::from_flags(flags, &file, &mut m.both)?;
        if !m.both.is_empty() {
            bail!(
                "the following directives are specified both as a flag and in the configuration file: {}",
                m.both.join(", ")
            );
        }
        // `debug` may be in both (a flag can only turn it on).
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
        let mut sockets = Vec::new();
        let mut tcp = Vec::new();
        for h in &hosts {
            if h.starts_with("tcp://") {
                tcp.push(tls::tcp_addr(h)?);
            } else {
                sockets.push(socket_path(h)?);
            }
        }
        let tls = if tcp.is_empty() {
            None
        } else {
            Some(tls_files(
                &hosts, tls, tlsverify, tlscacert, tlscert, tlskey,
            )?)
        };
        let mut default_ulimits: Vec<Ulimit> = Vec::new();
        let given = match file.get("default-ulimits") {
            Some(v) => ulimits::from_json(v)?,
            None => flags
                .default_ulimits
                .iter()
                .map(|a| ulimits::parse(a).context("--default-ulimit"))
                .collect::<anyhow::Result<_>>()?,
        };
        for u in given {
            // A later one of the same name replaces the earlier.
            default_ulimits.retain(|d| d.name != u.name);
            default_ulimits.push(u);
        }
        let registries = Registries::new(&insecure, &mirrors)?;
        let exec_root = exec_root.unwrap_or_else(|| "/run/berth".into());
        let pidfile = pidfile.unwrap_or_else(|| exec_root.join("berthd.pid"));
        let mut unknown_keys: Vec<String> = file
            .keys()
            .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
            .cloned()
            .collect();
        unknown_keys.sort();
        Ok(Config {
            config_file,
            sockets,
            tcp,
            tls,
            data_root: data_root.unwrap_or_else(|| "/var/lib/berth".into()),
            exec_root,
            pidfile,
            debug: log_level == tracing::Level::DEBUG,
            log_level,
            default_ulimits,
            registries,
            network,
            unknown_keys,
        })
    }
}

/// berth serves TCP only with mutual TLS: `--tlsverify` and all three
/// files, or the daemon does not start.
fn tls_files(
    hosts: &[String],
    tls: bool,
    tlsverify: bool,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> anyhow::Result<TlsFiles> {
    let tcp: Vec<&str> = hosts
        .iter()
        .filter(|h| h.starts_with("tcp://"))
        .map(String::as_str)
        .collect();
    let tcp = tcp.join(", ");
    if !tlsverify {
        bail!(
            "refusing to listen on {tcp} without mutual TLS{}: berthd serves TCP only with \
             --tlsverify --tlscacert CA.pem --tlscert SERVER-CERT.pem --tlskey SERVER-KEY.pem \
             (or the tlsverify, tlscacert, tlscert, tlskey keys of daemon.json)",
            if tls {
                " (--tls alone does not verify clients)"
            } else {
                ""
            }
        );
    }
    let missing: Vec<&str> = [
        ("--tlscacert", ca.is_none()),
        ("--tlscert", cert.is_none()),
        ("--tlskey", key.is_none()),
    ]
    .into_iter()
    .filter_map(|(f, m)| m.then_some(f))
    .collect();
    match (ca, cert, key) {
        (Some(ca), Some(cert), Some(key)) => Ok(TlsFiles { ca, cert, key }),
        _ => bail!(
            "--tlsverify on {tcp} needs --tlscacert, --tlscert and --tlskey; missing: {}",
            missing.join(", ")
        ),
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

/// `unix:///run/x.sock` → `/run/x.sock`; schemes other than `unix://`
/// and `tcp://` are refused.
pub fn socket_path(host: &str) -> anyhow::Result<PathBuf> {
    match host.strip_prefix("unix://") {
        Some(p) if p.starts_with('/') => Ok(PathBuf::from(p)),
        Some(p) => bail!("invalid host {host:?}: the socket path {p:?} must be absolute"),
        None => bail!("invalid host {host:?}: expected unix:///path or tcp://addr:port"),
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
            r#"{"data-root": "/tmp/dr", "log-level": "warn", "bip": "10.9.0.1/24", "storage-driver": "y", "fixed-cidr": "z"}"#,
        )
        .unwrap();
        let p = f.to_str().unwrap();
        let c = Config::from_flags(&flags(&["--config-file", p])).unwrap();
        assert_eq!(c.data_root, PathBuf::from("/tmp/dr"));
        assert_eq!(c.log_level, tracing::Level::WARN);
        assert_eq!(c.unknown_keys, vec!["fixed-cidr", "storage-driver"]);
        assert_eq!(
            c.network.bip.map(|b| b.to_string()).as_deref(),
            Some("10.9.0.1/24")
        );
        let e = Config::from_flags(&flags(&["--config-file", p, "--data-root", "/x"])).unwrap_err();
        assert!(
            e.to_string()
                .contains("both as a flag and in the configuration file: data-root")
        );
        std::fs::write(&f, "{ not json").unwrap();
        let e = Config::from_flags(&flags(&["--config-file", p])).unwrap_err();
        assert!(format!("{e:#}").contains("is not valid JSON"), "{e:#}");
    }

    #[test]
    fn tcp_needs_mutual_tls() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("daemon.json");
        std::fs::write(&f, "{}").unwrap();
        let p = f.to_str().unwrap();
        let tcp = ["--config-file", p, "-H", "tcp://127.0.0.1:2376"];
        let e = Config::from_flags(&flags(&tcp)).unwrap_err().to_string();
        assert!(e.contains("without mutual TLS"), "{e}");
        let mut a = tcp.to_vec();
        a.extend(["--tls"]);
        let e = Config::from_flags(&flags(&a)).unwrap_err().to_string();
        assert!(e.contains("--tls alone does not verify clients"), "{e}");
        let mut a = tcp.to_vec();
        a.extend([
            "--tlsverify",
            "--tlscacert",
            "/ca.pem",
            "--tlscert",
            "/c.pem",
        ]);
        let e = Config::from_flags(&flags(&a)).unwrap_err().to_string();
        assert!(e.contains("missing: --tlskey"), "{e}");
        a.extend(["--tlskey", "/k.pem", "-H", "unix:///tmp/s.sock"]);
        let c = Config::from_flags(&flags(&a)).unwrap();
        assert_eq!(c.tcp, vec!["127.0.0.1:2376"]);
        assert_eq!(c.sockets, vec![PathBuf::from("/tmp/s.sock")]);
        assert_eq!(c.tls.unwrap().key, PathBuf::from("/k.pem"));
        // The same from daemon.json; a flag as well is a conflict.
        std::fs::write(
            &f,
            r#"{"tlsverify": true, "tlscacert": "/ca", "tlscert": "/c", "tlskey": "/k"}"#,
        )
        .unwrap();
        let c = Config::from_flags(&flags(&tcp)).unwrap();
        assert_eq!(c.tls.unwrap().ca, PathBuf::from("/ca"));
        let mut a = tcp.to_vec();
        a.push("--tlsverify");
        let e = Config::from_flags(&flags(&a)).unwrap_err().to_string();
        assert!(e.ends_with("configuration file: tlsverify"), "{e}");
        assert!(Config::from_flags(&flags(&["--config-file", p, "-H", "ssh://x"])).is_err());
    }

    #[test]
    fn ulimits_and_registries() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("daemon.json");
        std::fs::write(&f, "{}").unwrap();
        let p = f.to_str().unwrap();
        let c = Config::from_flags(&flags(&[
            "--config-file",
            p,
            "--default-ulimit",
            "nofile=1:2",
            "--default-ulimit",
            "nproc=5",
            "--default-ulimit",
            "nofile=3:4",
            "--insecure-registry",
            "10.0.0.0/8",
            "--registry-mirror",
            "https://m.example.com",
        ]))
        .unwrap();
        let u: Vec<_> = c
            .default_ulimits
            .iter()
            .map(|u| (u.name.as_str(), u.soft, u.hard))
            .collect();
        assert_eq!(u, vec![("nproc", 5, 5), ("nofile", 3, 4)]);
        assert_eq!(c.registries.insecure, vec!["10.0.0.0/8"]);
        assert_eq!(c.registries.mirrors, vec!["https://m.example.com/"]);
        for bad in ["nofile=2:1", "bogus=1", "nofile"] {
            let e = Config::from_flags(&flags(&["--config-file", p, "--default-ulimit", bad]));
            assert!(e.is_err(), "{bad}");
        }
        std::fs::write(
            &f,
            r#"{"default-ulimits": {"nofile": {"Name": "nofile", "Soft": 1024, "Hard": 2048}},
                "insecure-registries": ["myreg:5000"], "registry-mirrors": []}"#,
        )
        .unwrap();
        let c = Config::from_flags(&flags(&["--config-file", p])).unwrap();
        assert_eq!(c.default_ulimits[0].hard, 2048);
        assert_eq!(c.registries.insecure, vec!["myreg:5000"]);
        let e = Config::from_flags(&flags(&[
            "--config-file",
            p,
            "--insecure-registry",
            "x:1",
            "--default-ulimit",
            "nofile=1",
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("insecure-registries, default-ulimits"), "{e}");
        std::fs::write(&f, r#"{"insecure-registries": ["http://x"]}"#).unwrap();
        assert!(Config::from_flags(&flags(&["--config-file", p])).is_err());
    }
}
