//! The policy language as decoded from CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy
//! YAML: plain data, each piece with the line it came from.

use std::net::IpAddr;

use super::selector::LabelSelector;

/// Where a piece of policy came from, for errors raised after decoding.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Origin {
    /// 1-based line in the file.
    pub line: usize,
    /// Field path in the document.
    pub field: String,
}

/// A CiliumNetworkPolicy (namespaced) or CiliumClusterwideNetworkPolicy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// `metadata.name`.
    pub name: String,
    /// The namespace of a CiliumNetworkPolicy; `None` for a clusterwide policy.
    pub namespace: Option<String>,
    /// `spec` and `specs`, in order.
    pub rules: Vec<Rule>,
}

impl Policy {
    /// `namespace/name` or `name` for a clusterwide policy.
    pub fn key(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }

    /// Every prefix the policy names (`cidr` and `except`): each gets a CIDR identity.
    pub fn cidrs(&self) -> Vec<Cidr> {
        let mut out = Vec::new();
        for rule in &self.rules {
            for (_, peers, _) in rule.sections() {
                for peer in peers {
                    if let Peers::Cidrs(list) = &peer.peers {
                        for c in list {
                            out.push(c.cidr);
                            out.extend(c.except.iter().copied());
                        }
                    }
                }
            }
        }
        out
    }

    /// Fields that decode and validate but are not enforced yet (host policies, `toFQDNs`,
    /// `toServices`, L7 rules). Applying a policy that uses one is an error naming it.
    pub fn unenforced(&self) -> Vec<(Origin, &'static str)> {
        let mut out = Vec::new();
        for rule in &self.rules {
            if let Subject::Nodes(_) = rule.subject {
                out.push((rule.subject_origin.clone(), "host policies (nodeSelector)"));
            }
            for section in rule.sections() {
                for peer in section.1 {
                    match &peer.peers {
                        // An empty toServices selects nothing, which is enforced as it is.
                        Peers::Services(list) if !list.is_empty() => out.push((peer.origin.clone(), "toServices")),
                        Peers::Fqdns(_) => out.push((peer.origin.clone(), "toFQDNs")),
                        _ => {}
                    }
                    for ports in &peer.to_ports {
                        if !ports.l7.is_empty() {
                            out.push((ports.origin.clone(), "L7 rules"));
                        }
                    }
                }
            }
        }
        out
    }
}

/// Whom a rule applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// `endpointSelector`: pods.
    Endpoints(LabelSelector),
    /// `nodeSelector`: the node itself (host policy; clusterwide only).
    Nodes(LabelSelector),
}

/// Ingress or egress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Traffic into the endpoint.
    Ingress,
    /// Traffic out of the endpoint.
    Egress,
}

impl Direction {
    /// Both directions.
    pub const BOTH: [Direction; 2] = [Direction::Ingress, Direction::Egress];
}

/// One rule of a policy's `spec`/`specs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// `endpointSelector` or `nodeSelector`.
    pub subject: Subject,
    /// Where the subject was given.
    pub subject_origin: Origin,
    /// `ingress`, when the field is present (an empty list is absent, as in Cilium).
    pub ingress: Vec<PeerRule>,
    /// `ingressDeny`.
    pub ingress_deny: Vec<PeerRule>,
    /// `egress`.
    pub egress: Vec<PeerRule>,
    /// `egressDeny`.
    pub egress_deny: Vec<PeerRule>,
    /// `enableDefaultDeny.ingress` (`None`: not given, which means true).
    pub default_deny_ingress: Option<bool>,
    /// `enableDefaultDeny.egress`.
    pub default_deny_egress: Option<bool>,
    /// `description`.
    pub description: Option<String>,
}

impl Rule {
    /// The four sections as (direction, rules, is deny).
    pub fn sections(&self) -> [(Direction, &[PeerRule], bool); 4] {
        [
            (Direction::Ingress, &self.ingress, false),
            (Direction::Ingress, &self.ingress_deny, true),
            (Direction::Egress, &self.egress, false),
            (Direction::Egress, &self.egress_deny, true),
        ]
    }

    /// Whether this rule puts the endpoints it selects into default deny in `direction`.
    pub fn enables_default_deny(&self, direction: Direction) -> bool {
        let (allow, deny, flag) = match direction {
            Direction::Ingress => (&self.ingress, &self.ingress_deny, self.default_deny_ingress),
            Direction::Egress => (&self.egress, &self.egress_deny, self.default_deny_egress),
        };
        (!allow.is_empty() || !deny.is_empty()) && flag != Some(false)
    }
}

