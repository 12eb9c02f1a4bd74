//! The verbs with attached streams: run, create, start, attach, exec.
//!
//! `run` follows the docker CLI's sequence: create (pull on "No such
//! image", create again), attach (hijacked, 101) and `wait` before start so
//! that neither output nor a fast exit is missed, start, stream, and exit
//! with the container's status.

use std::io::IsTerminal;

use anyhow::{Result, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{for_each, out, seg};
use crate::StatusError;
use crate::cli::{AttachArgs, CreateArgs, ExecArgs, RunArgs, StartArgs};
use crate::client::{ApiError, Client, Upgraded, read_json};
use crate::container_opts::{CreateRequest, build_create, parse_env_lines};
use crate::template::to_text;
use crate::tty::{DetachWatch, RawMode, parse_detach_keys};
use crate::units::query;

const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

fn lookup_env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// Creates the container, pulling the image first if the daemon lacks it
/// (or always, with `--pull always`). Returns the id.
async fn create_container(
    c: &Client,
    req: &CreateRequest,
    image: &str,
    pull: &str,
) -> Result<String> {
    let mut q = Vec::new();
    if let Some(n) = &req.name {
        q.push(("name", n.clone()));
    }
    if let Some(p) = &req.platform {
        q.push(("platform", p.clone()));
    }
    let path = format!("/containers/create{}", query(&q));
    match pull {
        "always" => {
            super::image::pull_image(c, image, req.platform.as_deref(), false, true).await?
        }
        "missing" | "never" => {}
        other => bail!(
            "invalid pull option: '{other}': must be one of \"always\", \"missing\" or \"never\""
        ),
    }
    let v = match c.post_json(&path, Some(&req.body)).await {
        Ok(v) => v,
        Err(e) if pull == "missing" && is_no_such_image(&e) => {
            let (name, tag, digest) = super::image::split_ref(image);
            let shown = if tag.is_none() && digest.is_none() {
                format!("{name}:latest")
            } else {
                image.to_owned()
            };
            eprintln!("Unable to find image '{shown}' locally");
            super::image::pull_image(c, image, req.platform.as_deref(), false, true).await?;
            c.post_json(&path, Some(&req.body)).await?
        }
        Err(e) => return Err(e),
    };
    for w in v["Warnings"].as_array().into_iter().flatten() {
        eprintln!("WARNING: {}", to_text(w));
    }
    v["Id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("the daemon's create answer has no Id: {v}"))
}

fn is_no_such_image(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiError>().is_some_and(|a| {
        a.status == http::StatusCode::NOT_FOUND && a.message.contains("No such image")
    })
}

/// docker run's exit code for a failed start: 127 for a missing
/// executable, 126 for one that cannot be run, else 125.
pub fn start_error_code(message: &str) -> i32 {
    if message.contains("executable file not found")
        || message.contains("no such file or directory")
        || message.contains("system cannot find the file specified")
    {
        127
    } else if message.contains("permission denied") {
        126
    } else {
        125
    }
}

fn start_failed(e: anyhow::Error) -> anyhow::Error {
    let text = super::error_text(&e);
    StatusError {
        code: start_error_code(&text),
        message: Some(format!(
            "berth: {text}\n\nRun 'berth run --help' for more information"
        )),
    }
    .into()
}

/// `berth create`.
pub async fn create(c: &Client, a: CreateArgs) -> Result<i32> {
    // Like docker create: the Attach* flags say what `start -a` will attach.
    let req = build_create(&a.opts, &a.image, &a.command, false, &lookup_env)?;
    let id = create_container(c, &req, &a.image, &a.opts.pull).await?;
    out(&format!("{id}\n"))?;
    Ok(0)
}

/// What to wire up between the terminal and a hijacked connection.
#[derive(Debug, Clone)]
struct StreamOpts {
    tty: bool,
    stdin: bool,
    detach_keys: Vec<u8>,
}

#[derive(Debug, PartialEq)]
enum Ended {
    /// The daemon closed the output: the process is done.
    Eof,
    /// The user typed the detach keys.
    Detached,
}

/// Copies the connection's output to stdout/stderr and (with `stdin`) the
/// local stdin to the connection, half-closing it at stdin's EOF.
async fn pump(conn: Upgraded, o: StreamOpts) -> Result<Ended> {
    let (mut rd, mut wr) = tokio::io::split(conn);
    let output = async move {
        let mut so = tokio::io::stdout();
        if !o.tty {
            let mut se = tokio::io::stderr();
            return crate::stdcopy::demux_copy(&mut rd, &mut so, &mut se).await;
        }
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = rd.read(&mut buf).await?;
            if n == 0 {
                return anyhow::Ok(());
            }
            so.write_all(&buf[..n]).await?;
            so.flush().await?;
        }
    };
    let keys = o.detach_keys.clone();
    let input = async move {
        if !o.stdin {
            return std::future::pending::<Result<bool>>().await;
        }
        let mut stdin = tokio::io::stdin();
        let mut watch = DetachWatch::new(keys);
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = stdin.read(&mut buf).await?;
            if n == 0 {
                let _ = wr.shutdown().await;
                return std::future::pending::<Result<bool>>().await;
            }
            let (fwd, detach) = watch.filter(&buf[..n]);
            if !fwd.is_empty() {
                wr.write_all(&fwd).await?;
                wr.flush().await?;
            }
            if detach {
                return Ok(true);
            }
        }
    };
    tokio::pin!(output);
    tokio::pin!(input);
    tokio::select! {
        r = &mut output => { r?; Ok(Ended::Eof) }
        r = &mut input => {
            if let Ok(true) = r {
                return Ok(Ended::Detached);
            }
            // stdin failed (e.g. a write to a connection the daemon
            // closed): the output side tells the rest.
            output.await?;
            Ok(Ended::Eof)
        }
    }
}

