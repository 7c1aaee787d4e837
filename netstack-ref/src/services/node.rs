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
use crate::datapath::sock_lb::{cgroup_root, lb_netns_kind, SockLb};
use crate::manifest::service::{EndpointSlice, Service};
use crate::manifest::Pod;

/// The node's service load balancing.
#[derive(Debug)]
pub struct NodeServices {
    datapath: Result<(SockLb, LbWriter), String>,
    frontends: Vec<Frontend>,
    last_sync: Option<LbSync>,
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

fn cookie_of(name: Option<&str>) -> Result<u64, String> {
    let cookie = || -> Result<u64, String> {
        let socket = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Datagram,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| format!("a socket: {e}"))?;
        ebpf_core::netns::cookie(&socket).map_err(|e| format!("its namespace cookie: {e}"))
    };
    match name {
        None => cookie(),
        Some(name) => netns::run_in(name, cookie).map_err(|e| e.to_string())?,
    }
}

impl NodeServices {
    /// Adopts the socket LB pinned under `shared_pins`, or attaches a new one to the cgroup v2
    /// root; a machine without one leaves services unavailable (and says why in `errors`).
    pub fn start(shared_pins: &Path) -> NodeServices {
        let datapath = match SockLb::adopt(shared_pins) {
            Some(lb) => LbWriter::adopt(&lb.maps).map(|w| (lb, w)).map_err(|e| e.to_string()),
            None => match cgroup_root() {
                None => Err("no cgroup v2 mount (/sys/fs/cgroup/unified or /sys/fs/cgroup)".to_owned()),
                Some(root) => {
                    SockLb::attach(shared_pins, &root).map(|lb| (lb, LbWriter::default())).map_err(|e| e.to_string())
                }
            },
        };
        NodeServices { datapath, frontends: Vec::new(), last_sync: None, netns: BTreeMap::new() }
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
            match cookie_of(name.as_deref()).and_then(|cookie| {
                lb.maps
                    .netns
                    .insert(&cookie, &kind, ebpf_maps::UpdateFlags::ANY)
                    .map_err(|e| e.to_string())
                    .map(|()| cookie)
            }) {
                Ok(cookie) => {
                    self.netns.insert(name.clone(), cookie);
                }
                Err(e) => errors.push(format!("socket LB for {}: {e}", name.as_deref().unwrap_or("the node"))),
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
            Err(e) => errors.push(format!("services: {e}")),
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

    /// The socket LB, when attached.
    pub fn datapath(&self) -> Result<&SockLb, &str> {
        self.datapath.as_ref().map(|(lb, _)| lb).map_err(String::as_str)
    }
}
