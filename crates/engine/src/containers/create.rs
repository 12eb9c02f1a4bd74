//! `docker create`: check the request, record the container, prepare its
//! snapshot. And the mapping from the Docker request to the spec builder's
//! options, used again at every start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_image::layer::ApplyOptions;
use berth_image::spec::{self, NamespaceMode, RunOptions};
use oci_spec::image::ImageConfiguration;

use super::config::{CreateBody, HostConfig};
use super::record::{Record, State, Status};
use super::{ContainerService, names, now};
use crate::error::EngineError;

/// The smallest memory limit Docker accepts.
const MIN_MEMORY: i64 = 6 * 1024 * 1024;

impl ContainerService {
    /// Creates a container; returns its id and warnings.
    pub fn create(
        &self,
        name: Option<&str>,
        body: CreateBody,
    ) -> Result<(String, Vec<String>), EngineError> {
        let CreateBody {
            mut config,
            mut host_config,
            networking_config,
        } = body;
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => Some(names::validate(n)?),
            None => None,
        };
        if config.image.is_empty() {
            return Err(EngineError::InvalidArgument(
                "config cannot be empty in order to create a container".into(),
            ));
        }
        check_host_config(&host_config)?;
        let networking: crate::networks::NetworkingConfig = match networking_config {
            Some(v) if !v.is_null() => serde_json::from_value(v).map_err(|e| {
                EngineError::InvalidArgument(format!("invalid NetworkingConfig: {e}"))
            })?,
            _ => Default::default(),
        };
        let mode = host_config.network_mode.clone();
        check_container_mode(&config, &host_config, &networking)?;
        if mode == "host" && !host_config.links.is_empty() {
            return Err(EngineError::InvalidArgument(
                "conflicting options: host type networking can't be used with links. This would result in undefined behavior".into(),
            ));
        }
        let links = self.resolve_links(&host_config.links, &mode)?;
        let mut warnings = Vec::new();
        if !host_config.port_bindings.is_empty() || host_config.publish_all_ports {
            if mode.starts_with("container:") || mode == "none" {
                return Err(EngineError::InvalidArgument(
                    "conflicting options: port publishing and the container type network mode"
                        .into(),
                ));
            }
            if mode == "host" {
                warnings.push("Published ports are discarded when using host network mode".into());
                host_config.port_bindings.clear();
                host_config.publish_all_ports = false;
            }
        }
        let mut endpoints = self.networks.endpoints_for_create(&mode, &networking)?;
        // The old top-level `MacAddress` is the primary network's.
        if let Some(mac) = config
            .extra
            .get("MacAddress")
            .and_then(|v| v.as_str())
            .filter(|m| !m.is_empty())
        {
            let primary = match mode.as_str() {
                "" | "default" => "bridge",
                m => m,
            };
            if let Some(ep) = endpoints
                .iter_mut()
                .find(|(k, e)| k.as_str() == primary || e.network_id == primary)
                .map(|(_, e)| e)
                .filter(|e| e.mac_address.is_empty())
            {
                ep.mac_address = mac.to_owned();
            }
        }
        let image = self.images.lookup(&config.image)?;
        let image_config = String::from_utf8_lossy(&image.resolved.config_raw).into_owned();
        let id = names::new_id()?;
        // Binds, volumes, tmpfs: all checked now, made after the record.
        let planned = crate::volumes::mounts::plan(
            &config,
            &host_config,
            &image
                .resolved
                .config
                .config()
                .as_ref()
                .and_then(|c| c.volumes().clone())
                .unwrap_or_default(),
            &|c| self.get(c).map(|r| r.mount_points),
        )?;

