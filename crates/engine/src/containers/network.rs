//! Containers and networks together: `docker network connect/disconnect`,
//! removal and prune of networks (which need to know their containers).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::ContainerService;
use super::record::Record;
use crate::error::EngineError;
use crate::networks::{EndpointConfig, Network};

impl ContainerService {
    /// The containers that have an endpoint on `net` (running or not).
    pub fn network_users(&self, net: &Network) -> Result<Vec<Record>, EngineError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|r| r.networks.values().any(|e| e.network_id == net.id))
            .collect())
    }

    /// The containers of `net` made ahead of their start are dropped (their
    /// endpoints are on it).
    async fn unprepare_users(self: &Arc<Self>, net: &Network) -> Result<(), EngineError> {
        for r in self.network_users(net)? {
            if r.state.status == super::Status::Created {
                let slot = self.slot(&r.id);
                let _g = slot.op.lock().await;
                self.unprepare(&r.id).await;
            }
        }
        Ok(())
    }

    fn network_event(&self, n: &Network, action: &str, container: Option<&str>) {
        let mut attrs = BTreeMap::new();
        attrs.insert("name".to_owned(), n.name.clone());
        attrs.insert("type".to_owned(), n.driver.clone());
        if let Some(c) = container {
            attrs.insert("container".to_owned(), c.to_owned());
        }
        self.events.publish("network", action, &n.id, attrs);
    }

    /// `docker network create`.
    pub async fn network_create(
        &self,
        req: crate::networks::CreateNetwork,
    ) -> Result<Network, EngineError> {
        let n = self.networks.create(req).await?;
        self.network_event(&n, "create", None);
        Ok(n)
    }

    /// `docker network rm`: refused while a running container uses it.
    pub async fn network_remove(self: &Arc<Self>, name_or_id: &str) -> Result<(), EngineError> {
        let n = self.networks.get(name_or_id)?;
        if n.is_predefined() {
            return Err(EngineError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        self.unprepare_users(&n).await?;
        if self
            .network_users(&n)?
            .iter()
            .any(|r| r.state.status.is_live() || r.state.status == super::Status::Restarting)
        {
            return Err(EngineError::Forbidden(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.name, n.id
            )));
        }
        self.networks.remove_unused(&n).await?;
        self.network_event(&n, "destroy", None);
        Ok(())
    }

    /// `docker network prune`: every user-defined network no container
    /// refers to and `keep` does not keep; returns their names.
    pub async fn network_prune(
        &self,
        keep: impl Fn(&Network) -> bool,
    ) -> Result<Vec<String>, EngineError> {
        let mut removed = Vec::new();
        for n in self.networks.list()? {
            if n.is_predefined() || keep(&n) || !self.network_users(&n)?.is_empty() {
                continue;
            }
            if self.networks.remove_unused(&n).await.is_ok() {
                self.network_event(&n, "destroy", None);
                removed.push(n.name);
            }
        }
        Ok(removed)
    }

    /// `docker network connect` (to its end even if the client goes).
    pub async fn network_connect(
        self: &Arc<Self>,
        network: &str,
        container: &str,
        cfg: EndpointConfig,
    ) -> Result<(), EngineError> {
        let (svc, network, container) = (self.clone(), network.to_owned(), container.to_owned());
        super::lifecycle::to_completion(
            async move { svc.connect_now(&network, &container, cfg).await },
        )
        .await
    }

    async fn connect_now(
        self: &Arc<Self>,
        network: &str,
        container: &str,
        cfg: EndpointConfig,
    ) -> Result<(), EngineError> {
        let n = self.networks.get(network)?;
        let r = self.get(container)?;
        let slot = self.slot(&r.id);
        let _g = slot.op.lock().await;
        self.unprepare(&r.id).await;
        let r = self.get(&r.id)?;
        let mode = r.host_config.network_mode.as_str();
        if no_own_networks(mode) {
            return Err(EngineError::Forbidden(
                "container sharing network namespace with another container or host cannot be connected to any other network".into(),
            ));
        }
        if n.driver != "bridge" {
            return Err(EngineError::Forbidden(
                "container cannot be disconnected from host network or connected to host network"
                    .into(),
            ));
        }
        if r.networks.contains_key(&n.name) {
            return Err(EngineError::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                r.short_name(),
                n.name
            )));
        }
        let ipam = cfg.ipam_config.clone().unwrap_or_default();
        let mut ep = self.networks.check_endpoint(
            &n,
            &cfg.aliases,
            &ipam.ipv4_address,
            &ipam.ipv6_address,
        )?;
        ep.mac_address = cfg.mac_address.clone();
        ep.driver_opts = cfg.driver_opts.clone();
        ep.link_local_ips = ipam.link_local_ips.clone();
        for l in &cfg.links {
            super::parse_link(l)?;
        }
        if n.is_user_defined() {
            ep.links = cfg.links.clone();
        }
        if r.state.status.is_live() {
            ep = self
                .networks
                .connect_running(&r.id, r.short_name(), &n, &ep, r.networks.len())
                .await?;
        }
        let name = n.name.clone();
        let res = self.records.update(&r.id, |rec| {
            rec.networks.insert(name.clone(), ep.clone());
            Ok(())
        });
        if let Err(e) = res {
            if r.state.status.is_live() {
                self.networks.disconnect_running(&r.id, &n.name, &ep).await;
            }
            return Err(e);
        }
        self.network_event(&n, "connect", Some(&r.id));
        Ok(())
    }

    /// `docker network disconnect` (to its end even if the client goes).
    pub async fn network_disconnect(
        self: &Arc<Self>,
        network: &str,
        container: &str,
        _force: bool,
    ) -> Result<(), EngineError> {
        let (svc, network, container) = (self.clone(), network.to_owned(), container.to_owned());
        super::lifecycle::to_completion(
            async move { svc.disconnect_now(&network, &container).await },
        )
        .await
    }

    async fn disconnect_now(
        self: &Arc<Self>,
        network: &str,
        container: &str,
    ) -> Result<(), EngineError> {
        let n = self.networks.get(network)?;
        let r = self.get(container)?;
        let slot = self.slot(&r.id);
        let _g = slot.op.lock().await;
        self.unprepare(&r.id).await;
        let r = self.get(&r.id)?;
        let Some(ep) = r.networks.get(&n.name).cloned() else {
            return Err(EngineError::Forbidden(format!(
                "container {} is not connected to network {}",
                r.id, n.name
            )));
        };
        if n.driver != "bridge" && r.state.status.is_live() {
            return Err(EngineError::Forbidden(
                "container cannot be disconnected from host network or connected to host network"
                    .into(),
            ));
        }
        if r.state.status.is_live() {
            self.networks.disconnect_running(&r.id, &n.name, &ep).await;
        }
        self.records.update(&r.id, |rec| {
            rec.networks.remove(&n.name);
            Ok(())
        })?;
        self.network_event(&n, "disconnect", Some(&r.id));
        Ok(())
    }
}

/// Network modes without networks of the container's own: the host's
/// namespace, none, or another container's.
pub(crate) fn no_own_networks(mode: &str) -> bool {
    matches!(mode, "host" | "none") || mode.starts_with("container:")
}
