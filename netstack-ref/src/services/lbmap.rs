//! Writes the catalog's frontends into the load balancer's maps, incrementally and atomically
//! per frontend: only what changed is written; a frontend's new backend list goes into the slot
//! range its master entry does not point at, then the master flips to it in one update; the old
//! list stays in its range until the next version overwrites it, so a reader (the datapath) that
//! read the old master an instant before the flip still finds its slots. A reader sees the old
//! list or the new one, never a mix, and never a hole.
//! Backend and reverse-NAT ids are stable while in use; a restarted agent reads them back from
//! the maps, so sockets translated before the restart still translate back.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use ebpf_maps::UpdateFlags;

use super::catalog::{Backend, Frontend, FrontendKind};
use super::maglev;
use crate::datapath::sock_lb::{
    lb4_backend, lb4_key, lb4_reverse_nat, lb4_service, lb4_source_range_key_data, lb_backend_state, lb_flags,
    lb_maglev, lb_scope, lb_slots, maglev_table, LbMaps,
};
use crate::datapath::DatapathError;
use crate::manifest::service::{ForwardingMode, L4Protocol, TrafficPolicy};

/// (address, port, protocol) in host order.
type Address = (Ipv4Addr, u16, u8);

/// A master entry as written: its key is (frontend, scope).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Written {
    base: u16,
    backends: Vec<u32>,
    /// The backend ids the version before left in the other range: kept (slots and backends),
    /// so a reader that read the previous master a moment ago still finds them; overwritten by
    /// the next version.
    stale: Vec<u32>,
    rev_nat_id: u16,
    flags: u16,
    affinity: u32,
    /// Its Maglev table's id (0: none).
    maglev: u32,
}

/// The seed of every node's Maglev tables: the same everywhere, so every node picks the same
/// backend for the same client (Cilium's `--bpf-lb-maglev-hash-seed`, fixed here).
pub const MAGLEV_SEED: u64 = 0x6e65_7473_7461_636b;

