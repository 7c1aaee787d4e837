//! The node's event settings (`event_config` in `lib/events.h`, pinned by name beside the
//! events ring): how much the datapath reports, Cilium's monitor aggregation.

use std::path::Path;

use ebpf_maps::Array;

use super::abi::event_aggregation;
use super::{endpoint_object, map_err, pinned_or_created, Result};

/// How much the datapath reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Aggregation {
    /// A connection's start, its first reply and its end (Cilium's default, "medium");
    /// established flows' packets are not reported. Drops always are.
    #[default]
    Medium,
    /// Every packet, and every socket translation both ways (the flow cache steps aside).
    None,
}

impl Aggregation {
    /// Its name, as `--monitor-aggregation` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Aggregation::Medium => "medium",
            Aggregation::None => "none",
        }
    }

    fn level(self) -> u32 {
        match self {
            Aggregation::Medium => event_aggregation::EVENT_AGGREGATION_MEDIUM.0,
            Aggregation::None => event_aggregation::EVENT_AGGREGATION_NONE.0,
        }
    }
}

/// Sets the node's aggregation in `shared_pins/event_config` (made from the endpoint object's
/// definition when no program has made it yet), so every program of the node, loaded before or
/// after, reads it.
pub fn set_aggregation(shared_pins: &Path, aggregation: Aggregation) -> Result<()> {
    let object = endpoint_object()?;
    let map = pinned_or_created(shared_pins, object.maps().event_config())?;
    let config = Array::<u32>::try_from(map).map_err(map_err("event_config"))?;
    config.set(0, &aggregation.level()).map_err(map_err("event_config update"))
}
