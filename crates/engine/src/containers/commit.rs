//! `docker commit`: a container's changes as a new image.

use berth_image::store::CommitOptions;
use serde_json::{Value, json};

use super::ContainerService;
use crate::error::EngineError;
use crate::images::changes::apply_changes;

/// `POST /commit` parameters.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// `repo[:tag]` or empty for an untagged image.
    pub repo: String,
    /// Tag (`latest` when empty and a repo is given).
    pub tag: String,
    /// `--message`.
    pub comment: String,
    /// `--author`.
    pub author: String,
    /// `--change` lines (Dockerfile instructions).
    pub changes: Vec<String>,
    /// Config fields from the request body, over the container's.
    pub config: Option<Value>,
}

impl ContainerService {
    /// Commits the container's filesystem changes as a new image; returns
    /// its id (`sha256:…`).
    pub fn commit(&self, name_or_id: &str, req: &CommitRequest) -> Result<String, EngineError> {
        let r = self.get(name_or_id)?;
        let base = self.images.lookup(&r.image_id)?;
        let c = &r.config;
        let mut config = json!({
            "Cmd": c.cmd,
            "Entrypoint": c.entrypoint,
            "Env": c.env,
            "WorkingDir": c.working_dir,
            "User": c.user,
            "Labels": c.labels,
            "ExposedPorts": c.exposed_ports,
            "Volumes": c.volumes,
            "StopSignal": c.stop_signal,
            "Hostname": "",
        });
        if let Some(h) = &c.healthcheck {
            config["Healthcheck"] = serde_json::to_value(h).unwrap_or(Value::Null);
        }
        if let Some(Value::Object(over)) = &req.config {
            for (k, v) in over {
                if !v.is_null() {
                    config[k] = v.clone();
                }
            }
        }
        apply_changes(&mut config, &req.changes)?;
        let name = if req.repo.is_empty() {
            None
        } else {
            Some(crate::images::tag_name(&req.repo, &req.tag)?.to_string())
        };
        let img = self.images.store().commit_container(
            &self.snapshotter,
            &r.id,
            &base.target,
            self.images.platform(),
            &CommitOptions {
                name,
                config: Some(config),
                comment: Some(req.comment.clone()).filter(|s| !s.is_empty()),
                author: Some(req.author.clone()).filter(|s| !s.is_empty()),
                container: Some((
                    r.id.clone(),
                    serde_json::to_value(&r.config).unwrap_or(Value::Null),
                )),
            },
        )?;
        let entry = self.images.lookup(&img.name)?;
        self.events.publish(
            "container",
            "commit",
            &r.id,
            [
                ("comment".to_owned(), req.comment.clone()),
                ("imageID".to_owned(), entry.id.clone()),
            ]
            .into_iter()
            .collect(),
        );
        Ok(entry.id)
    }
}
