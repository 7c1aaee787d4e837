//! The node's settings its endpoints read (`node_config` in `lib/encrypt.h`, pinned by name):
//! the WireGuard device pods' packets to other nodes are redirected into.

use std::path::Path;

use ebpf_maps::Array;

use super::abi::skeleton::types::node_config;
use super::{endpoint_object, map_err, pinned_or_created, Result};

/// Sets the WireGuard device's interface index (0: none) in `shared_pins/node_config`.
pub fn set_wireguard_ifindex(shared_pins: &Path, ifindex: u32) -> Result<()> {
    let object = endpoint_object()?;
    let map = pinned_or_created(shared_pins, object.maps().node_config())?;
    let config = Array::<node_config>::try_from(map).map_err(map_err("node_config"))?;
    config
        .set(0, &node_config { wireguard_ifindex: ifindex, ..Default::default() })
        .map_err(map_err("node_config update"))
}
