//! Policy → one endpoint's policy map, as the datapath reads it: entries keyed by (peer
//! identity, direction, protocol, port prefix); identity 0 stands for any peer.
//!
//! The datapath looks up the peer's identity, then identity 0; a deny hit wins, otherwise the
//! longer prefix; no hit drops. Deny must win over allow however the rules overlap, so an allow
//! entry that a deny entry of the same identity covers becomes a deny entry itself (otherwise
//! the longest-prefix match would return the more specific allow).

use std::collections::{BTreeSet, HashMap};

use crate::datapath::abi::types::policy_prefix;
use crate::identity::ReservedIdentity;

use super::api::{Direction, Entity, PeerRule, Peers, Policy, Protocol, Rule, Subject};
use super::scope;
use super::selector::LabelSelector;
use super::universe::Universe;
use crate::identity::Labels;

/// Shortest policy prefix: identity (32 bits) and direction (8) always match in full.
pub const PREFIX_ANY_PROTOCOL: u8 = policy_prefix::POLICY_PREFIX_ANY_PROTOCOL.0 as u8;
/// Identity, direction and protocol.
pub const PREFIX_ANY_PORT: u8 = policy_prefix::POLICY_PREFIX_ANY_PORT.0 as u8;
/// Everything, port included.
pub const PREFIX_FULL: u8 = policy_prefix::POLICY_FULL_PREFIX.0 as u8;

/// One policy map key (port in host order, bits past the prefix cleared).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct PolicyKey {
    /// Direction.
    pub direction: Direction,
    /// Peer identity; 0 for any.
    pub identity: u32,
    /// IP protocol number (0 when the prefix stops before it).
    pub protocol: u8,
    /// Port, or ICMP type for ICMP.
    pub port: u16,
    /// Prefix length in bits, 40..=64.
    pub prefix_len: u8,
}

impl PolicyKey {
    /// The key with bits past `prefix_len` cleared.
    pub fn new(direction: Direction, identity: u32, protocol: u8, port: u16, prefix_len: u8) -> PolicyKey {
        let protocol = if prefix_len >= PREFIX_ANY_PORT { protocol } else { 0 };
        let port_bits = prefix_len.saturating_sub(PREFIX_ANY_PORT) as u32;
        let port = port & mask(port_bits);
        PolicyKey { direction, identity, protocol, port, prefix_len }
    }
}

fn mask(bits: u32) -> u16 {
    if bits == 0 {
        0
    } else {
        u16::MAX << (16 - bits)
    }
}

/// What an entry says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
pub struct PolicyValue {
    /// Drop rather than allow.
    pub deny: bool,
    /// L7 proxy port (0: none; L7 rules are not enforced yet, so always 0).
    pub proxy_port: u16,
}

/// One endpoint's resolved policy (unordered: it is diffed and written, and sorted only for
/// display).
pub type PolicyMapState = HashMap<PolicyKey, PolicyValue, BuildKeyHasher>;

/// A fast hasher for policy keys (small integers, not attacker-chosen): resolution inserts
/// hundreds of thousands of them, and SipHash was a third of its time.
#[derive(Clone, Copy, Debug, Default)]
pub struct BuildKeyHasher;

impl std::hash::BuildHasher for BuildKeyHasher {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

/// The hasher [`BuildKeyHasher`] builds: multiply-rotate over each written word.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(*b as u64);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(n as u64)
    }
    fn write_u16(&mut self, n: u16) {
        self.write_u64(n as u64)
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64)
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64)
    }
}

/// The port blocks of `first..=last`: (base, prefix bits of the 16-bit port).
pub fn port_blocks(first: u16, last: u16) -> Vec<(u16, u8)> {
    let mut out = Vec::new();
    let (mut lo, hi) = (first as u32, last as u32);
    while lo <= hi {
        // The largest aligned block starting at lo that stays within hi.
        let mut size = if lo == 0 { 1 << 16 } else { 1u32 << lo.trailing_zeros() };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        out.push((lo as u16, 16 - size.trailing_zeros() as u8));
        lo += size;
    }
    out
}

