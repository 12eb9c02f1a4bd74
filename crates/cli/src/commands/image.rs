//! images, rmi, tag, pull, push, load, save, import, image prune.

use std::io::IsTerminal;

use anyhow::{Context, Result, bail};
use http::Method;
use serde_json::{Value, json};

use super::{confirm, for_each, now, out, print_rows, seg};
use crate::cli::{
    ImagePruneArgs, ImagesArgs, ImportArgs, LoadArgs, PullArgs, PushArgs, RmiArgs, SaveArgs,
    TagArgs,
};
use crate::client::{BodyReader, Client, LineReader, empty, reader_body};
use crate::format::{ago, human_size, short_id};
use crate::progress::Display;
use crate::template::to_text;
use crate::units::{filters_json, query};

/// `X-Registry-Auth` for anonymous access (base64 of `{}`).
const NO_AUTH: &str = "e30=";

/// Splits `name[:tag][@digest]` into (name, tag, digest); the tag colon is
/// the one after the last `/` (registry ports stay in the name).
pub fn split_ref(r: &str) -> (String, Option<String>, Option<String>) {
    let (rest, digest) = match r.split_once('@') {
        Some((a, d)) => (a, Some(d.to_owned())),
        None => (r, None),
    };
    let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    match rest[slash..].rfind(':') {
        Some(i) => (
            rest[..slash + i].to_owned(),
            Some(rest[slash + i + 1..].to_owned()),
            digest,
        ),
        None => (rest.to_owned(), None, digest),
    }
}

/// docker's normalization: `busybox` → `docker.io/library/busybox`.
pub fn normalize_name(name: &str) -> String {
    let first = name.split('/').next().unwrap_or("");
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        name.to_owned()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    }
}

