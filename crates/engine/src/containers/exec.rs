//! `docker exec` and health checks: processes run in a running container
//! by its shim.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_shim::proto::{Frame, Request};
use oci_spec::runtime::{Process, Spec, UserBuilder};
use serde::Deserialize;
use tokio::net::UnixStream;

use super::ContainerService;
use super::config::nd;
use super::record::{HealthProbe, Status};
use super::shim::{Shim, read_frame};
use super::{names, now};
use crate::error::EngineError;

/// `POST /containers/{id}/exec` body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecConfig {
    /// Attach stdin.
    #[serde(default, deserialize_with = "nd")]
    pub attach_stdin: bool,
    /// Attach stdout.
    #[serde(default, deserialize_with = "nd")]
    pub attach_stdout: bool,
    /// Attach stderr.
    #[serde(default, deserialize_with = "nd")]
    pub attach_stderr: bool,
    /// A terminal.
    #[serde(default, deserialize_with = "nd")]
    pub tty: bool,
    /// Initial terminal size `[rows, columns]`.
    #[serde(default)]
    pub console_size: Option<[u16; 2]>,
    /// Extra environment.
    #[serde(default, deserialize_with = "nd")]
    pub env: Vec<String>,
    /// The command.
    #[serde(default, deserialize_with = "nd")]
    pub cmd: Vec<String>,
    /// Every capability.
    #[serde(default, deserialize_with = "nd")]
    pub privileged: bool,
    /// `user[:group]`.
    #[serde(default, deserialize_with = "nd")]
    pub user: String,
    /// Working directory.
    #[serde(default, deserialize_with = "nd")]
    pub working_dir: String,
    /// The keys that detach an attached client (`""`: ctrl-p,ctrl-q);
    /// docker-py spells it `detachKeys` (Go's decoder ignores case).
    #[serde(default, deserialize_with = "nd", alias = "detachKeys")]
    pub detach_keys: String,
}

/// What starting an exec gave.
#[derive(Debug)]
pub enum ExecStarted {
    /// The process runs: its shim stream (frames out, stdin in) and
    /// whether it has a terminal.
    Running(UnixStream, bool),
    /// The process could not be started (exit code 126 is recorded): why,
    /// and whether it would have had a terminal.
    Failed(EngineError, bool),
}

/// An exec marked started whose process is not launched yet. Dropped
/// unlaunched (the client went away before the answer), the exec is no
/// longer running.
#[derive(Debug)]
pub struct ExecClaim {
    id: String,
    container: String,
    st: Arc<ExecState>,
    launched: bool,
}

impl Drop for ExecClaim {
    fn drop(&mut self) {
        if !self.launched {
            let mut run = self.st.inner.lock().unwrap_or_else(|p| p.into_inner());
            run.running = false;
        }
    }
}