/// Sends the terminal size now and on every SIGWINCH.
fn spawn_resizer(c: &Client, path: String) {
    let c = c.clone();
    tokio::spawn(async move {
        let send = |c: Client, path: String| async move {
            if let Some((h, w)) = crate::tty::size() {
                let _ = c
                    .post(
                        &format!(
                            "{path}{}",
                            query(&[("h", h.to_string()), ("w", w.to_string())])
                        ),
                        None,
                    )
                    .await;
            }
        };
        send(c.clone(), path.clone()).await;
        let Ok(mut sig) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while sig.recv().await.is_some() {
            send(c.clone(), path.clone()).await;
        }
    });
}

/// Forwards SIGINT, SIGTERM and friends as `POST /containers/{id}/kill`.
fn spawn_signal_proxy(c: &Client, id: String) {
    use tokio::signal::unix::{SignalKind, signal};
    for (kind, name) in [
        (SignalKind::interrupt(), "INT"),
        (SignalKind::terminate(), "TERM"),
        (SignalKind::hangup(), "HUP"),
        (SignalKind::quit(), "QUIT"),
        (SignalKind::user_defined1(), "USR1"),
        (SignalKind::user_defined2(), "USR2"),
    ] {
        let Ok(mut s) = signal(kind) else { continue };
        let c = c.clone();
        let id = id.clone();
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                let path = format!(
                    "/containers/{}/kill{}",
                    seg(&id),
                    query(&[("signal", name.to_owned())])
                );
                if let Err(e) = c.post(&path, None).await {
                    eprintln!("Error sending signal {name}: {}", super::error_text(&e));
                }
            }
        });
    }
}

fn attach_path(id: &str, stdin: bool) -> String {
    format!(
        "/containers/{}/attach{}",
        seg(id),
        query(&[
            ("stream", "1".into()),
            ("stdin", if stdin { "1" } else { "0" }.into()),
            ("stdout", "1".into()),
            ("stderr", "1".into()),
        ])
    )
}

/// The `StatusCode` of a wait answer (its `Error.Message` on stderr).
fn wait_code(v: &Value) -> i32 {
    if let Some(m) = v["Error"]["Message"].as_str().filter(|m| !m.is_empty()) {
        eprintln!("{m}");
    }
    v["StatusCode"].as_i64().unwrap_or(125) as i32
}

/// `berth run`.
pub async fn run(c: &Client, a: RunArgs) -> Result<i32> {
    let o = &a.opts;
    let keys = parse_detach_keys(o.detach_keys.as_deref().unwrap_or(DEFAULT_DETACH_KEYS))?;
    if !a.detach && o.tty && o.interactive && !std::io::stdin().is_terminal() {
        bail!("the input device is not a TTY");
    }
    let req = build_create(o, &a.image, &a.command, a.detach, &lookup_env)?;
    let id = create_container(c, &req, &a.image, &o.pull).await?;
    let start_path = format!("/containers/{}/start", seg(&id));
    if a.detach {
        c.post(&start_path, None).await.map_err(start_failed)?;
        out(&format!("{id}\n"))?;
        return Ok(0);
    }
    let conn = c.hijack(&attach_path(&id, o.interactive), None).await?;
    let cond = if o.rm { "removed" } else { "next-exit" };
    let wait = c
        .post(
            &format!(
                "/containers/{}/wait{}",
                seg(&id),
                query(&[("condition", cond.into())])
            ),
            None,
        )
        .await?;
    let wait = tokio::spawn(read_json(wait));
    let raw = if o.tty && o.interactive {
        RawMode::enable()?
    } else {
        None
    };
    if let Err(e) = c.post(&start_path, None).await {
        drop(raw);
        wait.abort();
        return Err(start_failed(e));
    }
    if o.tty {
        spawn_resizer(c, format!("/containers/{}/resize", seg(&id)));
    } else if a.sig_proxy {
        spawn_signal_proxy(c, id.clone());
    }
    let ended = pump(
        conn,
        StreamOpts {
            tty: o.tty,
            stdin: o.interactive,
            detach_keys: keys,
        },
    )
    .await;
    drop(raw);
    if ended? == Ended::Detached {
        return Ok(0);
    }
    let v = wait.await??;
    Ok(wait_code(&v))
}

