use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability as Cap, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};

use crate::error::{Result, RuntimeError};

/// The capability sets to give a process, resolved against this host.
#[derive(Debug, Clone, Default)]
pub struct CapSets {
    bounding: CapsHashSet,
    effective: CapsHashSet,
    permitted: CapsHashSet,
    inheritable: CapsHashSet,
    ambient: CapsHashSet,
}

fn convert(set: &Option<Capabilities>, field: &str, allowed: &CapsHashSet) -> CapsHashSet {
    let mut out = HashSet::new();
    for c in set.iter().flatten() {
        let name = format!("CAP_{c}");
        match Cap::from_str(&name) {
            Ok(cap) if allowed.contains(&cap) => {
                out.insert(cap);
            }
            Ok(cap) => tracing::warn!(
                "process.capabilities.{field}: {cap} is not in the runtime's bounding set; not granted"
            ),
            Err(_) => tracing::warn!("process.capabilities.{field}: unknown capability {name}"),
        }
    }
    out
}

impl CapSets {
    /// Resolve the spec's sets. Capabilities outside our own bounding set
    /// (this kernel or a restricted parent) cannot be granted: they are left
    /// out with a warning, so `--privileged` means "all we have", as on this
    /// project's hosts where root lacks CAP_SYS_RESOURCE.
    pub fn from_spec(c: Option<&LinuxCapabilities>) -> Result<Self> {
        let allowed = caps::read(None, CapSet::Bounding)
            .map_err(|e| RuntimeError::InvalidArgument(format!("read bounding set: {e}")))?;
        let Some(c) = c else {
            return Ok(CapSets::default());
        };
        Ok(CapSets {
            bounding: convert(c.bounding(), "bounding", &allowed),
            effective: convert(c.effective(), "effective", &allowed),
            permitted: convert(c.permitted(), "permitted", &allowed),
            inheritable: convert(c.inheritable(), "inheritable", &allowed),
            ambient: convert(c.ambient(), "ambient", &allowed),
        })
    }

    /// Drop every capability outside the bounding set (needs CAP_SETPCAP,
    /// so done before changing user).
    pub fn apply_bounding(&self) -> Result<()> {
        for cap in caps::all() {
            if self.bounding.contains(&cap) {
                continue;
            }
            // Dropping a capability that is already gone succeeds; one the
            // kernel does not know gives EINVAL and is not there to drop.
            // SAFETY: prctl(PR_CAPBSET_DROP, n) takes plain integers.
            let ret = unsafe {
                libc::prctl(
                    libc::PR_CAPBSET_DROP,
                    libc::c_ulong::from(cap.index()),
                    0,
                    0,
                    0,
                )
            };
            if ret != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINVAL) {
                    return Err(RuntimeError::InvalidArgument(format!(
                        "drop {cap} from the bounding set: {e}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Set effective, permitted, inheritable and ambient (after the user change).
    pub fn apply_rest(&self) -> Result<()> {
        let err = |what: &str, e: caps::errors::CapsError| {
            RuntimeError::InvalidArgument(format!("set {what} capabilities: {e}"))
        };
        caps::set(None, CapSet::Effective, &self.effective).map_err(|e| err("effective", e))?;
        caps::set(None, CapSet::Inheritable, &self.inheritable)
            .map_err(|e| err("inheritable", e))?;
        caps::set(None, CapSet::Permitted, &self.permitted).map_err(|e| err("permitted", e))?;
        caps::clear(None, CapSet::Ambient).map_err(|e| err("ambient", e))?;
        for cap in &self.ambient {
            // The kernel only allows ambient capabilities that are both
            // permitted and inheritable; runc skips the others, and so do we
            // (runc's own default spec lists ambient without inheritable).
            if !self.permitted.contains(cap) || !self.inheritable.contains(cap) {
                tracing::debug!(
                    "process.capabilities.ambient: {cap} is not permitted and inheritable; skipped"
                );
                continue;
            }
            caps::raise(None, CapSet::Ambient, *cap).map_err(|e| err("ambient", e))?;
        }
        Ok(())
    }
}