/// An exec instance (kept in memory, as dockerd does).
#[derive(Debug)]
pub(crate) struct ExecState {
    pub(crate) id: String,
    pub(crate) container: String,
    pub(crate) config: ExecConfig,
    pub(crate) inner: Mutex<ExecRun>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct ExecRun {
    running: bool,
    started: bool,
    exit_code: Option<i32>,
    pid: i32,
}

/// `GET /exec/{id}/json`.
#[derive(Debug, Clone)]
pub struct ExecInspect {
    /// Exec id.
    pub id: String,
    /// Container id.
    pub container: String,
    /// Running now.
    pub running: bool,
    /// Exit code once done.
    pub exit_code: Option<i32>,
    /// The config.
    pub config: ExecConfig,
    /// Host pid while running.
    pub pid: i32,
}

impl ContainerService {
    /// Creates an exec instance in a running container.
    pub fn exec_create(&self, name_or_id: &str, cfg: ExecConfig) -> Result<String, EngineError> {
        let r = self.get(name_or_id)?;
        match r.state.status {
            Status::Running => {}
            Status::Paused => {
                return Err(EngineError::Conflict(format!(
                    "Container {} is paused, unpause the container before exec",
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
        if cfg.cmd.is_empty() {
            return Err(EngineError::InvalidArgument(
                "No exec command specified".into(),
            ));
        }
        let id = names::new_id()?;
        let st = Arc::new(ExecState {
            id: id.clone(),
            container: r.id.clone(),
            config: cfg,
            inner: Mutex::new(ExecRun::default()),
        });
        self.execs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), st);
        self.event(&r, "exec_create", &[("execID", id.clone())]);
        Ok(id)
    }

    fn exec_state(&self, id: &str) -> Result<Arc<ExecState>, EngineError> {
        self.execs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::NoSuchExec(id.to_owned()))
    }

    /// `GET /exec/{id}/json`.
    pub fn exec_inspect(&self, id: &str) -> Result<ExecInspect, EngineError> {
        let st = self.exec_state(id)?;
        let run = st.inner.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(ExecInspect {
            id: st.id.clone(),
            container: st.container.clone(),
            running: run.running,
            exit_code: run.exit_code,
            config: st.config.clone(),
            pid: run.pid,
        })
    }

    /// The process of an exec: the container's, with the exec's command,
    /// environment, directory, user and terminal.
    fn exec_process(&self, container: &str, cfg: &ExecConfig) -> Result<Process, EngineError> {
        let spec_path = self.paths.bundle(container).join("config.json");
        let spec: Spec = serde_json::from_slice(
            &std::fs::read(&spec_path)
                .map_err(|e| EngineError::io(format!("read {}", spec_path.display()), e))?,
        )
        .map_err(|e| EngineError::Internal(format!("container spec: {e}")))?;
        let mut p = spec.process().clone().unwrap_or_default();
        p.set_args(Some(cfg.cmd.clone()));
        p.set_terminal(Some(cfg.tty));
        let env = berth_image::spec::config::replace_or_append(
            p.env().clone().unwrap_or_default(),
            &cfg.env,
        );
        p.set_env(Some(env));
        if !cfg.working_dir.is_empty() {
            p.set_cwd(cfg.working_dir.clone().into());
        }
        if !cfg.user.is_empty() {
            let root = std::fs::File::open(self.paths.rootfs(container))
                .map_err(|e| EngineError::io("open the container's rootfs", e))?;
            let u = berth_image::spec::user::resolve_user(&root, &cfg.user, &[])
                .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
            let user = UserBuilder::default()
                .uid(u.uid)
                .gid(u.gid)
                .additional_gids(u.additional_gids.clone())
                .build()
                .map_err(|e| EngineError::Internal(e.to_string()))?;
            p.set_user(user);
        }
        if cfg.privileged {
            let all: Vec<String> = berth_image::spec::caps::ALL_CAPABILITIES
                .iter()
                .map(|c| c.to_string())
                .collect();
            let set: oci_spec::runtime::Capabilities =
                all.iter().filter_map(|c| c.parse().ok()).collect();
            let mut caps = p.capabilities().clone().unwrap_or_default();
            let bounding = caps.bounding().clone().unwrap_or_default();
            let granted: oci_spec::runtime::Capabilities =
                set.intersection(&bounding).cloned().collect();
            caps.set_effective(Some(granted.clone()));
            caps.set_permitted(Some(granted.clone()));
            caps.set_inheritable(Some(granted));
            p.set_capabilities(Some(caps));
        }
        Ok(p)
    }

    /// Starts an exec: [`Self::exec_claim`], then [`Self::exec_launch`].
    pub async fn exec_start(&self, id: &str) -> Result<ExecStarted, EngineError> {
        let claim = self.exec_claim(id)?;
        Ok(self.exec_launch(claim).await)
    }

    /// Checks that exec `id` has not run and that its container runs, and
    /// marks the exec started. An API that attaches a client answers it
    /// between this and [`Self::exec_launch`], as dockerd does: the
    /// process's first output must not race the answer's headers (clients
    /// such as docker-py lose bytes that come with them).
    pub fn exec_claim(&self, id: &str) -> Result<ExecClaim, EngineError> {
        let st = self.exec_state(id)?;
        {
            let mut run = st.inner.lock().unwrap_or_else(|p| p.into_inner());
            if run.started {
                return Err(EngineError::Conflict(format!(
                    "Error: Exec command {id} has already run"
                )));
            }
            run.started = true;
            run.running = true;
        }
        let fail = || {
            let mut run = st.inner.lock().unwrap_or_else(|p| p.into_inner());
            run.running = false;
        };
        match self.get(&st.container) {
            Ok(r) if r.state.status == Status::Running => Ok(ExecClaim {
                id: id.to_owned(),
                container: r.id,
                st,
                launched: false,
            }),
            Ok(r) => {
                fail();
                Err(EngineError::Conflict(format!(
                    "Container {} is not running",
                    r.id
                )))
            }
            Err(e) => {
                fail();
                Err(e)
            }
        }
    }

    /// Starts a claimed exec's process. One that cannot be started is
    /// [`ExecStarted::Failed`] with exit code 126 recorded, as dockerd
    /// does, so that an attached client can be told on its stream.
    pub async fn exec_launch(&self, mut claim: ExecClaim) -> ExecStarted {
        claim.launched = true;
        let (id, container, st) = (claim.id.clone(), claim.container.clone(), claim.st.clone());
        let tty = st.config.tty;
        let failed = |e: EngineError| {
            let mut run = st.inner.lock().unwrap_or_else(|p| p.into_inner());
            run.running = false;
            run.exit_code = Some(126);
            ExecStarted::Failed(e, tty)
        };
        let process = match self
            .exec_process(&container, &st.config)
            .and_then(process_json)
        {
            Ok(p) => p,
            Err(e) => return failed(e),
        };
        let stream = Shim::new(self.paths.bundle(&container))
            .call_ok(&Request::Exec {
                exec_id: id.clone(),
                process,
                stdin: st.config.attach_stdin,
                console_size: st.config.console_size.map(|[h, w]| (h, w)),
            })
            .await;
        match stream {
            Ok(stream) => {
                if let Ok(r) = self.get(&container) {
                    self.event(&r, "exec_start", &[("execID", id)]);
                }
                ExecStarted::Running(stream, tty)
            }
            Err(e) => failed(e),
        }
    }

    /// Records an exec's end (the API calls this on the exit frame).
    pub fn exec_finished(&self, id: &str, code: i32) {
        if let Ok(st) = self.exec_state(id) {
            {
                let mut run = st.inner.lock().unwrap_or_else(|p| p.into_inner());
                run.running = false;
                run.exit_code = Some(code);
            }
            if let Ok(r) = self.get(&st.container) {
                self.event(
                    &r,
                    "exec_die",
                    &[("execID", id.to_owned()), ("exitCode", code.to_string())],
                );
            }
        }
    }

    /// Resizes an exec's terminal.
    pub async fn exec_resize(&self, id: &str, height: u16, width: u16) -> Result<(), EngineError> {
        let st = self.exec_state(id)?;
        Shim::new(self.paths.bundle(&st.container))
            .call_ok(&Request::Resize {
                exec_id: Some(id.to_owned()),
                height,
                width,
            })
            .await
            .map(drop)
    }

    /// Runs the health check of `id` while the shim `shim_pid` runs it.
    pub(crate) fn spawn_health(self: &Arc<Self>, id: String, shim_pid: i32) {
        let svc = self.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            loop {
                let Ok(Some(r)) = svc.records.get(&id) else {
                    return;
                };
                if r.state.shim.map(|(p, _)| p) != Some(shim_pid) || !r.state.status.is_live() {
                    return;
                }
                let Some(hc) = r
                    .config
                    .healthcheck
                    .clone()
                    .filter(|h| !h.is_disabled() && !h.test.is_empty())
                else {
                    return;
                };
                let secs = |ns: i64, default: u64| {
                    if ns > 0 {
                        Duration::from_nanos(ns as u64)
                    } else {
                        Duration::from_secs(default)
                    }
                };
                let interval = secs(hc.interval, 30);
                let timeout = secs(hc.timeout, 30);
                let start_period = if hc.start_period > 0 {
                    Duration::from_nanos(hc.start_period as u64)
                } else {
                    Duration::ZERO
                };
                let in_start = started.elapsed() < start_period;
                let wait = if in_start && hc.start_interval > 0 {
                    Duration::from_nanos(hc.start_interval as u64)
                } else {
                    interval
                };
                tokio::time::sleep(wait).await;
                let Ok(Some(r)) = svc.records.get(&id) else {
                    return;
                };
                if r.state.shim.map(|(p, _)| p) != Some(shim_pid)
                    || r.state.status != Status::Running
                {
                    if r.state.status == Status::Paused {
                        continue;
                    }
                    return;
                }
                let cmd: Vec<String> = match hc.test.first().map(String::as_str) {
                    Some("CMD") => hc.test[1..].to_vec(),
                    Some("CMD-SHELL") => {
                        vec!["/bin/sh".into(), "-c".into(), hc.test[1..].join(" ")]
                    }
                    _ => return,
                };
                let probe_start = now();
                let (code, output) = svc.probe(&id, cmd, timeout).await;
                let retries = if hc.retries > 0 { hc.retries } else { 3 };
                let in_start = started.elapsed() < start_period;
                let mut changed = None;
                let _ = svc.records.update(&id, |rec| {
                    let h = rec.state.health.get_or_insert_with(Default::default);
                    let before = h.status.clone();
                    if code == 0 {
                        h.failing_streak = 0;
                        h.status = "healthy".into();
                    } else if !in_start {
                        h.failing_streak += 1;
                        if h.failing_streak >= retries {
                            h.status = "unhealthy".into();
                        }
                    }
                    h.log.push(HealthProbe {
                        start: probe_start.clone(),
                        end: now(),
                        exit_code: code,
                        output: output.clone(),
                    });
                    if h.log.len() > 5 {
                        h.log.remove(0);
                    }
                    if before != h.status {
                        changed = Some(h.status.clone());
                    }
                    Ok(())
                });
                if let Some(s) = changed
                    && let Ok(Some(r)) = svc.records.get(&id)
                {
                    svc.event(&r, &format!("health_status: {s}"), &[]);
                }
            }
        });
    }