/// `berth start`.
pub async fn start(c: &Client, a: StartArgs) -> Result<i32> {
    if !a.attach && !a.interactive {
        return for_each(&a.containers, |name| async move {
            c.post(&format!("/containers/{}/start", seg(&name)), None)
                .await?;
            Ok(Some(name))
        })
        .await;
    }
    if a.containers.len() > 1 {
        bail!("you cannot start and attach multiple containers at once");
    }
    let name = &a.containers[0];
    let info = c
        .get_json(&format!("/containers/{}/json", seg(name)))
        .await?;
    let id = info["Id"].as_str().unwrap_or(name).to_owned();
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = a.interactive && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let keys = parse_detach_keys(a.detach_keys.as_deref().unwrap_or(DEFAULT_DETACH_KEYS))?;
    let auto_remove = info["HostConfig"]["AutoRemove"].as_bool().unwrap_or(false);
    let conn = c.hijack(&attach_path(&id, stdin), None).await?;
    let cond = if auto_remove { "removed" } else { "next-exit" };
    let wait = c
        .post(
            &format!(
                "/containers/{}/wait{}",
                seg(&id),
                query(&[("condition", cond.into())])
            ),
            None,
        )
        .await?;
    let wait = tokio::spawn(read_json(wait));
    let raw = if tty && stdin {
        RawMode::enable()?
    } else {
        None
    };
    if let Err(e) = c
        .post(&format!("/containers/{}/start", seg(&id)), None)
        .await
    {
        drop(raw);
        wait.abort();
        return Err(e);
    }
    if tty {
        spawn_resizer(c, format!("/containers/{}/resize", seg(&id)));
    } else {
        spawn_signal_proxy(c, id.clone());
    }
    let ended = pump(
        conn,
        StreamOpts {
            tty,
            stdin,
            detach_keys: keys,
        },
    )
    .await;
    drop(raw);
    if ended? == Ended::Detached {
        return Ok(0);
    }
    let v = wait.await??;
    Ok(wait_code(&v))
}

/// `berth attach`.
pub async fn attach(c: &Client, a: AttachArgs) -> Result<i32> {
    let info = c
        .get_json(&format!("/containers/{}/json", seg(&a.container)))
        .await?;
    if info["State"]["Running"] != true {
        bail!("You cannot attach to a stopped container, start it first");
    }
    if info["State"]["Paused"] == true {
        bail!("You cannot attach to a paused container, unpause it first");
    }
    let id = info["Id"].as_str().unwrap_or(&a.container).to_owned();
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = !a.no_stdin && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let keys = parse_detach_keys(a.detach_keys.as_deref().unwrap_or(DEFAULT_DETACH_KEYS))?;
    if tty && stdin && !std::io::stdin().is_terminal() {
        bail!("the input device is not a TTY");
    }
    let conn = c.hijack(&attach_path(&id, stdin), None).await?;
    let raw = if tty && stdin {
        RawMode::enable()?
    } else {
        None
    };
    if tty {
        spawn_resizer(c, format!("/containers/{}/resize", seg(&id)));
    } else if a.sig_proxy {
        spawn_signal_proxy(c, id.clone());
    }
    let ended = pump(
        conn,
        StreamOpts {
            tty,
            stdin,
            detach_keys: keys,
        },
    )
    .await;
    drop(raw);
    if ended? == Ended::Detached {
        return Ok(0);
    }
    let v = c
        .post_json(&format!("/containers/{}/wait", seg(&id)), None)
        .await?;
    Ok(wait_code(&v))
}