/// `berth images`.
pub async fn images(c: &Client, a: ImagesArgs) -> Result<i32> {
    let mut filters = a.filter.clone();
    if let Some(r) = &a.reference {
        filters.push(format!("reference={r}"));
    }
    let mut q = vec![("digests", "1".to_owned())];
    if a.all {
        q.push(("all", "1".into()));
    }
    if let Some(f) = filters_json(&filters)? {
        q.push(("filters", f));
    }
    let list = c.get_json(&format!("/images/json{}", query(&q))).await?;
    let list = list.as_array().cloned().unwrap_or_default();
    let id_of = |i: &Value| {
        let id = i["Id"].as_str().unwrap_or("");
        if a.no_trunc {
            id.to_owned()
        } else {
            short_id(id)
        }
    };
    if a.quiet {
        let mut seen = std::collections::BTreeSet::new();
        let mut s = String::new();
        for i in &list {
            let id = id_of(i);
            if seen.insert(id.clone()) {
                s.push_str(&id);
                s.push('\n');
            }
        }
        return out(&s).map(|_| 0);
    }
    let now = now();
    let mut rows = Vec::new();
    for i in &list {
        let created = i["Created"].as_i64().unwrap_or(0);
        let tags: Vec<String> = i["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .map(to_text)
            .filter(|t| t != "<none>:<none>")
            .collect();
        let digests: Vec<String> = i["RepoDigests"]
            .as_array()
            .into_iter()
            .flatten()
            .map(to_text)
            .filter(|t| t != "<none>@<none>")
            .collect();
        let mut pairs: Vec<(String, String, String)> = Vec::new();
        for t in &tags {
            let (repo, tag, _) = split_ref(t);
            let digest = digests
                .iter()
                .find_map(|d| {
                    d.split_once('@')
                        .filter(|(r, _)| *r == repo)
                        .map(|(_, d)| d.to_owned())
                })
                .unwrap_or_else(|| "<none>".into());
            pairs.push((repo, tag.unwrap_or_else(|| "<none>".into()), digest));
        }
        if pairs.is_empty() {
            if let Some((repo, d)) = digests.first().and_then(|d| d.split_once('@')) {
                pairs.push((repo.to_owned(), "<none>".into(), d.to_owned()));
            } else {
                pairs.push(("<none>".into(), "<none>".into(), "<none>".into()));
            }
        }
        for (repo, tag, digest) in pairs {
            rows.push(json!({
                "ID": id_of(i),
                "Repository": repo,
                "Tag": tag,
                "Digest": digest,
                "CreatedSince": ago(created, now),
                "CreatedAt": crate::commands::container::local_time(created),
                "Size": human_size(i["Size"].as_f64().unwrap_or(0.0)),
                "SharedSize": match i["SharedSize"].as_i64() { Some(s) if s >= 0 => human_size(s as f64), _ => "N/A".into() },
                "UniqueSize": match i["SharedSize"].as_i64() { Some(s) if s >= 0 => human_size(i["Size"].as_f64().unwrap_or(0.0) - s as f64), _ => "N/A".into() },
                "VirtualSize": human_size(i["Size"].as_f64().unwrap_or(0.0)),
                "Containers": match i["Containers"].as_i64() { Some(n) if n >= 0 => n.to_string(), _ => "N/A".into() },
            }));
        }
    }
    let header = json!({
        "ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
        "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
        "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE",
        "Containers": "CONTAINERS",
    });
    let default = if a.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    let fmt = match a.format.as_deref() {
        None | Some("table") => default,
        Some(f) => f,
    };
    print_rows(fmt, &rows, &header)?;
    Ok(0)
}

/// `berth rmi`.
pub async fn rmi(c: &Client, a: RmiArgs) -> Result<i32> {
    let q = query(&[
        ("force", if a.force { "1" } else { "0" }.into()),
        ("noprune", if a.no_prune { "1" } else { "0" }.into()),
    ]);
    for_each(&a.images, |name| {
        let q = q.clone();
        async move {
            let r = c.delete(&format!("/images/{}{q}", seg(&name))).await?;
            let v = crate::client::read_json(r).await?;
            let mut lines = Vec::new();
            for item in v.as_array().into_iter().flatten() {
                if let Some(u) = item["Untagged"].as_str() {
                    lines.push(format!("Untagged: {u}"));
                }
                if let Some(d) = item["Deleted"].as_str() {
                    lines.push(format!("Deleted: {d}"));
                }
            }
            Ok((!lines.is_empty()).then(|| lines.join("\n")))
        }
    })
    .await
}

/// `berth tag SOURCE TARGET`.
pub async fn tag(c: &Client, a: TagArgs) -> Result<i32> {
    let (repo, tag, digest) = split_ref(&a.target);
    if digest.is_some() {
        bail!("refusing to create a tag with a digest reference");
    }
    let q = query(&[
        ("repo", repo),
        ("tag", tag.unwrap_or_else(|| "latest".into())),
    ]);
    c.post(&format!("/images/{}/tag{q}", seg(&a.source)), None)
        .await?;
    Ok(0)
}

/// Shows a JSON-message stream on stdout (progress bars on a terminal).
async fn show_stream(
    resp: http::Response<hyper::body::Incoming>,
    quiet: bool,
) -> Result<Vec<Value>> {
    let mut lines = LineReader::new(resp);
    let terminal = std::io::stdout().is_terminal();
    let mut d = Display::new(std::io::stdout(), terminal);
    while let Some(l) = lines.next_line().await? {
        if quiet {
            // Errors still end the stream.
            let mut sink = Display::new(std::io::sink(), false);
            sink.message(&l)?;
            d.aux.append(&mut sink.aux);
        } else {
            d.message(&l)?;
        }
    }
    Ok(d.aux)
}

/// Pulls `reference`, showing progress on stdout (or stderr for `run`).
pub async fn pull_image(
    c: &Client,
    reference: &str,
    platform: Option<&str>,
    quiet: bool,
    to_stderr: bool,
) -> Result<()> {
    let (name, tag, digest) = split_ref(reference);
    let tag = digest.or(tag).unwrap_or_else(|| "latest".into());
    let mut q = vec![("fromImage", normalize_name(&name)), ("tag", tag)];
    if let Some(p) = platform {
        q.push(("platform", p.to_owned()));
    }
    let resp = c
        .send(
            Method::POST,
            &format!("/images/create{}", query(&q)),
            empty(),
            &[("x-registry-auth", NO_AUTH)],
        )
        .await?;
    if to_stderr {
        let mut lines = LineReader::new(resp);
        let mut d = Display::new(std::io::stderr(), std::io::stderr().is_terminal());
        while let Some(l) = lines.next_line().await? {
            d.message(&l)?;
        }
        Ok(())
    } else {
        show_stream(resp, quiet).await.map(|_| ())
    }
}

/// `berth pull`.
pub async fn pull(c: &Client, a: PullArgs) -> Result<i32> {
    let (name, tag, digest) = split_ref(&a.image);
    if a.all_tags && (tag.is_some() || digest.is_some()) {
        bail!("tag can't be used with --all-tags/-a");
    }
    let reference = if a.all_tags || tag.is_some() || digest.is_some() {
        a.image.clone()
    } else {
        if !a.quiet {
            out("Using default tag: latest\n")?;
        }
        format!("{name}:latest")
    };
    pull_image(c, &reference, a.platform.as_deref(), a.quiet, false).await?;
    let (n, t, d) = split_ref(&reference);
    let full = match (t, d) {
        (_, Some(d)) => format!("{}@{d}", normalize_name(&n)),
        (Some(t), None) => format!("{}:{t}", normalize_name(&n)),
        (None, None) => normalize_name(&n),
    };
    out(&format!("{full}\n"))?;
    Ok(0)
}

/// `berth push`.
pub async fn push(c: &Client, a: PushArgs) -> Result<i32> {
    let (name, tag, _) = split_ref(&a.image);
    let mut q = Vec::new();
    if !a.all_tags {
        q.push(("tag", tag.unwrap_or_else(|| "latest".into())));
    }
    let resp = c
        .send(
            Method::POST,
            &format!("/images/{}/push{}", seg(&name), query(&q)),
            empty(),
            &[("x-registry-auth", NO_AUTH)],
        )
        .await?;
    show_stream(resp, a.quiet).await?;
    if a.quiet {
        out(&format!("{}\n", a.image))?;
    }
    Ok(0)
}

/// `berth load`.
pub async fn load(c: &Client, a: LoadArgs) -> Result<i32> {
    let body = match &a.input {
        Some(p) => {
            let f = tokio::fs::File::open(p)
                .await
                .with_context(|| format!("open {p}"))?;
            reader_body(f)
        }
        None => {
            if std::io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty");
            }
            reader_body(tokio::io::stdin())
        }
    };
    let q = query(&[("quiet", if a.quiet { "1" } else { "0" }.into())]);
    let resp = c
        .send(
            Method::POST,
            &format!("/images/load{q}"),
            body,
            &[("content-type", "application/x-tar")],
        )
        .await?;
    let is_json = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if is_json {
        // `-q` only silences progress bars: the "Loaded image" lines stay.
        let mut lines = LineReader::new(resp);
        let mut d = Display::new(
            std::io::stdout(),
            std::io::stdout().is_terminal() && !a.quiet,
        );
        while let Some(l) = lines.next_line().await? {
            d.message(&l)?;
        }
    } else {
        let b = crate::client::read_bytes(resp).await?;
        out(&String::from_utf8_lossy(&b))?;
    }
    Ok(0)
}

