//! The layouts of `bpf-programs/netstack/endpoint.h`, for typed map views. The views check
//! every size against the loaded maps, so a drift between the C and these is an error at load.

use std::net::IpAddr;

use bytemuck::{Pod, Zeroable};

use crate::policy::api::Cidr;
use crate::policy::{Direction, PolicyKey, PolicyValue};

/// Verdict reasons the datapath counts: 0 is forwarded, the rest are Cilium's drop codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Reason {
    /// Forwarded (allowed, or part of a tracked connection).
    Forwarded,
    /// 132: the pod sent from an address that is not its own.
    InvalidSource,
    /// 133: no policy entry allows the flow.
    PolicyDenied,
    /// 134: a truncated or malformed header.
    InvalidPacket,
    /// 136: a non-first IP fragment (no L4 header to decide on).
    Fragment,
    /// 139: neither IPv4, IPv6 nor ARP.
    UnsupportedL3,
    /// 140: the policy stage was missing from the prog array.
    MissedTailCall,
    /// 181: a deny rule matched.
    PolicyDeny,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 8] = [
        Reason::Forwarded,
        Reason::InvalidSource,
        Reason::PolicyDenied,
        Reason::InvalidPacket,
        Reason::Fragment,
        Reason::UnsupportedL3,
        Reason::MissedTailCall,
        Reason::PolicyDeny,
    ];

    /// The datapath's code.
    pub fn code(self) -> u8 {
        match self {
            Reason::Forwarded => 0,
            Reason::InvalidSource => 132,
            Reason::PolicyDenied => 133,
            Reason::InvalidPacket => 134,
            Reason::Fragment => 136,
            Reason::UnsupportedL3 => 139,
            Reason::MissedTailCall => 140,
            Reason::PolicyDeny => 181,
        }
    }

    /// The reason with datapath code `code`.
    pub fn from_code(code: u8) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// Cilium's name for it (`POLICY_DENIED`, …).
    pub fn name(self) -> &'static str {
        match self {
            Reason::Forwarded => "FORWARDED",
            Reason::InvalidSource => "INVALID_SOURCE_IP",
            Reason::PolicyDenied => "POLICY_DENIED",
            Reason::InvalidPacket => "INVALID_PACKET",
            Reason::Fragment => "FRAGMENT",
            Reason::UnsupportedL3 => "UNSUPPORTED_L3_PROTOCOL",
            Reason::MissedTailCall => "MISSED_TAIL_CALL",
            Reason::PolicyDeny => "POLICY_DENY",
        }
    }
}

/// `struct ipcache_key` without its prefix length.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq, Eq)]
pub struct IpcacheKey {
    /// 4 or 6.
    pub family: u32,
    /// The address; IPv4 as `::ffff:a.b.c.d`.
    pub addr: [u8; 16],
}

impl IpcacheKey {
    /// The key and trie prefix length of `cidr`.
    pub fn of(cidr: &Cidr) -> (IpcacheKey, u32) {
        let (family, addr, len) = match cidr.addr {
            IpAddr::V4(a) => (4, a.to_ipv6_mapped().octets(), 96 + cidr.len as u32),
            IpAddr::V6(a) => (6, a.octets(), cidr.len as u32),
        };
        (IpcacheKey { family, addr }, 32 + len)
    }

    /// The prefix back from a key read out of the trie.
    pub fn cidr(&self, prefix_len: u32) -> Option<Cidr> {
        let v6 = std::net::Ipv6Addr::from(self.addr);
        match self.family {
            4 => Cidr::new(IpAddr::V4(v6.to_ipv4_mapped()?), prefix_len.checked_sub(128)? as u8),
            6 => Cidr::new(IpAddr::V6(v6), prefix_len.checked_sub(32)? as u8),
            _ => None,
        }
    }
}

/// `struct ipcache_value`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq, Eq)]
pub struct IpcacheValue {
    /// The security identity of addresses under the prefix.
    pub identity: u32,
    /// The node to tunnel to (0: local or routed).
    pub tunnel_endpoint: u32,
    /// The encryption key index (0: none).
    pub encrypt_key: u8,
    /// Padding.
    pub pad: [u8; 3],
}

