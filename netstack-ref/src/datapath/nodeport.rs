//! The north-south load balancer (`bpf-programs/netstack/nodeport.c`): `from_external` on TCX
//! ingress and `to_external` on TCX egress of the node's external device, where traffic from
//! outside reaches NodePort, ExternalIP and LoadBalancer frontends. It reads the service maps
//! the socket LB shares (pinned by name) and keeps its own conntrack, SNAT and reply maps beside
//! them. Its links and counters are pinned in `nodeport/` of the node's bpffs directory, so an
//! agent restart leaves north-south services running.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ebpf_core::link::{Link, Tcx, TcxAttach};
use ebpf_core::{LoadOptions, Map};
use ebpf_maps::PerCpuArray;

use super::abi::{drop_reason, verdict_count};
use super::{kernel, map_err, sum_verdicts, Result};
use crate::file_error::FileError;
use crate::policy::api::Cidr;
use crate::policy::Direction;

/// The generated skeleton of `nodeport.o`.
#[allow(missing_docs)]
pub mod skeleton {
    include!(concat!(env!("OUT_DIR"), "/nodeport.skel.rs"));
}

pub use skeleton::types::{lb4_source_range_key, lb4_source_range_key_data};

const VERDICTS_PIN: &str = "verdicts";
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
    verdicts: PerCpuArray<verdict_count>,
    links: Vec<Link>,
    pin_dir: PathBuf,
}

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
        let verdicts_map = loaded.maps().verdicts_map();
        let pin_dir = shared_pins.join("nodeport").join(&config.device_name);
        std::fs::create_dir_all(&pin_dir).map_err(FileError::at("create", &pin_dir))?;
        verdicts_map.pin(pin_dir.join(VERDICTS_PIN)).map_err(kernel("pin the north-south LB's verdicts"))?;
        let links = vec![ingress.into_link(), egress.into_link()];
        for (link, name) in links.iter().zip([INGRESS_LINK_PIN, EGRESS_LINK_PIN]) {
            link.pin(pin_dir.join(name)).map_err(kernel(format!("pin {name}")))?;
        }
        let verdicts = verdicts_map.try_clone().map_err(kernel("north-south LB verdicts"))?;
        Ok(NodeportDatapath {
            verdicts: PerCpuArray::try_from(verdicts).map_err(map_err("north-south LB verdicts"))?,
            links,
            pin_dir,
        })
    }

    /// The north-south LB a previous agent left pinned under `shared_pins` for `device_name`,
    /// if all of it is there.
    pub fn adopt(shared_pins: &Path, device_name: &str) -> Option<NodeportDatapath> {
        let pin_dir = shared_pins.join("nodeport").join(device_name);
        let verdicts = PerCpuArray::try_from(Map::from_pin(pin_dir.join(VERDICTS_PIN)).ok()?).ok()?;
        let links = vec![
            Link::from_pin(pin_dir.join(INGRESS_LINK_PIN)).ok()?,
            Link::from_pin(pin_dir.join(EGRESS_LINK_PIN)).ok()?,
        ];
        Some(NodeportDatapath { verdicts, links, pin_dir })
    }

    /// Packets and bytes per (direction, reason): ingress is what came from outside (and SNAT
    /// replies), egress the replies of local backends.
    pub fn verdicts(&self) -> Result<Vec<(Direction, drop_reason, verdict_count)>> {
        sum_verdicts(&self.verdicts, "north-south LB")
    }

    /// Detaches the programs and removes the pins.
    pub fn remove(mut self) -> Result<()> {
        for link in self.links.drain(..) {
            link.detach().map_err(kernel("detach the north-south LB"))?;
        }
        std::fs::remove_dir_all(&self.pin_dir).map_err(FileError::at("remove", &self.pin_dir))?;
        Ok(())
    }
}
