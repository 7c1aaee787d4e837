//! A node's services: the socket load balancer attached (or adopted from a previous agent), the
//! catalog rebuilt on every sync from what the sources say and where pods run, written into the
//! maps by [`LbWriter`], and the network namespaces the node balances for (its own and its
//! pods') listed for the datapath by cookie.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use super::catalog::{self, Frontend, Inputs, PodAddress};
use super::lbmap::{LbSync, LbWriter};
use crate::agent::netns;
use crate::datapath::nodeport::{NodeportConfig, NodeportDatapath};
use crate::datapath::sock_lb::{cgroup_root, lb4_sock_key, lb_netns_kind, SockLb};
use crate::datapath::DatapathError;
use crate::manifest::service::{EndpointSlice, Service};
use crate::manifest::Pod;

/// The node's service load balancing.
#[derive(Debug)]
pub struct NodeServices {
    datapath: Result<(SockLb, LbWriter), ServicesError>,
    /// The north-south LB on each external device, by device name.
    north_south: Vec<(String, Result<NodeportDatapath, ServicesError>)>,
    frontends: Vec<Frontend>,
    last_sync: Option<LbSync>,
    /// Connected UDP sockets destroyed because their backend went away.
    udp_sockets_destroyed: u64,
    /// `healthCheckNodePort` servers.
    health: super::health::HealthServers,
    /// Cookies written to `lb_netns`, by namespace name (`None`: this process's own).
    netns: BTreeMap<Option<String>, u64>,
}

/// What the node's services are built from.
#[derive(Clone, Copy, Debug)]
pub struct ServiceInputs<'a> {
    /// Services.
    pub services: &'a [Service],
    /// Slices given.
    pub slices: &'a [EndpointSlice],
    /// Every pod of the cluster.
    pub pods: &'a BTreeMap<String, Pod>,
    /// Where pods run, by `namespace/name`.
    pub addresses: &'a BTreeMap<String, PodAddress>,
    /// This node.
    pub node: &'a str,
    /// The node's addresses, where its node ports are.
    pub node_addresses: &'a [Ipv4Addr],
    /// The network namespaces of this node's pods.
    pub pod_netns: &'a [String],
}

/// Why services are not balanced, or a namespace could not be listed for the socket LB.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    /// No cgroup v2 hierarchy to attach the socket LB to.
    #[error("no cgroup v2 mount (/sys/fs/cgroup/unified or /sys/fs/cgroup)")]
    NoCgroup2,
    /// Loading, attaching, adopting or writing the socket LB.
    #[error("socket LB: {0}")]
    Datapath(#[from] DatapathError),
    /// Loading or attaching the north-south LB on an external device.
    #[error("north-south LB on {device}: {source}")]
    NorthSouth {
        /// The device.
        device: String,
        /// Why.
        source: DatapathError,
    },
    /// A socket to read a namespace's cookie from.
    #[error("socket LB for {netns}: open a socket: {source}")]
    Socket {
        /// The namespace (`the node` for the agent's own).
        netns: String,
        /// Why.
        source: nix::Error,
    },
    /// The cookie itself (`SO_NETNS_COOKIE`).
    #[error("socket LB for {netns}: read its cookie: {source}")]
    Cookie {
        /// The namespace.
        netns: String,
        /// The errno.
        source: ebpf_core::Errno,
    },
    /// Entering the namespace.
    #[error("socket LB for {netns}: {source}")]
    Enter {
        /// The namespace.
        netns: String,
        /// Why.
        source: netns::PlumbingError,
    },
    /// Listing or destroying its UDP sockets.
    #[error("socket LB for {netns}: UDP sockets of a backend gone: {source}")]
    Sockets {
        /// The namespace.
        netns: String,
        /// Why.
        source: netns::PlumbingError,
    },
    /// Listing the namespace in `lb_netns`.
    #[error("socket LB for {netns}: list it: {source}")]
    List {
        /// The namespace.
        netns: String,
        /// Why.
        source: Box<ebpf_maps::MapError>,
    },
}