/// What the writer knows the maps hold.
#[derive(Debug, Default)]
pub struct LbWriter {
    backend_ids: BTreeMap<Address, (u32, bool)>,
    /// The other way round: each id's backend.
    backend_addresses: BTreeMap<u32, Address>,
    /// Backends that left a frontend's list since [`LbWriter::take_departed_backends`] was
    /// last asked: (the frontend's reverse-NAT id, the backend).
    departed: Vec<(u16, Address)>,
    /// Master entries whose slots hold each backend id.
    backend_refs: BTreeMap<u32, usize>,
    /// Ids given back, reused lowest first; beyond them, `next_backend_id`.
    free_backend_ids: BTreeSet<u32>,
    next_backend_id: u32,
    rev_nat_ids: BTreeMap<Address, u16>,
    /// Master entries (scopes) of each frontend address holding its reverse-NAT id.
    rev_nat_refs: BTreeMap<Address, usize>,
    free_rev_nat_ids: BTreeSet<u16>,
    next_rev_nat_id: u16,
    /// Maglev tables by the backend ids they were built from: (table id, masters using it).
    maglev_tables: BTreeMap<Vec<u32>, (u32, usize)>,
    free_maglev_ids: BTreeSet<u32>,
    next_maglev_id: u32,
    /// Source ranges written, by reverse-NAT id: (address, prefix length).
    source_ranges: BTreeMap<u16, BTreeSet<(Ipv4Addr, u8)>>,
    written: BTreeMap<(Address, u8), Written>,
    /// The master entries each service wrote.
    owners: BTreeMap<String, BTreeSet<(Address, u8)>>,
    /// Each service's frontends as last synced.
    last: BTreeMap<String, Vec<Frontend>>,
    /// Read back from a previous agent: entries no service claims yet are removed at the end
    /// of the first full sync.
    adopted: bool,
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

impl LbSync {
    fn add(&mut self, other: LbSync) {
        self.frontends_written += other.frontends_written;
        self.frontends_removed += other.frontends_removed;
        self.backends_written += other.backends_written;
        self.backends_removed += other.backends_removed;
    }
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
    source_ranges: BTreeSet<(Ipv4Addr, u8)>,
    /// Traffic from outside reaches it: backends by Maglev.
    maglev: bool,
}

fn kind_flag(kind: FrontendKind) -> lb_flags {
    match kind {
        FrontendKind::ClusterIp => lb_flags::LB_FLAG_CLUSTER_IP,
        FrontendKind::NodePort => lb_flags::LB_FLAG_NODE_PORT,
        FrontendKind::ExternalIp => lb_flags::LB_FLAG_EXTERNAL_IP,
        FrontendKind::LoadBalancer => lb_flags::LB_FLAG_LOAD_BALANCER,
    }
}

/// Whether a remote backend answers the client itself (DSR) rather than through the node the
/// flow entered (SNAT, the default): `hybrid` is DSR for TCP, SNAT for the rest.
fn direct_server_return(mode: ForwardingMode, protocol: L4Protocol) -> bool {
    match mode {
        ForwardingMode::Dsr => true,
        ForwardingMode::Hybrid => protocol == L4Protocol::Tcp,
        ForwardingMode::Snat | ForwardingMode::Default => false,
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
        if direct_server_return(f.forwarding_mode, f.protocol) {
            flags |= lb_flags::LB_FLAG_DSR.0 as u16;
        }
        let backends = if local_external { &f.local_backends } else { &f.backends };
        let source_ranges: BTreeSet<(Ipv4Addr, u8)> =
            f.source_ranges.iter().filter_map(|c| Some((v4(c.addr)?, c.len))).collect();
        for address in addresses {
            let frontend = (address, f.port, f.protocol.number());
            let affinity = f.affinity.unwrap_or(0);
            let scope = lb_scope::LB_SCOPE_EXTERNAL.0 as u8;
            let source_ranges = source_ranges.clone();
            let ranges = source_ranges.clone();
            out.push(Wanted { frontend, scope, backends, flags, affinity, source_ranges: ranges, maglev: external });
            if f.internal_policy == TrafficPolicy::Local && !external {
                let scope = lb_scope::LB_SCOPE_INTERNAL.0 as u8;
                let backends = &f.local_backends;
                out.push(Wanted { frontend, scope, backends, flags, affinity, source_ranges, maglev: false });
            }
        }
    }
    out
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
            writer.backend_addresses.insert(id, address);
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
            let backends: Vec<u32> = (1..=master.count)
                .map(|i| slots.get(&(address, scope, master.base + i)).copied().unwrap_or(0))
                .collect();
            for id in &backends {
                *writer.backend_refs.entry(*id).or_default() += 1;
            }
            writer.rev_nat_ids.insert(address, master.rev_nat_id);
            *writer.rev_nat_refs.entry(address).or_default() += 1;
            let other = if master.base == 0 { lb_slots::LB_SLOT_RANGE.0 as u16 } else { 0 };
            let stale: Vec<u32> = (1..=lb_slots::LB_MAX_BACKENDS.0 as u16)
                .map_while(|i| slots.get(&(address, scope, other + i)).copied())
                .collect();
            for id in &stale {
                *writer.backend_refs.entry(*id).or_default() += 1;
            }
            if master.backend_id != 0 {
                let table = writer.maglev_tables.entry(backends.clone()).or_insert((master.backend_id, 0));
                table.1 += 1;
            }
            let written = Written {
                base: master.base,
                stale,
                backends,
                rev_nat_id: master.rev_nat_id,
                flags: master.flags,
                affinity: master.affinity_timeout,
                maglev: master.backend_id,
            };
            writer.written.insert((address, scope), written);
        }
        for (k, len, _) in maps.source_ranges.entries().map_err(failed("read lb4_source_ranges"))? {
            let range = (Ipv4Addr::from(u32::from_be(k.address)), len.saturating_sub(32) as u8);
            writer.source_ranges.entry(k.rev_nat_id).or_default().insert(range);
        }
        writer.next_backend_id = writer.backend_ids.values().map(|(id, _)| id + 1).max().unwrap_or(1);
        writer.next_rev_nat_id = writer.rev_nat_ids.values().map(|id| id + 1).max().unwrap_or(1);
        writer.next_maglev_id = writer.maglev_tables.values().map(|(id, _)| id + 1).max().unwrap_or(1);
        writer.adopted = true;
        Ok(writer)
    }

    /// Brings `maps` to `frontends` (node ports on `node_addresses`): only the services whose
    /// frontends changed since the last sync are written.
    pub fn sync(
        &mut self,
        maps: &LbMaps,
        frontends: &[Frontend],
        node_addresses: &[Ipv4Addr],
    ) -> Result<LbSync, DatapathError> {
        let mut by_service: BTreeMap<&str, Vec<Frontend>> = BTreeMap::new();
        for f in frontends {
            by_service.entry(f.service.as_str()).or_default().push(f.clone());
        }
        let mut report = LbSync::default();
        let gone: Vec<String> = self.last.keys().filter(|s| !by_service.contains_key(s.as_str())).cloned().collect();
        for service in gone {
            report.add(self.sync_service(maps, &service, &[], node_addresses)?);
        }
        for (service, frontends) in &by_service {
            if self.last.get(*service) != Some(frontends) {
                report.add(self.sync_service(maps, service, frontends, node_addresses)?);
            }
        }
        if std::mem::take(&mut self.adopted) {
            let claimed: BTreeSet<(Address, u8)> = self.owners.values().flatten().copied().collect();
            let orphans: Vec<(Address, u8)> = self.written.keys().filter(|k| !claimed.contains(k)).copied().collect();
            for key in orphans {
                report.add(self.remove_master(maps, key)?);
            }
        }
        Ok(report)
    }

    /// Brings one service's entries to `frontends` (none: removes the service), touching
    /// nothing of the others: the cost does not grow with the number of services.
    pub fn sync_service(
        &mut self,
        maps: &LbMaps,
        service: &str,
        frontends: &[Frontend],
        node_addresses: &[Ipv4Addr],
    ) -> Result<LbSync, DatapathError> {
        let mut report = LbSync::default();
        let wanted = wanted(frontends, node_addresses);
        let keys: BTreeSet<(Address, u8)> = wanted.iter().map(|w| (w.frontend, w.scope)).collect();
        for w in &wanted {
            report.add(self.write_master(maps, w)?);
        }
        let previous = self.owners.remove(service).unwrap_or_default();
        for key in previous.difference(&keys) {
            report.add(self.remove_master(maps, *key)?);
        }
        if frontends.is_empty() {
            self.last.remove(service);
        } else {
            self.owners.insert(service.to_owned(), keys);
            self.last.insert(service.to_owned(), frontends.to_vec());
        }
        Ok(report)
    }

    /// The id of backend `address` (state `terminating`), written to the map when new or
    /// changed.
    fn backend(
        &mut self,
        maps: &LbMaps,
        address: Address,
        terminating: bool,
        report: &mut LbSync,
    ) -> Result<u32, DatapathError> {
        let known = self.backend_ids.get(&address).copied();
        if let Some((id, t)) = known {
            if t == terminating {
                return Ok(id);
            }
        }
        let id = match known {
            Some((id, _)) => id,
            None => match self.free_backend_ids.pop_first() {
                Some(id) => id,
                None => {
                    self.next_backend_id = self.next_backend_id.max(1);
                    self.next_backend_id += 1;
                    self.next_backend_id - 1
                }
            },
        };
        let state =
            if terminating { lb_backend_state::LB_BACKEND_TERMINATING } else { lb_backend_state::LB_BACKEND_ACTIVE };
        let value = lb4_backend {
            address: u32::from(address.0).to_be(),
            port: address.1.to_be(),
            protocol: address.2,
            state: state.0 as u8,
        };
        maps.backends.insert(&id, &value, UpdateFlags::ANY).map_err(failed("write lb4_backends"))?;
        self.backend_ids.insert(address, (id, terminating));
        self.backend_addresses.insert(id, address);
        report.backends_written += 1;
        Ok(id)
    }

    /// Drops one reference to backend `id`, removing it with the last.
    fn release_backend(&mut self, maps: &LbMaps, id: u32, report: &mut LbSync) -> Result<(), DatapathError> {
        let Some(refs) = self.backend_refs.get_mut(&id) else { return Ok(()) };
        *refs -= 1;
        if *refs > 0 {
            return Ok(());
        }
        self.backend_refs.remove(&id);
        maps.backends.remove(&id).map_err(failed("remove a backend"))?;
        if let Some(address) = self.backend_addresses.remove(&id) {
            self.backend_ids.remove(&address);
        }
        self.free_backend_ids.insert(id);
        report.backends_removed += 1;
        Ok(())
    }

    fn rev_nat(&mut self, maps: &LbMaps, frontend: Address) -> Result<u16, DatapathError> {
        if let Some(id) = self.rev_nat_ids.get(&frontend) {
            return Ok(*id);
        }
        let id = match self.free_rev_nat_ids.pop_first() {
            Some(id) => id,
            None => {
                self.next_rev_nat_id = self.next_rev_nat_id.max(1);
                self.next_rev_nat_id = self.next_rev_nat_id.wrapping_add(1);
                self.next_rev_nat_id.wrapping_sub(1)
            }
        };
        let revnat = lb4_reverse_nat { address: u32::from(frontend.0).to_be(), port: frontend.1.to_be(), pad: 0 };
        maps.revnat.insert(&id, &revnat, UpdateFlags::ANY).map_err(failed("write lb4_revnat"))?;
        self.rev_nat_ids.insert(frontend, id);
        Ok(id)
    }

    /// The id of the Maglev table of `backends` (ids, at `addresses`): shared when another
    /// master has the same backends, else built and stored.
    fn take_maglev_table(
        &mut self,
        maps: &LbMaps,
        backends: &[u32],
        addresses: &[std::net::SocketAddr],
    ) -> Result<u32, DatapathError> {
        if let Some((id, refs)) = self.maglev_tables.get_mut(backends) {
            *refs += 1;
            return Ok(*id);
        }
        let size = lb_maglev::LB_MAGLEV_SIZE.0;
        let (sorted, slots) = maglev::table(addresses, MAGLEV_SEED, size)
            .map_err(|source| DatapathError::Maglev { backends: backends.len(), source })?;
        let id_of: BTreeMap<std::net::SocketAddr, u32> =
            addresses.iter().copied().zip(backends.iter().copied()).collect();
        let ids: Vec<u32> = slots.iter().map(|&index| id_of[&sorted[index as usize]]).collect();
        let table = maglev_table(&ids)?;
        let id = match self.free_maglev_ids.pop_first() {
            Some(id) => id,
            None => {
                self.next_maglev_id = self.next_maglev_id.max(1);
                self.next_maglev_id += 1;
                self.next_maglev_id - 1
            }
        };
        maps.maglev.set(&id, &table, UpdateFlags::ANY).map_err(failed("write lb4_maglev"))?;
        self.maglev_tables.insert(backends.to_vec(), (id, 1));
        Ok(id)
    }

    /// Drops one master's use of Maglev table `id` (of `backends`), removing it with the last.
    fn release_maglev_table(&mut self, maps: &LbMaps, backends: &[u32], id: u32) -> Result<(), DatapathError> {
        if id == 0 {
            return Ok(());
        }
        let Some((held, refs)) = self.maglev_tables.get_mut(backends) else { return Ok(()) };
        if *held != id {
            return Ok(());
        }
        *refs -= 1;
        if *refs == 0 {
            self.maglev_tables.remove(backends);
            maps.maglev.remove(&id).map_err(failed("remove from lb4_maglev"))?;
            self.free_maglev_ids.insert(id);
        }
        Ok(())
    }

    /// The backends (address, port, protocol) that left a frontend's list since the last call,
    /// with that frontend's reverse-NAT id: sockets the socket LB connected to them through
    /// that frontend are stale.
    pub fn take_departed_backends(&mut self) -> Vec<(u16, (Ipv4Addr, u16, u8))> {
        std::mem::take(&mut self.departed)
    }

    fn depart(&mut self, rev_nat_id: u16, before: &[u32], after: &[u32]) {
        for id in before.iter().filter(|id| !after.contains(id)) {
            if let Some(address) = self.backend_addresses.get(id) {
                self.departed.push((rev_nat_id, *address));
            }
        }
    }

    /// Brings the source ranges of reverse-NAT id `id` to `wanted`.
    fn write_source_ranges(
        &mut self,
        maps: &LbMaps,
        id: u16,
        wanted: &BTreeSet<(Ipv4Addr, u8)>,
    ) -> Result<(), DatapathError> {
        let written = self.source_ranges.remove(&id).unwrap_or_default();
        let data = |address: Ipv4Addr| lb4_source_range_key_data {
            rev_nat_id: id,
            pad: 0,
            address: u32::from(address).to_be(),
        };
        for (address, len) in wanted.difference(&written) {
            maps.source_ranges
                .insert(&data(*address), 32 + u32::from(*len), &1, UpdateFlags::ANY)
                .map_err(failed("write lb4_source_ranges"))?;
        }
        for (address, len) in written.difference(wanted) {
            maps.source_ranges
                .remove(&data(*address), 32 + u32::from(*len))
                .map_err(failed("remove from lb4_source_ranges"))?;
        }
        if !wanted.is_empty() {
            self.source_ranges.insert(id, wanted.clone());
        }
        Ok(())
    }

    /// Writes one master entry and its slots when they differ from what is written: the new
    /// slots into the range the master does not point at, then the master, then the old range
    /// removed.
    fn write_master(&mut self, maps: &LbMaps, w: &Wanted<'_>) -> Result<LbSync, DatapathError> {
        let mut report = LbSync::default();
        let mut backends = Vec::with_capacity(w.backends.len());
        let mut addresses = Vec::with_capacity(w.backends.len());
        for b in w.backends.iter().take(lb_slots::LB_MAX_BACKENDS.0 as usize) {
            if let Some(address) = v4(b.address) {
                backends.push(self.backend(maps, (address, b.port, w.frontend.2), b.terminating, &mut report)?);
                addresses.push(std::net::SocketAddr::from((address, b.port)));
            }
        }
        let rev_nat_id = self.rev_nat(maps, w.frontend)?;
        let key_of = (w.frontend, w.scope);
        let previous = self.written.get(&key_of).cloned();
        // Before the master: a frontend that says it has source ranges has them.
        self.write_source_ranges(maps, rev_nat_id, &w.source_ranges)?;
        let unchanged = previous.as_ref().is_some_and(|p| {
            p.backends == backends
                && p.rev_nat_id == rev_nat_id
                && p.flags == w.flags
                && p.affinity == w.affinity
                && (p.maglev != 0) == (w.maglev && !backends.is_empty())
        });
        if unchanged {
            return Ok(report);
        }
        // The new table exists before the master points at it.
        let maglev =
            if w.maglev && !backends.is_empty() { self.take_maglev_table(maps, &backends, &addresses)? } else { 0 };
        let range = lb_slots::LB_SLOT_RANGE.0 as u16;
        let base = match &previous {
            Some(p) if p.base == 0 => range,
            _ => 0,
        };
        for (i, id) in backends.iter().enumerate() {
            let slot = lb4_service { backend_id: *id, ..lb4_service::default() };
            let k = key(w.frontend, w.scope, base + 1 + i as u16);
            maps.services.insert(&k, &slot, UpdateFlags::ANY).map_err(failed("write a backend slot"))?;
        }
        // What the version before last left in this range beyond the new list: unused by any
        // master a reader can still hold.
        let leftover = previous.as_ref().map_or(0, |p| p.stale.len() as u16);
        for i in backends.len() as u16..leftover {
            maps.services
                .remove(&key(w.frontend, w.scope, base + 1 + i))
                .map_err(failed("remove an old backend slot"))?;
        }
        let master = lb4_service {
            backend_id: maglev,
            count: backends.len() as u16,
            base,
            rev_nat_id,
            flags: w.flags,
            affinity_timeout: w.affinity,
        };
        maps.services
            .insert(&key(w.frontend, w.scope, 0), &master, UpdateFlags::ANY)
            .map_err(failed("write a frontend"))?;
        for id in &backends {
            *self.backend_refs.entry(*id).or_default() += 1;
        }
        // The previous list stays in its range (now stale) for readers still holding the old
        // master; its backends are released only when nothing points at them.
        let stale = previous.as_ref().map(|p| p.backends.clone()).unwrap_or_default();
        match previous {
            Some(p) => {
                self.depart(p.rev_nat_id, &p.backends, &backends);
                for id in p.stale {
                    self.release_backend(maps, id, &mut report)?;
                }
                self.release_maglev_table(maps, &p.backends, p.maglev)?;
            }
            None => *self.rev_nat_refs.entry(w.frontend).or_default() += 1,
        }
        let written = Written { base, stale, backends, rev_nat_id, flags: w.flags, affinity: w.affinity, maglev };
        self.written.insert(key_of, written);
        report.frontends_written += 1;
        Ok(report)
    }

    /// Removes one master entry (first, so no reader follows it into removed slots), its slots,
    /// and what only it used.
    fn remove_master(&mut self, maps: &LbMaps, key_of: (Address, u8)) -> Result<LbSync, DatapathError> {
        let mut report = LbSync::default();
        let Some(p) = self.written.remove(&key_of) else { return Ok(report) };
        let (frontend, scope) = key_of;
        maps.services.remove(&key(frontend, scope, 0)).map_err(failed("remove a frontend"))?;
        let other = if p.base == 0 { lb_slots::LB_SLOT_RANGE.0 as u16 } else { 0 };
        let slots = (0..p.backends.len() as u16)
            .map(|i| p.base + 1 + i)
            .chain((0..p.stale.len() as u16).map(|i| other + 1 + i));
        for slot in slots {
            maps.services.remove(&key(frontend, scope, slot)).map_err(failed("remove a backend slot"))?;
        }
        self.release_maglev_table(maps, &p.backends, p.maglev)?;
        self.depart(p.rev_nat_id, &p.backends, &[]);
        for id in p.backends.into_iter().chain(p.stale) {
            self.release_backend(maps, id, &mut report)?;
        }
        if let Some(refs) = self.rev_nat_refs.get_mut(&frontend) {
            *refs -= 1;
            if *refs == 0 {
                self.rev_nat_refs.remove(&frontend);
                if let Some(id) = self.rev_nat_ids.remove(&frontend) {
                    self.write_source_ranges(maps, id, &BTreeSet::new())?;
                    maps.revnat.remove(&id).map_err(failed("remove a reverse NAT entry"))?;
                    self.free_rev_nat_ids.insert(id);
                }
            }
        }
        report.frontends_removed += 1;
        Ok(report)
    }
}
