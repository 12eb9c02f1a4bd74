//! The flags of `run` and `create`, and their mapping onto the body of
//! `POST /containers/create` (Config + HostConfig + NetworkingConfig), as
//! the docker CLI builds it.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use clap::{ArgAction, Args};
use serde_json::{Map, Value, json};

use crate::units::{go_duration_ns, nano_cpus, ram_bytes};

/// Flags shared by `run` and `create`.
#[derive(Debug, Clone, Default, Args)]
pub struct ContainerOpts {
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set environment variables (KEY=VALUE, or KEY to copy it from here)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<String>,
    /// Bind mount a volume (HOST:CONTAINER[:OPTS], VOLUME:CONTAINER, or CONTAINER for an anonymous volume)
    #[arg(short = 'v', long = "volume", value_name = "SPEC")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container (type=bind|volume|tmpfs,src=…,dst=…,…)
    #[arg(long = "mount", value_name = "MOUNT")]
    pub mount: Vec<String>,
    /// Mount volumes from the specified container(s) (CONTAINER[:ro|rw])
    #[arg(long = "volumes-from", value_name = "CONTAINER")]
    pub volumes_from: Vec<String>,
    /// Optional volume driver for the container
    #[arg(long = "volume-driver")]
    pub volume_driver: Option<String>,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image ("" resets it)
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Set meta data on a container (KEY=VALUE)
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Container NIS domain name
    #[arg(long)]
    pub domainname: Option<String>,
    /// Memory limit (e.g. 64m, 1g)
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Swap limit equal to memory plus swap: -1 for unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Number of CPUs (e.g. 1.5)
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Tune container pids limit (-1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Security Options (e.g. seccomp=unconfined, no-new-privileges)
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Mount a tmpfs directory (PATH[:OPTIONS])
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Restart policy to apply when a container exits (no, always, unless-stopped, on-failure[:N])
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Automatically remove the container and its anonymous volumes when it exits
    #[arg(long)]
    pub rm: bool,
    /// Connect a container to a network
    #[arg(long = "network", alias = "net", default_value = "default")]
    pub network: String,
    /// Network-scoped alias for the container
    #[arg(long = "network-alias")]
    pub network_alias: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Add link to another container (name:alias)
    #[arg(long)]
    pub link: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option")]
    pub dns_option: Vec<String>,
    /// Ulimit options (NAME=SOFT[:HARD])
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Logging driver for the container
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Log driver options (KEY=VALUE)
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout", allow_hyphen_values = true)]
    pub stop_timeout: Option<i64>,
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long = "health-interval")]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long = "health-timeout")]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries")]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before counting retries (ms|s|m|h)
    #[arg(long = "health-start-period")]
    pub health_start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h)
    #[arg(long = "health-start-interval")]
    pub health_start_interval: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Publish a container's port(s) to the host ([IP:]HOST:CONTAINER[/PROTO])
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Size of /dev/shm
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Sysctl options (KEY=VALUE)
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Add a host device to the container (HOST[:CONTAINER[:PERMS]])
    #[arg(long)]
    pub device: Vec<String>,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// IPC mode to use
    #[arg(long)]
    pub ipc: Option<String>,
    /// PID namespace to use
    #[arg(long)]
    pub pid: Option<String>,
    /// UTS namespace to use
    #[arg(long)]
    pub uts: Option<String>,
    /// User namespace to use
    #[arg(long)]
    pub userns: Option<String>,
    /// Tune host's OOM preferences (-1000 to 1000)
    #[arg(long = "oom-score-adj", allow_hyphen_values = true)]
    pub oom_score_adj: Option<i64>,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Print the help for this command
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// What `POST /containers/create` needs.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    pub name: Option<String>,
    pub platform: Option<String>,
    pub body: Value,
}

