//! Legacy container links (`--link name:alias`), as Docker keeps them for
//! the default bridge: the linked container's addresses in `/etc/hosts` and
//! its ports, name and environment in the linking container's environment.
//! On user-defined networks a link is only an alias the embedded DNS answers
//! for the linking container (see `crate::networks`).

use std::net::IpAddr;

use super::record::{Link, Record};
use super::{ContainerService, Status};
use crate::error::EngineError;

/// `name:alias`, `name` (the alias is the name) or inspect's own
/// `/name:/parent/alias` → (name, alias).
pub fn parse_link(s: &str) -> Result<(String, String), EngineError> {
    if s.is_empty() {
        return Err(EngineError::InvalidArgument(
            "empty string specified for links".into(),
        ));
    }
    let parts: Vec<&str> = s.splitn(3, ':').collect();
    match parts.as_slice() {
        [name] => Ok(((*name).to_owned(), (*name).to_owned())),
        [name, alias] => match name.strip_prefix('/') {
            Some(name) => Ok((
                name.to_owned(),
                alias.rsplit('/').next().unwrap_or(alias).to_owned(),
            )),
            None => Ok(((*name).to_owned(), (*alias).to_owned())),
        },
        _ => Err(EngineError::InvalidArgument(format!(
            "bad format for links: {s}"
        ))),
    }
}

/// A port of `ExposedPorts` (`80/tcp`, `53/udp`, `80`) as (number, proto).
fn port_of(k: &str) -> Option<(u16, String)> {
    let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
    Some((p.parse().ok()?, proto.to_ascii_lowercase()))
}

/// Docker's link variables for the link `name` (`/parent/alias`) to a
/// container at `ip` with `exposed` ports and environment `env`.
pub(crate) fn link_env(name: &str, ip: &str, exposed: &[String], env: &[String]) -> Vec<String> {
    let alias = name
        .rsplit('/')
        .next()
        .unwrap_or(name)
        .to_ascii_uppercase()
        .replace('-', "_");
    let mut ports: Vec<(u16, String)> = exposed.iter().filter_map(|k| port_of(k)).collect();
    // By number; tcp first among equal numbers.
    ports.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| (a.1 != "tcp").cmp(&(b.1 != "tcp")))
    });
    ports.dedup();
    let mut out = Vec::new();
    if let Some((p, proto)) = ports.first() {
        out.push(format!("{alias}_PORT={proto}://{ip}:{p}"));
    }
    // Runs of three or more consecutive numbers also get _START/_END
    // variables (Docker's rule, two in a row do not).
    let mut i = 0;
    while i < ports.len() {
        let j = next_contiguous(&ports, i);
        if j > i + 1 {
            let (p, proto) = &ports[i];
            let up = proto.to_ascii_uppercase();
            let (q, qproto) = &ports[j];
            let qup = qproto.to_ascii_uppercase();
            out.push(format!("{alias}_PORT_{p}_{up}_START={proto}://{ip}:{p}"));
            out.push(format!("{alias}_PORT_{p}_{up}_ADDR={ip}"));
            out.push(format!("{alias}_PORT_{p}_{up}_PROTO={proto}"));
            out.push(format!("{alias}_PORT_{p}_{up}_PORT_START={p}"));
            out.push(format!("{alias}_PORT_{p}_{qup}_END={qproto}://{ip}:{q}"));
            out.push(format!("{alias}_PORT_{p}_{qup}_PORT_END={q}"));
            i = j + 1;
        } else {
            i += 1;
        }
    }
    for (p, proto) in &ports {
        let up = proto.to_ascii_uppercase();
        out.push(format!("{alias}_PORT_{p}_{up}={proto}://{ip}:{p}"));
        out.push(format!("{alias}_PORT_{p}_{up}_ADDR={ip}"));
        out.push(format!("{alias}_PORT_{p}_{up}_PORT={p}"));
        out.push(format!("{alias}_PORT_{p}_{up}_PROTO={proto}"));
    }
    out.push(format!("{alias}_NAME={name}"));
    for kv in env {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        if k == "HOME" || k == "PATH" {
            continue;
        }
        out.push(format!("{alias}_ENV_{k}={v}"));
    }
    out
}

