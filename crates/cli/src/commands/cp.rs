//! `berth cp`: tar over `GET`/`PUT`/`HEAD /containers/{id}/archive`, in
//! both directions, with docker's rules for what the destination becomes.
//! Extraction goes through a staging directory next to the destination and
//! `tar`'s `unpack_in`, so no entry lands outside it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use http::Method;
use serde_json::Value;

use super::seg;
use crate::cli::CpArgs;
use crate::client::{Client, empty, full, is_not_found, read_bytes, reader_body};
use crate::format::human_size;
use crate::units::query;

/// `ctr:/path` → Some((ctr, path)); local paths (`/x`, `./a:b`, `-`) → None.
pub fn split_container_path(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') || arg == "-" {
        return None;
    }
    let (c, p) = arg.split_once(':')?;
    if c.is_empty() || c.contains('/') {
        return None;
    }
    Some((c, p))
}

/// The stat header of an archive answer (`X-Docker-Container-Path-Stat`).
fn path_stat(resp: &http::Response<hyper::body::Incoming>) -> Option<Value> {
    let h = resp.headers().get("x-docker-container-path-stat")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(h.as_bytes())
        .ok()?;
    serde_json::from_slice(&raw).ok()
}

/// Go's os.ModeDir bit in a stat's `mode`.
fn stat_is_dir(stat: &Value) -> bool {
    stat["mode"].as_u64().is_some_and(|m| m & (1 << 31) != 0)
}

pub async fn cp(c: &Client, a: CpArgs) -> Result<i32> {
    match (split_container_path(&a.src), split_container_path(&a.dest)) {
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source"),
        (Some((ctr, path)), None) => from_container(c, ctr, path, &a).await,
        (None, Some((ctr, path))) => to_container(c, &a.src, ctr, path, &a).await,
    }
}

async fn from_container(c: &Client, ctr: &str, src: &str, a: &CpArgs) -> Result<i32> {
    let resp = c
        .get(&format!(
            "/containers/{}/archive{}",
            seg(ctr),
            query(&[("path", src.to_owned())])
        ))
        .await?;
    let stat = path_stat(&resp).unwrap_or(Value::Null);
    if a.dest == "-" {
        super::image::body_to_output(resp, None, "archive").await?;
        return Ok(0);
    }
    let tar = read_bytes(resp).await?;
    let dest = PathBuf::from(&a.dest);
    let src_is_dir = stat_is_dir(&stat);
    let preserve = a.archive;
    let n = tar.len();
    tokio::task::spawn_blocking(move || extract(&tar, &dest, src_is_dir, preserve)).await??;
    if !a.quiet {
        eprintln!("Successfully copied {} to {}", human_size(n as f64), a.dest);
    }
    Ok(0)
}

/// Unpacks an archive whose single top entry is the copied item to `dest`:
/// into it if it is a directory, else as it (renamed).
fn extract(tar: &[u8], dest: &Path, src_is_dir: bool, preserve: bool) -> Result<()> {
    let unpack = |into: &Path| -> Result<()> {
        let mut ar = tar::Archive::new(tar);
        ar.set_preserve_permissions(true);
        ar.set_preserve_ownerships(preserve);
        ar.set_overwrite(true);
        for e in ar.entries()? {
            let mut e = e?;
            e.unpack_in(into)
                .with_context(|| format!("extracting into {}", into.display()))?;
        }
        Ok(())
    };
    let meta = std::fs::symlink_metadata(dest).ok();
    if meta.as_ref().is_some_and(|m| m.is_dir()) {
        return unpack(dest);
    }
    if meta.is_some() && src_is_dir {
        bail!("cannot copy a directory to a file: {}", dest.display());
    }
    if dest.as_os_str().to_string_lossy().ends_with('/') && !src_is_dir {
        bail!("destination directory {} does not exist", dest.display());
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        bail!("destination directory {} does not exist", parent.display());
    }
    let stage = tempdir_in(&parent)?;
    let res = (|| -> Result<()> {
        unpack(&stage)?;
        let mut top = std::fs::read_dir(&stage)?;
        let item = top
            .next()
            .ok_or_else(|| anyhow::anyhow!("the archive from the container is empty"))??;
        std::fs::rename(item.path(), dest)
            .with_context(|| format!("moving the copy to {}", dest.display()))?;
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&stage);
    res
}

fn tempdir_in(parent: &Path) -> Result<PathBuf> {
    for i in 0..100u32 {
        let p = parent.join(format!(".berth-cp-{}-{i}", std::process::id()));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("creating a staging dir in {}", parent.display()));
            }
        }
    }
    bail!("cannot create a staging directory in {}", parent.display())
}