/// The cookie of namespace `name` (`None`: this thread's own).
fn cookie_of(name: Option<&str>) -> Result<u64, ServicesError> {
    let netns = name.unwrap_or("the node").to_owned();
    let cookie = {
        let netns = netns.clone();
        move || -> Result<u64, ServicesError> {
            let socket = nix::sys::socket::socket(
                nix::sys::socket::AddressFamily::Inet,
                nix::sys::socket::SockType::Datagram,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC,
                None,
            )
            .map_err(|source| ServicesError::Socket { netns: netns.clone(), source })?;
            ebpf_core::netns::cookie(&socket).map_err(|source| ServicesError::Cookie { netns, source })
        }
    };
    match name {
        None => cookie(),
        Some(name) => netns::run_in(name, cookie).map_err(|source| ServicesError::Enter { netns, source })?,
    }
}

/// Destroys the UDP sockets of namespace `name` (`None`: this thread's) that the socket LB
/// connected to one of `gone` (backend address and port) through the frontend that dropped it
/// (its reverse-NAT id): their applications' next send fails and they reconnect to a live
/// backend. Returns how many.
fn destroy_udp_sockets(lb: &SockLb, name: Option<&str>, gone: &[(u16, Ipv4Addr, u16)]) -> Result<u64, ServicesError> {
    use crate::agent::sock_diag;
    let netns = name.unwrap_or("the node").to_owned();
    let stale: Vec<sock_diag::UdpSocket> = {
        let list = sock_diag::udp_sockets;
        let sockets = match name {
            None => list(),
            Some(name) => {
                netns::run_in(name, list).map_err(|source| ServicesError::Enter { netns: netns.clone(), source })?
            }
        }
        .map_err(|source| ServicesError::Sockets { netns: netns.clone(), source })?;
        sockets
            .into_iter()
            .filter(|s| {
                let key = lb4_sock_key {
                    cookie: s.cookie,
                    address: u32::from(s.peer.0).to_be(),
                    port: s.peer.1.to_be(),
                    pad: 0,
                };
                // Only sockets the socket LB translated through that frontend: a pod talking to
                // the backend's address itself, or through another service, keeps its socket.
                let Ok(Some(was)) = lb.maps.sock_revnat.get(&key) else { return false };
                gone.contains(&(was.rev_nat_id, s.peer.0, s.peer.1))
            })
            .collect()
    };
    let destroy = move || -> Result<u64, crate::agent::netns::PlumbingError> {
        let mut destroyed = 0;
        for socket in &stale {
            destroyed += u64::from(sock_diag::destroy(socket)?);
        }
        Ok(destroyed)
    };
    match name {
        None => destroy(),
        Some(name) => {
            netns::run_in(name, destroy).map_err(|source| ServicesError::Enter { netns: netns.clone(), source })?
        }
    }
    .map_err(|source| ServicesError::Sockets { netns, source })
}

impl NodeServices {
    /// The network namespaces the socket load balancer acts for, by name (`None`: the node's
    /// own), with their cookies.
    pub fn netns_cookies(&self) -> &BTreeMap<Option<String>, u64> {
        &self.netns
    }

    /// Adopts the socket LB pinned under `shared_pins`, or attaches a new one to the cgroup v2
    /// root; a machine without one leaves services unavailable (and says why in `errors`).
    /// The north-south LB goes on each of `external` (adopted when pinned already).
    pub fn start(shared_pins: &Path, external: &[NodeportConfig]) -> NodeServices {
        let attached = || -> Result<(SockLb, LbWriter), ServicesError> {
            if let Some(lb) = SockLb::adopt(shared_pins) {
                let writer = LbWriter::adopt(&lb.maps)?;
                return Ok((lb, writer));
            }
            let root = cgroup_root().ok_or(ServicesError::NoCgroup2)?;
            Ok((SockLb::attach(shared_pins, &root)?, LbWriter::default()))
        };
        // The socket LB first: its object makes the shared service maps the north-south LB reuses.
        let datapath = attached();
        let north_south = external
            .iter()
            .map(|config| {
                let attached = NodeportDatapath::adopt(shared_pins, &config.device_name).map(Ok).unwrap_or_else(|| {
                    NodeportDatapath::attach(shared_pins, config)
                        .map_err(|source| ServicesError::NorthSouth { device: config.device_name.clone(), source })
                });
                (config.device_name.clone(), attached)
            })
            .collect();
        NodeServices {
            datapath,
            north_south,
            frontends: Vec::new(),
            last_sync: None,
            health: Default::default(),
            udp_sockets_destroyed: 0,
            netns: BTreeMap::new(),
        }
    }