        // A dry run of the spec builder on an empty root checks every option
        // now (capabilities, sysctls, seccomp profiles, limits…), as dockerd
        // does at create; the user is resolved at start, in the real rootfs.
        let img_cfg = &image.resolved.config;
        let mut opts = run_options(&id, &config, &host_config, &image_config, self)?;
        opts.user = None;
        opts.group_add.clear();
        let empty = tempdir_in(&self.paths.exec)?;
        crate::volumes::mounts::dry_run(&planned, &mut opts, empty.path());
        let dry = spec::prepare(img_cfg, empty.path(), &opts)
            .map_err(|e| EngineError::InvalidArgument(e.to_string()));
        drop(empty);
        let prepared = dry?;
        let args = prepared
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default();
        if args.is_empty() {
            return Err(EngineError::InvalidArgument("no command specified".into()));
        }

        // What inspect shows: the request with the image's values merged.
        let ic = img_cfg.config().clone().unwrap_or_default();
        if config.cmd.is_none() && config.entrypoint.is_none() {
            config.cmd = ic.cmd().clone();
        }
        if config.entrypoint.is_none() {
            config.entrypoint = ic.entrypoint().clone();
        }
        config.env = spec::config::merge_env(&ic.env().clone().unwrap_or_default(), &config.env);
        if config.working_dir.is_empty() {
            config.working_dir = ic.working_dir().clone().unwrap_or_default();
        }
        if config.user.is_empty() {
            config.user = ic.user().clone().unwrap_or_default();
        }
        config.labels = prepared.labels.clone();
        if config.hostname.is_empty() {
            config.hostname = prepared.hostname.clone();
        }
        if config.stop_signal.is_none() {
            config.stop_signal = prepared.stop_signal_name.clone();
        }
        crate::networks::ports::requests(
            &host_config.port_bindings,
            host_config.publish_all_ports,
            &prepared.exposed_ports.iter().cloned().collect::<Vec<_>>(),
        )?;
        if !prepared.exposed_ports.is_empty() {
            config.exposed_ports = Some(
                prepared
                    .exposed_ports
                    .iter()
                    .map(|p| (p.clone(), serde_json::json!({})))
                    .collect(),
            );
        }
        if !prepared.volumes.is_empty() {
            config.volumes = Some(
                prepared
                    .volumes
                    .iter()
                    .map(|p| (p.clone(), serde_json::json!({})))
                    .collect(),
            );
        }
        if config.healthcheck.is_none() {
            config.healthcheck = prepared.healthcheck.clone().filter(|h| !h.is_disabled());
        }

        let data = self.paths.data_dir(&id);
        let mut rec = Record {
            id: id.clone(),
            name: String::new(),
            created: now(),
            config,
            host_config,
            image_id: image.id.clone(),
            image_config,
            // What ensure_snapshot gives when the image is unpacked.
            parent_snapshot: image.resolved.chain_ids().pop(),
            path: args[0].clone(),
            args: args[1..].to_vec(),
            state: State::default(),
            restart_count: 0,
            manually_stopped: false,
            has_been_started: false,
            log_path: data.join(format!("{id}-json.log")).display().to_string(),
            hostname_path: data.join("hostname").display().to_string(),
            hosts_path: data.join("hosts").display().to_string(),
            resolv_conf_path: data.join("resolv.conf").display().to_string(),
            hostname: prepared.hostname.clone(),
            networks: endpoints,
            ports: Vec::new(),
            sandbox_key: String::new(),
            mount_points: Vec::new(),
            links,
        };
        rec.state.status = Status::Created;

