//! The tunnel's datapath (`bpf-programs/netstack/overlay.c`): `from_overlay` on TCX ingress of
//! the node's VXLAN device, `from_host` on TCX egress of its host device (where the node routes
//! the other nodes' pod CIDRs). It shares the node's ipcache (pinned by name) with the
//! endpoints: the ipcache's tunnel endpoints say where a packet goes, its node entries say who
//! may send through the tunnel. Its links and counters are pinned in `overlay/` of the node's
//! bpffs directory, so an agent restart leaves the tunnel running.

use std::path::{Path, PathBuf};

use ebpf_core::link::{Link, Tcx, TcxAttach};
use ebpf_core::{LoadOptions, Map};
use ebpf_maps::PerCpuArray;

use super::abi::{drop_reason, verdict_count};
use super::{kernel, map_err, sum_verdicts, Result};
use crate::file_error::FileError;
use crate::policy::Direction;

/// The generated skeleton of `overlay.o`.
#[allow(missing_docs)]
pub mod skeleton {
    include!(concat!(env!("OUT_DIR"), "/overlay.skel.rs"));
}

const VERDICTS_PIN: &str = "verdicts";
const INGRESS_LINK_PIN: &str = "link_from_overlay";
const EGRESS_LINK_PIN: &str = "link_from_host";

/// The overlay programs of one node, attached to its tunnel and host devices.
#[derive(Debug)]
pub struct OverlayDatapath {
    verdicts: PerCpuArray<verdict_count>,
    links: Vec<Link>,
    pin_dir: PathBuf,
}

impl OverlayDatapath {
    /// Loads the overlay object (the ipcache reused from `shared_pins`), attaches it to the
    /// VXLAN device `tunnel` and the host device `host` (in the calling thread's namespace) and
    /// pins its links and counters in `shared_pins/overlay`.
    pub fn attach(shared_pins: &Path, tunnel: u32, host: u32) -> Result<OverlayDatapath> {
        let mut open = skeleton::OpenOverlay::open()?;
        open.set_tunnel_ifindex(tunnel)?;
        let loaded =
            open.load(&LoadOptions::default().pin_dir(shared_pins)).map_err(kernel("load the overlay datapath"))?;
        let progs = loaded.progs();
        let ingress = Tcx::attach(progs.from_overlay(), tunnel, TcxAttach::ingress())
            .map_err(kernel(format!("attach from_overlay to link {tunnel}")))?;
        let egress = Tcx::attach(progs.from_host(), host, TcxAttach::egress())
            .map_err(kernel(format!("attach from_host to link {host}")))?;
        let verdicts_map = loaded.maps().verdicts_map();
        let pin_dir = shared_pins.join("overlay");
        std::fs::create_dir_all(&pin_dir).map_err(FileError::at("create", &pin_dir))?;
        verdicts_map.pin(pin_dir.join(VERDICTS_PIN)).map_err(kernel("pin the overlay's verdicts"))?;
        let links = vec![ingress.into_link(), egress.into_link()];
        for (link, name) in links.iter().zip([INGRESS_LINK_PIN, EGRESS_LINK_PIN]) {
            link.pin(pin_dir.join(name)).map_err(kernel(format!("pin {name}")))?;
        }
        let verdicts = verdicts_map.try_clone().map_err(kernel("overlay verdicts"))?;
        Ok(OverlayDatapath {
            verdicts: PerCpuArray::try_from(verdicts).map_err(map_err("overlay verdicts"))?,
            links,
            pin_dir,
        })
    }

    /// The overlay a previous agent left pinned under `shared_pins`, if all of it is there.
    pub fn adopt(shared_pins: &Path) -> Option<OverlayDatapath> {
        let pin_dir = shared_pins.join("overlay");
        let verdicts = PerCpuArray::try_from(Map::from_pin(pin_dir.join(VERDICTS_PIN)).ok()?).ok()?;
        let links = vec![
            Link::from_pin(pin_dir.join(INGRESS_LINK_PIN)).ok()?,
            Link::from_pin(pin_dir.join(EGRESS_LINK_PIN)).ok()?,
        ];
        Some(OverlayDatapath { verdicts, links, pin_dir })
    }

    /// Packets and bytes per (direction, reason): ingress is what came out of the tunnel,
    /// egress what went into it.
    pub fn verdicts(&self) -> Result<Vec<(Direction, drop_reason, verdict_count)>> {
        sum_verdicts(&self.verdicts, "overlay")
    }

    /// Detaches the programs and removes the pins.
    pub fn remove(mut self) -> Result<()> {
        for link in self.links.drain(..) {
            link.detach().map_err(kernel("detach the overlay"))?;
        }
        std::fs::remove_dir_all(&self.pin_dir).map_err(FileError::at("remove", &self.pin_dir))?;
        Ok(())
    }
}
