//! Writes the catalog's frontends into the load balancer's maps, incrementally and atomically
//! per frontend: only what changed is written; a frontend's new backend list goes into the slot
//! range its master entry does not point at, then the master flips to it in one update, then the
//! old range goes. A reader (the datapath) sees the old list or the new one, never a mix.
//! Backend and reverse-NAT ids are stable while in use; a restarted agent reads them back from
//! the maps, so sockets translated before the restart still translate back.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ebpf_maps::UpdateFlags;

use super::catalog::{Backend, Frontend, FrontendKind};
use crate::datapath::sock_lb::{
    lb4_backend, lb4_key, lb4_reverse_nat, lb4_service, lb_backend_state, lb_flags, lb_scope, lb_slots, LbMaps,
};
use crate::datapath::DatapathError;
use crate::manifest::service::TrafficPolicy;

/// (address, port, protocol) in host order.
type Address = (Ipv4Addr, u16, u8);

/// A master entry as written: its key is (frontend, scope).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Written {
    base: u16,
    backends: Vec<u32>,
    rev_nat_id: u16,
    flags: u16,
    affinity: u32,
}

/// What the writer knows the maps hold.
#[derive(Debug, Default)]
pub struct LbWriter {
    backend_ids: BTreeMap<Address, (u32, bool)>,
    rev_nat_ids: BTreeMap<Address, u16>,
    written: BTreeMap<(Address, u8), Written>,
}

/// What one sync changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LbSync {
    /// Frontends (per scope) written.
    pub frontends_written: usize,
    /// Frontends removed.
    pub frontends_removed: usize,
    /// Backends added or changed.
    pub backends_written: usize,
    /// Backends removed.
    pub backends_removed: usize,
}

fn failed(what: &'static str) -> impl Fn(ebpf_maps::MapError) -> DatapathError {
    move |source| DatapathError::Map { what: what.to_owned(), source: Box::new(source) }
}

fn key(address: Address, scope: u8, slot: u16) -> lb4_key {
    lb4_key { address: u32::from(address.0).to_be(), port: address.1.to_be(), protocol: address.2, scope, slot, pad: 0 }
}

fn v4(address: IpAddr) -> Option<Ipv4Addr> {
    match address {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

/// One master entry the catalog asks for.
struct Wanted<'a> {
    frontend: Address,
    scope: u8,
    backends: &'a [Backend],
    flags: u16,
    affinity: u32,
}

fn kind_flag(kind: FrontendKind) -> lb_flags {
    match kind {
        FrontendKind::ClusterIp => lb_flags::LB_FLAG_CLUSTER_IP,
        FrontendKind::NodePort => lb_flags::LB_FLAG_NODE_PORT,
        FrontendKind::ExternalIp => lb_flags::LB_FLAG_EXTERNAL_IP,
        FrontendKind::LoadBalancer => lb_flags::LB_FLAG_LOAD_BALANCER,
    }
}

/// The master entries for `frontends`: node ports on each of `node_addresses`; a second,
/// internal-scope entry with only this node's backends where `internalTrafficPolicy: Local`;
/// external frontends with `externalTrafficPolicy: Local` get only this node's backends.
fn wanted<'a>(frontends: &'a [Frontend], node_addresses: &[Ipv4Addr]) -> Vec<Wanted<'a>> {
    let mut out = Vec::new();
    for f in frontends {
        let addresses: Vec<Ipv4Addr> = match f.kind {
            FrontendKind::NodePort => node_addresses.to_vec(),
            _ => v4(f.address).into_iter().collect(),
        };
        let mut flags = kind_flag(f.kind).0 as u16;
        if f.affinity.is_some() {
            flags |= lb_flags::LB_FLAG_AFFINITY.0 as u16;
        }
        let external = f.kind != FrontendKind::ClusterIp;
        let local_external = external && f.external_policy == TrafficPolicy::Local;
        if local_external {
            flags |= lb_flags::LB_FLAG_LOCAL_EXTERNAL.0 as u16;
        }
        if f.internal_policy == TrafficPolicy::Local {
            flags |= lb_flags::LB_FLAG_LOCAL_INTERNAL.0 as u16;
        }
        if !f.source_ranges.is_empty() {
            flags |= lb_flags::LB_FLAG_SOURCE_RANGES.0 as u16;
        }
        let backends = if local_external { &f.local_backends } else { &f.backends };
        for address in addresses {
            let frontend = (address, f.port, f.protocol.number());
            let affinity = f.affinity.unwrap_or(0);
            out.push(Wanted { frontend, scope: lb_scope::LB_SCOPE_EXTERNAL.0 as u8, backends, flags, affinity });
            if f.internal_policy == TrafficPolicy::Local && !external {
                let scope = lb_scope::LB_SCOPE_INTERNAL.0 as u8;
                out.push(Wanted { frontend, scope, backends: &f.local_backends, flags, affinity });
            }
        }
    }
    out
}