        // The record first: it claims the name before the costly unpack,
        // and a crash after it leaves a container whose snapshot start
        // makes again.
        let mut attempt = 0;
        loop {
            rec.name = match &name {
                Some(n) => format!("/{n}"),
                None => format!("/{}", names::generate(attempt)?),
            };
            match self.records.insert(&rec) {
                Ok(()) => break,
                Err(EngineError::Conflict(_)) if name.is_none() && attempt < 20 => attempt += 1,
                Err(e) => return Err(e),
            }
        }
        let mut mounts = Vec::new();
        let made = (|| -> Result<(), EngineError> {
            std::fs::create_dir_all(&data)
                .map_err(|e| EngineError::io(format!("create {}", data.display()), e))?;
            mounts = self.volumes.attach(&id, planned)?;
            let parent = self.ensure_snapshot(&id, &image)?;
            if parent != rec.parent_snapshot || !mounts.is_empty() {
                self.records.update(&id, |r| {
                    r.parent_snapshot = parent;
                    r.mount_points = mounts.clone();
                    Ok(())
                })?;
            }
            Ok(())
        })();
        if let Err(e) = made {
            self.volumes.release(&id, &mounts, true);
            let _ = self.snapshotter.remove(&id);
            let _ = std::fs::remove_dir_all(&data);
            let _ = self.records.remove(&id);
            return Err(e);
        }
        let rec = self.records.get(&id)?.unwrap_or(rec);
        self.event(&rec, "create", &[]);
        // Its start will want a network namespace: one is made meanwhile,
        // while the client sends its next requests.
        if !super::network::no_own_networks(&mode) {
            self.networks.refill_spare();
        }
        Ok((id, warnings))
    }

    /// Unpacks `target`'s layers into snapshots now (as dockerd does at the
    /// end of a pull) so the first run does not; see
    /// [`berth_image::store::ImageStore::unpack_reporting`] for `on_layer`.
    pub fn unpack_image(
        &self,
        target: &berth_image::store::Target,
        on_layer: &mut dyn FnMut(&str, berth_image::store::LayerEvent),
    ) -> Result<(), EngineError> {
        self.images.store().unpack_reporting(
            &self.snapshotter,
            target,
            self.images.platform(),
            &ApplyOptions::default(),
            on_layer,
        )?;
        Ok(())
    }

    /// Makes the container's writable snapshot if it is missing; returns
    /// its parent (the image's top layer).
    pub(crate) fn ensure_snapshot(
        &self,
        id: &str,
        image: &crate::images::ImageEntry,
    ) -> Result<Option<String>, EngineError> {
        // The image unpacked already (its top layer's snapshot committed,
        // which the lower ones are then too): the container's snapshot is
        // made on it directly, without the unpack pass and the lease that
        // keeps its snapshots from a concurrent image removal meanwhile
        // (then `prepare` fails: the parent is gone).
        let top = image.resolved.chain_ids().pop();
        let unpacked = top.as_deref().is_none_or(|t| {
            matches!(self.snapshotter.stat(t),
                Ok(i) if i.kind == berth_image::snapshot::Kind::Committed)
        });
        let parent = if unpacked {
            top
        } else {
            let platform = self.images.platform().clone();
            self.images.store().unpack(
                &self.snapshotter,
                &image.target,
                &platform,
                &ApplyOptions::default(),
            )?
        };
        if self.snapshotter.stat(id).is_err() {
            let mut labels = BTreeMap::new();
            labels.insert("berth.container".to_owned(), id.to_owned());
            self.snapshotter
                .prepare(id, parent.as_deref(), labels)
                .map_err(berth_image::store::StoreError::from)?;
        }
        Ok(parent)
    }
}

/// A temporary directory under `parent`.
fn tempdir_in(parent: &Path) -> Result<TempDir, EngineError> {
    let b: [u8; 8] = names::random_bytes()?;
    let name: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let p = parent.join(format!(".tmp-{name}"));
    std::fs::create_dir_all(&p)
        .map_err(|e| EngineError::io(format!("create {}", p.display()), e))?;
    Ok(TempDir(p))
}