/// Streams a response body to `-o FILE` or to stdout (never a terminal).
pub async fn body_to_output(
    resp: http::Response<hyper::body::Incoming>,
    output: Option<&str>,
    what: &str,
) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut r = BodyReader::new(resp);
    match output {
        Some(p) => {
            let tmp = format!("{p}.berth-tmp");
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .with_context(|| format!("failed to save {what}: create {tmp}"))?;
            let res: Result<()> = async {
                while let Some(chunk) = r.chunk().await? {
                    f.write_all(&chunk).await?;
                }
                f.flush().await?;
                f.sync_all().await?;
                Ok(())
            }
            .await;
            if let Err(e) = res {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
            tokio::fs::rename(&tmp, p)
                .await
                .with_context(|| format!("rename {tmp} to {p}"))?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let mut o = tokio::io::stdout();
            while let Some(chunk) = r.chunk().await? {
                o.write_all(&chunk).await?;
            }
            o.flush().await?;
        }
    }
    Ok(())
}

/// `berth save`.
pub async fn save(c: &Client, a: SaveArgs) -> Result<i32> {
    if a.output.is_none() && std::io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let q: Vec<(&str, String)> = a.images.iter().map(|n| ("names", n.clone())).collect();
    let resp = c.get(&format!("/images/get{}", query(&q))).await?;
    body_to_output(resp, a.output.as_deref(), "image").await?;
    Ok(0)
}

