//! The north-south load balancer (`bpf-programs/netstack/nodeport.c`): `from_external` on TCX
//! ingress and `to_external` on TCX egress of the node's external device, where traffic from
//! outside reaches NodePort, ExternalIP and LoadBalancer frontends. It reads the service maps
//! the socket LB shares (pinned by name) and keeps its own conntrack, SNAT and reply maps beside
//! them. Its links and counters are pinned in `nodeport/` of the node's bpffs directory, so an
//! agent restart leaves north-south services running.

use std::net::Ipv4Addr;
use std::path::Path;

use ebpf_core::link::{Tcx, TcxAttach};
use ebpf_core::{LoadOptions, Map};
use ebpf_maps::LruHashMap;

use super::abi::{drop_reason, verdict_count};
use super::pinned::PinnedPrograms;
use super::{kernel, map_err, Result};
use crate::policy::api::Cidr;
use crate::policy::Direction;

/// The generated skeleton of `nodeport.o`.
#[allow(missing_docs)]
pub mod skeleton {
    include!(concat!(env!("OUT_DIR"), "/nodeport.skel.rs"));
}

pub use skeleton::types::{
    lb4_ct_entry, lb4_ct_key, lb4_reply_entry, lb4_reply_key, lb4_snat_entry, lb4_snat_key, lb4_source_range_key,
    lb4_source_range_key_data, lb_ct_mode, lb_ct_timeouts,
};

const INGRESS_LINK_PIN: &str = "link_from_external";
const EGRESS_LINK_PIN: &str = "link_to_external";

/// Where the node is, as the north-south LB is templated with it.
#[derive(Clone, Debug)]
pub struct NodeportConfig {
    /// The external device's name (its pins are under `nodeport/<name>`).
    pub device_name: String,
    /// The external device's ifindex.
    pub device: u32,
    /// The node's address there: the source of SNAT flows.
    pub node_address: Ipv4Addr,
    /// The node's pod CIDR: backends in it are local.
    pub pod_cidr: Cidr,
    /// The VXLAN device, in tunnel mode (remote backends are reached through it).
    pub tunnel_ifindex: Option<u32>,
}

/// The north-south LB of one node, attached to its external device.
#[derive(Debug)]
pub struct NodeportDatapath {
    pinned: PinnedPrograms,
}

const OWNER: &str = "north-south LB";

fn network_order(address: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(address.octets())
}

impl NodeportDatapath {
    /// Loads the object (its maps reused from, or pinned in, `shared_pins`), attaches it to
    /// `config.device` (in the calling thread's namespace) and pins links and counters in
    /// `shared_pins/nodeport/<device name>`.
    pub fn attach(shared_pins: &Path, config: &NodeportConfig) -> Result<NodeportDatapath> {
        let mut open = skeleton::OpenNodeport::open()?;
        let (network, mask) = match config.pod_cidr.addr {
            std::net::IpAddr::V4(a) => {
                let mask = if config.pod_cidr.len == 0 { 0 } else { u32::MAX << (32 - config.pod_cidr.len) };
                (Ipv4Addr::from(u32::from(a) & mask), Ipv4Addr::from(mask))
            }
            std::net::IpAddr::V6(_) => (Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED),
        };
        open.set_node_ipv4(network_order(config.node_address))?;
        open.set_pod_cidr_ipv4(network_order(network))?;
        open.set_pod_cidr_mask(network_order(mask))?;
        open.set_tunnel_ifindex(config.tunnel_ifindex.unwrap_or(0))?;
        let loaded = open
            .load(&LoadOptions::default().pin_dir(shared_pins))
            .map_err(kernel("load the north-south load balancer"))?;
        let progs = loaded.progs();
        let device = config.device;
        let ingress = Tcx::attach(progs.from_external(), device, TcxAttach::ingress())
            .map_err(kernel(format!("attach from_external to link {device}")))?;
        let egress = Tcx::attach(progs.to_external(), device, TcxAttach::egress())
            .map_err(kernel(format!("attach to_external to link {device}")))?;
        let links = vec![(ingress.into_link(), INGRESS_LINK_PIN), (egress.into_link(), EGRESS_LINK_PIN)];
        let pin_dir = shared_pins.join("nodeport").join(&config.device_name);
        let pinned = PinnedPrograms::pin(OWNER, pin_dir, loaded.maps().verdicts_map(), links)?;
        Ok(NodeportDatapath { pinned })
    }

