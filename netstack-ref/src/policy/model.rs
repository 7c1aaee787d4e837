//! The policy semantics of the design note, read directly off the rules for one packet — no
//! identities numbers, no map keys, no prefixes, and no selector code of the resolver's (label
//! requirements and namespace scoping are read afresh here from Cilium's documentation). The
//! differential test holds the resolver plus the datapath to this.

use std::net::IpAddr;

use crate::identity::Labels;

use super::api::{Direction, Entity, PeerRule, Peers, Policy, Subject};
use super::selector::{LabelSelector, Operator};

/// Who is on the other end of a packet.
#[derive(Clone, Debug)]
pub enum Peer {
    /// A pod of this cluster, by its security labels.
    Pod(Labels),
    /// The local host.
    Host,
    /// An address outside the cluster.
    World(IpAddr),
}

/// The model's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed (by a rule, or because nothing puts the endpoint in default deny).
    Allowed,
    /// No allow rule matched while the endpoint is in default deny.
    NotAllowed,
    /// A deny rule matched.
    Denied,
}

/// One packet as policy sees it.
#[derive(Clone, Copy, Debug)]
pub struct Packet {
    /// Into (ingress) or out of (egress) the endpoint.
    pub direction: Direction,
    /// IP protocol number.
    pub protocol: u8,
    /// Destination port, or ICMP type.
    pub port: u16,
}

/// The verdict for a new flow of `endpoint` (security labels) with `peer`; `host_allowed`: the
/// host may always come in (`--allow-localhost=always`).
pub fn verdict(
    policies: &[Policy],
    endpoint: &Labels,
    peer: &Peer,
    packet: Packet,
    node_labels: &Labels,
    host_allowed: bool,
) -> Verdict {
    let selected: Vec<_> = policies
        .iter()
        .flat_map(|p| p.rules.iter().map(move |r| (p, r)))
        .filter(|(p, r)| match &r.subject {
            Subject::Endpoints(sel) => subject_requirements(p, sel).iter().all(|r| r.holds(endpoint)),
            Subject::Nodes(_) => false,
        })
        .collect();
    // Every fromRequires/toRequires of a rule selecting the endpoint, in the packet's direction.
    let mut requires: Vec<Vec<Req>> = Vec::new();
    for (policy, rule) in &selected {
        for (dir, rules, deny) in rule.sections() {
            if dir == packet.direction && !deny {
                for pr in rules {
                    requires.extend(pr.requires.iter().map(|s| peer_requirements(policy, s, false)));
                }
            }
        }
    }
    let mut allowed = false;
    for (policy, rule) in &selected {
        for (dir, rules, deny) in rule.sections() {
            if dir != packet.direction {
                continue;
            }
            for pr in rules {
                if !peer_matches(pr, policy, peer, node_labels) || !ports_match(pr, packet) {
                    continue;
                }
                if deny {
                    return Verdict::Denied;
                }
                let labels = peer_labels(peer);
                allowed |= requires.iter().all(|reqs| reqs.iter().all(|r| r.holds(&labels)));
            }
        }
    }
    let default_deny = selected.iter().any(|(_, r)| r.enables_default_deny(packet.direction));
    let host_in = host_allowed && packet.direction == Direction::Ingress && matches!(peer, Peer::Host);
    if allowed || !default_deny || host_in {
        Verdict::Allowed
    } else {
        Verdict::NotAllowed
    }
}

/// One label requirement, read off a selector afresh (the model shares no selector code with
/// the resolver).
#[derive(Clone, Debug)]
enum Req {
    Equals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Absent(String),
}

impl Req {
    fn holds(&self, labels: &Labels) -> bool {
        match self {
            Req::Equals(k, v) => labels.get(k) == Some(v.as_str()),
            Req::In(k, vs) => labels.get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            Req::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.iter().any(|x| x == v)),
            Req::Exists(k) => labels.get(k).is_some(),
            Req::Absent(k) => labels.get(k).is_none(),
        }
    }

    fn key(&self) -> &str {
        match self {
            Req::Equals(k, _) | Req::In(k, _) | Req::NotIn(k, _) | Req::Exists(k) | Req::Absent(k) => k,
        }
    }
}

const NS: &str = "io.kubernetes.pod.namespace";

fn requirements(sel: &LabelSelector) -> Vec<Req> {
    let mut out: Vec<Req> = sel.match_labels.iter().map(|(k, v)| Req::Equals(k.clone(), v.clone())).collect();
    for e in &sel.match_expressions {
        out.push(match e.operator {
            Operator::In => Req::In(e.key.clone(), e.values.clone()),
            Operator::NotIn => Req::NotIn(e.key.clone(), e.values.clone()),
            Operator::Exists => Req::Exists(e.key.clone()),
            Operator::DoesNotExist => Req::Absent(e.key.clone()),
        });
    }
    out
}