/// Builds the create request; `detach` is `run -d` (then nothing is attached).
pub fn build_create(
    o: &ContainerOpts,
    image: &str,
    cmd: &[String],
    detach: bool,
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<CreateRequest> {
    let restart = restart_policy(&o.restart)?;
    if o.rm && restart["Name"] != "no" && restart["Name"] != "" {
        bail!("Conflicting options: --restart and --rm");
    }
    let mut env = Vec::new();
    for f in &o.env_file {
        let text = std::fs::read_to_string(f).with_context(|| format!("open {f}"))?;
        env.extend(parse_env_lines(&text, lookup_env));
    }
    for e in &o.env {
        env.extend(env_entry(e, lookup_env));
    }
    let mut labels = Map::new();
    for l in &o.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_owned(), Value::String(v.to_owned()));
    }

    let (mut exposed, bindings) = parse_publish(&o.publish)?;
    for e in &o.expose {
        for p in expand_port_range(e)? {
            exposed.insert(p, json!({}));
        }
    }

    let mut binds = Vec::new();
    let mut volumes = Map::new();
    for v in &o.volume {
        match split_volume(v) {
            Some((src, rest)) => {
                let src = if src.starts_with('.') {
                    std::path::absolute(&src)
                        .with_context(|| format!("resolving {src}"))?
                        .display()
                        .to_string()
                } else {
                    src
                };
                binds.push(format!("{src}:{rest}"));
            }
            None => {
                volumes.insert(v.clone(), json!({}));
            }
        }
    }

    let mut tmpfs = Map::new();
    for t in &o.tmpfs {
        let (p, opts) = t.split_once(':').unwrap_or((t, ""));
        tmpfs.insert(p.to_owned(), Value::String(opts.to_owned()));
    }

    let ulimits = o
        .ulimit
        .iter()
        .map(|u| parse_ulimit(u))
        .collect::<Result<Vec<_>>>()?;

    let mut log_config = Map::new();
    for l in &o.log_opt {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("invalid key-value pair for --log-opt: {l}"))?;
        log_config.insert(k.to_owned(), Value::String(v.to_owned()));
    }

    let mut sysctls = Map::new();
    for s in &o.sysctl {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("sysctl '{s}' is not allowed: expected KEY=VALUE"))?;
        sysctls.insert(k.to_owned(), Value::String(v.to_owned()));
    }

    let devices = o
        .device
        .iter()
        .map(|d| {
            let parts: Vec<&str> = d.split(':').collect();
            let host = parts[0];
            let ctr = parts
                .get(1)
                .copied()
                .filter(|s| !s.is_empty())
                .unwrap_or(host);
            let perms = parts.get(2).copied().unwrap_or("rwm");
            json!({"PathOnHost": host, "PathInContainer": ctr, "CgroupPermissions": perms})
        })
        .collect::<Vec<_>>();

    let healthcheck = healthcheck(o)?;
    let attach = !detach;
    let mut config = json!({
        "Hostname": o.hostname.clone().unwrap_or_default(),
        "Domainname": o.domainname.clone().unwrap_or_default(),
        "User": o.user.clone().unwrap_or_default(),
        "AttachStdin": attach && o.interactive,
        "AttachStdout": attach,
        "AttachStderr": attach,
        "Tty": o.tty,
        "OpenStdin": o.interactive,
        "StdinOnce": attach && o.interactive,
        "Env": env,
        "Cmd": if cmd.is_empty() { Value::Null } else { json!(cmd) },
        "Image": image,
        "Volumes": if volumes.is_empty() { Value::Null } else { Value::Object(volumes) },
        "WorkingDir": o.workdir.clone().unwrap_or_default(),
        "Entrypoint": match &o.entrypoint { None => Value::Null, Some(e) => json!([e]) },
        "Labels": labels,
    });
    if !exposed.is_empty() {
        config["ExposedPorts"] = Value::Object(exposed);
    }
    if let Some(s) = &o.stop_signal {
        config["StopSignal"] = json!(s);
    }
    if let Some(t) = o.stop_timeout {
        config["StopTimeout"] = json!(t);
    }
    if let Some(h) = healthcheck {
        config["Healthcheck"] = h;
    }

    let mem = |v: &Option<String>| -> Result<i64> {
        Ok(match v {
            Some(s) => ram_bytes(s)?,
            None => 0,
        })
    };
    let memory_swap = match o.memory_swap.as_deref() {
        Some("-1") => -1,
        other => mem(&other.map(str::to_owned))?,
    };
    let mut host = json!({
        "Binds": if binds.is_empty() { Value::Null } else { json!(binds) },
        "NetworkMode": o.network,
        "PortBindings": Value::Object(bindings),
        "RestartPolicy": restart,
        "AutoRemove": o.rm,
        "CapAdd": if o.cap_add.is_empty() { Value::Null } else { json!(o.cap_add) },
        "CapDrop": if o.cap_drop.is_empty() { Value::Null } else { json!(o.cap_drop) },
        "Dns": o.dns,
        "DnsOptions": o.dns_option,
        "DnsSearch": o.dns_search,
        "ExtraHosts": o.add_host.iter().map(|h| h.replacen('=', ":", 1)).collect::<Vec<_>>(),
        "Links": o.link,
        "GroupAdd": if o.group_add.is_empty() { Value::Null } else { json!(o.group_add) },
        "Privileged": o.privileged,
        "PublishAllPorts": o.publish_all,
        "ReadonlyRootfs": o.read_only,
        "SecurityOpt": if o.security_opt.is_empty() { Value::Null } else { json!(o.security_opt) },
        "LogConfig": {"Type": o.log_driver.clone().unwrap_or_default(), "Config": log_config},
        "Memory": mem(&o.memory)?,
        "MemoryReservation": mem(&o.memory_reservation)?,
        "MemorySwap": memory_swap,
        "NanoCpus": match &o.cpus { Some(c) => nano_cpus(c)?, None => 0 },
        "CpuShares": o.cpu_shares.unwrap_or(0),
        "CpusetCpus": o.cpuset_cpus.clone().unwrap_or_default(),
        "Devices": devices,
        "Ulimits": if ulimits.is_empty() { Value::Null } else { json!(ulimits) },
        "ShmSize": mem(&o.shm_size)?,
        "IpcMode": o.ipc.clone().unwrap_or_default(),
        "PidMode": o.pid.clone().unwrap_or_default(),
        "UTSMode": o.uts.clone().unwrap_or_default(),
        "UsernsMode": o.userns.clone().unwrap_or_default(),
        "OomScoreAdj": o.oom_score_adj.unwrap_or(0),
    });
    if let Some(p) = o.pids_limit {
        host["PidsLimit"] = json!(p);
    }
    if o.init {
        host["Init"] = json!(true);
    }
    if !tmpfs.is_empty() {
        host["Tmpfs"] = Value::Object(tmpfs);
    }
    if !o.mount.is_empty() {
        let mounts = o
            .mount
            .iter()
            .map(|m| {
                crate::commands::volume::parse_mount(m)
                    .with_context(|| format!("invalid argument \"{m}\" for \"--mount\" flag"))
            })
            .collect::<Result<Vec<_>>>()?;
        host["Mounts"] = json!(mounts);
    }
    if !o.volumes_from.is_empty() {
        host["VolumesFrom"] = json!(o.volumes_from);
    }
    if let Some(d) = &o.volume_driver {
        host["VolumeDriver"] = json!(d);
    }
    if !sysctls.is_empty() {
        host["Sysctls"] = Value::Object(sysctls);
    }
    if o.tty
        && let Some((h, w)) = crate::tty::size()
    {
        host["ConsoleSize"] = json!([h, w]);
    }
    let mut endpoints = Map::new();
    // As the docker CLI: aliases and links also go to the first network
    // (links act there on user-defined networks).
    let mut endpoint = json!({});
    if !o.network_alias.is_empty() {
        endpoint["Aliases"] = json!(o.network_alias);
    }
    if !o.link.is_empty() {
        endpoint["Links"] = json!(o.link);
    }
    endpoints.insert(o.network.clone(), endpoint);
    let mut body = config;
    body["HostConfig"] = host;
    body["NetworkingConfig"] = json!({"EndpointsConfig": endpoints});
    Ok(CreateRequest {
        name: o.name.clone(),
        platform: o.platform.clone(),
        body,
    })
}