    /// The north-south LB a previous agent left pinned under `shared_pins` for `device_name`,
    /// if all of it is there.
    pub fn adopt(shared_pins: &Path, device_name: &str) -> Option<NodeportDatapath> {
        let pin_dir = shared_pins.join("nodeport").join(device_name);
        let pinned = PinnedPrograms::adopt(OWNER, pin_dir, &[INGRESS_LINK_PIN, EGRESS_LINK_PIN])?;
        Some(NodeportDatapath { pinned })
    }

    /// Packets and bytes per (direction, reason): ingress is what came from outside (and SNAT
    /// replies), egress the replies of local backends.
    pub fn verdicts(&self) -> Result<Vec<(Direction, drop_reason, verdict_count)>> {
        self.pinned.verdicts()
    }

    /// Detaches the programs and removes the pins.
    pub fn remove(self) -> Result<()> {
        self.pinned.remove()
    }
}

/// The north-south LB's connection tables (pinned by name beside the service maps): conntrack
/// on the entry node, SNAT's reverse, and the replies to translate back on a backend's node.
#[derive(Debug)]
pub struct NorthSouthTables {
    /// Flows by the client's packet.
    pub conntrack: LruHashMap<lb4_ct_key, lb4_ct_entry>,
    /// SNAT flows by the backend's reply.
    pub snat: LruHashMap<lb4_snat_key, lb4_snat_entry>,
    /// Replies of local backends and DSR flows.
    pub replies: LruHashMap<lb4_reply_key, lb4_reply_entry>,
}

/// How long a flow of `protocol` lives without a packet, in seconds (the datapath's rule).
fn lifetime(protocol: u8, closing: bool) -> u64 {
    let seconds = if closing {
        lb_ct_timeouts::LB_CT_CLOSING_LIFETIME
    } else if protocol == 6 {
        lb_ct_timeouts::LB_CT_TCP_LIFETIME
    } else {
        lb_ct_timeouts::LB_CT_OTHER_LIFETIME
    };
    u64::from(seconds.0)
}

impl NorthSouthTables {
    /// The tables pinned under `shared_pins`, once the north-south LB has made them.
    pub fn open(shared_pins: &Path) -> Option<NorthSouthTables> {
        let pinned = |name: &str| Map::from_pin(shared_pins.join(name)).ok();
        Some(NorthSouthTables {
            conntrack: LruHashMap::try_from(pinned("lb4_ct")?).ok()?,
            snat: LruHashMap::try_from(pinned("lb4_snat")?).ok()?,
            replies: LruHashMap::try_from(pinned("lb4_reply")?).ok()?,
        })
    }

    /// Removes flows idle past their lifetime at `now` (seconds since boot, the datapath's
    /// clock), the SNAT entries of flows conntrack no longer has, and replies idle past
    /// theirs. Returns how many entries went.
    pub fn collect_garbage(&self, now: u64) -> Result<usize> {
        let read = |what: &'static str| map_err(format!("north-south garbage collection: read {what}"));
        let mut removed = 0;
        let flows: Vec<(lb4_ct_key, lb4_ct_entry)> =
            self.conntrack.iter().collect::<std::result::Result<_, _>>().map_err(read("lb4_ct"))?;
        for (key, entry) in &flows {
            if now.saturating_sub(entry.last_seen) > lifetime(key.protocol, entry.closing != 0) {
                removed += usize::from(self.conntrack.remove(key).map_err(read("lb4_ct"))?);
            }
        }
        let nat: Vec<(lb4_snat_key, lb4_snat_entry)> =
            self.snat.iter().collect::<std::result::Result<_, _>>().map_err(read("lb4_snat"))?;
        for (key, back) in &nat {
            let flow = lb4_ct_key {
                client: back.client,
                frontend: back.frontend,
                client_port: back.client_port,
                frontend_port: back.frontend_port,
                protocol: key.protocol,
                ..Default::default()
            };
            let held = self.conntrack.get(&flow).map_err(read("lb4_ct"))?;
            if held.is_none_or(|e| e.mode != lb_ct_mode::LB_CT_SNAT.0 as u8 || e.nat_port != key.nat_port) {
                removed += usize::from(self.snat.remove(key).map_err(read("lb4_snat"))?);
            }
        }
        let replies: Vec<(lb4_reply_key, lb4_reply_entry)> =
            self.replies.iter().collect::<std::result::Result<_, _>>().map_err(read("lb4_reply"))?;
        for (key, entry) in &replies {
            if now.saturating_sub(entry.last_seen) > lifetime(key.protocol, false) {
                removed += usize::from(self.replies.remove(key).map_err(read("lb4_reply"))?);
            }
        }
        Ok(removed)
    }
}

/// Seconds since boot (`CLOCK_BOOTTIME`), the clock the north-south tables age by.
pub fn boot_seconds() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).map_or(0, |t| t.tv_sec() as u64)
}