fn lowest_free<T: Ord + Copy>(used: impl Iterator<Item = T>, first: T, next: impl Fn(T) -> T) -> T {
    let used: BTreeSet<T> = used.collect();
    let mut candidate = first;
    while used.contains(&candidate) {
        candidate = next(candidate);
    }
    candidate
}

impl LbWriter {
    /// What `maps` hold (left by a previous agent), read back.
    pub fn adopt(maps: &LbMaps) -> Result<LbWriter, DatapathError> {
        let mut writer = LbWriter::default();
        for entry in maps.backends.iter() {
            let (id, b) = entry.map_err(failed("read lb4_backends"))?;
            let address = (Ipv4Addr::from(u32::from_be(b.address)), u16::from_be(b.port), b.protocol);
            let terminating = b.state == lb_backend_state::LB_BACKEND_TERMINATING.0 as u8;
            writer.backend_ids.insert(address, (id, terminating));
        }
        let mut slots = BTreeMap::new();
        let mut masters = Vec::new();
        for entry in maps.services.iter() {
            let (k, v) = entry.map_err(failed("read lb4_services"))?;
            let address = (Ipv4Addr::from(u32::from_be(k.address)), u16::from_be(k.port), k.protocol);
            if k.slot == 0 {
                masters.push((address, k.scope, v));
            } else {
                slots.insert((address, k.scope, k.slot), v.backend_id);
            }
        }
        for (address, scope, master) in masters {
            let backends = (1..=master.count)
                .map(|i| slots.get(&(address, scope, master.base + i)).copied().unwrap_or(0))
                .collect();
            writer.rev_nat_ids.insert(address, master.rev_nat_id);
            let written = Written {
                base: master.base,
                backends,
                rev_nat_id: master.rev_nat_id,
                flags: master.flags,
                affinity: master.affinity_timeout,
            };
            writer.written.insert((address, scope), written);
        }
        Ok(writer)
    }

