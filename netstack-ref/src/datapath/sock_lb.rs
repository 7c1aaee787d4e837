//! The socket load balancer (`bpf-programs/netstack/sock_lb.c`): cgroup hooks on the root
//! cgroup (connect, sendmsg, recvmsg and getpeername, v4 and v6) that translate service
//! frontends to backends for this node's sockets, and post_bind4, which keeps host processes off
//! the ports of external frontends. Its maps are pinned by name in the node's
//! bpffs directory and its links in `sock_lb/`, so an agent restart leaves services working.

use std::path::{Path, PathBuf};

use ebpf_core::link::{CgroupLink, Link};
use ebpf_core::{AttachType, LoadOptions, Map};
use ebpf_maps::{HashMap, LpmTrie, LruHashMap, MapOfMaps, PerCpuArray};

use super::{kernel, map_err, Result};
use crate::file_error::FileError;

/// The generated skeleton of `sock_lb.o`.
#[allow(missing_docs)]
pub mod skeleton {
    include!(concat!(env!("OUT_DIR"), "/sock_lb.skel.rs"));
}

pub use skeleton::types::{
    lb4_backend, lb4_key, lb4_reverse_nat, lb4_service, lb4_sock_key, lb4_sock_value, lb4_source_range_key_data,
    lb_backend_state, lb_flags, lb_maglev, lb_netns_kind, lb_scope, lb_slots, lb_sock_outcome,
};

/// Where the root cgroup v2 is mounted on machines like this one (and the usual place).
pub const CGROUP_ROOTS: [&str; 2] = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"];

/// The cgroup v2 root: the first of [`CGROUP_ROOTS`] that is a cgroup2 mount.
pub fn cgroup_root() -> Option<PathBuf> {
    CGROUP_ROOTS.iter().map(PathBuf::from).find(|p| p.join("cgroup.controllers").exists())
}

const LINKS: [(&str, AttachType); 9] = [
    ("connect4", AttachType::CgroupInet4Connect),
    ("sendmsg4", AttachType::CgroupUdp4Sendmsg),
    ("recvmsg4", AttachType::CgroupUdp4Recvmsg),
    ("getpeername4", AttachType::CgroupInet4Getpeername),
    ("connect6", AttachType::CgroupInet6Connect),
    ("sendmsg6", AttachType::CgroupUdp6Sendmsg),
    ("recvmsg6", AttachType::CgroupUdp6Recvmsg),
    ("getpeername6", AttachType::CgroupInet6Getpeername),
    ("post_bind4", AttachType::CgroupInet4PostBind),
];

/// The maps the agent writes (and reads back for `netstack bpf lb list`).
#[derive(Debug)]
pub struct LbMaps {
    /// Frontends: masters and backend slots.
    pub services: HashMap<lb4_key, lb4_service>,
    /// Backends by id.
    pub backends: HashMap<u32, lb4_backend>,
    /// Frontends by reverse-NAT id.
    pub revnat: HashMap<u16, lb4_reverse_nat>,
    /// Network namespace cookies of the sockets this node balances.
    pub netns: HashMap<u64, u8>,
    /// `loadBalancerSourceRanges` by reverse-NAT id (prefix length 32 + the range's).
    pub source_ranges: LpmTrie<lb4_source_range_key_data, u8>,
    /// Maglev tables by id (see [`maglev_table`]).
    pub maglev: MapOfMaps<u32>,
    /// What each translated socket was translated from, by (cookie, backend).
    pub sock_revnat: LruHashMap<lb4_sock_key, lb4_sock_value>,
    /// Counters by `lb_sock_outcome`.
    pub stats: PerCpuArray<u64>,
}

impl LbMaps {
    /// The maps pinned under `shared_pins`.
    pub fn open(shared_pins: &Path) -> Result<LbMaps> {
        let pinned =
            |name: &str| Map::from_pin(shared_pins.join(name)).map_err(kernel(format!("open the pinned {name}")));
        Ok(LbMaps {
            services: HashMap::try_from(pinned("lb4_services")?).map_err(map_err("lb4_services"))?,
            backends: HashMap::try_from(pinned("lb4_backends")?).map_err(map_err("lb4_backends"))?,
            revnat: HashMap::try_from(pinned("lb4_revnat")?).map_err(map_err("lb4_revnat"))?,
            netns: HashMap::try_from(pinned("lb_netns")?).map_err(map_err("lb_netns"))?,
            source_ranges: LpmTrie::try_from(pinned("lb4_source_ranges")?).map_err(map_err("lb4_source_ranges"))?,
            maglev: MapOfMaps::try_from(pinned("lb4_maglev")?).map_err(map_err("lb4_maglev"))?,
            sock_revnat: LruHashMap::try_from(pinned("lb4_sock_revnat")?).map_err(map_err("lb4_sock_revnat"))?,
            stats: PerCpuArray::try_from(pinned("lb_sock_stats")?).map_err(map_err("lb_sock_stats"))?,
        })
    }

