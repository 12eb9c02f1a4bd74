//! Start, stop, kill, pause, restart, remove, wait; the monitor that sees
//! each exit, applies the restart policy and `--rm`; recovery after a
//! daemon restart.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use berth_image::snapshot::{is_mountpoint, mount_all, unmount};
use berth_shim::proto::{ExitStatus, LogConfig, Request, ShimConfig};
use tokio::sync::broadcast;

use super::create::{image_configuration, log_settings, run_options};
use super::record::{Record, Status};
use super::shim::Shim;
use super::{ContainerService, now};
use crate::error::EngineError;
use crate::events::Event;

/// How long a container made ahead of its start waits for that start.
const PREPARED_FOR: Duration = Duration::from_secs(1);
/// Most containers made ahead of their start at once.
const MAX_PREPARED: usize = 4;
/// Default seconds between the stop signal and SIGKILL.
const DEFAULT_STOP_TIMEOUT: i64 = 10;
/// The first restart delay of a failing container; it doubles up to a minute.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A run this long resets the back-off.
const BACKOFF_RESET: Duration = Duration::from_secs(10);

/// `condition` of `/wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    /// Return at once when not running, else at the exit.
    NotRunning,
    /// The next exit.
    NextExit,
    /// Removal.
    Removed,
}

impl WaitCondition {
    /// Parses the query value (`""` = not-running).
    pub fn parse(s: &str) -> Result<Self, EngineError> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(EngineError::InvalidArgument(format!(
                "invalid condition: \"{other}\""
            ))),
        }
    }
}

/// A wait registered before the answer's headers go out.
#[derive(Debug)]
pub struct Waiter {
    id: String,
    condition: WaitCondition,
    rx: broadcast::Receiver<Event>,
    svc: Arc<ContainerService>,
    last_code: i32,
}

impl Waiter {
    /// Waits for the condition; returns the exit code and an error text.
    pub async fn wait(mut self) -> (i64, Option<String>) {
        if self.condition == WaitCondition::NotRunning {
            match self.svc.records.get(&self.id) {
                Ok(Some(r))
                    if !r.state.status.is_live() && r.state.status != Status::Restarting =>
                {
                    return (i64::from(r.state.exit_code), None);
                }
                Ok(None) => return (i64::from(self.last_code), None),
                _ => {}
            }
        }
        loop {
            match self.rx.recv().await {
                Ok(e) if e.actor.id == self.id => {
                    if e.action == "die" {
                        let code = e
                            .actor
                            .attributes
                            .get("exitCode")
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(0);
                        self.last_code = code;
                        match self.condition {
                            WaitCondition::NextExit => return (i64::from(code), None),
                            // As dockerd: every exit ends a not-running
                            // wait, one a restart policy restarts too.
                            WaitCondition::NotRunning => return (i64::from(code), None),
                            WaitCondition::Removed => {}
                        }
                    } else if e.action == "destroy" {
                        return (i64::from(self.last_code), None);
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Missed events: fall back on the record.
                    match self.svc.records.get(&self.id) {
                        Ok(Some(r))
                            if self.condition != WaitCondition::Removed
                                && !r.state.status.is_live() =>
                        {
                            return (i64::from(r.state.exit_code), None);
                        }
                        Ok(None) => return (i64::from(self.last_code), None),
                        _ => {}
                    }
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return (-1, Some("the daemon is shutting down".into()));
                }
            }
        }
    }
}

/// The receiving end of a start's "over" signal (see
/// [`ContainerService::spawn_monitor`]).
type Started = tokio::sync::oneshot::Receiver<()>;

/// A container made ahead of its start ([`ContainerService::prepare`]):
/// created by its shim in its namespace, endpoints attached, its process
/// not released.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The record it was made from: a start that finds another (an
    /// update, rename or network change since) makes it afresh.
    record: Record,
    _joining: Option<crate::networks::Joining>,
    joined: Option<crate::networks::Joined>,
    shim: Shim,
    shim_pid: i32,
    init_pid: i32,
    /// Counts it among those made ahead while it lives.
    ahead: Option<Ahead>,
}