    /// Brings `maps` to `frontends` (node ports on `node_addresses`).
    pub fn sync(
        &mut self,
        maps: &LbMaps,
        frontends: &[Frontend],
        node_addresses: &[Ipv4Addr],
    ) -> Result<LbSync, DatapathError> {
        let wanted = wanted(frontends, node_addresses);
        let mut report = LbSync::default();
        // Backends first: a master never points at a backend not written yet.
        let mut desired_backends: BTreeMap<Address, bool> = BTreeMap::new();
        for w in &wanted {
            for b in w.backends.iter() {
                if let Some(address) = v4(b.address) {
                    let terminating = desired_backends.get(&(address, b.port, w.frontend.2)).copied().unwrap_or(true);
                    desired_backends.insert((address, b.port, w.frontend.2), terminating && b.terminating);
                }
            }
        }
        for (&address, &terminating) in &desired_backends {
            let known = self.backend_ids.get(&address).copied();
            if known.is_some_and(|(_, t)| t == terminating) {
                continue;
            }
            let id = match known {
                Some((id, _)) => id,
                None => lowest_free(self.backend_ids.values().map(|(id, _)| *id), 1u32, |i| i + 1),
            };
            let state = if terminating {
                lb_backend_state::LB_BACKEND_TERMINATING
            } else {
                lb_backend_state::LB_BACKEND_ACTIVE
            };
            let value = lb4_backend {
                address: u32::from(address.0).to_be(),
                port: address.1.to_be(),
                protocol: address.2,
                state: state.0 as u8,
            };
            maps.backends.insert(&id, &value, UpdateFlags::ANY).map_err(failed("write lb4_backends"))?;
            self.backend_ids.insert(address, (id, terminating));
            report.backends_written += 1;
        }
        let mut seen = BTreeSet::new();
        for w in &wanted {
            seen.insert((w.frontend, w.scope));
            let rev_nat_id = match self.rev_nat_ids.get(&w.frontend) {
                Some(id) => *id,
                None => {
                    let id = lowest_free(self.rev_nat_ids.values().copied(), 1u16, |i| i.wrapping_add(1));
                    let revnat = lb4_reverse_nat {
                        address: u32::from(w.frontend.0).to_be(),
                        port: w.frontend.1.to_be(),
                        pad: 0,
                    };
                    maps.revnat.insert(&id, &revnat, UpdateFlags::ANY).map_err(failed("write lb4_revnat"))?;
                    self.rev_nat_ids.insert(w.frontend, id);
                    id
                }
            };
            let mut backends: Vec<u32> = w
                .backends
                .iter()
                .filter_map(|b| Some(self.backend_ids.get(&(v4(b.address)?, b.port, w.frontend.2))?.0))
                .collect();
            backends.truncate(lb_slots::LB_MAX_BACKENDS.0 as usize);
            let previous = self.written.get(&(w.frontend, w.scope));
            let unchanged = previous.is_some_and(|p| {
                p.backends == backends && p.rev_nat_id == rev_nat_id && p.flags == w.flags && p.affinity == w.affinity
            });
            if unchanged {
                continue;
            }
            let range = lb_slots::LB_SLOT_RANGE.0 as u16;
            let base = match previous {
                Some(p) if p.base == 0 => range,
                _ => 0,
            };
            for (i, id) in backends.iter().enumerate() {
                let slot = lb4_service { backend_id: *id, ..lb4_service::default() };
                let k = key(w.frontend, w.scope, base + 1 + i as u16);
                maps.services.insert(&k, &slot, UpdateFlags::ANY).map_err(failed("write a backend slot"))?;
            }
            let master = lb4_service {
                backend_id: 0,
                count: backends.len() as u16,
                base,
                rev_nat_id,
                flags: w.flags,
                affinity_timeout: w.affinity,
            };
            maps.services
                .insert(&key(w.frontend, w.scope, 0), &master, UpdateFlags::ANY)
                .map_err(failed("write a frontend"))?;
            if let Some(p) = previous {
                for i in 0..p.backends.len() {
                    maps.services
                        .remove(&key(w.frontend, w.scope, p.base + 1 + i as u16))
                        .map_err(failed("remove an old backend slot"))?;
                }
            }
            self.written.insert(
                (w.frontend, w.scope),
                Written { base, backends, rev_nat_id, flags: w.flags, affinity: w.affinity },
            );
            report.frontends_written += 1;
        }
        // Frontends gone: the master first, so no reader follows it into removed slots.
        let gone: Vec<(Address, u8)> = self.written.keys().filter(|k| !seen.contains(k)).copied().collect();
        for (frontend, scope) in gone {
            let Some(p) = self.written.remove(&(frontend, scope)) else { continue };
            maps.services.remove(&key(frontend, scope, 0)).map_err(failed("remove a frontend"))?;
            for i in 0..p.backends.len() {
                maps.services
                    .remove(&key(frontend, scope, p.base + 1 + i as u16))
                    .map_err(failed("remove a backend slot"))?;
            }
            report.frontends_removed += 1;
        }
        let live_frontends: BTreeSet<Address> = self.written.keys().map(|(f, _)| *f).collect();
        let stale: Vec<Address> = self.rev_nat_ids.keys().filter(|f| !live_frontends.contains(f)).copied().collect();
        for frontend in stale {
            if let Some(id) = self.rev_nat_ids.remove(&frontend) {
                maps.revnat.remove(&id).map_err(failed("remove a reverse NAT entry"))?;
            }
        }
        let unused: Vec<Address> =
            self.backend_ids.keys().filter(|b| !desired_backends.contains_key(b)).copied().collect();
        for address in unused {
            if let Some((id, _)) = self.backend_ids.remove(&address) {
                maps.backends.remove(&id).map_err(failed("remove a backend"))?;
                report.backends_removed += 1;
            }
        }
        Ok(report)
    }
}
