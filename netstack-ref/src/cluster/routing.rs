//! How pod traffic crosses nodes, as Cilium offers it: native routing (each node's pod CIDR
//! routed through its underlay address, set up by whoever owns the underlay) or a VXLAN tunnel
//! the agent owns: a device in external (collect-metadata) mode with `from_overlay` on its
//! ingress; a host device (Cilium's `cilium_host`) to which each remote node's pod CIDR is
//! routed, with `from_host` on its egress for what the node itself sends there; and the
//! endpoints, which send their pods' packets into the tunnel themselves.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::agent::netns::PlumbingError;
use crate::agent::rtnl::Rtnl;
use crate::datapath::overlay::OverlayDatapath;
use crate::datapath::DatapathError;
use crate::policy::api::Cidr;

/// How pod traffic crosses nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    /// Routes to each node's pod CIDR through its underlay address.
    #[default]
    Native,
    /// VXLAN, the VNI carrying the source's security identity.
    Tunnel,
}

impl Routing {
    /// The name the command line and `status` use.
    pub fn name(self) -> &'static str {
        match self {
            Routing::Native => "native",
            Routing::Tunnel => "tunnel",
        }
    }
}

/// The tunnel device of a node.
pub const TUNNEL_DEVICE: &str = "netstack_vxlan";
/// The device the other nodes' pod CIDRs are routed to: one end of a veth pair (as Cilium's
/// `cilium_host` ↔ `cilium_net`; this kernel has no dummy devices), whose other end is
/// [`HOST_PEER_DEVICE`].
pub const HOST_DEVICE: &str = "netstack_host";
/// The other end of the host device's pair; nothing reaches it (`from_host` redirects all).
pub const HOST_PEER_DEVICE: &str = "netstack_net";
/// Its UDP port (Cilium's, and the Linux default for VXLAN).
pub const VXLAN_PORT: u16 = 8472;
/// Its MTU: the pods' own, so nothing they send needs fragmenting; the underlay carries the
/// 50 bytes VXLAN adds on top (the cluster's underlay has an MTU of 9000).
pub const TUNNEL_MTU: u32 = 1500;

/// What went wrong setting up the tunnel.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The device or its routes.
    #[error("tunnel devices {TUNNEL_DEVICE}, {HOST_DEVICE}: {0}")]
    Plumbing(#[from] PlumbingError),
    /// The overlay programs.
    #[error("tunnel datapath: {0}")]
    Datapath(#[from] DatapathError),
}

/// A node's end of the tunnel: the device, the overlay datapath on it, and the routes into it.
#[derive(Debug)]
pub struct Tunnel {
    ifindex: u32,
    host_ifindex: u32,
    overlay: OverlayDatapath,
    routes: BTreeSet<Cidr>,
}

impl Tunnel {
    /// The tunnel of the calling thread's namespace: the device made (or found) and up, the
    /// overlay programs adopted from `bpffs` or attached and pinned there.
    pub fn open(bpffs: &Path) -> Result<Tunnel, TunnelError> {
        let mut rtnl = Rtnl::open()?;
        let ifindex = match rtnl.link(TUNNEL_DEVICE) {
            Ok((index, _)) => index,
            Err(_) => {
                rtnl.add_vxlan_external(TUNNEL_DEVICE, VXLAN_PORT, TUNNEL_MTU)?;
                rtnl.link(TUNNEL_DEVICE)?.0
            }
        };
        let host_ifindex = match rtnl.link(HOST_DEVICE) {
            Ok((index, _)) => index,
            Err(_) => {
                let here = std::fs::File::open("/proc/thread-self/ns/net").map_err(|e| PlumbingError::Netns {
                    op: "open",
                    name: "the agent's own".to_owned(),
                    reason: e.to_string(),
                })?;
                rtnl.add_veth(HOST_DEVICE, HOST_PEER_DEVICE, &here)?;
                let (index, _) = rtnl.link(HOST_DEVICE)?;
                rtnl.set_noarp(index)?;
                rtnl.set_mtu(index, TUNNEL_MTU)?;
                let (peer, _) = rtnl.link(HOST_PEER_DEVICE)?;
                rtnl.set_up(peer)?;
                index
            }
        };
        rtnl.set_up(ifindex)?;
        rtnl.set_up(host_ifindex)?;
        let overlay = match OverlayDatapath::adopt(bpffs) {
            Some(overlay) => overlay,
            None => OverlayDatapath::attach(bpffs, ifindex, host_ifindex)?,
        };
        Ok(Tunnel { ifindex, host_ifindex, overlay, routes: BTreeSet::new() })
    }

    /// Routes exactly `pod_cidrs` (the other nodes') to the host device: new ones added (or
    /// replaced, after a restart), gone ones removed.
    pub fn sync_routes(&mut self, pod_cidrs: &BTreeSet<Cidr>) -> Result<(), TunnelError> {
        let mut rtnl = Rtnl::open()?;
        for cidr in pod_cidrs.difference(&self.routes) {
            if let IpAddr::V4(addr) = cidr.addr {
                rtnl.add_route(addr, cidr.len, self.host_ifindex, None, true)?;
            }
        }
        for cidr in self.routes.difference(pod_cidrs) {
            if let IpAddr::V4(addr) = cidr.addr {
                rtnl.remove_route(addr, cidr.len)?;
            }
        }
        self.routes = pod_cidrs.clone();
        Ok(())
    }

    /// The overlay programs.
    pub fn overlay(&self) -> &OverlayDatapath {
        &self.overlay
    }

    /// The VXLAN device's ifindex (where endpoints send their pods' packets for other nodes).
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
}

/// Deletes the tunnel and host devices of the calling thread's namespace, if there are any.
pub fn remove_devices() -> Result<(), PlumbingError> {
    let mut rtnl = Rtnl::open()?;
    for name in [TUNNEL_DEVICE, HOST_DEVICE] {
        if let Ok((index, _)) = rtnl.link(name) {
            rtnl.delete_link(index)?;
        }
    }
    Ok(())
}

/// The underlay address of a node entry (its first IPv4 address).
pub fn underlay_ipv4(addresses: &[IpAddr]) -> Option<Ipv4Addr> {
    addresses.iter().find_map(|a| match a {
        IpAddr::V4(v4) => Some(*v4),
        IpAddr::V6(_) => None,
    })
}
