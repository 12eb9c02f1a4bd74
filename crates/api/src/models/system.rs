//! `/version` and `/info`.

use std::collections::BTreeMap;

use serde::Serialize;

/// `GET /version`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Version {
    /// `{"Name": …}`.
    pub platform: PlatformName,
    /// The engine component.
    pub components: Vec<Component>,
    /// Engine version.
    pub version: String,
    /// Newest API version.
    pub api_version: String,
    /// Oldest API version.
    #[serde(rename = "MinAPIVersion")]
    pub min_api_version: String,
    /// Commit berthd was built from ("" when unknown).
    pub git_commit: String,
    /// The toolchain (Docker's field name).
    pub go_version: String,
    /// `linux`.
    pub os: String,
    /// GOARCH.
    pub arch: String,
    /// `uname -r`.
    pub kernel_version: String,
    /// RFC 3339, when known at build time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_time: Option<String>,
}

/// `Platform`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PlatformName {
    /// Product name.
    pub name: String,
}

/// A component of `/version`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Component {
    /// `Engine`.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Free-form details (`ApiVersion`, `Os`, …).
    pub details: BTreeMap<String, String>,
}

/// `GET /info`. Every `DriverStatus` entry is a 2-element array.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Info {
    #[serde(rename = "ID")]
    pub id: String,
    pub containers: u64,
    pub containers_running: u64,
    pub containers_paused: u64,
    pub containers_stopped: u64,
    pub images: u64,
    pub driver: String,
    pub driver_status: Vec<[String; 2]>,
    pub plugins: Plugins,
    pub memory_limit: bool,
    pub swap_limit: bool,
    pub cpu_cfs_period: bool,
    pub cpu_cfs_quota: bool,
    #[serde(rename = "CPUShares")]
    pub cpu_shares: bool,
    #[serde(rename = "CPUSet")]
    pub cpu_set: bool,
    pub pids_limit: bool,
    pub oom_kill_disable: bool,
    #[serde(rename = "IPv4Forwarding")]
    pub ipv4_forwarding: bool,
    pub debug: bool,
    pub n_fd: u64,
    pub n_goroutines: u64,
    pub system_time: String,
    pub logging_driver: String,
    pub cgroup_driver: String,
    pub cgroup_version: String,
    pub n_events_listener: u64,
    pub kernel_version: String,
    pub operating_system: String,
    #[serde(rename = "OSVersion")]
    pub os_version: String,
    #[serde(rename = "OSType")]
    pub os_type: String,
    pub architecture: String,
    pub index_server_address: String,
    pub registry_config: RegistryConfig,
    #[serde(rename = "NCPU")]
    pub ncpu: u64,
    pub mem_total: u64,
    pub docker_root_dir: String,
    pub http_proxy: String,
    pub https_proxy: String,
    pub no_proxy: String,
    pub name: String,
    pub labels: Vec<String>,
    pub experimental_build: bool,
    pub server_version: String,
    pub runtimes: BTreeMap<String, Runtime>,
    pub default_runtime: String,
    pub swarm: Swarm,
    pub live_restore_enabled: bool,
    pub isolation: String,
    pub init_binary: String,
    pub containerd_commit: Commit,
    pub runc_commit: Commit,
    pub init_commit: Commit,
    pub security_options: Vec<String>,
    #[serde(rename = "CDISpecDirs")]
    pub cdi_spec_dirs: Vec<String>,
    pub warnings: Vec<String>,
}

/// `Plugins`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Plugins {
    pub volume: Vec<String>,
    pub network: Vec<String>,
    pub authorization: Option<Vec<String>>,
    pub log: Vec<String>,
}

/// `RegistryConfig`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegistryConfig {
    #[serde(rename = "InsecureRegistryCIDRs")]
    pub insecure_registry_cidrs: Vec<String>,
    pub index_configs: BTreeMap<String, serde_json::Value>,
    pub mirrors: Vec<String>,
}

/// A runtime of `Runtimes`.
#[derive(Debug, Clone, Serialize)]
pub struct Runtime {
    pub path: String,
}

/// `Swarm`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Swarm {
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_addr: String,
    pub local_node_state: String,
    pub control_available: bool,
    pub error: String,
    pub remote_managers: Option<Vec<String>>,
}

/// A commit of a component.
#[derive(Debug, Clone, Serialize)]
pub struct Commit {
    #[serde(rename = "ID")]
    pub id: String,
}