struct TempDir(PathBuf);
impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Docker's create-time checks of the host config.
pub(crate) fn check_host_config(h: &HostConfig) -> Result<(), EngineError> {
    let bad = |m: &str| Err(EngineError::InvalidArgument(m.to_owned()));
    match h.restart_policy.name.as_str() {
        "" | "no" | "always" | "unless-stopped" | "on-failure" => {}
        other => {
            return Err(EngineError::InvalidArgument(format!(
                "invalid restart policy '{other}'"
            )));
        }
    }
    if h.restart_policy.maximum_retry_count < 0 {
        return bad("invalid restart policy: maximum retry count cannot be negative");
    }
    if h.restart_policy.maximum_retry_count > 0 && h.restart_policy.name != "on-failure" {
        return Err(EngineError::InvalidArgument(format!(
            "invalid restart policy: maximum retry count can only be used with 'on-failure'; got '{}'",
            h.restart_policy.name
        )));
    }
    if h.auto_remove && !matches!(h.restart_policy.name.as_str(), "" | "no") {
        return bad("can't create 'AutoRemove' container with restart policy");
    }
    if h.memory != 0 && h.memory < MIN_MEMORY {
        return bad("Minimum memory limit allowed is 6MB");
    }
    if h.memory_swap > 0 && h.memory > 0 && h.memory_swap < h.memory {
        return bad("Minimum memoryswap limit should be larger than memory limit, see usage");
    }
    if h.nano_cpus != 0 && (h.cpu_quota != 0 || h.cpu_period != 0) {
        return bad("Conflicting options: Nano CPUs and CPU Period cannot both be set");
    }
    if h.nano_cpus < 0 {
        return bad("invalid NanoCPUs: must not be negative");
    }
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    if h.nano_cpus > ncpu * 1_000_000_000 {
        return Err(EngineError::InvalidArgument(format!(
            "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        )));
    }
    if h.cpu_period != 0 && !(1000..=1_000_000).contains(&h.cpu_period) {
        return bad(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
        );
    }
    if h.cpu_quota > 0 && h.cpu_quota < 1000 {
        return bad("CPU cfs quota can not be less than 1ms (i.e. 1000)");
    }
    if h.shm_size < 0 {
        return bad("SHM size can not be less than 0");
    }
    match h.log_config.kind.as_str() {
        "" | "json-file" | "none" | "local" => {}
        other => {
            return Err(EngineError::InvalidArgument(format!(
                "logger: no log driver named '{other}' is registered"
            )));
        }
    }
    log_settings(&h.log_config.config)?;
    device_nodes(&h.devices)?;
    Ok(())
}

/// `--device HOST[:CONTAINER[:PERMS]]`: the device nodes to create in the
/// container and the cgroup rules that allow them. A directory on the host
/// brings every device under it, as with Docker.
pub(crate) fn device_nodes(
    devices: &[super::config::DeviceMapping],
) -> Result<
    (
        Vec<oci_spec::runtime::LinuxDevice>,
        Vec<oci_spec::runtime::LinuxDeviceCgroup>,
    ),
    EngineError,
> {
    use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut nodes = Vec::new();
    let mut rules = Vec::new();
    for d in devices {
        let perms = if d.cgroup_permissions.is_empty() {
            "rwm"
        } else {
            d.cgroup_permissions.as_str()
        };
        if !perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(EngineError::InvalidArgument(format!(
                "invalid device mode: {perms}"
            )));
        }
        let host = Path::new(&d.path_on_host);
        let inside = if d.path_in_container.is_empty() {
            d.path_on_host.as_str()
        } else {
            d.path_in_container.as_str()
        };
        if !host.is_absolute() || !inside.starts_with('/') {
            return Err(EngineError::InvalidArgument(format!(
                "invalid device path: {}:{inside}: paths must be absolute",
                d.path_on_host
            )));
        }
        let gather = |e: std::io::Error| {
            EngineError::InvalidArgument(format!(
                "error gathering device information while adding custom device \"{}\": {e}",
                d.path_on_host
            ))
        };
        let md = std::fs::metadata(host).map_err(gather)?;
        let mut found: Vec<(PathBuf, std::fs::Metadata)> = Vec::new();
        if md.is_dir() {
            let mut dirs = vec![host.to_path_buf()];
            while let Some(dir) = dirs.pop() {
                for e in std::fs::read_dir(&dir).map_err(gather)?.flatten() {
                    let Ok(m) = std::fs::metadata(e.path()) else {
                        continue;
                    };
                    if m.is_dir() {
                        dirs.push(e.path());
                    } else if m.file_type().is_char_device() || m.file_type().is_block_device() {
                        found.push((e.path(), m));
                    }
                }
            }
        } else if md.file_type().is_char_device() || md.file_type().is_block_device() {
            found.push((host.to_path_buf(), md));
        } else {
            return Err(EngineError::InvalidArgument(format!(
                "error gathering device information while adding custom device \"{}\": not a device node",
                d.path_on_host
            )));
        }
        for (path, m) in found {
            let typ = if m.file_type().is_char_device() {
                LinuxDeviceType::C
            } else {
                LinuxDeviceType::B
            };
            let rel = path.strip_prefix(host).unwrap_or(Path::new(""));
            let target = if rel.as_os_str().is_empty() {
                PathBuf::from(inside)
            } else {
                Path::new(inside).join(rel)
            };
            let major = i64::from(rustix::fs::major(m.rdev()));
            let minor = i64::from(rustix::fs::minor(m.rdev()));
            let mut n = LinuxDevice::default();
            n.set_path(target);
            n.set_typ(typ);
            n.set_major(major);
            n.set_minor(minor);
            n.set_file_mode(Some(m.mode() & 0o7777));
            n.set_uid(Some(m.uid()));
            n.set_gid(Some(m.gid()));
            nodes.push(n);
            let mut r = LinuxDeviceCgroup::default();
            r.set_allow(true);
            r.set_typ(Some(typ));
            r.set_major(Some(major));
            r.set_minor(Some(minor));
            r.set_access(Some(perms.to_owned()));
            rules.push(r);
        }
    }
    Ok((nodes, rules))
}

/// `max-size` and `max-file` of the json-file driver.
pub(crate) fn log_settings(
    cfg: &BTreeMap<String, String>,
) -> Result<(Option<u64>, u32), EngineError> {
    for k in cfg.keys() {
        if !matches!(
            k.as_str(),
            "max-size"
                | "max-file"
                | "compress"
                | "labels"
                | "env"
                | "tag"
                | "mode"
                | "max-buffer-size"
        ) {
            return Err(EngineError::InvalidArgument(format!(
                "unknown log opt '{k}' for json-file log driver"
            )));
        }
    }
    let size = match cfg.get("max-size").map(String::as_str) {
        None | Some("") | Some("-1") => None,
        Some(s) => Some(parse_size(s).ok_or_else(|| {
            EngineError::InvalidArgument(format!(
                "invalid max-size {s:?}: expected a size like 10m"
            ))
        })?),
    };
    let files = match cfg.get("max-file").map(String::as_str) {
        None | Some("") => 1,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if n >= 1 => n,
            _ => {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid max-file {s:?}: expected a number ≥ 1"
                )));
            }
        },
    };
    // As dockerd's json-file: max-file alone is accepted and changes
    // nothing (nothing rotates without a max-size).
    Ok((size, if size.is_none() { 1 } else { files }))
}