    /// Rebuilds the catalog and brings the datapath to it; problems come back as messages.
    pub fn sync(&mut self, inputs: &ServiceInputs<'_>) -> Vec<String> {
        let mut errors = Vec::new();
        self.frontends = catalog::build(&Inputs {
            services: inputs.services,
            slices: inputs.slices,
            pods: Some(inputs.pods),
            addresses: Some(inputs.addresses),
            node: inputs.node,
        });
        errors.extend(self.health.sync(&super::health::wanted(inputs.services, &self.frontends)));
        for (_, attached) in &self.north_south {
            if let Err(why) = attached {
                errors.push(format!("north-south services are not balanced: {why}"));
            }
        }
        let (lb, writer) = match &mut self.datapath {
            Ok(d) => d,
            Err(why) => {
                if !inputs.services.is_empty() {
                    errors.push(format!("services are not balanced: {why}"));
                }
                return errors;
            }
        };
        let wanted: Vec<Option<String>> =
            std::iter::once(None).chain(inputs.pod_netns.iter().cloned().map(Some)).collect();
        for name in &wanted {
            if self.netns.contains_key(name) {
                continue;
            }
            let kind = if name.is_none() { lb_netns_kind::LB_NETNS_HOST } else { lb_netns_kind::LB_NETNS_POD };
            let kind = kind.0 as u8;
            let listed = cookie_of(name.as_deref()).and_then(|cookie| {
                lb.maps.netns.insert(&cookie, &kind, ebpf_maps::UpdateFlags::ANY).map(|()| cookie).map_err(|source| {
                    ServicesError::List {
                        netns: name.as_deref().unwrap_or("the node").to_owned(),
                        source: Box::new(source),
                    }
                })
            });
            match listed {
                Ok(cookie) => {
                    self.netns.insert(name.clone(), cookie);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        let gone: Vec<Option<String>> = self.netns.keys().filter(|n| !wanted.contains(n)).cloned().collect();
        for name in gone {
            if let Some(cookie) = self.netns.remove(&name) {
                let _ = lb.maps.netns.remove(&cookie);
            }
        }
        match writer.sync(&lb.maps, &self.frontends, inputs.node_addresses) {
            Ok(report) => self.last_sync = Some(report),
            Err(e) => errors.push(ServicesError::Datapath(e).to_string()),
        }
        let gone: Vec<(u16, Ipv4Addr, u16)> = writer
            .take_departed_backends()
            .into_iter()
            .filter(|&(_, (_, _, protocol))| protocol == 17)
            .map(|(rev_nat_id, (address, port, _))| (rev_nat_id, address, port))
            .collect();
        if !gone.is_empty() {
            for name in self.netns.keys() {
                match destroy_udp_sockets(lb, name.as_deref(), &gone) {
                    Ok(n) => self.udp_sockets_destroyed += n,
                    Err(e) => errors.push(e.to_string()),
                }
            }
        }
        errors
    }

    /// The frontends as of the latest sync.
    pub fn frontends(&self) -> &[Frontend] {
        &self.frontends
    }

    /// What the latest sync changed.
    pub fn last_sync(&self) -> Option<LbSync> {
        self.last_sync
    }

    /// Connected UDP sockets destroyed so far because their backend went away.
    pub fn udp_sockets_destroyed(&self) -> u64 {
        self.udp_sockets_destroyed
    }

    /// The health checks served.
    pub fn health_checks(&self) -> impl Iterator<Item = &super::health::HealthCheck> {
        self.health.served()
    }

    /// The north-south LB of each external device, when attached.
    pub fn north_south(&self) -> impl Iterator<Item = (&str, Result<&NodeportDatapath, &ServicesError>)> {
        self.north_south.iter().map(|(device, d)| (device.as_str(), d.as_ref()))
    }

    /// The socket LB, when attached.
    pub fn datapath(&self) -> Result<&SockLb, &ServicesError> {
        self.datapath.as_ref().map(|(lb, _)| lb)
    }
}
