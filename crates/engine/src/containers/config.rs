//! The container configuration as the Docker Engine API sends it
//! (`ContainerConfig`, `HostConfig`), kept as sent so that inspect shows it
//! back. Every field accepts `null`; fields berth does not read are kept in
//! `extra` and returned unchanged.

use std::collections::BTreeMap;

use serde::de::Deserializer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `null` or missing → the type's default.
pub(crate) fn nd<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A command given as a string (one word… as Docker's `strslice`) or a list.
fn str_or_list<'de, D>(d: D) -> Result<Option<Vec<String>>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum S {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<S>::deserialize(d)? {
        None => None,
        Some(S::One(s)) => Some(vec![s]),
        Some(S::Many(v)) => Some(v),
    })
}

/// `Config` of a create request (moby's `container.Config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// Hostname.
    #[serde(default, deserialize_with = "nd")]
    pub hostname: String,
    /// Domain name.
    #[serde(default, deserialize_with = "nd")]
    pub domainname: String,
    /// `user[:group]`.
    #[serde(default, deserialize_with = "nd")]
    pub user: String,
    /// Attach stdin (informational: attach is its own call).
    #[serde(default, deserialize_with = "nd")]
    pub attach_stdin: bool,
    /// Attach stdout.
    #[serde(default, deserialize_with = "nd")]
    pub attach_stdout: bool,
    /// Attach stderr.
    #[serde(default, deserialize_with = "nd")]
    pub attach_stderr: bool,
    /// `{"80/tcp": {}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    /// Allocate a terminal.
    #[serde(default, deserialize_with = "nd")]
    pub tty: bool,
    /// Keep stdin open.
    #[serde(default, deserialize_with = "nd")]
    pub open_stdin: bool,
    /// Close stdin after the first attach ends.
    #[serde(default, deserialize_with = "nd")]
    pub stdin_once: bool,
    /// `KEY=value`.
    #[serde(default, deserialize_with = "nd")]
    pub env: Vec<String>,
    /// Command; `null`: the image's.
    #[serde(default, deserialize_with = "str_or_list")]
    pub cmd: Option<Vec<String>>,
    /// Health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<berth_image::spec::Healthcheck>,
    /// The image as the user named it.
    #[serde(default, deserialize_with = "nd")]
    pub image: String,
    /// `{"/data": {}}`.
    #[serde(default, deserialize_with = "nd")]
    pub volumes: Option<BTreeMap<String, Value>>,
    /// Working directory.
    #[serde(default, deserialize_with = "nd")]
    pub working_dir: String,
    /// Entrypoint; `null`: the image's; `[]` or `""`: none.
    #[serde(default, deserialize_with = "str_or_list")]
    pub entrypoint: Option<Vec<String>>,
    /// Labels.
    #[serde(default, deserialize_with = "nd")]
    pub labels: BTreeMap<String, String>,
    /// Signal that stops the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Seconds to wait before SIGKILL on stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    /// Everything else, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `HostConfig.RestartPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    /// `""`/`no`, `always`, `unless-stopped`, `on-failure`.
    #[serde(default, deserialize_with = "nd")]
    pub name: String,
    /// For `on-failure`: the most restarts (0 = unlimited).
    #[serde(default, deserialize_with = "nd")]
    pub maximum_retry_count: i64,
}

/// `HostConfig.LogConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogConfig {
    /// `json-file` (also for `""`), `none`.
    #[serde(default, deserialize_with = "nd", rename = "Type")]
    pub kind: String,
    /// `max-size`, `max-file`.
    #[serde(default, deserialize_with = "nd")]
    pub config: BTreeMap<String, String>,
}

/// `HostConfig.Ulimits[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ulimit {
    /// `nofile`, …
    #[serde(default, deserialize_with = "nd")]
    pub name: String,
    /// Soft limit.
    #[serde(default, deserialize_with = "nd")]
    pub soft: i64,
    /// Hard limit.
    #[serde(default, deserialize_with = "nd")]
    pub hard: i64,
}

