#![allow(clippy::unwrap_used, clippy::expect_used)]
//! berthd driven by bollard, the Rust Docker client, unchanged: version
//! negotiation, ping, info; an image loaded, listed, inspected, tagged and
//! removed; a container created, started, waited for, its logs read, then
//! inspected and removed; exec with output, attach with input, one-shot
//! stats, and the events of it all.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, EventsOptionsBuilder,
    ImportImageOptionsBuilder, ListImagesOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StatsOptionsBuilder, TagImageOptionsBuilder,
};
use bollard::{API_DEFAULT_VERSION, Docker, body_full};
use common::{Daemon, busybox_archive};
use futures_util::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;

const IMAGE: &str = "bollard/busybox:latest";

/// Stdout and stderr of a log stream, apart.
async fn split_output(
    mut s: impl futures_util::Stream<Item = Result<LogOutput, Error>> + Unpin,
) -> (String, String) {
    let (mut out, mut err) = (String::new(), String::new());
    while let Some(m) = s.next().await {
        match m.unwrap() {
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                out.push_str(&String::from_utf8_lossy(&message))
            }
            LogOutput::StdErr { message } => err.push_str(&String::from_utf8_lossy(&message)),
            LogOutput::StdIn { .. } => {}
        }
    }
    (out, err)
}