/// `10m`, `1k`, `2g`, `100` (bytes), `1.5m`.
pub(crate) fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.char_indices().last()? {
        (i, 'k') => (&s[..i], 1u64 << 10),
        (i, 'm') => (&s[..i], 1 << 20),
        (i, 'g') => (&s[..i], 1 << 30),
        (i, 't') => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    let n: f64 = num.parse().ok()?;
    if !(n.is_finite() && n > 0.0) {
        return None;
    }
    Some((n * mult as f64) as u64)
}

/// Docker's refusals for `--network container:<x>`: the joining container
/// has the other's network, hostname, hosts and resolv.conf, so options that
/// would change them conflict.
fn check_container_mode(
    config: &super::ContainerConfig,
    h: &HostConfig,
    networking: &crate::networks::NetworkingConfig,
) -> Result<(), EngineError> {
    let Some(other) = h.network_mode.strip_prefix("container:") else {
        return Ok(());
    };
    let conflict = |s: &str| {
        Err(EngineError::InvalidArgument(format!(
            "conflicting options: {s}"
        )))
    };
    if other.is_empty() {
        return Err(EngineError::InvalidArgument(
            "invalid network mode: invalid container format container:<name|id>".into(),
        ));
    }
    if !config.hostname.is_empty() {
        return conflict("hostname and the network mode");
    }
    if !h.links.is_empty() {
        return conflict(
            "container type network can't be used with links. This would result in undefined behavior",
        );
    }
    if !h.dns.is_empty() {
        return conflict("dns and the network mode");
    }
    if !h.extra_hosts.is_empty() {
        return conflict("custom host-to-IP mapping and the network mode");
    }
    if !h.port_bindings.is_empty() || h.publish_all_ports {
        return conflict("port publishing and the container type network mode");
    }
    if config.exposed_ports.as_ref().is_some_and(|p| !p.is_empty()) {
        return conflict("port exposing and the container type network mode");
    }
    let mac = config
        .extra
        .get("MacAddress")
        .and_then(|v| v.as_str())
        .is_some_and(|m| !m.is_empty())
        || networking
            .endpoints_config
            .values()
            .flatten()
            .any(|e| !e.mac_address.is_empty());
    if mac {
        return conflict("mac-address and the network mode");
    }
    Ok(())
}