/// `-e KEY=VALUE` as is; `-e KEY` takes KEY's value from here, if set.
fn env_entry(e: &str, lookup_env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if e.contains('=') {
        Some(e.to_owned())
    } else {
        lookup_env(e).map(|v| format!("{e}={v}"))
    }
}

/// An env file: KEY=VALUE lines, `#` comments, blank lines, bare KEYs.
pub fn parse_env_lines(text: &str, lookup_env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_start())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| env_entry(l, lookup_env))
        .collect()
}

/// `no`, `always`, `unless-stopped`, `on-failure[:N]`.
pub fn restart_policy(s: &str) -> Result<Value> {
    let (name, count) = s.split_once(':').unwrap_or((s, ""));
    let count: i64 = if count.is_empty() {
        0
    } else {
        count.parse().with_context(|| {
            format!("invalid restart policy format: maximum retry count must be an integer: {s}")
        })?
    };
    match name {
        "" | "no" | "always" | "unless-stopped" if count == 0 => {}
        "on-failure" => {}
        "always" | "unless-stopped" | "no" => {
            bail!(
                "invalid restart policy format: maximum retry count can only be used with 'on-failure'"
            )
        }
        _ => bail!("invalid restart policy format: unknown policy '{name}'"),
    }
    Ok(json!({"Name": if name.is_empty() { "no" } else { name }, "MaximumRetryCount": count}))
}

