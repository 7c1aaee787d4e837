//! How pod traffic crosses nodes, as Cilium offers it: native routing (each node's pod CIDR
//! routed through its underlay address, set up by whoever owns the underlay) or a VXLAN tunnel
//! the agent owns: a device in external (collect-metadata) mode, the overlay programs on it,
//! and a route per remote node's pod CIDR into it.

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
/// Its UDP port (Cilium's, and the Linux default for VXLAN).
pub const VXLAN_PORT: u16 = 8472;
/// Its MTU: the pods' own, so nothing they send needs fragmenting; the underlay carries the
/// 50 bytes VXLAN adds on top (the cluster's underlay has an MTU of 9000).
pub const TUNNEL_MTU: u32 = 1500;

/// What went wrong setting up the tunnel.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The device or its routes.
    #[error("tunnel device {TUNNEL_DEVICE}: {0}")]
    Plumbing(#[from] PlumbingError),
    /// The overlay programs.
    #[error("tunnel datapath: {0}")]
    Datapath(#[from] DatapathError),
}

/// A node's end of the tunnel: the device, the overlay datapath on it, and the routes into it.
#[derive(Debug)]
pub struct Tunnel {
    ifindex: u32,
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
        rtnl.set_up(ifindex)?;
        let overlay = match OverlayDatapath::adopt(bpffs) {
            Some(overlay) => overlay,
            None => OverlayDatapath::attach(bpffs, ifindex)?,
        };
        Ok(Tunnel { ifindex, overlay, routes: BTreeSet::new() })
    }

    /// Routes exactly `pod_cidrs` (the other nodes') into the tunnel: new ones added (or
    /// replaced, after a restart), gone ones removed.
    pub fn sync_routes(&mut self, pod_cidrs: &BTreeSet<Cidr>) -> Result<(), TunnelError> {
        let mut rtnl = Rtnl::open()?;
        for cidr in pod_cidrs.difference(&self.routes) {
            if let IpAddr::V4(addr) = cidr.addr {
                rtnl.add_route(addr, cidr.len, self.ifindex, None, true)?;
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

    /// The device's ifindex.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
}

/// Deletes the tunnel device of the calling thread's namespace, if there is one.
pub fn remove_device() -> Result<(), PlumbingError> {
    let mut rtnl = Rtnl::open()?;
    match rtnl.link(TUNNEL_DEVICE) {
        Ok((index, _)) => rtnl.delete_link(index),
        Err(_) => Ok(()),
    }
}

/// The underlay address of a node entry (its first IPv4 address).
pub fn underlay_ipv4(addresses: &[IpAddr]) -> Option<Ipv4Addr> {
    addresses.iter().find_map(|a| match a {
        IpAddr::V4(v4) => Some(*v4),
        IpAddr::V6(_) => None,
    })
}