/// `berth import`.
pub async fn import(c: &Client, a: ImportArgs) -> Result<i32> {
    let mut q: Vec<(&str, String)> = Vec::new();
    let is_url = a.source.starts_with("http://") || a.source.starts_with("https://");
    let body = if a.source == "-" {
        q.push(("fromSrc", "-".into()));
        reader_body(tokio::io::stdin())
    } else if is_url {
        q.push(("fromSrc", a.source.clone()));
        empty()
    } else {
        q.push(("fromSrc", "-".into()));
        let f = tokio::fs::File::open(&a.source)
            .await
            .with_context(|| format!("open {}", a.source))?;
        reader_body(f)
    };
    if let Some(r) = &a.reference {
        let (repo, tag, digest) = split_ref(r);
        if digest.is_some() {
            bail!("invalid reference format: {r} (a digest cannot be imported to)");
        }
        q.push(("repo", repo));
        q.push(("tag", tag.unwrap_or_else(|| "latest".into())));
    }
    if let Some(m) = &a.message {
        q.push(("message", m.clone()));
    }
    for ch in &a.change {
        q.push(("changes", ch.clone()));
    }
    if let Some(p) = &a.platform {
        q.push(("platform", p.clone()));
    }
    let resp = c
        .send(
            Method::POST,
            &format!("/images/create{}", query(&q)),
            body,
            &[("content-type", "application/x-tar")],
        )
        .await?;
    show_stream(resp, false).await?;
    Ok(0)
}

/// `berth image prune`.
pub async fn prune(c: &Client, a: ImagePruneArgs) -> Result<i32> {
    if !a.prune.force {
        let w = if a.all {
            "WARNING! This will remove all images without at least one container associated to them."
        } else {
            "WARNING! This will remove all dangling images."
        };
        if !confirm(w)? {
            return Ok(0);
        }
    }
    let mut filters: serde_json::Map<String, Value> = filters_json(&a.prune.filter)?
        .and_then(|f| serde_json::from_str(&f).ok())
        .unwrap_or_default();
    filters.insert(
        "dangling".into(),
        json!({ if a.all { "false" } else { "true" }: true }),
    );
    let r = c
        .post_json(
            &format!(
                "/images/prune{}",
                query(&[("filters", Value::Object(filters).to_string())])
            ),
            None,
        )
        .await?;
    let mut s = crate::commands::system::prune_report(&r);
    s.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(r["SpaceReclaimed"].as_f64().unwrap_or(0.0))
    ));
    out(&s)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(split_ref("busybox"), ("busybox".into(), None, None));
        assert_eq!(
            split_ref("busybox:1.36"),
            ("busybox".into(), Some("1.36".into()), None)
        );
        assert_eq!(
            split_ref("localhost:5000/bb"),
            ("localhost:5000/bb".into(), None, None)
        );
        assert_eq!(
            split_ref("localhost:5000/bb:v1@sha256:ab"),
            (
                "localhost:5000/bb".into(),
                Some("v1".into()),
                Some("sha256:ab".into())
            )
        );
        assert_eq!(normalize_name("busybox"), "docker.io/library/busybox");
        assert_eq!(normalize_name("me/app"), "docker.io/me/app");
        assert_eq!(normalize_name("localhost:5000/bb"), "localhost:5000/bb");
        assert_eq!(normalize_name("quay.io/x/y"), "quay.io/x/y");
    }
}
