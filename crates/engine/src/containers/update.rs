//! `docker update`: resource limits and the restart policy of a container,
//! applied to its cgroups at once when it runs.

use serde_json::Value;

use super::ContainerService;
use super::config::HostConfig;
use crate::error::EngineError;

/// The `HostConfig` fields `docker update` may change.
const UPDATABLE: &[&str] = &[
    "Memory",
    "MemorySwap",
    "MemoryReservation",
    "NanoCpus",
    "CpuShares",
    "CpuQuota",
    "CpuPeriod",
    "CpusetCpus",
    "CpusetMems",
    "PidsLimit",
    "RestartPolicy",
    "BlkioWeight",
    "KernelMemory",
];

impl ContainerService {
    /// Applies the fields of `body` (a partial `HostConfig`) to the
    /// container; returns warnings.
    pub fn update(&self, name_or_id: &str, body: &Value) -> Result<Vec<String>, EngineError> {
        let Value::Object(fields) = body else {
            return Err(EngineError::InvalidArgument(
                "the update body must be a JSON object".into(),
            ));
        };
        let r = self.get(name_or_id)?;
        let mut hc = serde_json::to_value(&r.host_config)
            .map_err(|e| EngineError::Internal(format!("encode host config: {e}")))?;
        for (k, v) in fields {
            if v.is_null() {
                continue;
            }
            if !UPDATABLE.contains(&k.as_str()) {
                // Docker ignores what update does not handle; so does berth.
                continue;
            }
            hc[k] = v.clone();
        }
        let new: HostConfig = serde_json::from_value(hc)
            .map_err(|e| EngineError::InvalidArgument(format!("invalid update: {e}")))?;
        super::create::check_host_config(&new)?;
        if new.auto_remove && !matches!(new.restart_policy.name.as_str(), "" | "no") {
            return Err(EngineError::InvalidArgument(
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
                    .into(),
            ));
        }
        if r.state.status.is_live() {
            let opts = super::create::run_options(&r.id, &r.config, &new, &r.image_config, self)?;
            let mut res = berth_image::spec::resources::linux_resources(&opts.resources, false)
                .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
            // Device rules stay as they were made at start.
            res.set_devices(None);
            berth_runtime::container::update(&self.paths.runtime_root, &r.id, &res).map_err(
                |e| EngineError::Internal(format!("Cannot update container {}: {e}", r.id)),
            )?;
        }
        let rec = self.records.update(&r.id, |rec| {
            rec.host_config = new.clone();
            Ok(())
        })?;
        self.event(&rec, "update", &[]);
        Ok(Vec::new())
    }
}