/// `HostConfig.Mounts[]` (the `--mount` form).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountSpec {
    /// `bind`, `volume`, `tmpfs`.
    #[serde(default, deserialize_with = "nd", rename = "Type")]
    pub kind: String,
    /// Host path (bind) or volume name.
    #[serde(default, deserialize_with = "nd")]
    pub source: String,
    /// Path in the container.
    #[serde(default, deserialize_with = "nd")]
    pub target: String,
    /// Read-only.
    #[serde(default, deserialize_with = "nd")]
    pub read_only: bool,
    /// `BindOptions`, `TmpfsOptions`, … kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `HostConfig.Devices[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeviceMapping {
    /// Host device path.
    #[serde(default, deserialize_with = "nd")]
    pub path_on_host: String,
    /// Path in the container.
    #[serde(default, deserialize_with = "nd")]
    pub path_in_container: String,
    /// `rwm`.
    #[serde(default, deserialize_with = "nd")]
    pub cgroup_permissions: String,
}

/// One host side of a published port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    /// Host address; empty: every address.
    #[serde(default, deserialize_with = "nd", rename = "HostIp")]
    pub host_ip: String,
    /// Host port or range (`8080`, `8080-8090`); empty: any free port.
    #[serde(default, deserialize_with = "nd")]
    pub host_port: String,
}