/// The last index of the run of consecutive port numbers starting at `i`.
fn next_contiguous(ports: &[(u16, String)], i: usize) -> usize {
    // Docker counts on from the first number, one per following port.
    let first = u32::from(ports[i].0);
    for (k, (p, _)) in ports.iter().enumerate().skip(i + 1) {
        let expected = first + (k - i) as u32;
        if u32::from(*p) > expected {
            return k - 1;
        }
    }
    ports.len() - 1
}

/// What the legacy links of a container give it at start.
#[derive(Debug, Default)]
pub(crate) struct LinkSetup {
    /// `/etc/hosts` lines.
    pub hosts: Vec<String>,
    /// Environment variables (the container's own win).
    pub env: Vec<String>,
}

impl ContainerService {
    /// Resolves `HostConfig.Links` at create: the linked containers must
    /// exist (through `container:` network modes) and not use the host's
    /// network. Links on user-defined networks are not kept here.
    pub(crate) fn resolve_links(
        &self,
        links: &[String],
        network_mode: &str,
    ) -> Result<Vec<Link>, EngineError> {
        let user_defined = !matches!(network_mode, "" | "default" | "bridge" | "host" | "none")
            && !network_mode.starts_with("container:");
        let mut out: Vec<Link> = Vec::new();
        for l in links {
            let (name, alias) = parse_link(l)?;
            if user_defined {
                continue;
            }
            let not_found = |what: &str, e: EngineError| match e {
                EngineError::NoSuchContainer(_) => EngineError::InvalidArgument(format!(
                    "could not get container for {what}: No such container: {what}"
                )),
                e => e,
            };
            let mut child = self.get(&name).map_err(|e| not_found(&name, e))?;
            let mut hops = 0;
            while let Some(other) = child.host_config.network_mode.strip_prefix("container:") {
                let other = other.to_owned();
                child = self.get(&other).map_err(|e| not_found(&other, e))?;
                hops += 1;
                if hops > 16 {
                    break;
                }
            }
            if child.host_config.network_mode == "host" {
                return Err(EngineError::InvalidArgument(
                    "conflicting options: host type networking can't be used with links. This would result in undefined behavior".into(),
                ));
            }
            if let Some(old) = out.iter_mut().find(|x| x.alias == alias) {
                old.id = child.id;
            } else {
                out.push(Link {
                    alias,
                    id: child.id,
                });
            }
        }
        Ok(out)
    }

    /// `docker rm --link /parent/alias`: forgets the link (both containers
    /// stay).
    pub fn remove_link(&self, name: &str) -> Result<(), EngineError> {
        let name = if name.starts_with('/') {
            name.to_owned()
        } else {
            format!("/{name}")
        };
        let (parent, alias) = name.rsplit_once('/').unwrap_or(("", &name));
        if parent.is_empty() {
            return Err(EngineError::InvalidArgument(
                "Conflict, cannot remove the default link name of the container".into(),
            ));
        }
        let p = self.get(parent.trim_start_matches('/')).map_err(|_| {
            EngineError::InvalidArgument(format!("Cannot get parent {parent} for link name {name}"))
        })?;
        if !p.links.iter().any(|l| l.alias == alias) {
            return Err(EngineError::NoSuchContainer(name.clone()));
        }
        self.records.update(&p.id, |rec| {
            rec.links.retain(|l| l.alias != alias);
            Ok(())
        })?;
        Ok(())
    }

    /// `HostConfig.Links` of inspect: `/child:/parent/alias`.
    pub fn link_names(&self, r: &Record) -> Vec<String> {
        r.links
            .iter()
            .filter_map(|l| {
                let child = self.get(&l.id).ok()?;
                Some(format!("{}:{}/{}", child.name, r.name, l.alias))
            })
            .collect()
    }