/// (protocol, port, prefix length) triples a peer rule allows.
fn l4_keys(rule: &PeerRule) -> Vec<(u8, u16, u8)> {
    if rule.to_ports.is_empty() && rule.icmps.is_empty() {
        return vec![(0, 0, PREFIX_ANY_PROTOCOL)];
    }
    let mut out = Vec::new();
    for port_rule in &rule.to_ports {
        if port_rule.ports.is_empty() {
            for &p in Protocol::Any.numbers() {
                out.push((p, 0, PREFIX_ANY_PORT));
            }
        }
        for pp in &port_rule.ports {
            for &proto in pp.protocol.numbers() {
                if pp.port == 0 {
                    out.push((proto, 0, PREFIX_ANY_PORT));
                    continue;
                }
                for (base, bits) in port_blocks(pp.port, pp.end_port.unwrap_or(pp.port)) {
                    out.push((proto, base, PREFIX_ANY_PORT + bits));
                }
            }
        }
    }
    for icmp in &rule.icmps {
        out.push((if icmp.ipv6 { 58 } else { 1 }, icmp.icmp_type as u16, PREFIX_FULL));
    }
    out
}

/// Peers of a rule: every identity (`None`) or a set.
fn peer_identities(
    rule: &PeerRule,
    policy: &Policy,
    universe: &Universe,
    cache: &mut HashMap<LabelSelector, Vec<u32>>,
) -> Option<BTreeSet<u32>> {
    let mut set = BTreeSet::new();
    match &rule.peers {
        Peers::Unspecified if rule.to_ports.is_empty() && rule.icmps.is_empty() => {}
        Peers::Unspecified => return None,
        Peers::Endpoints(sels) => {
            for sel in sels {
                let ids = cache.entry(scope::peer(policy, sel)).or_insert_with_key(|s| universe.select_endpoints(s));
                set.extend(ids.iter().copied());
            }
        }
        Peers::Nodes(sels) => {
            if sels.iter().any(|s| s.matches(&universe.node_labels)) {
                set.insert(ReservedIdentity::Host.id());
            }
        }
        Peers::Cidrs(cidrs) => {
            for c in cidrs {
                set.extend(universe.select_cidr(&c.cidr, &c.except));
            }
        }
        Peers::Entities(entities) => {
            for e in entities {
                if *e == Entity::All {
                    return None;
                }
                set.extend(entity_identities(*e, universe));
            }
        }
        // Refused before resolution (Policy::unenforced); selecting nothing is the safe reading.
        Peers::Services(_) | Peers::Fqdns(_) => {}
    }
    Some(set)
}

/// The identities an entity stands for.
pub fn entity_identities(entity: Entity, universe: &Universe) -> Vec<u32> {
    use ReservedIdentity as R;
    let world_cidrs = |v4: Option<bool>| {
        universe.cidr_ids().filter(move |(_, c)| v4.is_none_or(|v4| c.addr.is_ipv4() == v4)).map(|(id, _)| id)
    };
    match entity {
        Entity::All => universe.entries().iter().map(|e| e.id).collect(),
        Entity::World => {
            [R::World.id(), R::WorldIpv4.id(), R::WorldIpv6.id()].into_iter().chain(world_cidrs(None)).collect()
        }
        Entity::WorldIpv4 => std::iter::once(R::WorldIpv4.id()).chain(world_cidrs(Some(true))).collect(),
        Entity::WorldIpv6 => std::iter::once(R::WorldIpv6.id()).chain(world_cidrs(Some(false))).collect(),
        Entity::Cluster => [R::Host, R::RemoteNode, R::Health, R::Init, R::Unmanaged, R::KubeApiserver]
            .iter()
            .map(|r| r.id())
            .chain(universe.endpoint_ids())
            .collect(),
        Entity::Host => vec![R::Host.id()],
        Entity::RemoteNode => vec![R::RemoteNode.id()],
        Entity::Health => vec![R::Health.id()],
        Entity::Init => vec![R::Init.id()],
        Entity::Unmanaged => vec![R::Unmanaged.id()],
        Entity::KubeApiserver => vec![R::KubeApiserver.id()],
        Entity::Ingress => vec![R::Ingress.id()],
    }
}