/// A tar of `src` whose top entry is called `name`.
pub fn tar_of(src: &Path, name: &str) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let meta = std::fs::symlink_metadata(src).with_context(|| format!("stat {}", src.display()))?;
    if meta.is_dir() {
        b.append_dir_all(name, src)?;
    } else {
        b.append_path_with_name(src, name)?;
    }
    Ok(b.into_inner()?)
}

async fn to_container(c: &Client, src: &str, ctr: &str, dest: &str, a: &CpArgs) -> Result<i32> {
    let put = |dir: String, body| async move {
        let mut q = vec![("path", dir), ("noOverwriteDirNonDir", "true".to_owned())];
        if a.archive {
            q.push(("copyUIDGID", "true".into()));
        }
        c.send(
            Method::PUT,
            &format!("/containers/{}/archive{}", seg(ctr), query(&q)),
            body,
            &[("content-type", "application/x-tar")],
        )
        .await
    };
    if src == "-" {
        put(dest.to_owned(), reader_body(tokio::io::stdin())).await?;
        return Ok(0);
    }
    let src_path = PathBuf::from(src);
    let src_meta = std::fs::symlink_metadata(&src_path)
        .with_context(|| format!("could not find the file {src}"))?;
    let stat = match c
        .send(
            Method::HEAD,
            &format!(
                "/containers/{}/archive{}",
                seg(ctr),
                query(&[("path", dest.to_owned())])
            ),
            empty(),
            &[],
        )
        .await
    {
        Ok(r) => Some(path_stat(&r).unwrap_or(Value::Null)),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(e),
    };
    let base = |p: &str| -> String {
        Path::new(p.trim_end_matches('/'))
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| ".".into())
    };
    let parent_of = |p: &str| -> String {
        match Path::new(p.trim_end_matches('/')).parent() {
            Some(x) if !x.as_os_str().is_empty() => x.display().to_string(),
            _ => "/".into(),
        }
    };
    let (dir, name) = match &stat {
        Some(s) if stat_is_dir(s) => (dest.to_owned(), base(src)),
        Some(_) if src_meta.is_dir() => bail!("cannot copy a directory to a file: {dest}"),
        Some(_) => (parent_of(dest), base(dest)),
        None if dest.ends_with('/') && !src_meta.is_dir() => {
            bail!("destination directory {dest} does not exist in the container")
        }
        None => (parent_of(dest), base(dest)),
    };
    let tarball = {
        let src_path = src_path.clone();
        let name = name.clone();
        tokio::task::spawn_blocking(move || tar_of(&src_path, &name)).await??
    };
    let n = tarball.len();
    put(dir, full(tarball)).await?;
    if !a.quiet {
        eprintln!(
            "Successfully copied {} to {ctr}:{dest}",
            human_size(n as f64)
        );
    }
    Ok(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn which_side_is_the_container() {
        assert_eq!(
            split_container_path("web:/etc/hosts"),
            Some(("web", "/etc/hosts"))
        );
        assert_eq!(split_container_path("/tmp/a:b"), None);
        assert_eq!(split_container_path("./a:b"), None);
        assert_eq!(split_container_path("-"), None);
        assert_eq!(split_container_path("file"), None);
        assert_eq!(split_container_path("dir/a:b"), None);
    }

    #[test]
    fn tar_round_trip_into_new_and_existing_destinations() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("srcdir");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/f"), "hello").unwrap();
        let tarball = tar_of(&src, "srcdir").unwrap();
        // A new destination becomes the directory itself.
        let dest = t.path().join("copy");
        extract(&tarball, &dest, true, false).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.join("sub/f")).unwrap(),
            "hello"
        );
        // An existing directory receives it inside.
        extract(&tarball, &dest, true, false).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.join("srcdir/sub/f")).unwrap(),
            "hello"
        );
        // A single file onto a new name.
        let f = t.path().join("one");
        std::fs::write(&f, "x").unwrap();
        let tb = tar_of(&f, "one").unwrap();
        extract(&tb, &t.path().join("renamed"), false, false).unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("renamed")).unwrap(),
            "x"
        );
        // A directory over a file is refused.
        assert!(extract(&tarball, &t.path().join("renamed"), true, false).is_err());
        // No staging directory is left behind.
        assert!(!std::fs::read_dir(t.path()).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".berth-cp")
        }));
    }
}