/// `struct policy_key` without its prefix length.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq, Eq)]
pub struct PolicyKeyData {
    /// Peer identity (0: any).
    pub identity: u32,
    /// 0 ingress, 1 egress.
    pub direction: u8,
    /// IP protocol.
    pub protocol: u8,
    /// Port or ICMP type, network byte order.
    pub port: [u8; 2],
}

/// `struct policy_entry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq, Eq)]
pub struct PolicyEntry {
    /// Packets that matched (counted by the datapath).
    pub packets: u64,
    /// L7 proxy port, network byte order.
    pub proxy_port: [u8; 2],
    /// 1 for deny.
    pub deny: u8,
    /// The entry's own prefix length (the datapath compares two matches by it).
    pub prefix_len: u8,
    /// Padding.
    pub pad: u32,
}

/// A resolved key in the trie's form.
pub fn encode_policy(key: &PolicyKey, value: &PolicyValue) -> (PolicyKeyData, u32, PolicyEntry) {
    let data = PolicyKeyData {
        identity: key.identity,
        direction: key.direction.raw(),
        protocol: key.protocol,
        port: key.port.to_be_bytes(),
    };
    let entry = PolicyEntry {
        packets: 0,
        proxy_port: value.proxy_port.to_be_bytes(),
        deny: value.deny as u8,
        prefix_len: key.prefix_len,
        pad: 0,
    };
    (data, key.prefix_len as u32, entry)
}

/// A trie entry back in resolved form (with its packet count).
pub fn decode_policy(data: &PolicyKeyData, prefix_len: u32, entry: &PolicyEntry) -> (PolicyKey, PolicyValue, u64) {
    let direction = if data.direction == 0 { Direction::Ingress } else { Direction::Egress };
    let key = PolicyKey::new(direction, data.identity, data.protocol, u16::from_be_bytes(data.port), prefix_len as u8);
    let value = PolicyValue { deny: entry.deny != 0, proxy_port: u16::from_be_bytes(entry.proxy_port) };
    (key, value, entry.packets)
}

/// `struct ct_key`: one connection as one endpoint saw its first packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq, Eq, Hash)]
pub struct CtKey {
    /// The endpoint.
    pub endpoint_id: u32,
    /// IP protocol.
    pub protocol: u8,
    /// Direction of the first packet (0 ingress, 1 egress).
    pub direction: u8,
    /// For an ICMP query (echo, timestamp, …) and its reply, the request's ICMP type; else 0.
    pub icmp_query: u8,
    /// Padding.
    pub pad: u8,
    /// Source address (IPv4 mapped).
    pub saddr: [u8; 16],
    /// Destination address.
    pub daddr: [u8; 16],
    /// Source port (network order), or an ICMP query's identifier.
    pub sport: [u8; 2],
    /// Destination port, or an ICMP query's identifier.
    pub dport: [u8; 2],
}

/// `struct ct_entry`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq, Eq)]
pub struct CtEntry {
    /// `bpf_ktime_get_ns` of the first packet.
    pub created: u64,
    /// Jiffies at the latest packet (cheaper to read than ktime on every packet).
    pub last_seen: u64,
    /// Packets in the first packet's direction (established IPv4 flows reach it from the
    /// per-CPU flow caches up to a quarter second late).
    pub packets: u64,
    /// Packets the other way (as late).
    pub reply_packets: u64,
    /// Identity of the side that opened the connection.
    pub src_identity: u32,
    /// Identity of the other side.
    pub dst_identity: u32,
    /// [`CT_CLOSING`] once a TCP FIN or RST was seen.
    pub flags: u32,
    /// Padding.
    pub pad: u32,
}

/// `CT_CLOSING`: the connection saw a TCP FIN or RST.
pub const CT_CLOSING: u32 = 1;

/// `struct verdict_count`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable, PartialEq, Eq)]
pub struct VerdictCount {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// The `verdicts` index of (direction, reason).
pub fn verdict_index(direction: Direction, reason: Reason) -> u32 {
    direction.raw() as u32 * 256 + reason.code() as u32
}

/// `FLOW_CACHE_BITS`: each endpoint's flow cache has 2^bits slots per CPU, a slot chosen by a
/// multiplicative hash of the IPv4 tuple.
pub const FLOW_CACHE_BITS: u32 = 10;
