//! A node-wide program pair on TCX (the overlay's, the north-south LB's): its links and its
//! verdict counters pinned in a directory of their own under the node's bpffs, so an agent
//! restart adopts them instead of attaching again.

use std::path::PathBuf;

use ebpf_core::link::Link;
use ebpf_core::Map;
use ebpf_maps::PerCpuArray;

use super::abi::{drop_reason, verdict_count};
use super::{kernel, map_err, sum_verdicts, Result};
use crate::file_error::FileError;
use crate::policy::Direction;

const VERDICTS_PIN: &str = "verdicts";

/// Attached programs with their counters, pinned in `pin_dir`.
#[derive(Debug)]
pub struct PinnedPrograms {
    owner: &'static str,
    verdicts: PerCpuArray<verdict_count>,
    links: Vec<Link>,
    pin_dir: PathBuf,
}

impl PinnedPrograms {
    /// Pins `verdicts` and each of `links` (by its name) in `pin_dir`; `owner` names them in
    /// errors.
    pub fn pin(owner: &'static str, pin_dir: PathBuf, verdicts: &Map, links: Vec<(Link, &str)>) -> Result<Self> {
        std::fs::create_dir_all(&pin_dir).map_err(FileError::at("create", &pin_dir))?;
        verdicts.pin(pin_dir.join(VERDICTS_PIN)).map_err(kernel(format!("pin the {owner}'s verdicts")))?;
        let mut kept = Vec::with_capacity(links.len());
        for (link, name) in links {
            link.pin(pin_dir.join(name)).map_err(kernel(format!("pin {name}")))?;
            kept.push(link);
        }
        let verdicts = verdicts.try_clone().map_err(kernel(format!("{owner} verdicts")))?;
        let verdicts = PerCpuArray::try_from(verdicts).map_err(map_err(format!("{owner} verdicts")))?;
        Ok(PinnedPrograms { owner, verdicts, links: kept, pin_dir })
    }

    /// What a previous agent left pinned in `pin_dir` under `link_names`, if all of it is there.
    pub fn adopt(owner: &'static str, pin_dir: PathBuf, link_names: &[&str]) -> Option<Self> {
        let verdicts = PerCpuArray::try_from(Map::from_pin(pin_dir.join(VERDICTS_PIN)).ok()?).ok()?;
        let links: Option<Vec<Link>> = link_names.iter().map(|name| Link::from_pin(pin_dir.join(name)).ok()).collect();
        Some(PinnedPrograms { owner, verdicts, links: links?, pin_dir })
    }

    /// Packets and bytes per (direction, reason).
    pub fn verdicts(&self) -> Result<Vec<(Direction, drop_reason, verdict_count)>> {
        sum_verdicts(&self.verdicts, self.owner)
    }

    /// Detaches the programs and removes the pins.
    pub fn remove(mut self) -> Result<()> {
        for link in self.links.drain(..) {
            link.detach().map_err(kernel(format!("detach the {}", self.owner)))?;
        }
        std::fs::remove_dir_all(&self.pin_dir).map_err(FileError::at("remove", &self.pin_dir))?;
        Ok(())
    }
}