/// A namespace mode of the host config (`host`, `container:<x>`, private).
fn ns_mode(
    svc: &ContainerService,
    what: &str,
    mode: &str,
    ns: &str,
) -> Result<NamespaceMode, EngineError> {
    match mode {
        "" | "private" | "shareable" | "default" | "bridge" | "none" => Ok(NamespaceMode::Private),
        "host" => Ok(NamespaceMode::Host),
        m => match m.strip_prefix("container:") {
            Some(other) => {
                let r = svc.get(other)?;
                if !r.state.status.is_live() || r.state.pid <= 0 {
                    return Err(EngineError::Conflict(format!(
                        "cannot join {what} of a non running container: {}",
                        r.id
                    )));
                }
                Ok(NamespaceMode::Path(PathBuf::from(format!(
                    "/proc/{}/ns/{ns}",
                    r.state.pid
                ))))
            }
            None => Err(EngineError::InvalidArgument(format!(
                "invalid {what} mode: {m}"
            ))),
        },
    }
}

/// The spec builder's options for a container.
pub(crate) fn run_options(
    id: &str,
    config: &super::ContainerConfig,
    h: &HostConfig,
    image_config: &str,
    svc: &ContainerService,
) -> Result<RunOptions, EngineError> {
    let mut o = RunOptions {
        id: Some(id.to_owned()),
        cmd: config.cmd.clone(),
        entrypoint: config.entrypoint.clone(),
        env: config.env.clone(),
        working_dir: Some(config.working_dir.clone()).filter(|s| !s.is_empty()),
        user: Some(config.user.clone()).filter(|s| !s.is_empty()),
        group_add: h.group_add.clone(),
        hostname: Some(config.hostname.clone()).filter(|s| !s.is_empty()),
        domainname: Some(config.domainname.clone()).filter(|s| !s.is_empty()),
        tty: config.tty,
        open_stdin: config.open_stdin,
        labels: config.labels.clone(),
        stop_signal: config.stop_signal.clone(),
        healthcheck: config.healthcheck.clone(),
        image_healthcheck: spec::Healthcheck::from_image_config(image_config.as_bytes())
            .ok()
            .flatten(),
        exposed_ports: config
            .exposed_ports
            .as_ref()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default(),
        volumes: config
            .volumes
            .as_ref()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default(),
        cap_add: h.cap_add.clone(),
        cap_drop: h.cap_drop.clone(),
        privileged: h.privileged,
        readonly_rootfs: h.readonly_rootfs,
        security_opt: h.security_opt.clone(),
        sysctls: h.sysctls.clone(),
        shm_size: (h.shm_size > 0).then_some(h.shm_size as u64),
        tmpfs: h.tmpfs.clone(),
        binds: Vec::new(),
        hostname_path: None,
        hosts_path: None,
        resolv_conf_path: None,
        resources: spec::Resources {
            memory: (h.memory > 0).then_some(h.memory),
            memory_swap: (h.memory_swap != 0).then_some(h.memory_swap),
            cpu_shares: (h.cpu_shares > 0).then_some(h.cpu_shares as u64),
            cpu_period: (h.cpu_period > 0).then_some(h.cpu_period as u64),
            cpu_quota: (h.cpu_quota > 0).then_some(h.cpu_quota),
            nano_cpus: (h.nano_cpus > 0).then_some(h.nano_cpus),
            cpuset_cpus: Some(h.cpuset_cpus.clone()).filter(|s| !s.is_empty()),
            cpuset_mems: Some(h.cpuset_mems.clone()).filter(|s| !s.is_empty()),
            pids_limit: h.pids_limit.filter(|n| *n > 0),
            ulimits: h
                .ulimits
                .iter()
                .map(|u| spec::Ulimit {
                    name: u.name.clone(),
                    soft: u.soft,
                    hard: u.hard,
                })
                .collect(),
        },
        // A network name (bridge or user-defined): a namespace of its own;
        // start puts the pinned one of the container in its place.
        network: match h.network_mode.as_str() {
            "host" => NamespaceMode::Host,
            m if m.starts_with("container:") => ns_mode(svc, "network", m, "net")?,
            _ => NamespaceMode::Private,
        },
        pid: ns_mode(svc, "pid", &h.pid_mode, "pid")?,
        ipc: ns_mode(svc, "ipc", &h.ipc_mode, "ipc")?,
        uts: ns_mode(svc, "uts", &h.uts_mode, "uts")?,
        cgroupns: match h.cgroupns_mode.as_str() {
            "host" => Some(NamespaceMode::Host),
            "private" => Some(NamespaceMode::Private),
            _ => None,
        },
        cgroups_path: Some(format!("/berth/{id}")),
    };
    for d in &svc.paths.default_ulimits {
        if !o.resources.ulimits.iter().any(|u| u.name == d.name) {
            o.resources.ulimits.push(spec::Ulimit {
                name: d.name.clone(),
                soft: d.soft,
                hard: d.hard,
            });
        }
    }
    // Binds, volumes and `--mount`s: see `crate::volumes` (added at start).
    Ok(o)
}

/// The image config of a record, parsed.
pub(crate) fn image_configuration(r: &Record) -> Result<ImageConfiguration, EngineError> {
    serde_json::from_str(&r.image_config)
        .map_err(|e| EngineError::Internal(format!("image config of {}: {e}", r.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1.5m"), Some(3 << 19));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("-1m"), None);
    }

    #[test]
    fn log_opts_checked() {
        let mut c = BTreeMap::new();
        c.insert("max-size".to_owned(), "1k".to_owned());
        c.insert("max-file".to_owned(), "3".to_owned());
        assert_eq!(log_settings(&c).ok(), Some((Some(1024), 3)));
        c.insert("max-file".to_owned(), "0".to_owned());
        assert!(log_settings(&c).is_err());
        let mut alone = BTreeMap::new();
        alone.insert("max-file".to_owned(), "100".to_owned());
        assert_eq!(log_settings(&alone).ok(), Some((None, 1)));
        let mut d = BTreeMap::new();
        d.insert("bogus".to_owned(), "1".to_owned());
        assert!(log_settings(&d).is_err());
    }
}