/// `-v` specs with a source (`/host:/ctr[:ro]`, `vol:/ctr`) → (source, rest);
/// a lone container path (anonymous volume) → None.
fn split_volume(v: &str) -> Option<(String, String)> {
    let (src, rest) = v.split_once(':')?;
    if src.is_empty() || rest.is_empty() {
        return None;
    }
    Some((src.to_owned(), rest.to_owned()))
}

/// `nofile=1024:2048` → `{"Name":"nofile","Soft":1024,"Hard":2048}`.
pub fn parse_ulimit(u: &str) -> Result<Value> {
    let (name, vals) = u
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("invalid ulimit argument: {u}"))?;
    let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
    let p = |s: &str| -> Result<i64> {
        s.parse()
            .with_context(|| format!("invalid ulimit value in {u}"))
    };
    let (soft, hard) = (p(soft)?, p(hard)?);
    if soft > hard && hard != -1 {
        bail!("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}");
    }
    Ok(json!({"Name": name, "Soft": soft, "Hard": hard}))
}

fn healthcheck(o: &ContainerOpts) -> Result<Option<Value>> {
    let any_opt = o.health_interval.is_some()
        || o.health_timeout.is_some()
        || o.health_retries.is_some()
        || o.health_start_period.is_some()
        || o.health_start_interval.is_some();
    if o.no_healthcheck {
        if o.health_cmd.is_some() || any_opt {
            bail!("--no-healthcheck conflicts with --health-* options");
        }
        return Ok(Some(json!({"Test": ["NONE"]})));
    }
    if o.health_cmd.is_none() && !any_opt {
        return Ok(None);
    }
    let d = |v: &Option<String>, what: &str| -> Result<i64> {
        match v {
            None => Ok(0),
            Some(s) => {
                let n = go_duration_ns(s)?;
                if n < 0 {
                    bail!("--{what} cannot be negative");
                }
                Ok(n)
            }
        }
    };
    let mut h = json!({
        "Interval": d(&o.health_interval, "health-interval")?,
        "Timeout": d(&o.health_timeout, "health-timeout")?,
        "StartPeriod": d(&o.health_start_period, "health-start-period")?,
        "StartInterval": d(&o.health_start_interval, "health-start-interval")?,
        "Retries": o.health_retries.unwrap_or(0),
    });
    if let Some(c) = &o.health_cmd {
        h["Test"] = json!(["CMD-SHELL", c]);
    }
    Ok(Some(h))
}