/// Cilium docs (policy/kubernetes.rst): "The endpointSelector always applies to pods in the
/// namespace associated with the CiliumNetworkPolicy resource itself".
fn subject_requirements(policy: &Policy, sel: &LabelSelector) -> Vec<Req> {
    let mut reqs = requirements(sel);
    if let Some(ns) = &policy.namespace {
        reqs.retain(|r| !matches!(r, Req::Equals(k, _) if k == NS));
        reqs.push(Req::Equals(NS.into(), ns.clone()));
    }
    reqs
}

/// A peer (or, with `reserved_exempt` false, a requirement) selector of `policy`: no namespace
/// named means the policy's own (a CNP; namespace labels count as naming one), or any pod's (a
/// CCNP: pods only, so a namespace label must be present).
fn peer_requirements(policy: &Policy, sel: &LabelSelector, reserved_exempt: bool) -> Vec<Req> {
    let mut reqs = requirements(sel);
    if reserved_exempt && reqs.iter().any(|r| r.key().starts_with("reserved:")) {
        return reqs;
    }
    if reqs.iter().any(|r| r.key() == NS) {
        return reqs;
    }
    match &policy.namespace {
        Some(_) if reqs.iter().any(|r| r.key().starts_with("io.cilium.k8s.namespace.labels.")) => {}
        Some(ns) => reqs.push(Req::Equals(NS.into(), ns.clone())),
        None => reqs.push(Req::Exists(NS.into())),
    }
    reqs
}

fn peer_labels(peer: &Peer) -> Labels {
    match peer {
        Peer::Pod(labels) => labels.clone(),
        Peer::Host => Labels::from_pairs([("reserved:host", "")]),
        Peer::World(addr) => {
            let family = if addr.is_ipv4() { "reserved:world-ipv4" } else { "reserved:world-ipv6" };
            Labels::from_pairs([("reserved:world", ""), (family, "")])
        }
    }
}

fn peer_matches(rule: &PeerRule, policy: &Policy, peer: &Peer, node_labels: &Labels) -> bool {
    match &rule.peers {
        Peers::Unspecified => !rule.to_ports.is_empty() || !rule.icmps.is_empty(),
        Peers::Endpoints(sels) => sels.iter().any(|s| {
            let reqs = peer_requirements(policy, s, true);
            // Reserved peers (host, world) are selected only by a selector that asks for one of
            // their `reserved:` labels.
            let asks_reserved = reqs.iter().any(|r| r.key().starts_with("reserved:") && !matches!(r, Req::Absent(_)));
            (matches!(peer, Peer::Pod(_)) || asks_reserved) && reqs.iter().all(|r| r.holds(&peer_labels(peer)))
        }),
        Peers::Nodes(sels) => {
            matches!(peer, Peer::Host) && sels.iter().any(|s| requirements(s).iter().all(|r| r.holds(node_labels)))
        }
        Peers::Cidrs(cidrs) => match peer {
            Peer::World(addr) => {
                cidrs.iter().any(|c| c.cidr.contains(*addr) && !c.except.iter().any(|x| x.contains(*addr)))
            }
            _ => false,
        },
        Peers::Entities(entities) => entities.iter().any(|e| entity_matches(*e, peer)),
        Peers::Services(_) | Peers::Fqdns(_) => false,
    }
}

fn entity_matches(entity: Entity, peer: &Peer) -> bool {
    match (entity, peer) {
        (Entity::All, _) => true,
        (Entity::World, Peer::World(_)) => true,
        (Entity::WorldIpv4, Peer::World(a)) => a.is_ipv4(),
        (Entity::WorldIpv6, Peer::World(a)) => a.is_ipv6(),
        (Entity::Cluster, Peer::Pod(_) | Peer::Host) => true,
        (Entity::Host, Peer::Host) => true,
        _ => false,
    }
}

fn ports_match(rule: &PeerRule, packet: Packet) -> bool {
    if rule.to_ports.is_empty() && rule.icmps.is_empty() {
        return true;
    }
    let is_icmp = packet.protocol == 1 || packet.protocol == 58;
    let by_ports = rule.to_ports.iter().any(|pr| {
        if pr.ports.is_empty() {
            return matches!(packet.protocol, 6 | 17 | 132);
        }
        pr.ports.iter().any(|pp| {
            pp.protocol.numbers().contains(&packet.protocol)
                && (pp.port == 0 || (pp.port..=pp.end_port.unwrap_or(pp.port)).contains(&packet.port))
        })
    });
    let by_icmp =
        is_icmp && rule.icmps.iter().any(|i| (i.ipv6 == (packet.protocol == 58)) && i.icmp_type as u16 == packet.port);
    by_ports || by_icmp
}