/// One element of `ingress`/`egress`/`ingressDeny`/`egressDeny`: peers, then ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRule {
    /// The L3 peers (at most one kind per rule).
    pub peers: Peers,
    /// `fromRequires`/`toRequires`: every peer of this endpoint in this direction must also
    /// match these.
    pub requires: Vec<LabelSelector>,
    /// `toPorts`; empty means any port and protocol.
    pub to_ports: Vec<PortRule>,
    /// `icmps`: ICMP types allowed (alternatives to `toPorts`).
    pub icmps: Vec<IcmpType>,
    /// Where the rule was given.
    pub origin: Origin,
}

/// The L3 part of a peer rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peers {
    /// No L3 field: any peer when ports are given, nobody for an empty rule `{}`.
    Unspecified,
    /// `from/toEndpoints`.
    Endpoints(Vec<LabelSelector>),
    /// `from/toNodes`.
    Nodes(Vec<LabelSelector>),
    /// `from/toCIDR` and `from/toCIDRSet`.
    Cidrs(Vec<CidrRule>),
    /// `from/toEntities`.
    Entities(Vec<Entity>),
    /// `toServices` (validated; not enforced yet).
    Services(Vec<ServiceSelector>),
    /// `toFQDNs` (validated; not enforced yet).
    Fqdns(Vec<FqdnSelector>),
}

/// A prefix with optional exceptions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrRule {
    /// The prefix.
    pub cidr: Cidr,
    /// Sub-prefixes left out.
    pub except: Vec<Cidr>,
}

/// An IP prefix, stored with its host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    /// The network address.
    pub addr: IpAddr,
    /// The prefix length.
    pub len: u8,
}

impl Cidr {
    /// `addr/len` with host bits cleared; `None` when `len` is too long for the family.
    pub fn new(addr: IpAddr, len: u8) -> Option<Cidr> {
        let bits: u32 = if addr.is_ipv4() { 32 } else { 128 };
        if len as u32 > bits {
            return None;
        }
        let value = addr_bits(addr) & prefix_mask(len, bits);
        Some(Cidr { addr: bits_addr(value, addr.is_ipv4()), len })
    }

    /// Parses `a.b.c.d/n` or `x::y/n`; a bare address is a host prefix.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let len = len.unwrap_or(if addr.is_ipv4() { 32 } else { 128 });
        Cidr::new(addr, len)
    }

    /// Whether `addr` lies in the prefix.
    pub fn contains(&self, addr: IpAddr) -> bool {
        if addr.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        addr_bits(addr) & prefix_mask(self.len, bits) == addr_bits(self.addr)
    }

    /// Whether `other` lies wholly in this prefix.
    pub fn covers(&self, other: &Cidr) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn addr_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn bits_addr(value: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4((value as u32).into())
    } else {
        IpAddr::V6(value.into())
    }
}

/// The first `len` of `bits` bits set (`len` ≤ `bits`; a full-length IPv6 prefix shifts by 128,
/// which `>>` would overflow).
fn prefix_mask(len: u8, bits: u32) -> u128 {
    let all = if bits == 32 { u32::MAX as u128 } else { u128::MAX };
    all & !all.checked_shr(len as u32).unwrap_or(0)
}

/// Policy entities (`toEntities`/`fromEntities`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Entity {
    /// Every peer.
    All,
    /// Outside the cluster (and every CIDR identity).
    World,
    /// IPv4 outside the cluster.
    WorldIpv4,
    /// IPv6 outside the cluster.
    WorldIpv6,
    /// Every endpoint of the cluster, the host, remote nodes, health, init and unmanaged.
    Cluster,
    /// The local host.
    Host,
    /// Other nodes.
    RemoteNode,
    /// Health endpoints.
    Health,
    /// Endpoints whose identity is not resolved yet.
    Init,
    /// Endpoints the agent does not manage.
    Unmanaged,
    /// The Kubernetes API server.
    KubeApiserver,
    /// The ingress proxy.
    Ingress,
}