/// `80`, `80/udp`, `8000-8002` → ["80/tcp", …].
fn expand_port_range(spec: &str) -> Result<Vec<String>> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let (a, b) = parse_range(ports)?;
    Ok((a..=b).map(|p| format!("{p}/{proto}")).collect())
}

fn parse_range(s: &str) -> Result<(u16, u16)> {
    let bad = || anyhow::anyhow!("invalid port (range): '{s}'");
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if b < a {
        return Err(bad());
    }
    Ok((a, b))
}

/// `-p` specs → (ExposedPorts, PortBindings), like go-connections' nat.ParsePortSpecs:
/// `80`, `8080:80`, `127.0.0.1:8080:80`, `127.0.0.1::80`, `[::1]:8080:80/udp`,
/// `8080-8081:80-81`.
pub fn parse_publish(specs: &[String]) -> Result<(Map<String, Value>, Map<String, Value>)> {
    let mut exposed = Map::new();
    let mut bindings: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for spec in specs {
        let (rest, proto) = match spec.rsplit_once('/') {
            Some((r, p)) => (r, p.to_ascii_lowercase()),
            None => (spec.as_str(), "tcp".to_owned()),
        };
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            bail!("invalid proto: {proto}");
        }
        let (ip, host, ctr) =
            split_publish(rest).with_context(|| format!("invalid publish spec: {spec}"))?;
        let (c0, c1) = parse_range(&ctr)?;
        let host_range = if host.is_empty() {
            None
        } else {
            Some(parse_range(&host)?)
        };
        let n = c1 - c0;
        if let Some((h0, h1)) = host_range
            && n != 0
            && h1 - h0 != n
        {
            bail!("invalid ranges specified for container and host Ports: {ctr} and {host}");
        }
        for i in 0..=n {
            let port = format!("{}/{}", c0 + i, proto);
            let host_port = match host_range {
                None => String::new(),
                Some((h0, h1)) if n == 0 && h1 != h0 => format!("{h0}-{h1}"),
                Some((h0, _)) => (h0 + i).to_string(),
            };
            exposed.insert(port.clone(), json!({}));
            bindings
                .entry(port)
                .or_default()
                .push(json!({"HostIp": ip, "HostPort": host_port}));
        }
    }
    Ok((
        exposed,
        bindings
            .into_iter()
            .map(|(k, v)| (k, Value::Array(v)))
            .collect(),
    ))
}

