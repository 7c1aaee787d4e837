//! Pods as endpoints: a network namespace, a veth pair into the node, an address, routes, and
//! the datapath on the host side.

use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::netns::{self, ip, PlumbingError};
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
/// the datapath a previous agent pinned. Runs in the node's namespace.
pub fn create(
    record: &EndpointRecord,
    router: Ipv4Addr,
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
    };
    let mut datapath = EndpointDatapath::load(&config, shared).map_err(datapath_error)?;
    datapath.attach(host_ifindex).map_err(datapath_error)?;
    datapath.pin(&dir).map_err(datapath_error)?;
    Ok(datapath)
}

/// The pod's namespace, veth pair, addresses and routes.
fn plumb(record: &EndpointRecord, router: Ipv4Addr) -> Result<(), PlumbingError> {
    if !netns::exists(&record.netns) {
        ip(&["netns", "add", &record.netns])?;
    }
    // Pods get IPv4 only: without IPv6 they send no router solicitations or MLD reports
    // for the datapath to count as drops.
    let ns = record.netns.clone();
    netns::run_in(&ns, || netns::sysctl("net/ipv6/conf/default/disable_ipv6", "1"))??;
    ip(&["link", "add", &record.host_if, "type", "veth", "peer", "name", "eth0", "netns", &record.netns])?;
    ip(&["link", "set", &record.host_if, "up"])?;
    ip(&["addr", "add", &format!("{router}/32"), "dev", &record.host_if])?;
    let ns = record.netns.as_str();
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    ip(&["-n", ns, "addr", "add", &format!("{}/32", record.ipv4), "dev", "eth0"])?;
    ip(&["-n", ns, "link", "set", "eth0", "up"])?;
    ip(&["-n", ns, "route", "add", &format!("{router}/32"), "dev", "eth0", "scope", "link"])?;
    ip(&["-n", ns, "route", "add", "default", "via", &router.to_string(), "dev", "eth0"])?;
    ip(&["route", "replace", &format!("{}/32", record.ipv4), "dev", &record.host_if])?;
    Ok(())
}

/// Removes an endpoint: its datapath, then its namespace (which takes the veth with it).
pub fn remove(record: &EndpointRecord, datapath: Option<EndpointDatapath>) -> Result<(), EndpointError> {
    if let Some(dp) = datapath {
        dp.remove().map_err(|source| EndpointError::Datapath { pod: record.pod.clone(), source })?;
    }
    if netns::exists(&record.netns) {
        ip(&["netns", "del", &record.netns])
            .map_err(|source| EndpointError::Plumbing { pod: record.pod.clone(), source })?;
    }
    let _ = ip(&["route", "del", &format!("{}/32", record.ipv4)]);
    Ok(())
}
