//! What berth keeps about a network, in redb: table `networks` (id → JSON)
//! and the address manager's state, table `ipam` (one JSON value). That is
//! written with each network's creation and removal, after a recovery and
//! at shutdown, not at each container's start and exit: the addresses in
//! use are the running containers', whose records hold them, and a daemon
//! start rebuilds the allocations from those.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_net::ipam::Ipam;
use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::db::db_err;
use crate::error::EngineError;

const NETWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("networks");
const IPAM: TableDefinition<&str, &[u8]> = TableDefinition::new("ipam");
const IPAM_KEY: &str = "state";

/// One configured subnet of a network, as `docker network inspect` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetConfig {
    /// `10.1.0.0/24`.
    pub subnet: String,
    /// `10.1.0.128/25` or empty.
    #[serde(default)]
    pub ip_range: String,
    /// `10.1.0.1`.
    pub gateway: String,
    /// `--aux-address`: names → addresses kept out of allocation.
    #[serde(default)]
    pub aux_addresses: std::collections::BTreeMap<String, String>,
}

/// A network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// 64 hex.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// `bridge`, `host` or `null`.
    pub driver: String,
    /// RFC 3339.
    pub created: String,
    /// No traffic in or out, only between its containers.
    #[serde(default)]
    pub internal: bool,
    /// `--attachable` (kept; every local network is attachable).
    #[serde(default)]
    pub attachable: bool,
    /// An IPv6 subnet too.
    #[serde(default)]
    pub enable_ipv6: bool,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Driver options, as given.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// IPAM options, as given.
    #[serde(default)]
    pub ipam_options: BTreeMap<String, String>,
    /// The subnets in force.
    #[serde(default)]
    pub subnets: Vec<SubnetConfig>,
    /// The user chose the subnets (static addresses are allowed only then).
    #[serde(default)]
    pub user_subnets: bool,
    /// The bridge device (bridge driver only).
    #[serde(default)]
    pub bridge: String,
    /// Containers on it may talk to each other.
    #[serde(default = "yes")]
    pub icc: bool,
    /// MTU of the bridge and veths.
    #[serde(default)]
    pub mtu: Option<u32>,
}

fn yes() -> bool {
    true
}

impl Network {
    /// `bridge`, `host` and `none`, which berthd makes itself.
    pub fn is_predefined(&self) -> bool {
        matches!(self.name.as_str(), "bridge" | "host" | "none")
    }

    /// A bridge network the user made (has embedded DNS, aliases, static IPs).
    pub fn is_user_defined(&self) -> bool {
        self.driver == "bridge" && self.name != "bridge"
    }
}

/// The network records and the IPAM state over the engine's database.
#[derive(Debug, Clone)]
pub struct Networks {
    db: Arc<Database>,
}

impl Networks {
    /// Opens (creates) the tables.
    pub fn new(db: Arc<Database>) -> Result<Self, EngineError> {
        let tx = db.begin_write().map_err(|e| db_err("begin", e))?;
        tx.open_table(NETWORKS)
            .map_err(|e| db_err("open networks", e))?;
        tx.open_table(IPAM).map_err(|e| db_err("open ipam", e))?;
        tx.commit().map_err(|e| db_err("commit", e))?;
        Ok(Networks { db })
    }

    /// Every network.
    pub fn all(&self) -> Result<Vec<Network>, EngineError> {
        crate::db::read_all(&self.db, NETWORKS, "network")
    }

    /// The saved address manager, if any.
    pub fn load_ipam(&self) -> Result<Option<Ipam>, EngineError> {
        let tx = self.db.begin_read().map_err(|e| db_err("begin", e))?;
        let t = tx.open_table(IPAM).map_err(|e| db_err("open ipam", e))?;
        let Some(v) = t.get(IPAM_KEY).map_err(|e| db_err("read ipam", e))? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| EngineError::Internal(format!("ipam state: {e}")))
    }

    /// Writes the network (when given), the removal of `remove` (when
    /// given) and the address manager in one transaction.
    pub fn save(
        &self,
        put: Option<&Network>,
        remove: Option<&str>,
        ipam: &Ipam,
    ) -> Result<(), EngineError> {
        let tx = self.db.begin_write().map_err(|e| db_err("begin", e))?;
        {
            let mut t = tx
                .open_table(NETWORKS)
                .map_err(|e| db_err("open networks", e))?;
            if let Some(n) = put {
                let bytes = serde_json::to_vec(n)
                    .map_err(|e| EngineError::Internal(format!("encode network: {e}")))?;
                t.insert(n.id.as_str(), bytes.as_slice())
                    .map_err(|e| db_err("write network", e))?;
            }
            if let Some(id) = remove {
                t.remove(id).map_err(|e| db_err("remove network", e))?;
            }
            let mut i = tx.open_table(IPAM).map_err(|e| db_err("open ipam", e))?;
            let bytes = serde_json::to_vec(ipam)
                .map_err(|e| EngineError::Internal(format!("encode ipam: {e}")))?;
            i.insert(IPAM_KEY, bytes.as_slice())
                .map_err(|e| db_err("write ipam", e))?;
        }
        tx.commit().map_err(|e| db_err("commit", e))
    }
}