/// The body of `POST /containers/{id}/exec`.
pub fn exec_body(a: &ExecArgs, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Value> {
    let mut env = Vec::new();
    for f in &a.env_file {
        let text = std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("open {f}: {e}"))?;
        env.extend(parse_env_lines(&text, lookup));
    }
    for e in &a.env {
        if e.contains('=') {
            env.push(e.clone());
        } else if let Some(v) = lookup(e) {
            env.push(format!("{e}={v}"));
        }
    }
    let attach = !a.detach;
    let mut b = json!({
        "User": a.user.clone().unwrap_or_default(),
        "Privileged": a.privileged,
        "Tty": a.tty,
        "AttachStdin": attach && a.interactive,
        "AttachStdout": attach,
        "AttachStderr": attach,
        "Detach": a.detach,
        "Env": env,
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "Cmd": a.command,
    });
    if a.tty
        && let Some((h, w)) = crate::tty::size()
    {
        b["ConsoleSize"] = json!([h, w]);
    }
    Ok(b)
}

/// `berth exec`.
pub async fn exec(c: &Client, a: ExecArgs) -> Result<i32> {
    let keys = parse_detach_keys(a.detach_keys.as_deref().unwrap_or(DEFAULT_DETACH_KEYS))?;
    if !a.detach && a.tty && a.interactive && !std::io::stdin().is_terminal() {
        bail!("the input device is not a TTY");
    }
    let body = exec_body(&a, &lookup_env)?;
    let v = c
        .post_json(
            &format!("/containers/{}/exec", seg(&a.container)),
            Some(&body),
        )
        .await?;
    let exec_id = v["Id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the daemon's exec answer has no Id: {v}"))?
        .to_owned();
    let start_path = format!("/exec/{}/start", seg(&exec_id));
    let mut start_body = json!({"Detach": a.detach, "Tty": a.tty});
    if let Some(cs) = body.get("ConsoleSize") {
        start_body["ConsoleSize"] = cs.clone();
    }
    if a.detach {
        c.post(&start_path, Some(&start_body)).await?;
        return Ok(0);
    }
    let conn = c.hijack(&start_path, Some(&start_body)).await?;
    let raw = if a.tty && a.interactive {
        RawMode::enable()?
    } else {
        None
    };
    if a.tty {
        spawn_resizer(c, format!("/exec/{}/resize", seg(&exec_id)));
    }
    let ended = pump(
        conn,
        StreamOpts {
            tty: a.tty,
            stdin: a.interactive,
            detach_keys: keys,
        },
    )
    .await;
    drop(raw);
    if ended? == Ended::Detached {
        return Ok(0);
    }
    let info = c.get_json(&format!("/exec/{}/json", seg(&exec_id))).await?;
    Ok(info["ExitCode"].as_i64().unwrap_or(0) as i32)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn start_error_codes_like_docker() {
        assert_eq!(
            start_error_code(
                "failed to create task: exec: \"nope\": executable file not found in $PATH"
            ),
            127
        );
        assert_eq!(
            start_error_code("exec /bin/x: no such file or directory"),
            127
        );
        assert_eq!(start_error_code("exec /etc/passwd: permission denied"), 126);
        assert_eq!(start_error_code("cgroup: out of memory"), 125);
    }

    #[test]
    fn exec_bodies() {
        let cli = crate::cli::Cli::try_parse_from([
            "berth", "exec", "-i", "-e", "A=1", "-e", "HOME_VAR", "-w", "/tmp", "-u", "nobody",
            "web", "sh", "-c", "echo hi",
        ])
        .unwrap();
        let Some(crate::cli::Cmd::Exec(a)) = cli.cmd else {
            panic!("not exec")
        };
        let env = |k: &str| (k == "HOME_VAR").then(|| "h".to_owned());
        let b = exec_body(&a, &env).unwrap();
        assert_eq!(b["Cmd"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(b["Env"], json!(["A=1", "HOME_VAR=h"]));
        assert_eq!(b["AttachStdin"], true);
        assert_eq!(b["AttachStdout"], true);
        assert_eq!(b["Tty"], false);
        assert_eq!(b["WorkingDir"], "/tmp");
        assert_eq!(b["User"], "nobody");
    }

    #[test]
    fn run_arguments_stop_at_the_image() {
        let cli = crate::cli::Cli::try_parse_from([
            "berth", "run", "--rm", "-h", "box", "-e", "X=1", "bb", "ls", "-la", "--rm",
        ])
        .unwrap();
        let Some(crate::cli::Cmd::Run(a)) = cli.cmd else {
            panic!("not run")
        };
        assert!(a.opts.rm);
        assert_eq!(a.opts.hostname.as_deref(), Some("box"));
        assert_eq!(a.image, "bb");
        assert_eq!(a.command, vec!["ls", "-la", "--rm"]);
    }
}
