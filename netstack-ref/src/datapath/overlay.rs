//! The tunnel's datapath (`bpf-programs/netstack/overlay.c`): `from_overlay` on TCX ingress of
//! the node's VXLAN device, `from_host` on TCX egress of its host device (where the node routes
//! the other nodes' pod CIDRs). It shares the node's ipcache (pinned by name) with the
//! endpoints: the ipcache's tunnel endpoints say where a packet goes, its node entries say who
//! may send through the tunnel. Its links and counters are pinned in `overlay/` of the node's
//! bpffs directory, so an agent restart leaves the tunnel running.

use std::path::Path;

use ebpf_core::link::{Tcx, TcxAttach};
use ebpf_core::LoadOptions;

use super::abi::{drop_reason, verdict_count};
use super::pinned::PinnedPrograms;
use super::{kernel, Result};
use crate::policy::Direction;

/// The generated skeleton of `overlay.o`.
#[allow(missing_docs)]
pub mod skeleton {
    include!(concat!(env!("OUT_DIR"), "/overlay.skel.rs"));
}

const INGRESS_LINK_PIN: &str = "link_from_overlay";
const EGRESS_LINK_PIN: &str = "link_from_host";

/// The overlay programs of one node, attached to its tunnel and host devices.
#[derive(Debug)]
pub struct OverlayDatapath {
    pinned: PinnedPrograms,
}

const OWNER: &str = "overlay";

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
        let links = vec![(ingress.into_link(), INGRESS_LINK_PIN), (egress.into_link(), EGRESS_LINK_PIN)];
        let pinned = PinnedPrograms::pin(OWNER, shared_pins.join("overlay"), loaded.maps().verdicts_map(), links)?;
        Ok(OverlayDatapath { pinned })
    }

    /// The overlay a previous agent left pinned under `shared_pins`, if all of it is there.
    pub fn adopt(shared_pins: &Path) -> Option<OverlayDatapath> {
        let pinned = PinnedPrograms::adopt(OWNER, shared_pins.join("overlay"), &[INGRESS_LINK_PIN, EGRESS_LINK_PIN])?;
        Some(OverlayDatapath { pinned })
    }

    /// Packets and bytes per (direction, reason): ingress is what came out of the tunnel,
    /// egress what went into it.
    pub fn verdicts(&self) -> Result<Vec<(Direction, drop_reason, verdict_count)>> {
        self.pinned.verdicts()
    }

    /// Detaches the programs and removes the pins.
    pub fn remove(self) -> Result<()> {
        self.pinned.remove()
    }
}