/// Whether `rule` (of `policy`) applies to an endpoint with security labels `labels`.
pub fn selects(policy: &Policy, rule: &Rule, labels: &Labels) -> bool {
    match &rule.subject {
        Subject::Endpoints(sel) => scope::subject(policy, sel).matches(labels),
        Subject::Nodes(_) => false,
    }
}

/// Whether the local host may always reach the node's endpoints (Cilium's `--allow-localhost`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AllowLocalhost {
    /// Ingress from the host identity is always allowed (Cilium's default in Kubernetes mode:
    /// kubelet's health probes come from the host). A deny rule naming the host still wins.
    #[default]
    Always,
    /// The host is subject to policy like any other peer.
    Policy,
}

impl AllowLocalhost {
    /// The option's value as Cilium spells it.
    pub fn name(self) -> &'static str {
        match self {
            AllowLocalhost::Always => "always",
            AllowLocalhost::Policy => "policy",
        }
    }

    /// The mode named `name` (`always` or `policy`).
    pub fn from_name(name: &str) -> Option<AllowLocalhost> {
        [AllowLocalhost::Always, AllowLocalhost::Policy].into_iter().find(|m| m.name() == name)
    }
}

/// Resolves `policies` for the endpoint with security labels `labels`, the host always allowed
/// in (the agent's default).
pub fn resolve<'p>(
    policies: impl IntoIterator<Item = &'p Policy>,
    labels: &Labels,
    universe: &Universe,
) -> PolicyMapState {
    resolve_with(policies, labels, universe, AllowLocalhost::Always)
}

