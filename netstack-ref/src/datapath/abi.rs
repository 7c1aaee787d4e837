//! The agent's side of `bpf-programs/netstack/abi.h`: the types and constants generated from
//! the endpoint object's BTF (see [`skeleton`]), and the conversions between them and the
//! agent's own types (prefixes, policy keys, directions). Nothing here restates a C layout or
//! constant: a change in C regenerates the Rust, and a skeleton opened on another build of the
//! object is refused.

use std::net::IpAddr;

use crate::policy::api::Cidr;
use crate::policy::{Direction, PolicyKey, PolicyValue};

/// The generated skeleton of `endpoint.o`: `types` (every struct and enum of abi.h the maps
/// reach or the object exports), `OpenEndpoint`, `Endpoint` and their typed maps and programs.
#[allow(missing_docs)]
pub mod skeleton {
    include!(concat!(env!("OUT_DIR"), "/endpoint.skel.rs"));
}

pub use skeleton::types;
pub use skeleton::types::{
    ct_entry, ct_key, drop_reason, event_aggregation, event_flags, event_kind, flow_event, ipcache_key_data,
    ipcache_value, policy_entry, policy_key_data, sock_trace, sock_xlate_point, trace_point, verdict_count,
};

impl From<Direction> for types::direction {
    fn from(d: Direction) -> types::direction {
        match d {
            Direction::Ingress => types::direction::DIR_INGRESS,
            Direction::Egress => types::direction::DIR_EGRESS,
        }
    }
}

/// Cilium's name of a verdict reason (`POLICY_DENIED`, `FORWARDED`): the C enumerator's name
/// after its `REASON_` prefix, or the number when it has no name.
pub fn reason_name(reason: drop_reason) -> String {
    match reason.name() {
        Some(name) => name.trim_start_matches("REASON_").to_owned(),
        None => format!("REASON_{}", reason.0),
    }
}

/// The `verdicts` map's index of (direction, reason).
pub fn verdict_slot(dir: Direction, reason: drop_reason) -> u32 {
    types::direction::from(dir).0 * types::verdict_index::VERDICT_INDEX_STRIDE.0 + reason.0
}

/// The ipcache key (without its prefix length) and the trie prefix length of `cidr`: IPv4 as
/// `::ffff:a.b.c.d`, so a v4 prefix of length n has prefix length 32 + 96 + n.
pub fn ipcache_key(cidr: &Cidr) -> (ipcache_key_data, u32) {
    let (family, addr, len) = match cidr.addr {
        IpAddr::V4(a) => (4, a.to_ipv6_mapped().octets(), 96 + cidr.len as u32),
        IpAddr::V6(a) => (6, a.octets(), cidr.len as u32),
    };
    (ipcache_key_data { family, addr }, 32 + len)
}

/// The prefix back from a key read out of the trie.
pub fn ipcache_cidr(key: &ipcache_key_data, prefix_len: u32) -> Option<Cidr> {
    let v6 = std::net::Ipv6Addr::from(key.addr);
    match key.family {
        4 => Cidr::new(IpAddr::V4(v6.to_ipv4_mapped()?), prefix_len.checked_sub(128)? as u8),
        6 => Cidr::new(IpAddr::V6(v6), prefix_len.checked_sub(32)? as u8),
        _ => None,
    }
}

/// A resolved key in the policy trie's form: data, prefix length, entry.
pub fn encode_policy(key: &PolicyKey, value: &PolicyValue) -> (policy_key_data, u32, policy_entry) {
    let data = policy_key_data {
        identity: key.identity,
        direction: types::direction::from(key.direction).0 as u8,
        protocol: key.protocol,
        port: key.port.to_be(),
    };
    let entry = policy_entry {
        proxy_port: value.proxy_port.to_be(),
        deny: value.deny as u8,
        prefix_len: key.prefix_len,
        ..policy_entry::default()
    };
    (data, key.prefix_len as u32, entry)
}

/// A trie entry back in resolved form (with its packet count).
pub fn decode_policy(data: &policy_key_data, prefix_len: u32, entry: &policy_entry) -> (PolicyKey, PolicyValue, u64) {
    let dir = if u32::from(data.direction) == types::direction::DIR_INGRESS.0 {
        Direction::Ingress
    } else {
        Direction::Egress
    };
    let key = PolicyKey::new(dir, data.identity, data.protocol, u16::from_be(data.port), prefix_len as u8);
    let value = PolicyValue { deny: entry.deny != 0, proxy_port: u16::from_be(entry.proxy_port) };
    (key, value, entry.packets)
}

/// Whether a conntrack entry saw a TCP FIN or RST.
pub fn ct_closing(entry: &ct_entry) -> bool {
    entry.flags & types::ct_flags::CT_CLOSING.0 != 0
}

/// Slots of each endpoint's flow cache, per CPU (a slot is picked by a multiplicative hash of
/// the IPv4 tuple's top `FLOW_CACHE_BITS` bits).
pub const FLOW_CACHE_BITS: u32 = types::flow_cache_size::FLOW_CACHE_BITS.0;