    /// The hosts lines and variables of `r`'s links, at its start on the
    /// default bridge (`None` when it is not on it: links do nothing then).
    pub(crate) fn link_setup(&self, r: &Record, on_bridge: bool) -> Result<LinkSetup, EngineError> {
        let mut setup = LinkSetup::default();
        if !on_bridge {
            return Ok(setup);
        }
        for l in &r.links {
            // A removed container takes its links with it (as in Docker).
            let Ok(child) = self.get(&l.id) else {
                continue;
            };
            let full = format!("{}/{}", r.name, l.alias);
            if !matches!(child.state.status, Status::Running | Status::Paused) {
                return Err(EngineError::InvalidArgument(format!(
                    "Cannot link to a non running container: {} AS {full}",
                    child.name
                )));
            }
            let Some(ep) = child.networks.get("bridge").filter(|e| e.ip.is_some()) else {
                return Err(EngineError::InvalidArgument(format!(
                    "container {} not attached to default bridge network",
                    child.id
                )));
            };
            let mut names = format!("{} {}", l.alias, child.config.hostname);
            if l.alias != child.short_name() {
                names.push(' ');
                names.push_str(child.short_name());
            }
            for ip in [ep.ip, ep.ipv6].into_iter().flatten() {
                setup.hosts.push(format!("{ip}\t{names}"));
            }
            let ip = ep.ip.map(|i: IpAddr| i.to_string()).unwrap_or_default();
            let exposed: Vec<String> = child
                .config
                .exposed_ports
                .as_ref()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            setup
                .env
                .extend(link_env(&full, &ip, &exposed, &child.config.env));
        }
        Ok(setup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_parse() {
        assert_eq!(parse_link("a:b").unwrap(), ("a".into(), "b".into()));
        assert_eq!(parse_link("a").unwrap(), ("a".into(), "a".into()));
        assert_eq!(parse_link("/a:/me/b").unwrap(), ("a".into(), "b".into()));
        assert!(parse_link("a:b:c").is_err());
        assert!(parse_link("").is_err());
    }

    #[test]
    fn env_as_docker_makes_it() {
        let env = link_env(
            "/me/my-db",
            "10.0.0.2",
            &[
                "80/tcp".into(),
                "81/tcp".into(),
                "82/tcp".into(),
                "53/udp".into(),
            ],
            &["PATH=/bin".into(), "X=1".into()],
        );
        let want = [
            "MY_DB_PORT=udp://10.0.0.2:53",
            "MY_DB_PORT_80_TCP_START=tcp://10.0.0.2:80",
            "MY_DB_PORT_80_TCP_ADDR=10.0.0.2",
            "MY_DB_PORT_80_TCP_PROTO=tcp",
            "MY_DB_PORT_80_TCP_PORT_START=80",
            "MY_DB_PORT_80_TCP_END=tcp://10.0.0.2:82",
            "MY_DB_PORT_80_TCP_PORT_END=82",
            "MY_DB_PORT_53_UDP=udp://10.0.0.2:53",
            "MY_DB_PORT_53_UDP_ADDR=10.0.0.2",
            "MY_DB_PORT_53_UDP_PORT=53",
            "MY_DB_PORT_53_UDP_PROTO=udp",
            "MY_DB_PORT_80_TCP=tcp://10.0.0.2:80",
            "MY_DB_PORT_80_TCP_ADDR=10.0.0.2",
            "MY_DB_PORT_80_TCP_PORT=80",
            "MY_DB_PORT_80_TCP_PROTO=tcp",
            "MY_DB_PORT_81_TCP=tcp://10.0.0.2:81",
            "MY_DB_PORT_81_TCP_ADDR=10.0.0.2",
            "MY_DB_PORT_81_TCP_PORT=81",
            "MY_DB_PORT_81_TCP_PROTO=tcp",
            "MY_DB_PORT_82_TCP=tcp://10.0.0.2:82",
            "MY_DB_PORT_82_TCP_ADDR=10.0.0.2",
            "MY_DB_PORT_82_TCP_PORT=82",
            "MY_DB_PORT_82_TCP_PROTO=tcp",
            "MY_DB_NAME=/me/my-db",
            "MY_DB_ENV_X=1",
        ];
        assert_eq!(env, want);
    }
}