    /// Sockets translated, refused for want of a backend, reversed, and host binds refused,
    /// summed over CPUs.
    pub fn outcomes(&self) -> Result<[u64; 4]> {
        let mut out = [0u64; 4];
        for (index, slot) in out.iter_mut().enumerate() {
            let values = self.stats.get(&(index as u32)).map_err(map_err("read lb_sock_stats"))?;
            *slot = values.iter().flat_map(|v| v.iter()).sum();
        }
        Ok(out)
    }
}

/// A Maglev table for `lb4_maglev`: one array slot holding `slots` (backend ids, exactly
/// [`lb_maglev::LB_MAGLEV_SIZE`] of them), made to the template the outer map was created with.
pub fn maglev_table(slots: &[u32]) -> Result<Map> {
    let size = lb_maglev::LB_MAGLEV_SIZE.0;
    let spec = ebpf_core::MapSpec::new("lb4_maglev_in", ebpf_core::MapType::Array, 4, size * 4, 1);
    let table = Map::create(&spec).map_err(kernel("create a Maglev table"))?;
    let bytes: Vec<u8> = slots.iter().flat_map(|id| id.to_ne_bytes()).collect();
    table.update(&0u32.to_ne_bytes(), &bytes, ebpf_maps::UpdateFlags::ANY).map_err(kernel("fill a Maglev table"))?;
    Ok(table)
}

/// The socket LB of one node, attached.
#[derive(Debug)]
pub struct SockLb {
    /// Its maps.
    pub maps: LbMaps,
    _links: Vec<Link>,
}

impl SockLb {
    /// Loads the object (maps pinned by name in `shared_pins`), attaches its hooks to `cgroup`
    /// and pins the links in `shared_pins/sock_lb`.
    pub fn attach(shared_pins: &Path, cgroup: &Path) -> Result<SockLb> {
        let open = skeleton::OpenSockLb::open()?;
        let loaded =
            open.load(&LoadOptions::default().pin_dir(shared_pins)).map_err(kernel("load the socket load balancer"))?;
        let progs = loaded.progs();
        let programs = [
            progs.sock_connect4(),
            progs.sock_sendmsg4(),
            progs.sock_recvmsg4(),
            progs.sock_getpeername4(),
            progs.sock_connect6(),
            progs.sock_sendmsg6(),
            progs.sock_recvmsg6(),
            progs.sock_getpeername6(),
            progs.sock_post_bind4(),
        ];
        let dir = std::fs::File::open(cgroup).map_err(FileError::at("open the cgroup", cgroup))?;
        let pin_dir = shared_pins.join("sock_lb");
        std::fs::create_dir_all(&pin_dir).map_err(FileError::at("create", &pin_dir))?;
        let mut links = Vec::new();
        for (program, (name, attach_type)) in programs.into_iter().zip(LINKS) {
            let link = CgroupLink::attach(program, &dir, attach_type)
                .map_err(kernel(format!("attach {name} to {}", cgroup.display())))?
                .into_link();
            link.pin(pin_dir.join(name)).map_err(kernel(format!("pin the {name} link")))?;
            links.push(link);
        }
        Ok(SockLb { maps: LbMaps::open(shared_pins)?, _links: links })
    }

    /// The socket LB a previous agent left pinned under `shared_pins`, if all of it is there.
    pub fn adopt(shared_pins: &Path) -> Option<SockLb> {
        let pin_dir = shared_pins.join("sock_lb");
        let links: Option<Vec<Link>> = LINKS.iter().map(|(name, _)| Link::from_pin(pin_dir.join(name)).ok()).collect();
        Some(SockLb { maps: LbMaps::open(shared_pins).ok()?, _links: links? })
    }
}