    /// Runs one probe; returns its exit code (-1 on timeout or error) and output.
    async fn probe(&self, id: &str, cmd: Vec<String>, timeout: Duration) -> (i32, String) {
        let cfg = ExecConfig {
            attach_stdout: true,
            attach_stderr: true,
            cmd,
            ..Default::default()
        };
        let run = async {
            let process = process_json(self.exec_process(id, &cfg)?)?;
            let exec_id = names::new_id()?;
            let mut s = Shim::new(self.paths.bundle(id))
                .call_ok(&Request::Exec {
                    exec_id,
                    process,
                    stdin: false,
                    console_size: None,
                })
                .await?;
            let mut out = Vec::new();
            loop {
                match read_frame(&mut s).await? {
                    Some(Frame::Stdout(b)) | Some(Frame::Stderr(b)) => {
                        if out.len() < 4096 {
                            out.extend_from_slice(&b);
                        }
                    }
                    Some(Frame::Exit(e)) => return Ok::<_, EngineError>((e.code, out)),
                    None => return Ok((-1, out)),
                }
            }
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(Ok((code, out))) => {
                let mut s = String::from_utf8_lossy(&out).into_owned();
                s.truncate(4096);
                (code, s)
            }
            Ok(Err(e)) => (-1, e.to_string()),
            Err(_) => (-1, format!("Health check exceeded timeout ({timeout:?})")),
        }
    }
}

/// An OCI process as the shim takes it.
fn process_json(p: oci_spec::runtime::Process) -> Result<serde_json::Value, EngineError> {
    serde_json::to_value(&p).map_err(|e| EngineError::Internal(format!("encode the process: {e}")))
}