/// `[ip:][host:]ctr` with IPv6 addresses in brackets → (ip, host, ctr).
fn split_publish(s: &str) -> Result<(String, String, String)> {
    let (ip, rest) = if let Some(r) = s.strip_prefix('[') {
        let (ip, r) = r
            .split_once(']')
            .ok_or_else(|| anyhow::anyhow!("unclosed '['"))?;
        let r = r
            .strip_prefix(':')
            .ok_or_else(|| anyhow::anyhow!("expected ':' after the address"))?;
        (ip.to_owned(), r)
    } else {
        let parts: Vec<&str> = s.split(':').collect();
        match parts.len() {
            1 => return Ok((String::new(), String::new(), parts[0].to_owned())),
            2 => return Ok((String::new(), parts[0].to_owned(), parts[1].to_owned())),
            3 => (parts[0].to_owned(), &s[parts[0].len() + 1..]),
            _ => bail!("too many colons"),
        }
    };
    let (host, ctr) = rest
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("no container port"))?;
    if ctr.is_empty() {
        bail!("no container port");
    }
    Ok((ip, host.to_owned(), ctr.to_owned()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    #[command(disable_help_flag = true)]
    struct T {
        #[command(flatten)]
        o: ContainerOpts,
        image: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    }

    fn body(args: &[&str]) -> Value {
        let t = T::try_parse_from(std::iter::once("run").chain(args.iter().copied())).unwrap();
        let env = |k: &str| (k == "HOME_VAR").then(|| "from-here".to_owned());
        build_create(&t.o, &t.image, &t.cmd, false, &env)
            .unwrap()
            .body
    }

    #[test]
    fn resources() {
        let b = body(&["--cpus", "1.5", "-m", "64m", "--pids-limit", "100", "bb"]);
        assert_eq!(b["HostConfig"]["NanoCpus"], 1_500_000_000i64);
        assert_eq!(b["HostConfig"]["Memory"], 67_108_864i64);
        assert_eq!(b["HostConfig"]["PidsLimit"], 100);
        assert_eq!(b["Image"], "bb");
        assert_eq!(b["Cmd"], Value::Null);
        let b = body(&[
            "--memory",
            "1g",
            "--memory-swap",
            "-1",
            "--pids-limit",
            "-1",
            "bb",
        ]);
        assert_eq!(b["HostConfig"]["Memory"], 1_073_741_824i64);
        assert_eq!(b["HostConfig"]["MemorySwap"], -1);
        assert_eq!(b["HostConfig"]["PidsLimit"], -1);
    }

    #[test]
    fn ports() {
        let b = body(&[
            "-p",
            "8080:80",
            "-p",
            "127.0.0.1::53/udp",
            "-p",
            "9000",
            "bb",
        ]);
        assert_eq!(
            b["HostConfig"]["PortBindings"],
            json!({
                "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
                "9000/tcp": [{"HostIp": "", "HostPort": ""}],
            })
        );
        assert_eq!(
            b["ExposedPorts"],
            json!({"80/tcp": {}, "53/udp": {}, "9000/tcp": {}})
        );
        let (_, pb) = parse_publish(&["[::1]:8080-8081:80-81/tcp".into()]).unwrap();
        assert_eq!(
            Value::Object(pb),
            json!({
                "80/tcp": [{"HostIp": "::1", "HostPort": "8080"}],
                "81/tcp": [{"HostIp": "::1", "HostPort": "8081"}],
            })
        );
        assert!(parse_publish(&["8080-8082:80-81".into()]).is_err());
        assert!(parse_publish(&["80/icmp".into()]).is_err());
        assert!(parse_publish(&["x:80".into()]).is_err());
    }

    #[test]
    fn restart_policies() {
        let b = body(&["--restart", "on-failure:3", "bb"]);
        assert_eq!(
            b["HostConfig"]["RestartPolicy"],
            json!({"Name": "on-failure", "MaximumRetryCount": 3})
        );
        assert_eq!(restart_policy("always").unwrap()["Name"], "always");
        assert_eq!(restart_policy("no").unwrap()["MaximumRetryCount"], 0);
        assert!(restart_policy("always:3").is_err());
        assert!(restart_policy("sometimes").is_err());
        assert!(restart_policy("on-failure:x").is_err());
        let t = T::try_parse_from(["run", "--rm", "--restart", "always", "bb"]).unwrap();
        let e = build_create(&t.o, "bb", &[], false, &|_| None).unwrap_err();
        assert_eq!(e.to_string(), "Conflicting options: --restart and --rm");
    }

    #[test]
    fn config_fields_and_command() {
        let b = body(&[
            "-i",
            "-e",
            "A=1",
            "-e",
            "HOME_VAR",
            "-e",
            "UNSET_VAR",
            "-l",
            "k=v",
            "-l",
            "flag",
            "-w",
            "/tmp",
            "-u",
            "1000:1000",
            "--entrypoint",
            "",
            "-h",
            "box",
            "--name",
            "web",
            "--stop-signal",
            "SIGUSR1",
            "--stop-timeout",
            "3",
            "bb",
            "ls",
            "-la",
            "/",
        ]);
        assert_eq!(b["Env"], json!(["A=1", "HOME_VAR=from-here"]));
        assert_eq!(b["Labels"], json!({"k": "v", "flag": ""}));
        assert_eq!(b["WorkingDir"], "/tmp");
        assert_eq!(b["User"], "1000:1000");
        assert_eq!(b["Entrypoint"], json!([""]));
        assert_eq!(b["Hostname"], "box");
        assert_eq!(b["Cmd"], json!(["ls", "-la", "/"]));
        assert_eq!(b["OpenStdin"], true);
        assert_eq!(b["AttachStdin"], true);
        assert_eq!(b["StdinOnce"], true);
        assert_eq!(b["StopSignal"], "SIGUSR1");
        assert_eq!(b["StopTimeout"], 3);
    }

    #[test]
    fn host_config_fields() {
        let b = body(&[
            "--rm",
            "--privileged",
            "--read-only",
            "--init",
            "--cap-add",
            "NET_ADMIN",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--tmpfs",
            "/run:size=64m",
            "--network",
            "none",
            "--add-host",
            "db:10.0.0.2",
            "--add-host",
            "x=127.0.0.1",
            "--dns",
            "127.0.0.53",
            "--ulimit",
            "nofile=1024:2048",
            "--log-opt",
            "max-size=1m",
            "-v",
            "/srv:/data:ro",
            "-v",
            "/anon",
            "-v",
            "named:/v",
            "bb",
        ]);
        let h = &b["HostConfig"];
        assert_eq!(h["AutoRemove"], true);
        assert_eq!(h["Privileged"], true);
        assert_eq!(h["ReadonlyRootfs"], true);
        assert_eq!(h["Init"], true);
        assert_eq!(h["CapAdd"], json!(["NET_ADMIN"]));
        assert_eq!(h["CapDrop"], json!(["ALL"]));
        assert_eq!(h["SecurityOpt"], json!(["no-new-privileges"]));
        assert_eq!(h["Tmpfs"], json!({"/run": "size=64m"}));
        assert_eq!(h["NetworkMode"], "none");
        assert_eq!(h["ExtraHosts"], json!(["db:10.0.0.2", "x:127.0.0.1"]));
        assert_eq!(h["Dns"], json!(["127.0.0.53"]));
        assert_eq!(
            h["Ulimits"],
            json!([{"Name": "nofile", "Soft": 1024, "Hard": 2048}])
        );
        assert_eq!(h["LogConfig"]["Config"], json!({"max-size": "1m"}));
        assert_eq!(h["Binds"], json!(["/srv:/data:ro", "named:/v"]));
        assert_eq!(b["Volumes"], json!({"/anon": {}}));
        assert_eq!(
            b["NetworkingConfig"]["EndpointsConfig"],
            json!({"none": {}})
        );
    }

    #[test]
    fn healthchecks() {
        let b = body(&[
            "--health-cmd",
            "true",
            "--health-interval",
            "5s",
            "--health-retries",
            "2",
            "bb",
        ]);
        assert_eq!(
            b["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000i64, "Timeout": 0,
                   "StartPeriod": 0, "StartInterval": 0, "Retries": 2})
        );
        let b = body(&["--no-healthcheck", "bb"]);
        assert_eq!(b["Healthcheck"], json!({"Test": ["NONE"]}));
        assert!(body(&["bb"]).get("Healthcheck").is_none());
    }

    #[test]
    fn env_files() {
        let text = "# comment\n\nA=1\n  B=two words\nHOME_VAR\nMISSING\n";
        let env = |k: &str| (k == "HOME_VAR").then(|| "x".to_owned());
        assert_eq!(
            parse_env_lines(text, &env),
            vec!["A=1", "B=two words", "HOME_VAR=x"]
        );
    }

    #[test]
    fn detached_does_not_attach() {
        let t = T::try_parse_from(["run", "-i", "bb"]).unwrap();
        let b = build_create(&t.o, "bb", &[], true, &|_| None).unwrap().body;
        assert_eq!(b["AttachStdout"], false);
        assert_eq!(b["AttachStdin"], false);
        assert_eq!(b["OpenStdin"], true);
    }
}
