//! Pods as endpoints: a network namespace, a veth pair into the node, an address, routes, and
//! the datapath on the host side.

use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::netns::{self, PlumbingError};
use super::rtnl::Rtnl;
use crate::datapath::{DatapathError, EndpointConfig, EndpointDatapath};

/// Why an endpoint could not be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// Its namespace, veth, addresses or routes.
    #[error("endpoint {pod}: {source}")]
    Plumbing {
        /// The pod.
        pod: String,
        /// What failed.
        #[source]
        source: PlumbingError,
    },
    /// Its datapath.
    #[error("endpoint {pod}: {source}")]
    Datapath {
        /// The pod.
        pod: String,
        /// What failed.
        #[source]
        source: DatapathError,
    },
}

/// What the agent persists about an endpoint (so a restart finds it again).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// Endpoint id.
    pub id: u32,
    /// `namespace/name` of the pod.
    pub pod: String,
    /// The pod's address.
    pub ipv4: Ipv4Addr,
    /// The pod's network namespace.
    pub netns: String,
    /// The host side of its veth.
    pub host_if: String,
    /// The identity the datapath was templated with.
    pub identity: u32,
}

/// Creates the plumbing of `record` (whatever of it is missing) and its datapath, or adopts
/// the datapath a previous agent pinned. `tunnel_ifindex` is the node's VXLAN device (0: none).
/// Runs in the node's namespace.
pub fn create(
    record: &EndpointRecord,
    router: Ipv4Addr,
    tunnel_ifindex: u32,
    pins: &Path,
    shared: &Path,
) -> Result<EndpointDatapath, EndpointError> {
    let plumbing = |source| EndpointError::Plumbing { pod: record.pod.clone(), source };
    let datapath_error = |source| EndpointError::Datapath { pod: record.pod.clone(), source };
    let host_exists = netns::link_info(&record.host_if).is_ok();
    if !host_exists {
        plumb(record, router).map_err(plumbing)?;
    }
    let dir = pins.join(record.id.to_string());
    if host_exists {
        if let Some(adopted) = EndpointDatapath::adopt(record.id, &dir) {
            return Ok(adopted);
        }
    }
    // Pins without their interface (or half a set) are from a datapath that is gone.
    let _ = std::fs::remove_dir_all(&dir);
    let (host_ifindex, host_mac) = netns::link_info(&record.host_if).map_err(plumbing)?;
    let config = EndpointConfig {
        id: record.id,
        identity: record.identity,
        ipv4: record.ipv4,
        ipv6: None,
        host_ifindex,
        host_mac,
        tunnel_ifindex,
    };
    let mut datapath = EndpointDatapath::load(&config, shared).map_err(datapath_error)?;
    datapath.attach(host_ifindex).map_err(datapath_error)?;
    datapath.pin(&dir).map_err(datapath_error)?;
    Ok(datapath)
}

/// The pod's namespace, veth pair, addresses and routes.
fn plumb(record: &EndpointRecord, router: Ipv4Addr) -> Result<(), PlumbingError> {
    if !netns::exists(&record.netns) {
        netns::add(&record.netns)?;
    }
    // Pods get IPv4 only: without IPv6 they send no router solicitations or MLD reports
    // for the datapath to count as drops.
    netns::run_in(&record.netns, || netns::sysctl("net/ipv6/conf/default/disable_ipv6", "1"))??;
    let mut node = Rtnl::open()?;
    node.add_veth(&record.host_if, "eth0", &netns::open(&record.netns)?)?;
    let (host, _) = node.link(&record.host_if)?;
    node.set_up(host)?;
    node.add_address(host, router, 32)?;
    let pod_ip = record.ipv4;
    netns::run_in(&record.netns, move || -> Result<(), PlumbingError> {
        let mut pod = Rtnl::open()?;
        let (lo, _) = pod.link("lo")?;
        pod.set_up(lo)?;
        let (eth0, _) = pod.link("eth0")?;
        pod.add_address(eth0, pod_ip, 32)?;
        pod.set_up(eth0)?;
        pod.add_route(router, 32, eth0, None, false)?;
        pod.add_route(Ipv4Addr::UNSPECIFIED, 0, eth0, Some(router), false)
    })??;
    node.add_route(record.ipv4, 32, host, None, true)
}

/// Removes an endpoint: its datapath, then its namespace (which takes the veth with it).
pub fn remove(record: &EndpointRecord, datapath: Option<EndpointDatapath>) -> Result<(), EndpointError> {
    if let Some(dp) = datapath {
        dp.remove().map_err(|source| EndpointError::Datapath { pod: record.pod.clone(), source })?;
    }
    if netns::exists(&record.netns) {
        netns::delete(&record.netns).map_err(|source| EndpointError::Plumbing { pod: record.pod.clone(), source })?;
    }
    // The route went with the veth; a leftover from a crash goes here.
    let _ = Rtnl::open().and_then(|mut rtnl| rtnl.remove_route(record.ipv4, 32));
    Ok(())
}