/// Resolves `policies` for the endpoint with security labels `labels`.
pub fn resolve_with<'p>(
    policies: impl IntoIterator<Item = &'p Policy>,
    labels: &Labels,
    universe: &Universe,
    allow_localhost: AllowLocalhost,
) -> PolicyMapState {
    let mut cache = HashMap::new();
    let selected: Vec<(&Policy, &Rule)> = policies
        .into_iter()
        .flat_map(|p| p.rules.iter().map(move |r| (p, r)))
        .filter(|(p, r)| selects(p, r, labels))
        .collect();

    let mut state = PolicyMapState::default();
    for direction in Direction::BOTH {
        let default_deny = selected.iter().any(|(_, r)| r.enables_default_deny(direction));
        if !default_deny {
            state.entry(PolicyKey::new(direction, 0, 0, 0, PREFIX_ANY_PROTOCOL)).or_default();
        }
        let requires: Vec<LabelSelector> = selected
            .iter()
            .flat_map(|(p, r)| {
                r.sections().into_iter().filter(move |(d, _, is_deny)| *d == direction && !is_deny).flat_map(
                    move |(_, rules, _)| {
                        rules.iter().flat_map(move |pr| pr.requires.iter().map(move |s| scope::requirement(p, s)))
                    },
                )
            })
            .collect();
        for (policy, rule) in &selected {
            for (dir, peer_rules, is_deny) in rule.sections() {
                if dir != direction {
                    continue;
                }
                for pr in peer_rules {
                    let peers = peer_identities(pr, policy, universe, &mut cache);
                    let peers: Vec<u32> = match peers {
                        None if is_deny || requires.is_empty() => vec![0],
                        None => universe
                            .entries()
                            .iter()
                            .map(|e| e.id)
                            .filter(|&id| universe.matching(&requires, id))
                            .collect(),
                        Some(set) if is_deny || requires.is_empty() => set.into_iter().collect(),
                        Some(set) => set.into_iter().filter(|&id| universe.matching(&requires, id)).collect(),
                    };
                    for (proto, port, len) in l4_keys(pr) {
                        for &id in &peers {
                            let value = state.entry(PolicyKey::new(direction, id, proto, port, len)).or_default();
                            value.deny |= is_deny;
                        }
                    }
                }
            }
        }
    }

    if allow_localhost == AllowLocalhost::Always {
        let host = PolicyKey::new(Direction::Ingress, ReservedIdentity::Host.id(), 0, 0, PREFIX_ANY_PROTOCOL);
        state.entry(host).or_default();
    }

    // An allow entry covered by a deny entry of the same identity becomes a deny: only the
    // prefix lengths some deny of that (direction, identity) uses need looking at.
    let mut deny_lengths: HashMap<(Direction, u32), Vec<u8>, BuildKeyHasher> = HashMap::default();
    for key in state.iter().filter(|(_, v)| v.deny).map(|(k, _)| k) {
        let lengths = deny_lengths.entry((key.direction, key.identity)).or_default();
        if !lengths.contains(&key.prefix_len) {
            lengths.push(key.prefix_len);
        }
    }
    let covered: Vec<PolicyKey> = state
        .iter()
        .filter(|(_, v)| !v.deny)
        .map(|(k, _)| *k)
        .filter(|key| {
            deny_lengths.get(&(key.direction, key.identity)).is_some_and(|lengths| {
                lengths.iter().any(|&len| {
                    len < key.prefix_len
                        && state
                            .get(&PolicyKey::new(key.direction, key.identity, key.protocol, key.port, len))
                            .is_some_and(|v| v.deny)
                })
            })
        })
        .collect();
    for key in covered {
        state.insert(key, PolicyValue { deny: true, proxy_port: 0 });
    }
    state
}

/// `TCP/80`, `UDP/8000-8063`, `any/*`: a key's protocol and ports, for display.
pub fn describe_key(key: &PolicyKey) -> String {
    let proto = match (key.prefix_len, key.protocol) {
        (l, _) if l < PREFIX_ANY_PORT => "any".to_string(),
        (_, 6) => "TCP".into(),
        (_, 17) => "UDP".into(),
        (_, 132) => "SCTP".into(),
        (_, 1) => "ICMP".into(),
        (_, 58) => "ICMPv6".into(),
        (_, 112) => "VRRP".into(),
        (_, 2) => "IGMP".into(),
        (_, p) => format!("proto {p}"),
    };
    let port = match key.prefix_len {
        l if l <= PREFIX_ANY_PORT => "*".to_string(),
        PREFIX_FULL => key.port.to_string(),
        l => {
            let size = 1u32 << (PREFIX_FULL - l);
            format!("{}-{}", key.port, key.port as u32 + size - 1)
        }
    };
    format!("{proto}/{port}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn port_ranges_become_aligned_blocks() {
        assert_eq!(port_blocks(80, 80), vec![(80, 16)]);
        assert_eq!(port_blocks(80, 81), vec![(80, 15)]);
        assert_eq!(port_blocks(8000, 8080), vec![(8000, 10), (8064, 12), (8080, 16)]);
        assert_eq!(port_blocks(1, 65535).len(), 16);
    }

    proptest! {
        #[test]
        fn blocks_cover_exactly_the_range(a in 1u16.., b in 1u16..) {
            let (first, last) = (a.min(b), a.max(b));
            let blocks = port_blocks(first, last);
            prop_assert!(blocks.len() <= 30);
            let mut next = first as u32;
            for (base, bits) in blocks {
                prop_assert_eq!(base as u32, next);
                let size = 1u32 << (16 - bits);
                prop_assert_eq!(base as u32 % size, 0);
                next += size;
            }
            prop_assert_eq!(next, last as u32 + 1);
        }
    }
}