fn status_of(e: &Error) -> Option<u16> {
    match e {
        Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

async fn run(d: &Daemon, archive: Vec<u8>) {
    let sock = d.sock.to_str().unwrap();
    // bollard asks for a newer API than berthd's 1.51: negotiated down.
    let docker = Docker::connect_with_unix(sock, 30, API_DEFAULT_VERSION)
        .unwrap()
        .negotiate_version()
        .await
        .unwrap();
    let t0 = chrono::Utc::now().timestamp().to_string();

    // System.
    let v = docker.version().await.unwrap();
    assert_eq!(v.api_version.as_deref(), Some("1.51"));
    assert_eq!(v.os.as_deref(), Some("linux"));
    assert_eq!(docker.ping().await.unwrap(), "OK");
    let info = docker.info().await.unwrap();
    assert_eq!(info.os_type.as_deref(), Some("linux"));
    assert_eq!(info.images, Some(0));
    assert_eq!(info.docker_root_dir.as_deref(), d.data_root.to_str());

    // Images: load, list, inspect, tag, remove.
    let loaded: Vec<_> = docker
        .import_image(
            ImportImageOptionsBuilder::default().build(),
            body_full(archive.into()),
            None,
        )
        .try_collect()
        .await
        .unwrap();
    assert!(
        loaded
            .iter()
            .any(|l| l.stream.as_deref() == Some(&format!("Loaded image: {IMAGE}\n"))),
        "{loaded:?}"
    );
    let images = docker
        .list_images(Some(ListImagesOptionsBuilder::default().build()))
        .await
        .unwrap();
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0].repo_tags, vec![IMAGE.to_owned()]);
    let img = docker.inspect_image(IMAGE).await.unwrap();
    assert_eq!(img.id.as_deref(), Some(images[0].id.as_str()));
    assert_eq!(img.config.and_then(|c| c.cmd), Some(vec!["sh".to_owned()]));
    docker
        .tag_image(
            IMAGE,
            Some(
                TagImageOptionsBuilder::default()
                    .repo("bollard/copy")
                    .tag("v1")
                    .build(),
            ),
        )
        .await
        .unwrap();
    let copy = docker.inspect_image("bollard/copy:v1").await.unwrap();
    assert_eq!(copy.id, img.id);
    let removed = docker
        .remove_image(
            "bollard/copy:v1",
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await
        .unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0].untagged.as_deref(), Some("bollard/copy:v1"));
    let e = docker.inspect_image("bollard/copy:v1").await.unwrap_err();
    assert_eq!(status_of(&e), Some(404), "{e}");

    // A container's life: create, start, wait, logs, inspect, remove.
    let created = docker
        .create_container(
            Some(
                CreateContainerOptionsBuilder::default()
                    .name("bollard-run")
                    .build(),
            ),
            ContainerCreateBody {
                image: Some(IMAGE.to_owned()),
                cmd: Some(vec![
                    "sh".into(),
                    "-c".into(),
                    "echo out; echo err >&2; exit 3".into(),
                ]),
                labels: Some(HashMap::from([("judge".to_owned(), "bollard".to_owned())])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(created.id.len(), 64);
    let e = docker
        .create_container(
            Some(
                CreateContainerOptionsBuilder::default()
                    .name("bollard-run")
                    .build(),
            ),
            ContainerCreateBody {
                image: Some(IMAGE.to_owned()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Some(409), "{e}");
    let mut wait = docker.wait_container("bollard-run", None);
    docker.start_container("bollard-run", None).await.unwrap();
    match wait.next().await {
        Some(Err(Error::DockerContainerWaitError { code, .. })) => assert_eq!(code, 3),
        other => panic!("wait: {other:?}"),
    }
    let logs = docker.logs(
        "bollard-run",
        Some(
            LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .build(),
        ),
    );
    assert_eq!(
        split_output(logs).await,
        ("out\n".to_owned(), "err\n".to_owned())
    );
    let c = docker.inspect_container("bollard-run", None).await.unwrap();
    let state = c.state.unwrap();
    assert_eq!(state.exit_code, Some(3));
    assert_eq!(state.running, Some(false));
    assert_eq!(c.name.as_deref(), Some("/bollard-run"));
    assert_eq!(
        c.config
            .and_then(|c| c.labels)
            .and_then(|l| l.get("judge").cloned()),
        Some("bollard".to_owned())
    );
    docker.remove_container("bollard-run", None).await.unwrap();
    let e = docker
        .inspect_container("bollard-run", None)
        .await
        .unwrap_err();
    assert_eq!(status_of(&e), Some(404), "{e}");

    // A running container: attach with input, exec, stats.
    docker
        .create_container(
            Some(
                CreateContainerOptionsBuilder::default()
                    .name("bollard-cat")
                    .build(),
            ),
            ContainerCreateBody {
                image: Some(IMAGE.to_owned()),
                cmd: Some(vec!["cat".into()]),
                open_stdin: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut att = docker
        .attach_container(
            "bollard-cat",
            Some(
                AttachContainerOptionsBuilder::default()
                    .stdin(true)
                    .stdout(true)
                    .stderr(true)
                    .stream(true)
                    .build(),
            ),
        )
        .await
        .unwrap();
    docker.start_container("bollard-cat", None).await.unwrap();
    att.input.write_all(b"through attach\n").await.unwrap();
    att.input.flush().await.unwrap();
    let mut echoed = String::new();
    while !echoed.contains("through attach\n") {
        match att.output.next().await {
            Some(Ok(m)) => echoed.push_str(&m.to_string()),
            other => panic!("attach ended: {other:?} after {echoed:?}"),
        }
    }

    let exec = docker
        .create_exec(
            "bollard-cat",
            CreateExecOptions {
                cmd: Some(vec!["sh", "-c", "echo exec-out; echo exec-err >&2; exit 4"]),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    match docker.start_exec(&exec.id, None).await.unwrap() {
        StartExecResults::Attached { output, .. } => {
            assert_eq!(
                split_output(output).await,
                ("exec-out\n".to_owned(), "exec-err\n".to_owned())
            );
        }
        StartExecResults::Detached => panic!("exec started detached"),
    }
    let ei = docker.inspect_exec(&exec.id).await.unwrap();
    assert_eq!(ei.exit_code, Some(4));
    assert_eq!(ei.running, Some(false));

    let stats: Vec<_> = docker
        .stats(
            "bollard-cat",
            Some(
                StatsOptionsBuilder::default()
                    .stream(false)
                    .one_shot(true)
                    .build(),
            ),
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].name.as_deref(), Some("/bollard-cat"));
    assert!(
        stats[0]
            .memory_stats
            .as_ref()
            .and_then(|m| m.usage)
            .is_some_and(|u| u > 0),
        "{:?}",
        stats[0].memory_stats
    );

    docker
        .remove_container(
            "bollard-cat",
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
        .unwrap();

    // Events: what happened to bollard-run, in order, from since/until.
    let until = (chrono::Utc::now().timestamp() + 1).to_string();
    let filters = HashMap::from([("container", vec!["bollard-run"])]);
    let events: Vec<_> = docker
        .events(Some(
            EventsOptionsBuilder::default()
                .since(&t0)
                .until(&until)
                .filters(&filters)
                .build(),
        ))
        .try_collect()
        .await
        .unwrap();
    let actions: Vec<String> = events.iter().filter_map(|e| e.action.clone()).collect();
    let pos = |a: &str| {
        actions
            .iter()
            .position(|x| x == a)
            .unwrap_or_else(|| panic!("no {a} event in {actions:?}"))
    };
    assert!(pos("create") < pos("start"), "{actions:?}");
    assert!(pos("start") < pos("die"), "{actions:?}");
    assert!(pos("die") < pos("destroy"), "{actions:?}");
    let die = &events[pos("die")];
    let attrs = die
        .actor
        .as_ref()
        .and_then(|a| a.attributes.clone())
        .unwrap();
    assert_eq!(attrs.get("exitCode").map(String::as_str), Some("3"));
    assert_eq!(attrs.get("judge").map(String::as_str), Some("bollard"));
}

#[test]
fn bollard_drives_berthd() {
    let d = Daemon::start();
    let tmp = d.dir.path().to_owned();
    let arch = tmp.join("busybox.tar");
    busybox_archive(&tmp.join("scratch"), IMAGE, "bollard", &arch);
    let bytes = std::fs::read(&arch).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), run(&d, bytes))
            .await
            .unwrap_or_else(|_| panic!("bollard test timed out; berthd log:\n{}", d.log()));
    });
}