impl Entity {
    /// Every entity with its YAML name.
    pub const NAMES: [(&'static str, Entity); 12] = [
        ("all", Entity::All),
        ("world", Entity::World),
        ("world-ipv4", Entity::WorldIpv4),
        ("world-ipv6", Entity::WorldIpv6),
        ("cluster", Entity::Cluster),
        ("host", Entity::Host),
        ("remote-node", Entity::RemoteNode),
        ("health", Entity::Health),
        ("init", Entity::Init),
        ("unmanaged", Entity::Unmanaged),
        ("kube-apiserver", Entity::KubeApiserver),
        ("ingress", Entity::Ingress),
    ];
}

/// `toServices[]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceSelector {
    /// `k8sService: {serviceName, namespace}`.
    Named {
        /// Service name.
        name: String,
        /// Its namespace, if given.
        namespace: Option<String>,
    },
    /// `k8sServiceSelector: {selector, namespace}`.
    Selected {
        /// Label selector over services.
        selector: LabelSelector,
        /// Its namespace, if given.
        namespace: Option<String>,
    },
}

/// `toFQDNs[]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FqdnSelector {
    /// `matchName`.
    Name(String),
    /// `matchPattern` (`*` wildcards).
    Pattern(String),
}

/// L4 protocols of port rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// SCTP (132).
    Sctp,
    /// ICMP (1), every type (`icmps` names types).
    Icmp,
    /// ICMPv6 (58), every type.
    Icmpv6,
    /// TCP, UDP and SCTP.
    Any,
    /// VRRP (112): no ports.
    Vrrp,
    /// IGMP (2): no ports.
    Igmp,
}

impl Protocol {
    /// Its name in policy YAML.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
            Protocol::Icmp => "ICMP",
            Protocol::Icmpv6 => "ICMPv6",
            Protocol::Any => "ANY",
            Protocol::Vrrp => "VRRP",
            Protocol::Igmp => "IGMP",
        }
    }

    /// IP protocol numbers this protocol covers.
    pub fn numbers(self) -> &'static [u8] {
        match self {
            Protocol::Tcp => &[6],
            Protocol::Udp => &[17],
            Protocol::Sctp => &[132],
            Protocol::Icmp => &[1],
            Protocol::Icmpv6 => &[58],
            Protocol::Any => &[6, 17, 132],
            Protocol::Vrrp => &[112],
            Protocol::Igmp => &[2],
        }
    }
}

/// `toPorts[]`: ports, and the L7 rules for them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRule {
    /// `ports[]`; empty means every port of TCP, UDP and SCTP.
    pub ports: Vec<PortProtocol>,
    /// `rules` (L7): validated, not enforced yet.
    pub l7: Vec<L7Rule>,
    /// Where the port rule was given.
    pub origin: Origin,
}

/// One `ports[]` element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortProtocol {
    /// First port; 0 means every port.
    pub port: u16,
    /// Last port of a range (`endPort`), inclusive.
    pub end_port: Option<u16>,
    /// The protocol.
    pub protocol: Protocol,
}

/// `icmps[].fields[]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpType {
    /// IPv6 (ICMPv6) rather than IPv4.
    pub ipv6: bool,
    /// The ICMP type.
    pub icmp_type: u8,
}

/// L7 rules under a port rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L7Rule {
    /// `rules.http[]`.
    Http {
        /// Method regex.
        method: Option<String>,
        /// Path regex.
        path: Option<String>,
        /// Host regex.
        host: Option<String>,
        /// Required headers.
        headers: Vec<String>,
    },
    /// `rules.dns[]`.
    Dns(FqdnSelector),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every prefix length of either family is a prefix: it contains its own address and
        /// covers its longer prefixes (a /128 once overflowed the mask's shift).
        #[test]
        fn every_length_of_both_families_is_a_prefix(v4 in any::<u32>(), v6 in any::<u128>(), len in 0u8..=128) {
            for (addr, bits) in [(IpAddr::V4(v4.into()), 32u8), (IpAddr::V6(v6.into()), 128)] {
                let len = len.min(bits);
                let c = Cidr::new(addr, len).expect("valid length");
                prop_assert!(c.contains(addr));
                prop_assert!(c.covers(&Cidr::new(addr, bits).unwrap()));
                prop_assert_eq!(Cidr::new(addr, bits).unwrap().addr, addr);
                prop_assert!(Cidr::new(addr, bits + 1).is_none());
            }
        }
    }
}