/// `HostConfig` of a create request (moby's `container.HostConfig`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    /// `src:dst[:opts]`.
    #[serde(default, deserialize_with = "nd")]
    pub binds: Vec<String>,
    /// Memory limit in bytes (0 = none).
    #[serde(default, deserialize_with = "nd")]
    pub memory: i64,
    /// Memory + swap (-1 = unlimited).
    #[serde(default, deserialize_with = "nd")]
    pub memory_swap: i64,
    /// CPUs × 1e9.
    #[serde(default, deserialize_with = "nd")]
    pub nano_cpus: i64,
    /// Relative CPU weight.
    #[serde(default, deserialize_with = "nd")]
    pub cpu_shares: i64,
    /// CFS quota (µs).
    #[serde(default, deserialize_with = "nd")]
    pub cpu_quota: i64,
    /// CFS period (µs).
    #[serde(default, deserialize_with = "nd")]
    pub cpu_period: i64,
    /// `0-3`, `0,1`.
    #[serde(default, deserialize_with = "nd")]
    pub cpuset_cpus: String,
    /// Memory nodes.
    #[serde(default, deserialize_with = "nd")]
    pub cpuset_mems: String,
    /// Most processes (0 or -1 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    /// rlimits.
    #[serde(default, deserialize_with = "nd")]
    pub ulimits: Vec<Ulimit>,
    /// Capabilities to add.
    #[serde(default, deserialize_with = "nd")]
    pub cap_add: Vec<String>,
    /// Capabilities to drop.
    #[serde(default, deserialize_with = "nd")]
    pub cap_drop: Vec<String>,
    /// Every capability of the caller, every device.
    #[serde(default, deserialize_with = "nd")]
    pub privileged: bool,
    /// Read-only root filesystem.
    #[serde(default, deserialize_with = "nd")]
    pub readonly_rootfs: bool,
    /// `seccomp=…`, `no-new-privileges`.
    #[serde(default, deserialize_with = "nd")]
    pub security_opt: Vec<String>,
    /// Devices.
    #[serde(default, deserialize_with = "nd")]
    pub devices: Vec<DeviceMapping>,
    /// Path → tmpfs options.
    #[serde(default, deserialize_with = "nd")]
    pub tmpfs: BTreeMap<String, String>,
    /// /dev/shm size in bytes.
    #[serde(default, deserialize_with = "nd")]
    pub shm_size: i64,
    /// Namespaced sysctls.
    #[serde(default, deserialize_with = "nd")]
    pub sysctls: BTreeMap<String, String>,
    /// Run an init as PID 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    /// Remove the container when it exits.
    #[serde(default, deserialize_with = "nd")]
    pub auto_remove: bool,
    /// Restart policy.
    #[serde(default, deserialize_with = "nd")]
    pub restart_policy: RestartPolicy,
    /// `default`, `bridge`, `none`, `host`, `container:<id>`.
    #[serde(default, deserialize_with = "nd")]
    pub network_mode: String,
    /// `host:ip`.
    #[serde(default, deserialize_with = "nd")]
    pub extra_hosts: Vec<String>,
    /// `--link name:alias` (legacy links, default bridge), as sent.
    #[serde(default, deserialize_with = "nd")]
    pub links: Vec<String>,
    /// `-p`: `"80/tcp"` → host bindings.
    #[serde(default, deserialize_with = "nd")]
    pub port_bindings: BTreeMap<String, Option<Vec<PortBinding>>>,
    /// `-P`: every exposed port on an ephemeral host port.
    #[serde(default, deserialize_with = "nd")]
    pub publish_all_ports: bool,
    /// DNS servers.
    #[serde(default, deserialize_with = "nd")]
    pub dns: Vec<String>,
    /// DNS search domains.
    #[serde(default, deserialize_with = "nd")]
    pub dns_search: Vec<String>,
    /// resolv.conf options.
    #[serde(default, deserialize_with = "nd")]
    pub dns_options: Vec<String>,
    /// Log driver.
    #[serde(default, deserialize_with = "nd")]
    pub log_config: LogConfig,
    /// `--mount`.
    #[serde(default, deserialize_with = "nd")]
    pub mounts: Vec<MountSpec>,
    /// Extra groups.
    #[serde(default, deserialize_with = "nd")]
    pub group_add: Vec<String>,
    /// `host` or `container:<id>`.
    #[serde(default, deserialize_with = "nd")]
    pub pid_mode: String,
    /// `host`, `private`, `shareable`, `container:<id>`.
    #[serde(default, deserialize_with = "nd")]
    pub ipc_mode: String,
    /// `host`.
    #[serde(default, deserialize_with = "nd", rename = "UTSMode")]
    pub uts_mode: String,
    /// `host` or `private`.
    #[serde(default, deserialize_with = "nd")]
    pub cgroupns_mode: String,
    /// Initial terminal size `[rows, columns]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_size: Option<[u16; 2]>,
    /// Everything else, kept as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A create request's body.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CreateBody {
    /// The container config (the top level of the body).
    #[serde(flatten)]
    pub config: ContainerConfig,
    /// Host config.
    #[serde(default, rename = "HostConfig", deserialize_with = "nd")]
    pub host_config: HostConfig,
    /// Networking config (kept as sent; networks are a later issue).
    #[serde(default, rename = "NetworkingConfig")]
    pub networking_config: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_and_strings_are_accepted() {
        let b: CreateBody = serde_json::from_str(
            r#"{"Image":"busybox","Cmd":"true","Entrypoint":null,"Env":null,"Labels":null,
                "HostConfig":{"Binds":null,"Memory":67108864,"RestartPolicy":{"Name":"always","MaximumRetryCount":0},
                "LogConfig":{"Type":"","Config":null},"Whatever":1},"Odd":true}"#,
        )
        .expect("parse");
        assert_eq!(b.config.cmd, Some(vec!["true".to_string()]));
        assert_eq!(b.config.entrypoint, None);
        assert!(b.config.env.is_empty());
        assert_eq!(b.host_config.memory, 64 << 20);
        assert_eq!(b.host_config.restart_policy.name, "always");
        assert_eq!(b.host_config.extra.get("Whatever"), Some(&Value::from(1)));
        assert_eq!(b.config.extra.get("Odd"), Some(&Value::from(true)));
        let back = serde_json::to_value(&b.host_config).expect("json");
        assert_eq!(back["Whatever"], 1);
    }

    #[test]
    fn wrong_types_are_errors() {
        assert!(serde_json::from_str::<CreateBody>(r#"{"Image":5}"#).is_err());
        assert!(serde_json::from_str::<CreateBody>(r#"{"HostConfig":{"Memory":"lots"}}"#).is_err());
    }
}