/// One of the containers made ahead of their start, counted until it is
/// started or dropped.
#[derive(Debug)]
pub(crate) struct Ahead(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Ahead {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn stop_signal(r: &Record) -> i32 {
    r.config
        .stop_signal
        .as_deref()
        .and_then(|s| berth_runtime::signal::parse(s).ok())
        .unwrap_or(libc::SIGTERM)
}

/// The exit code `docker run` derives from a start error.
fn start_error_code(msg: &str) -> i32 {
    if msg.contains("executable file not found") || msg.contains("no such file or directory") {
        127
    } else if msg.contains("permission denied") {
        126
    } else {
        128
    }
}

impl ContainerService {
    /// Registers a wait on `name_or_id` (before the answer's headers).
    pub fn waiter(
        self: &Arc<Self>,
        name_or_id: &str,
        condition: WaitCondition,
    ) -> Result<Waiter, EngineError> {
        let rx = self.events.receiver();
        let r = self.get(name_or_id)?;
        Ok(Waiter {
            id: r.id,
            condition,
            rx,
            svc: self.clone(),
            last_code: r.state.exit_code,
        })
    }

    /// `docker start`.
    pub async fn start(self: &Arc<Self>, name_or_id: &str) -> Result<(), EngineError> {
        let (svc, name) = (self.clone(), name_or_id.to_owned());
        to_completion(async move {
            let r = svc.get(&name)?;
            let slot = svc.slot(&r.id);
            let _g = slot.op.lock().await;
            svc.start_locked(&r.id, false).await
        })
        .await
    }

    pub(crate) async fn start_locked(
        self: &Arc<Self>,
        id: &str,
        by_policy: bool,
    ) -> Result<(), EngineError> {
        let r = self
            .records
            .get(id)?
            .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
        match r.state.status {
            Status::Running | Status::Paused => {
                return Err(EngineError::NotModified("container already started".into()));
            }
            Status::Removing | Status::Dead => {
                return Err(EngineError::Conflict(format!(
                    "container {} is marked for removal and cannot be started",
                    r.id
                )));
            }
            _ => {}
        }
        // The exit watcher of this run handles an exit only once this start
        // is over (and its "start" event out): `done` drops at the end.
        let (done, started) = tokio::sync::oneshot::channel::<()>();
        let res = match self.launch(&r, started).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let msg = e.to_string();
                let code = start_error_code(&msg);
                // The exit watcher leaves this run's cleanup to this path.
                self.teardown(&r.id).await;
                let mut net = None;
                let _ = self.records.update(&r.id, |rec| {
                    rec.state.status = if rec.has_been_started || by_policy {
                        Status::Exited
                    } else {
                        Status::Created
                    };
                    rec.state.error = msg.clone();
                    rec.state.exit_code = code;
                    rec.state.pid = 0;
                    rec.state.shim = None;
                    net = take_network_state(rec);
                    Ok(())
                });
                if let Some((eps, had_ports)) = net {
                    self.networks.leave(&r.id, &eps, had_ports).await;
                }
                if r.host_config.auto_remove {
                    // `docker run --rm` of a container that never started.
                    let svc = self.clone();
                    let id = r.id.clone();
                    tokio::spawn(async move {
                        let _ = svc.remove_now(&id, true).await;
                    });
                }
                Err(e)
            }
        };
        drop(done);
        res
    }

    /// After a create: makes the container ahead of its start, in the
    /// background (`docker run` starts it a few milliseconds later, once the
    /// client has attached and asked to wait), and drops it again if no
    /// start came within [`PREPARED_FOR`]. Not for a container whose start
    /// takes what another could claim first (fixed host ports, a fixed
    /// address), nor one that depends on another's state at its start
    /// (links, another's network, pid or ipc namespace); nor beyond
    /// [`MAX_PREPARED`] at once.
    pub fn prepare_soon(self: &Arc<Self>, id: &str) {
        let Ok(Some(r)) = self.records.get(id) else {
            return;
        };
        let h = &r.host_config;
        let fixed_port = h
            .port_bindings
            .values()
            .flatten()
            .flatten()
            .any(|b| !matches!(b.host_port.as_str(), "" | "0"));
        let fixed_ip = r
            .networks
            .values()
            .any(|ep| !ep.ipv4_address.is_empty() || !ep.ipv6_address.is_empty());
        let joins_another = [&h.network_mode, &h.pid_mode, &h.ipc_mode]
            .iter()
            .any(|m| m.starts_with("container:"));
        if fixed_port
            || fixed_ip
            || joins_another
            || !h.links.is_empty()
            || tokio::runtime::Handle::try_current().is_err()
        {
            return;
        }
        if self
            .preparing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_PREPARED).then_some(n + 1)
            })
            .is_err()
        {
            return;
        }
        let ahead = Ahead(self.preparing.clone());
        let (svc, id) = (self.clone(), r.id);
        tokio::spawn(async move {
            let slot = svc.slot(&id);
            let made = async {
                let _g = slot.op.lock().await;
                let r = match svc.records.get(&id) {
                    Ok(Some(r)) if r.state.status == Status::Created => r,
                    Ok(None) => {
                        // Removed first: its slot, made again above, goes.
                        svc.forget_slot(&id);
                        return false;
                    }
                    _ => return false,
                };
                if svc.closed.load(Ordering::SeqCst) {
                    return false;
                }
                match svc.prepare(&r).await {
                    Ok(mut p) => {
                        p.ahead = Some(ahead);
                        *slot.prepared.lock().unwrap_or_else(|p| p.into_inner()) = Some(p);
                        true
                    }
                    Err(e) => {
                        // The start makes it again, and says why; nothing
                        // stays meanwhile (a failed start unmounts as well).
                        tracing::debug!(container = %id, error = %e, "prepare");
                        svc.teardown(&id).await;
                        false
                    }
                }
            };
            if made.await {
                tokio::time::sleep(PREPARED_FOR).await;
                let _g = slot.op.lock().await;
                if let Some(p) = slot.take_prepared() {
                    svc.discard(&id, p).await;
                }
            }
        });
    }

    /// Drops what [`Self::prepare_soon`] made of `id`, if anything: before
    /// anything but a start changes the container. The caller holds its
    /// operation lock.
    pub(crate) async fn unprepare(self: &Arc<Self>, id: &str) {
        if let Some(p) = self.slot(id).take_prepared() {
            self.discard(id, p).await;
        }
    }

    /// berthd is stopping: what was made ahead of a start is dropped, and
    /// nothing more is.
    pub async fn shutdown(self: &Arc<Self>) {
        self.closed.store(true, Ordering::SeqCst);
        let slots: Vec<(String, Arc<super::Slot>)> = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (id, slot) in slots {
            let _g = slot.op.lock().await;
            self.unprepare(&id).await;
        }
    }

    /// Undoes [`Self::prepare`].
    pub(crate) async fn discard(self: &Arc<Self>, id: &str, p: Prepared) {
        let _ = self.runtime_kill(id, libc::SIGKILL, true).await;
        self.teardown(id).await;
        if let Some(j) = &p.joined {
            self.networks.leave_joined(id, j).await;
        }
    }

    /// Runs the container: what [`Self::prepare`] made ahead of this start
    /// (taken from the slot), or made now; then [`Self::release`].
    async fn launch(self: &Arc<Self>, r: &Record, started: Started) -> Result<(), EngineError> {
        let ready = self.slot(&r.id).take_prepared();
        let p = match ready {
            Some(p) if p.record == *r => p,
            stale => {
                if let Some(p) = stale {
                    self.discard(&r.id, p).await;
                }
                self.prepare(r).await?
            }
        };
        self.release(r, p, started).await
    }

    /// Makes the container's network namespace and attaches its endpoints
    /// while the shim creates the container in it: everything of a start
    /// but its record and the release of its process. A failure undoes
    /// what was made.
    pub(crate) async fn prepare(self: &Arc<Self>, r: &Record) -> Result<Prepared, EngineError> {
        let exposed: Vec<String> = r
            .config
            .exposed_ports
            .as_ref()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let port_requests = crate::networks::ports::requests(
            &r.host_config.port_bindings,
            r.host_config.publish_all_ports,
            &exposed,
        )?;
        let joining = self.networks.join_netns(&r.id, &r.networks).await?;
        let mut joined = None;
        let res = self
            .prepare_in(r, joining.as_ref(), &port_requests, &mut joined)
            .await;
        match res {
            Ok((shim, shim_pid, init_pid)) => Ok(Prepared {
                record: r.clone(),
                _joining: joining,
                joined,
                shim,
                shim_pid,
                init_pid,
                ahead: None,
            }),
            Err(e) => {
                if let Some(j) = &joined {
                    self.networks.leave_joined(&r.id, j).await;
                }
                Err(e)
            }
        }
    }

    /// Attaches the endpoints of `net` (into `joined`) while the shim
    /// creates the container in its namespace; writes its /etc/hosts.
    async fn prepare_in(
        self: &Arc<Self>,
        r: &Record,
        net: Option<&crate::networks::Joining>,
        port_requests: &[crate::networks::ports::PortRequest],
        joined: &mut Option<crate::networks::Joined>,
    ) -> Result<(Shim, i32, i32), EngineError> {
        let id = r.id.clone();
        let attach = async {
            match net {
                Some(j) => self
                    .networks
                    .finish_join(j, &id, r.short_name(), port_requests, &r.host_config.dns)
                    .await
                    .map(Some),
                None => Ok(None),
            }
        };
        // A `net.*` sysctl of the user's is set by the init when it is
        // created: after the endpoints, as it would override them.
        let net_sysctls = r.host_config.sysctls.keys().any(|k| k.starts_with("net."));
        let (spawned, attached) = if net_sysctls {
            let attached = attach.await?;
            (self.spawn_shim(r, net).await, Ok(attached))
        } else {
            tokio::join!(self.spawn_shim(r, net), attach)
        };
        let (shim, shim_pid, init_pid, link_hosts) = match (spawned, attached) {
            (Ok(s), Ok(a)) => {
                *joined = a;
                s
            }
            (Err(e), Ok(a)) => {
                *joined = a;
                return Err(e);
            }
            // The endpoints are undone, the namespace deleted (which may
            // have failed the creation): the attach's error is the one.
            (spawned, Err(e)) => {
                if spawned.is_ok() {
                    let _ = self.runtime_kill(&id, libc::SIGKILL, true).await;
                }
                return Err(e);
            }
        };
        // The container's addresses in its /etc/hosts (the file it has
        // bound; its process has not started yet).
        if let Some(j) = joined.as_ref() {
            let ips: Vec<IpAddr> = j
                .endpoints
                .values()
                .flat_map(|ep| [ep.ip, ep.ipv6])
                .flatten()
                .collect();
            if !ips.is_empty() {
                let hosts = hosts_file(r, &ips, &link_hosts)?;
                if let Err(e) = std::fs::write(&r.hosts_path, hosts) {
                    let _ = self.runtime_kill(&id, libc::SIGKILL, true).await;
                    return Err(EngineError::io(format!("write {}", r.hosts_path), e));
                }
            }
        }
        Ok((shim, shim_pid, init_pid))
    }

    /// Records the prepared container running and starts its process; a
    /// failure before the record says it runs kills it and undoes its
    /// networks (after that, whoever clears the record's network state
    /// does).
    async fn release(
        self: &Arc<Self>,
        r: &Record,
        p: Prepared,
        started: Started,
    ) -> Result<(), EngineError> {
        let id = r.id.clone();
        let Prepared {
            record: _,
            _joining,
            joined,
            shim,
            shim_pid,
            init_pid,
            ahead,
        } = p;
        drop(ahead);
        let undo = |e: EngineError| async {
            let _ = self.runtime_kill(&id, libc::SIGKILL, true).await;
            if let Some(j) = &joined {
                self.networks.leave_joined(&id, j).await;
            }
            e
        };
        // Attach requests made before start get the stream from its first
        // byte: connected (with the monitor's wait, sent before the process
        // can exit) while the record is written; the shim may still be
        // executing its monitor, which answers them once it serves.
        let take_pending = || {
            let slot = self.slot(&id);
            let mut p = slot.pending.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *p)
        };
        let early = take_pending();
        let connecting = async {
            let wait = shim.send(&Request::Wait).await;
            for p in early {
                p.connect(&shim).await;
            }
            wait
        };
        let recording = async {
            let shim_start =
                berth_runtime::state::proc_stat(shim_pid).map_or(0, |(_, start)| start);
            let started_at = now();
            self.records.update(&id, |rec| {
                rec.state.status = Status::Running;
                rec.state.pid = init_pid;
                rec.state.shim = Some((shim_pid, shim_start));
                rec.state.started_at = Some(started_at.clone());
                rec.state.error.clear();
                rec.state.exit_code = 0;
                rec.state.oom_killed = false;
                rec.has_been_started = true;
                rec.manually_stopped = false;
                if let Some(j) = joined.as_ref() {
                    for (k, ep) in &j.endpoints {
                        rec.networks.insert(k.clone(), ep.clone());
                    }
                    rec.ports = j.ports.clone();
                    rec.sandbox_key = j.netns.display().to_string();
                }
                if rec.config.healthcheck.is_some() {
                    rec.state.health = Some(super::record::Health {
                        status: "starting".into(),
                        ..Default::default()
                    });
                }
                Ok(())
            })
        };
        // `connecting` first: its requests are out before the record's
        // write (which does not yield) runs.
        let (wait, rec) = tokio::join!(biased; connecting, recording);
        let rec = match rec {
            Ok(r) => r,
            Err(e) => return Err(undo(e).await),
        };
        // Those that came while the record said Created still.
        for p in take_pending() {
            p.connect(&shim).await;
        }
        if let Some(j) = &joined {
            self.networks.announce(&id, rec.short_name(), j);
        }
        self.spawn_monitor(id.clone(), shim_pid, Some(wait), Some(started));
        if let Err(e) = self.runtime_start(&id).await {
            let _ = self.runtime_kill(&id, libc::SIGKILL, true).await;
            return Err(e);
        }
        self.event(&rec, "start", &[]);
        if rec.config.healthcheck.is_some() {
            self.spawn_health(id.clone(), shim_pid);
        }
        Ok(())
    }

    /// Spawns the shim, then mounts the rootfs and writes the bundle while
    /// the shim prepares itself; the shim then creates the container (in
    /// `net`'s namespace). Returns the shim, its pid, the init's pid and the
    /// /etc/hosts lines of `--link`.
    async fn spawn_shim(
        self: &Arc<Self>,
        r: &Record,
        net: Option<&crate::networks::Joining>,
    ) -> Result<(Shim, i32, i32, Vec<String>), EngineError> {
        let id = r.id.clone();
        let bundle = self.paths.bundle(&id);
        let rootfs = self.paths.rootfs(&id);
        std::fs::create_dir_all(&rootfs)
            .map_err(|e| EngineError::io(format!("create {}", rootfs.display()), e))?;
        let (max_size, max_file) = log_settings(&r.host_config.log_config.config)?;
        let log = (r.host_config.log_config.kind != "none").then(|| LogConfig {
            path: r.log_path.clone().into(),
            max_size,
            max_file,
        });
        let cfg = ShimConfig {
            id: id.clone(),
            bundle: bundle.clone(),
            runtime_root: self.paths.runtime_root.clone(),
            log,
            tty: r.config.tty,
            open_stdin: r.config.open_stdin,
            stdin_once: r.config.stdin_once,
            console_size: r.host_config.console_size.map(|[h, w]| (h, w)),
            seccomp_cache: Some(self.paths.seccomp_cache.clone()),
        };
        // A runtime leftover of a crash (same id) would make create fail.
        let _ = berth_runtime::container::delete(&self.paths.runtime_root, &id, true);
        let shim = Shim::new(bundle.clone());
        let mut spawning = shim.begin(&self.launcher, &cfg)?;
        let written = self.write_bundle(r, net, &id, &bundle, &rootfs);
        if written.is_ok() {
            spawning.go();
        }
        // Without the go the shim gives up; either way it is done with the
        // state directory once it has reported.
        let spawned = spawning.finish().await;
        let link_hosts = written?;
        if spawned.is_err() {
            // A shim that failed after creating the container (its
            // monitor could not start) leaves the runtime's state.
            self.runtime_delete(&id).await;
        }
        let (shim_pid, init_pid) = spawned?;
        Ok((shim, shim_pid, init_pid, link_hosts))
    }

    /// The rootfs mounted, /etc files and the bundle's config.json written;
    /// the /etc/hosts lines of `--link`.
    fn write_bundle(
        self: &Arc<Self>,
        r: &Record,
        net: Option<&crate::networks::Joining>,
        id: &str,
        bundle: &std::path::Path,
        rootfs: &std::path::Path,
    ) -> Result<Vec<String>, EngineError> {
        if !is_mountpoint(rootfs) {
            if self.snapshotter.stat(id).is_err() {
                let img = self.images.lookup(&r.image_id)?;
                self.ensure_snapshot(id, &img)?;
            }
            let mounts = self
                .snapshotter
                .mounts(id)
                .map_err(berth_image::store::StoreError::from)?;
            mount_all(&mounts, rootfs).map_err(berth_image::store::StoreError::from)?;
        }
        // `--network container:<x>`: x's hostname, hosts and resolv.conf,
        // the same files (Docker points the paths at x's).
        let shared;
        let mut link_env = Vec::new();
        let mut link_hosts = Vec::new();
        let r = match r.host_config.network_mode.strip_prefix("container:") {
            Some(other) => {
                let o = self.get(other)?;
                shared = self.records.update(id, |rec| {
                    rec.hostname_path = o.hostname_path.clone();
                    rec.hosts_path = o.hosts_path.clone();
                    rec.resolv_conf_path = o.resolv_conf_path.clone();
                    rec.hostname = o.hostname.clone();
                    rec.config.hostname = o.config.hostname.clone();
                    rec.config.domainname = o.config.domainname.clone();
                    Ok(())
                })?;
                &shared
            }
            None => {
                let on_bridge = net.is_some_and(|j| j.on_default_bridge);
                let links = self.link_setup(r, on_bridge)?;
                let embedded_dns = net.is_some_and(|j| j.embedded_dns);
                self.write_etc_files(r, embedded_dns, &links.hosts)?;
                link_env = links.env;
                link_hosts = links.hosts;
                r
            }
        };
        let mut opts = run_options(id, &r.config, &r.host_config, &r.image_config, self)?;
        if !link_env.is_empty() {
            opts.env = berth_image::spec::config::merge_env(&link_env, &r.config.env);
        }
        if let Some(j) = net {
            opts.network = berth_image::spec::NamespaceMode::Path(j.netns.clone());
        }
        let net_host = r.host_config.network_mode == "host";
        if !net_host {
            opts.hostname_path = Some(r.hostname_path.clone().into());
        }
        opts.hosts_path = Some(r.hosts_path.clone().into());
        opts.resolv_conf_path = Some(r.resolv_conf_path.clone().into());
        // Binds, volumes (mounted, filled from the image), `--mount` tmpfs.
        let vm = self.volumes.activate(id, &r.mount_points, rootfs)?;
        opts.binds.extend(vm.binds);
        opts.tmpfs.extend(vm.tmpfs);
        let img_cfg = image_configuration(r)?;
        let mut prepared = berth_image::spec::prepare(&img_cfg, rootfs, &opts)
            .map_err(|e| EngineError::StartFailed(e.to_string()))?;
        if r.host_config.init == Some(true) {
            add_init(&mut prepared.spec)?;
        }
        if !r.host_config.devices.is_empty() {
            add_devices(&mut prepared.spec, &r.host_config.devices)?;
        }
        let spec_path = bundle.join("config.json");
        let bytes = serde_json::to_vec(&prepared.spec)
            .map_err(|e| EngineError::Internal(format!("encode spec: {e}")))?;
        std::fs::write(&spec_path, bytes)
            .map_err(|e| EngineError::io(format!("write {}", spec_path.display()), e))?;
        Ok(link_hosts)
    }

    /// Watches the shim of `id` until the container exits. `wait` is the
    /// connection of a `Wait` request already sent; without it one is sent.
    /// With `started`, the exit is handled only once that start is over: a
    /// process that exits at once must not have its runtime state deleted
    /// under the start that released it, nor its "die" before its "start".
    pub(crate) fn spawn_monitor(
        self: &Arc<Self>,
        id: String,
        shim_pid: i32,
        wait: Option<Result<tokio::net::UnixStream, EngineError>>,
        started: Option<Started>,
    ) {
        let svc = self.clone();
        tokio::spawn(async move {
            let shim = Shim::new(svc.paths.bundle(&id));
            let ran = std::time::Instant::now();
            let res = async {
                let mut conn = match wait {
                    Some(c) => c,
                    None => shim.send(&Request::Wait).await,
                };
                match super::shim::read_reply(
                    conn.as_mut()
                        .map_err(|e| EngineError::Internal(e.to_string()))?,
                )
                .await?
                {
                    berth_shim::proto::Reply::Exited(s) => Ok(s),
                    other => Err(EngineError::Internal(format!(
                        "shim: unexpected reply {other:?}"
                    ))),
                }
            }
            .await;
            let status = match res {
                Ok(s) => s,
                Err(e) => {
                    // The shim went away without answering: its exit
                    // file, or an unknown end.
                    let mut found = None;
                    for _ in 0..50 {
                        if let Some(s) = shim.exit_file() {
                            found = Some(s);
                            break;
                        }
                        if !pid_alive(shim_pid) {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    found.unwrap_or_else(|| {
                        tracing::warn!(container = %id, error = %e, "shim lost; exit status unknown");
                        ExitStatus {
                            code: 255,
                            oom_killed: false,
                            finished_at: now(),
                        }
                    })
                }
            };
            let ran = ran.elapsed();
            if let Some(started) = started {
                // Never sent: the start ends by dropping its end.
                let _ = started.await;
            }
            svc.on_exit(&id, shim_pid, status, ran).await;
        });
    }

    /// Records an exit, cleans up, and applies the restart policy or `--rm`.
    pub(crate) async fn on_exit(
        self: &Arc<Self>,
        id: &str,
        shim_pid: i32,
        status: ExitStatus,
        ran: Duration,
    ) {
        // Network, rootfs and runtime state go before the record says the
        // container is down: whoever waits for that (stop, restart, rm -f,
        // a client that starts it again) must find them gone, or this
        // cleanup would unmount and kill the next run's.
        let cur = match self.records.get(id) {
            Ok(Some(cur)) if cur.state.shim.map(|(p, _)| p) == Some(shim_pid) => cur,
            _ => return,
        };
        let had_netns = !cur.sandbox_key.is_empty();
        // `--rm` (unless a `docker restart` stops it): removed after this.
        let restarting = self.slot(id).restarting.load(Ordering::SeqCst);
        let removing = cur.host_config.auto_remove && !restarting && !restarts(&cur, status.code);
        let net = had_netns.then_some((&cur.networks, !cur.ports.is_empty()));
        // The removal of a `--rm` container's writable layer starts as soon
        // as its mount and runtime state are gone, alongside what follows.
        let files = if removing {
            Some(self.dismantle(id, net).await)
        } else {
            // The two are independent: at once.
            let leave = async {
                if let Some((endpoints, had_ports)) = net {
                    self.networks.leave(id, endpoints, had_ports).await;
                }
            };
            tokio::join!(leave, self.teardown(id));
            None
        };
        let mut restart = false;
        let rec = self.records.update(id, |r| {
            if r.state.shim.map(|(p, _)| p) != Some(shim_pid) {
                return Err(EngineError::Conflict("stale exit".into()));
            }
            restart = !removing && restarts(r, status.code);
            record_exit(r, &status);
            // Marked for removal in the same write (see remove_now).
            if removing {
                r.state.status = Status::Removing;
            }
            Ok(())
        });
        let rec = match rec {
            Ok(r) => r,
            Err(_) => return,
        };
        if status.oom_killed {
            self.event(&rec, "oom", &[]);
        }
        if restart {
            let _ = self.records.update(id, |r| {
                r.state.status = Status::Restarting;
                Ok(())
            });
        }
        self.event(&rec, "die", &[("exitCode", status.code.to_string())]);
        if restart {
            let svc = self.clone();
            let id = id.to_owned();
            let delay = restart_delay(rec.restart_count, ran);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _recovered = svc.recovery.read().await;
                let slot = svc.slot(&id);
                let _g = slot.op.lock().await;
                match svc.records.get(&id) {
                    Ok(Some(r)) if r.state.status == Status::Restarting => {}
                    _ => return,
                }
                let _ = svc.records.update(&id, |r| {
                    r.restart_count += 1;
                    Ok(())
                });
                if let Err(e) = svc.start_locked(&id, true).await {
                    tracing::warn!(container = %id, error = %e, "restart failed");
                } else if let Ok(Some(r)) = svc.records.get(&id) {
                    svc.event(&r, "restart", &[]);
                }
            });
        } else if let Some(files) = files {
            let _ = self.conclude_remove(rec, true, files.await);
        }
        // For its next start, or the next container's: made now, after
        // this exit's work.
        if had_netns {
            self.networks.refill_spare();
        }
    }

    /// Sends `signal` to the container's init (to every process with `all`).
    async fn signal(&self, r: &Record, signal: i32, all: bool) -> Result<(), EngineError> {
        self.runtime_kill(&r.id, signal, all).await
    }

    /// The runtime library's kill, off the async threads.
    async fn runtime_kill(&self, id: &str, signal: i32, all: bool) -> Result<(), EngineError> {
        let (root, id) = (self.paths.runtime_root.clone(), id.to_owned());
        let shown = id.clone();
        tokio::task::spawn_blocking(move || berth_runtime::container::kill(&root, &id, signal, all))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))?
            .map_err(|e| match e {
                // Exited, or its state already deleted by the exit's cleanup.
                berth_runtime::RuntimeError::InvalidState { .. }
                | berth_runtime::RuntimeError::NotFound(_) => {
                    EngineError::Conflict(format!("container {shown} is not running"))
                }
                other => EngineError::Internal(other.to_string()),
            })
    }

    /// The runtime library's start (the created init released; its
    /// parent is the shim). On the calling thread: it reads the state file
    /// and writes one byte to the exec FIFO, opened non-blocking, and
    /// berthd's specs have no poststart hooks; a trip through the blocking
    /// pool cost more than that.
    async fn runtime_start(&self, id: &str) -> Result<(), EngineError> {
        berth_runtime::container::start(&self.paths.runtime_root, id)
            .map_err(|e| EngineError::StartFailed(e.to_string()))
    }

    /// The runtime library's delete (what is left of the container killed,
    /// its cgroups and state removed), off the async threads: it waits up
    /// to 10 s for the processes to die.
    async fn runtime_delete(&self, id: &str) {
        if !self.paths.runtime_root.join(id).exists() {
            return; // deleted already (remove after an exit's cleanup)
        }
        let (root, id) = (self.paths.runtime_root.clone(), id.to_owned());
        let _ =
            tokio::task::spawn_blocking(move || berth_runtime::container::delete(&root, &id, true))
                .await;
    }

    /// A run's rootfs unmounted and its runtime state deleted, at once and
    /// off the async threads (an unmount can block, the delete waits).
    async fn teardown(self: &Arc<Self>, id: &str) {
        let (svc, owned) = (self.clone(), id.to_owned());
        let unmount = tokio::task::spawn_blocking(move || svc.unmount_rootfs(&owned));
        let _ = tokio::join!(unmount, self.runtime_delete(id));
    }

    /// Waits up to `timeout` for `id` to stop being live.
    async fn wait_down(
        &self,
        id: &str,
        mut rx: broadcast::Receiver<Event>,
        timeout: Duration,
    ) -> bool {
        let down = || match self.records.get(id) {
            Ok(Some(r)) => !r.state.status.is_live(),
            _ => true,
        };
        if down() {
            return true;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return down();
            }
            match tokio::time::timeout(left.min(Duration::from_millis(500)), rx.recv()).await {
                Ok(Ok(e)) if e.actor.id == id && e.action == "die" => return true,
                Ok(Err(broadcast::error::RecvError::Closed)) => return down(),
                _ => {
                    if down() {
                        return true;
                    }
                }
            }
        }
    }

    /// `docker stop`: the stop signal, then SIGKILL after `timeout` seconds
    /// (the container's StopTimeout, else 10; negative waits forever).
    pub async fn stop(
        self: &Arc<Self>,
        name_or_id: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<(), EngineError> {
        // To its end even when the client goes (as dockerd): a stop cut
        // after its signal would not send the SIGKILL its timeout promised.
        let (svc, name) = (self.clone(), name_or_id.to_owned());
        let signal = signal.map(str::to_owned);
        to_completion(async move {
            let r = svc.get(&name)?;
            let slot = svc.slot(&r.id);
            let _g = slot.op.lock().await;
            svc.stop_locked(&r.id, timeout, signal.as_deref()).await
        })
        .await
    }

    async fn stop_locked(
        self: &Arc<Self>,
        id: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<(), EngineError> {
        let r = self
            .records
            .get(id)?
            .ok_or_else(|| EngineError::NoSuchContainer(id.to_owned()))?;
        if r.state.status == Status::Restarting {
            // Cancel the pending restart.
            self.records.update(id, |rec| {
                rec.state.status = Status::Exited;
                rec.manually_stopped = true;
                Ok(())
            })?;
            self.event(&r, "stop", &[]);
            return Ok(());
        }
        if !r.state.status.is_live() {
            return Err(EngineError::NotModified("container already stopped".into()));
        }
        self.records.update(id, |rec| {
            rec.manually_stopped = true;
            Ok(())
        })?;
        let sig = match signal {
            Some(s) if !s.is_empty() => berth_runtime::signal::parse(s)
                .map_err(|e| EngineError::InvalidArgument(e.to_string()))?,
            _ => stop_signal(&r),
        };
        let secs = timeout
            .or(r.config.stop_timeout)
            .unwrap_or(DEFAULT_STOP_TIMEOUT);
        let rx = self.events.receiver();
        if r.state.status == Status::Paused {
            let _ = berth_runtime::container::resume(&self.paths.runtime_root, id);
        }
        self.event(&r, "kill", &[("signal", sig.to_string())]);
        let _ = self.signal(&r, sig, false).await;
        let graceful = if secs < 0 {
            self.wait_down(id, rx, Duration::from_secs(u64::MAX / 4))
                .await
        } else {
            self.wait_down(id, rx, Duration::from_secs(secs as u64))
                .await
        };
        if !graceful {
            let rx = self.events.receiver();
            self.event(&r, "kill", &[("signal", libc::SIGKILL.to_string())]);
            let _ = self.signal(&r, libc::SIGKILL, true).await;
            if !self.wait_down(id, rx, Duration::from_secs(30)).await {
                return Err(EngineError::Internal(format!(
                    "container {id} did not exit 30 s after SIGKILL"
                )));
            }
        }
        if let Ok(Some(r)) = self.records.get(id) {
            self.event(&r, "stop", &[]);
        }
        Ok(())
    }

    /// `docker kill`.
    pub async fn kill(self: &Arc<Self>, name_or_id: &str, signal: &str) -> Result<(), EngineError> {
        let r = self.get(name_or_id)?;
        let sig = if signal.is_empty() {
            libc::SIGKILL
        } else {
            berth_runtime::signal::parse(signal)
                .map_err(|e| EngineError::InvalidArgument(e.to_string()))?
        };
        if !r.state.status.is_live() {
            return Err(EngineError::Conflict(format!(
                "Cannot kill container: {name_or_id}: Container {} is not running",
                r.id
            )));
        }
        self.records.update(&r.id, |rec| {
            rec.manually_stopped = true;
            Ok(())
        })?;
        self.event(&r, "kill", &[("signal", sig.to_string())]);
        if sig != libc::SIGKILL {
            return self.signal(&r, sig, false).await;
        }
        // As dockerd: a SIGKILL returns once the container is down, so
        // an inspect or remove right after sees it exited.
        let rx = self.events.receiver();
        self.signal(&r, sig, false).await?;
        if !self.wait_down(&r.id, rx, Duration::from_secs(10)).await {
            tracing::warn!(container = %r.id, "still running 10 s after SIGKILL");
        }
        Ok(())
    }

    /// `docker pause` / `docker unpause`.
    pub async fn pause(self: &Arc<Self>, name_or_id: &str, pause: bool) -> Result<(), EngineError> {
        let r = self.get(name_or_id)?;
        let slot = self.slot(&r.id);
        let _g = slot.op.lock().await;
        let r = self.get(&r.id)?;
        match (r.state.status, pause) {
            (Status::Running, true) => {
                berth_runtime::container::pause(&self.paths.runtime_root, &r.id)
                    .map_err(|e| EngineError::Internal(e.to_string()))?;
                self.records.update(&r.id, |rec| {
                    rec.state.status = Status::Paused;
                    Ok(())
                })?;
                self.event(&r, "pause", &[]);
            }
            (Status::Paused, false) => {
                berth_runtime::container::resume(&self.paths.runtime_root, &r.id)
                    .map_err(|e| EngineError::Internal(e.to_string()))?;
                self.records.update(&r.id, |rec| {
                    rec.state.status = Status::Running;
                    Ok(())
                })?;
                self.event(&r, "unpause", &[]);
            }
            (Status::Paused, true) => {
                return Err(EngineError::Conflict(format!(
                    "Container {} is already paused",
                    r.id
                )));
            }
            (Status::Running, false) => {
                return Err(EngineError::Conflict(format!(
                    "Container {} is not paused",
                    r.id
                )));
            }
            _ => {
                return Err(EngineError::Conflict(format!(
                    "Container {} is not running",
                    r.id
                )));
            }
        }
        Ok(())
    }

    /// `docker restart`.
    pub async fn restart(
        self: &Arc<Self>,
        name_or_id: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<(), EngineError> {
        let (svc, name, signal) = (
            self.clone(),
            name_or_id.to_owned(),
            signal.map(str::to_owned),
        );
        to_completion(async move { svc.restart_now(&name, timeout, signal.as_deref()).await }).await
    }

    async fn restart_now(
        self: &Arc<Self>,
        name_or_id: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<(), EngineError> {
        let r = self.get(name_or_id)?;
        let slot = self.slot(&r.id);
        let _g = slot.op.lock().await;
        slot.restarting.store(true, Ordering::SeqCst);
        let stopped = self.stop_locked(&r.id, timeout, signal).await;
        slot.restarting.store(false, Ordering::SeqCst);
        let res = match stopped {
            Ok(()) | Err(EngineError::NotModified(_)) => self.start_locked(&r.id, false).await,
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => {
                if let Ok(Some(r)) = self.records.get(&r.id) {
                    self.event(&r, "restart", &[]);
                }
                Ok(())
            }
            Err(e) => {
                // A `--rm` container that does not run again goes, as it
                // would have at its exit.
                if r.host_config.auto_remove
                    && let Ok(Some(cur)) = self.records.get(&r.id)
                    && !cur.state.status.is_live()
                {
                    drop(_g);
                    let _ = self.remove_now(&r.id, true).await;
                }
                Err(e)
            }
        }
    }

    /// `docker rename`.
    pub fn rename(&self, name_or_id: &str, new: &str) -> Result<(), EngineError> {
        let new = super::names::validate(new)?;
        let r = self.get(name_or_id)?;
        if r.short_name() == new {
            return Err(EngineError::InvalidArgument(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        let old = r.name.clone();
        let rec = self.records.update(&r.id, |rec| {
            rec.name = format!("/{new}");
            Ok(())
        })?;
        self.networks
            .renamed(&r.id, old.trim_start_matches('/'), &new);
        self.event(&rec, "rename", &[("oldName", old)]);
        Ok(())
    }

    /// `docker rm` (`volumes`: `-v`, also remove its anonymous volumes).
    pub async fn remove(
        self: &Arc<Self>,
        name_or_id: &str,
        force: bool,
        volumes: bool,
    ) -> Result<(), EngineError> {
        let (svc, name) = (self.clone(), name_or_id.to_owned());
        to_completion(async move { svc.remove_container(&name, force, volumes).await }).await
    }

    async fn remove_container(
        self: &Arc<Self>,
        name_or_id: &str,
        force: bool,
        volumes: bool,
    ) -> Result<(), EngineError> {
        let r = self.get(name_or_id)?;
        let slot = self.slot(&r.id);
        let _g = slot.op.lock().await;
        self.unprepare(&r.id).await;
        let r = self.get(&r.id)?;
        // Between two runs of its restart policy a container counts as
        // running, as with dockerd.
        let restarting = r.state.status == Status::Restarting;
        if (r.state.status.is_live() || restarting) && !force {
            return Err(EngineError::Conflict(format!(
                "cannot remove container \"{}\": container is running: stop the container before removing or force remove",
                r.name
            )));
        }
        if restarting {
            // The pending restart sees this under the slot lock and gives up.
            self.records.update(&r.id, |rec| {
                rec.manually_stopped = true;
                rec.state.status = Status::Exited;
                Ok(())
            })?;
        } else if r.state.status.is_live() {
            self.records.update(&r.id, |rec| {
                rec.manually_stopped = true;
                Ok(())
            })?;
            let rx = self.events.receiver();
            if r.state.status == Status::Paused {
                let _ = berth_runtime::container::resume(&self.paths.runtime_root, &r.id);
            }
            let _ = self.signal(&r, libc::SIGKILL, true).await;
            if !self.wait_down(&r.id, rx, Duration::from_secs(30)).await {
                return Err(EngineError::Internal(format!(
                    "container {} did not exit 30 s after SIGKILL",
                    r.id
                )));
            }
        }
        drop(_g);
        match self.remove_now(&r.id, volumes).await {
            // `--rm`: its exit started the removal; done when that is.
            Err(EngineError::Conflict(_)) if r.host_config.auto_remove => {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                while matches!(self.records.get(&r.id), Ok(Some(_))) {
                    if tokio::time::Instant::now() > deadline {
                        return Err(EngineError::Conflict(format!(
                            "removal of container {} is already in progress",
                            r.id
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Ok(())
            }
            other => other,
        }
    }

    /// Removes a stopped container: mounts, snapshot, files, record; and
    /// its anonymous volumes with `volumes`.
    pub(crate) async fn remove_now(
        self: &Arc<Self>,
        id: &str,
        volumes: bool,
    ) -> Result<(), EngineError> {
        let rec = match self.records.update(id, |r| {
            if r.state.status.is_live() {
                return Err(EngineError::Conflict(format!(
                    "cannot remove container \"{}\": container is running",
                    r.name
                )));
            }
            if r.state.status == Status::Removing {
                return Err(EngineError::Conflict(format!(
                    "removal of container {id} is already in progress"
                )));
            }
            r.state.status = Status::Removing;
            Ok(())
        }) {
            Ok(r) => r,
            Err(EngineError::NoSuchContainer(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.finish_remove(id, rec, volumes).await
    }

    /// The removal of `id`, whose record `rec` says `Removing` already.
    async fn finish_remove(
        self: &Arc<Self>,
        id: &str,
        rec: Record,
        volumes: bool,
    ) -> Result<(), EngineError> {
        let net = (!rec.sandbox_key.is_empty()).then_some((&rec.networks, !rec.ports.is_empty()));
        let files = self.dismantle(id, net).await.await;
        self.conclude_remove(rec, volumes, files)
    }

    /// Takes what a container has off the machine, as much of it at once
    /// as can be: its endpoints (`net`: the last run's, and whether it
    /// published ports) alongside its rootfs mount and runtime state; then
    /// starts the removal of its writable layer and directories and
    /// returns it (its error names what kept the writable layer).
    async fn dismantle(
        self: &Arc<Self>,
        id: &str,
        net: Option<(
            &std::collections::BTreeMap<String, crate::networks::Endpoint>,
            bool,
        )>,
    ) -> impl std::future::Future<Output = Result<(), String>> + use<> {
        let leave = async {
            if let Some((endpoints, had_ports)) = net {
                self.networks.leave(id, endpoints, had_ports).await;
            }
        };
        // Yields the layer's removal, started but not awaited: the caller
        // records the exit meanwhile.
        #[allow(clippy::async_yields_async)]
        let local = async {
            // Once nothing runs in it (the runtime's delete waits for that).
            self.teardown(id).await;
            // Off the async threads: deleting a writable layer deletes
            // every file the container wrote.
            let (svc, owned) = (self.clone(), id.to_owned());
            let removal = tokio::task::spawn_blocking(move || {
                if let Err(e) = svc.snapshotter.remove(&owned)
                    && svc.snapshotter.stat(&owned).is_ok()
                {
                    return Err(e.to_string());
                }
                let _ = std::fs::remove_dir_all(svc.paths.bundle(&owned));
                let _ = std::fs::remove_dir_all(svc.paths.data_dir(&owned));
                Ok(())
            });
            // Already running; awaited (a panic as an error) by the caller.
            async move { removal.await.unwrap_or_else(|e| Err(e.to_string())) }
        };
        tokio::join!(local, leave).0
    }

    /// The end of a removal after [`Self::dismantle`] (`files`, the
    /// result of the writable layer's removal): the volumes released (the
    /// anonymous ones removed with `volumes`), the record and "destroy";
    /// or, when the writable layer stayed, a `Dead` record that says why.
    fn conclude_remove(
        &self,
        rec: Record,
        volumes: bool,
        files: Result<(), String>,
    ) -> Result<(), EngineError> {
        let id = rec.id.as_str();
        if let Err(e) = files {
            let _ = self.records.update(id, |r| {
                r.state.status = Status::Dead;
                r.state.error = format!("remove snapshot: {e}");
                Ok(())
            });
            return Err(EngineError::Internal(format!(
                "could not remove the root filesystem of {id}: {e}"
            )));
        }
        self.volumes.release(id, &rec.mount_points, volumes);
        self.records.remove(id)?;
        self.forget_slot(id);
        self.execs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, e| e.container != id);
        self.event(&rec, "destroy", &[]);
        Ok(())
    }

    /// `docker container prune`: removes every stopped container; returns
    /// their ids.
    pub async fn prune(
        self: &Arc<Self>,
        keep: impl Fn(&Record) -> bool,
    ) -> Result<(Vec<String>, u64), EngineError> {
        let mut removed = Vec::new();
        let mut reclaimed = 0;
        for r in self.list()? {
            if !matches!(
                r.state.status,
                Status::Created | Status::Exited | Status::Dead
            ) || keep(&r)
            {
                continue;
            }
            // What its writable layer held is what removing it frees.
            let size = self.snapshotter.usage(&r.id).map_or(0, |u| u.bytes);
            if self.remove(&r.id, false, false).await.is_ok() {
                removed.push(r.id);
                reclaimed += size;
            }
        }
        Ok((removed, reclaimed))
    }

    pub(crate) fn unmount_rootfs(&self, id: &str) {
        let rootfs = self.paths.rootfs(id);
        while is_mountpoint(&rootfs) {
            if let Err(e) = unmount(&rootfs) {
                tracing::warn!(container = %id, error = %e, "unmount rootfs");
                break;
            }
        }
        self.volumes.deactivate(id);
    }

    /// After a daemon start: reattach to every live shim, record exits that
    /// happened while the daemon was away, resume restarts, and remove
    /// what a crash left half made.
    pub async fn recover(self: &Arc<Self>) -> Result<(), EngineError> {
        let _recovering = self.recovery.write().await;
        let records = self.records.all()?;
        for r in &records {
            match r.state.status {
                Status::Running | Status::Paused => {
                    let shim = Shim::new(self.paths.bundle(&r.id));
                    let shim_pid = r.state.shim.map(|(p, _)| p).unwrap_or(0);
                    if shim.alive().await {
                        tracing::info!(container = %r.id, "reattached to shim");
                        self.spawn_monitor(r.id.clone(), shim_pid, None, None);
                        if r.config.healthcheck.is_some() {
                            self.spawn_health(r.id.clone(), shim_pid);
                        }
                    } else {
                        let status = shim.exit_file().unwrap_or_else(|| {
                            // Neither a shim nor an exit file: the process
                            // is gone with its shim (SIGKILL of both).
                            if r.state.pid > 0 && pid_alive(r.state.pid) {
                                let _ = berth_runtime::container::kill(
                                    &self.paths.runtime_root,
                                    &r.id,
                                    libc::SIGKILL,
                                    true,
                                );
                            }
                            ExitStatus {
                                code: 255,
                                oom_killed: false,
                                finished_at: now(),
                            }
                        });
                        self.on_exit(&r.id, shim_pid, status, Duration::from_secs(3600))
                            .await;
                    }
                }
                Status::Restarting => {
                    let svc = self.clone();
                    let id = r.id.clone();
                    tokio::spawn(async move {
                        let _recovered = svc.recovery.read().await;
                        let slot = svc.slot(&id);
                        let _g = slot.op.lock().await;
                        let _ = svc.start_locked(&id, true).await;
                    });
                }
                Status::Removing | Status::Dead => {
                    let _ = self.records.update(&r.id, |rec| {
                        rec.state.status = Status::Dead;
                        Ok(())
                    });
                    let _ = self.remove_now(&r.id, false).await;
                }
                Status::Created | Status::Exited => {
                    // What a start (or a making ahead of one) cut short
                    // left: the runtime's container, its shim, its mount.
                    self.teardown(&r.id).await;
                }
            }
        }
        // Networks: addresses, ports and DNS of what still runs; namespaces
        // of what does not.
        let all = self.records.all()?;
        let running: Vec<_> = all
            .iter()
            .filter(|r| r.state.status.is_live() && !r.sandbox_key.is_empty())
            .map(|r| crate::networks::Running {
                id: r.id.clone(),
                name: r.short_name().to_owned(),
                endpoints: r.networks.clone(),
                ports: r.ports.clone(),
            })
            .collect();
        self.networks.recover(&running).await;
        // Leftovers without a record: a crash inside create or remove.
        let known: std::collections::HashSet<String> = all.into_iter().map(|r| r.id).collect();
        if let Ok(infos) = self.snapshotter.list() {
            for i in infos {
                if i.labels
                    .get("berth.container")
                    .is_some_and(|c| !known.contains(c))
                {
                    let _ = self.snapshotter.remove(&i.name);
                }
            }
        }
        for dir in [&self.paths.exec, &self.paths.data] {
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.len() == 64 && !known.contains(&name) {
                        self.unmount_rootfs(&name);
                        let _ = std::fs::remove_dir_all(e.path());
                    } else if name.starts_with(".tmp-") {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let running = self
            .records
            .all()?
            .into_iter()
            .filter(|r| r.state.status.is_live());
        self.volumes
            .reconcile(&known, &running.map(|r| r.id).collect());
        Ok(())
    }

    /// Writes the container's /etc/hostname, /etc/hosts (its own addresses
    /// come once its endpoints are attached, see `launch_in`) and
    /// /etc/resolv.conf (the embedded DNS server's with `embedded_dns`).
    fn write_etc_files(
        &self,
        r: &Record,
        embedded_dns: bool,
        link_hosts: &[String],
    ) -> Result<(), EngineError> {
        let write = |p: &str, s: String| {
            std::fs::write(p, s).map_err(|e| EngineError::io(format!("write {p}"), e))
        };
        let host_net = r.host_config.network_mode == "host";
        write(&r.hostname_path, format!("{}\n", r.hostname))?;
        write(&r.hosts_path, hosts_file(r, &[], link_hosts)?)?;
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        if embedded_dns {
            let rc = berth_net::dns::ResolvConf::embedded(
                Some(&host_resolv),
                &r.host_config.dns_search,
                &r.host_config.dns_options,
            );
            return write(&r.resolv_conf_path, rc.render());
        }
        let mut resolv = String::new();
        let servers: Vec<String> = if r.host_config.dns.is_empty() {
            host_resolv
                .lines()
                .filter_map(|l| l.strip_prefix("nameserver"))
                .map(|s| s.trim().to_owned())
                // A loopback resolver of the host is not reachable from a
                // container with its own network namespace.
                .filter(|s| host_net || !(s.starts_with("127.") || s == "::1"))
                .collect()
        } else {
            r.host_config.dns.clone()
        };
        for s in &servers {
            resolv.push_str(&format!("nameserver {s}\n"));
        }
        let search: Vec<String> = if r.host_config.dns_search.is_empty() {
            host_resolv
                .lines()
                .filter_map(|l| l.strip_prefix("search"))
                .flat_map(|s| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .collect()
        } else {
            r.host_config.dns_search.clone()
        };
        if !search.is_empty() {
            resolv.push_str(&format!("search {}\n", search.join(" ")));
        }
        if !r.host_config.dns_options.is_empty() {
            resolv.push_str(&format!(
                "options {}\n",
                r.host_config.dns_options.join(" ")
            ));
        }
        write(&r.resolv_conf_path, resolv)
    }
}

/// Runs `op` as a task of its own, to its end: a start, stop, removal or
/// network change is not cut half-way (namespaces, mounts, endpoints, a
/// created container left behind) when the client that asked goes away
/// and its request is dropped.
pub(crate) async fn to_completion<T: Send + 'static>(
    op: impl std::future::Future<Output = Result<T, EngineError>> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::spawn(op)
        .await
        .map_err(|e| EngineError::Internal(format!("interrupted: {e}")))?
}

/// Writes an exit into a record (status `Exited`; its network state taken).
fn record_exit(r: &mut Record, status: &ExitStatus) {
    take_network_state(r);
    r.state.status = Status::Exited;
    r.state.pid = 0;
    r.state.exit_code = status.code;
    r.state.oom_killed = status.oom_killed;
    r.state.finished_at = Some(status.finished_at.clone());
    r.state.shim = None;
    if let Some(h) = &mut r.state.health {
        h.status = "unhealthy".into();
    }
}

/// Whether the restart policy of `r` restarts it after an exit with `code`.
fn restarts(r: &Record, code: i32) -> bool {
    let policy = &r.host_config.restart_policy;
    !r.manually_stopped
        && match policy.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => {
                code != 0
                    && (policy.maximum_retry_count == 0
                        || r.restart_count < policy.maximum_retry_count)
            }
            _ => false,
        }
}

/// Takes a record's network state of the last run (endpoints with their
/// addresses, whether ports were published) and clears it there; `None`
/// when it has none.
fn take_network_state(
    rec: &mut Record,
) -> Option<(
    std::collections::BTreeMap<String, crate::networks::Endpoint>,
    bool,
)> {
    if rec.sandbox_key.is_empty() {
        return None;
    }
    let eps = rec.networks.clone();
    let had_ports = !rec.ports.is_empty();
    for ep in rec.networks.values_mut() {
        ep.clear_runtime();
    }
    rec.ports.clear();
    rec.sandbox_key.clear();
    Some((eps, had_ports))
}

/// Where `--init`'s init lives in the container, as with Docker.
const INIT_IN_CONTAINER: &str = "/sbin/docker-init";

/// The static init `--init` runs (tini, from Debian's `tini` package, as
/// Docker's docker-init is).
fn init_binary() -> Option<PathBuf> {
    [
        "/usr/bin/docker-init",
        "/usr/bin/tini-static",
        "/usr/libexec/docker/docker-init",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// `--init`: the init bound read-only at /sbin/docker-init and put in front
/// of the command; it reaps zombies and forwards signals.
fn add_init(spec: &mut oci_spec::runtime::Spec) -> Result<(), EngineError> {
    let bin = init_binary().ok_or_else(|| {
        EngineError::StartFailed(
            "--init needs a static init: install Debian's tini package (/usr/bin/tini-static)"
                .into(),
        )
    })?;
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    let mut m = oci_spec::runtime::Mount::default();
    m.set_destination(PathBuf::from(INIT_IN_CONTAINER));
    m.set_typ(Some("bind".into()));
    m.set_source(Some(bin));
    m.set_options(Some(vec![
        "bind".into(),
        "ro".into(),
        "nosuid".into(),
        "nodev".into(),
    ]));
    mounts.push(m);
    spec.set_mounts(Some(mounts));
    if let Some(p) = spec.process_mut() {
        let mut args = vec![INIT_IN_CONTAINER.to_owned(), "--".to_owned()];
        args.extend(p.args().clone().unwrap_or_default());
        p.set_args(Some(args));
    }
    Ok(())
}

/// `--device`: the nodes in `linux.devices`, and cgroup rules allowing them
/// after the default deny.
fn add_devices(
    spec: &mut oci_spec::runtime::Spec,
    devices: &[super::config::DeviceMapping],
) -> Result<(), EngineError> {
    let (nodes, rules) = super::create::device_nodes(devices)?;
    if let Some(linux) = spec.linux_mut() {
        let mut all = linux.devices().clone().unwrap_or_default();
        all.retain(|d| !nodes.iter().any(|n| n.path() == d.path()));
        all.extend(nodes);
        linux.set_devices(Some(all));
        let mut res = linux.resources().clone().unwrap_or_default();
        let mut cg = res.devices().clone().unwrap_or_default();
        cg.extend(rules);
        res.set_devices(Some(cg));
        linux.set_resources(Some(res));
    }
    Ok(())
}

/// Docker's back-off: 100 ms doubling per restart, up to a minute, reset by
/// a run of 10 s or more.
fn restart_delay(restarts: i64, ran: Duration) -> Duration {
    if ran >= BACKOFF_RESET {
        return BACKOFF_START;
    }
    let shift = restarts.clamp(0, 20) as u32;
    BACKOFF_START.saturating_mul(1u32 << shift).min(BACKOFF_MAX)
}

/// Whether `pid` runs (a zombie does not count).
pub(crate) fn pid_alive(pid: i32) -> bool {
    berth_runtime::state::proc_stat(pid).is_some_and(|(state, _)| state != 'Z')
}

/// The container's /etc/hosts: the host's with `--network host`, else
/// localhost's lines; then `--add-host`, `--link` and its own `ips` under
/// its hostname.
fn hosts_file(r: &Record, ips: &[IpAddr], link_hosts: &[String]) -> Result<String, EngineError> {
    let mut hosts = if r.host_config.network_mode == "host" {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n".to_owned()
    };
    for h in &r.host_config.extra_hosts {
        let (name, ip) = h
            .split_once(':')
            .or_else(|| h.split_once('='))
            .ok_or_else(|| EngineError::InvalidArgument(format!("invalid extra host: {h}")))?;
        hosts.push_str(&format!("{ip}\t{name}\n"));
    }
    for l in link_hosts {
        hosts.push_str(l);
        hosts.push('\n');
    }
    for ip in ips {
        hosts.push_str(&format!("{ip}\t{}\n", r.hostname));
    }
    Ok(hosts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_resets() {
        assert_eq!(restart_delay(0, Duration::ZERO), Duration::from_millis(100));
        assert_eq!(restart_delay(3, Duration::ZERO), Duration::from_millis(800));
        assert_eq!(restart_delay(30, Duration::ZERO), BACKOFF_MAX);
        assert_eq!(restart_delay(30, Duration::from_secs(11)), BACKOFF_START);
    }

    #[test]
    fn start_errors_map_to_docker_exit_codes() {
        assert_eq!(
            start_error_code("exec: \"x\": executable file not found in $PATH"),
            127
        );
        assert_eq!(start_error_code("open /x: permission denied"), 126);
        assert_eq!(start_error_code("other"), 128);
    }
}
