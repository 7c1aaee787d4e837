//! The policy semantics of the design note, read directly off the rules for one packet — no
//! identities numbers, no map keys, no prefixes. The differential test holds the resolver plus
//! the datapath to this.

use std::net::IpAddr;

use crate::identity::Labels;

use super::api::{Direction, Entity, PeerRule, Peers, Policy};
use super::resolve::selects;

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

/// The verdict for a new flow of `endpoint` (security labels) with `peer`.
pub fn verdict(policies: &[Policy], endpoint: &Labels, peer: &Peer, packet: Packet, node_labels: &Labels) -> Verdict {
    let selected: Vec<_> = policies
        .iter()
        .flat_map(|p| p.rules.iter().map(move |r| (p, r)))
        .filter(|(p, r)| selects(p, r, endpoint))
        .collect();
    let mut allowed = false;
    let mut requires = Vec::new();
    for (policy, rule) in &selected {
        for (dir, rules, deny) in rule.sections() {
            if dir == packet.direction && !deny {
                for pr in rules {
                    requires.extend(pr.requires.iter().map(|s| match &policy.namespace {
                        Some(ns) => s.in_namespace(ns),
                        None => s.clone(),
                    }));
                }
            }
        }
    }
    for (policy, rule) in &selected {
        for (dir, rules, deny) in rule.sections() {
            if dir != packet.direction {
                continue;
            }
            for pr in rules {
                if !peer_matches(pr, policy.namespace.as_deref(), peer, node_labels) || !ports_match(pr, packet) {
                    continue;
                }
                if deny {
                    return Verdict::Denied;
                }
                let meets_requires = requires.is_empty() || requires.iter().all(|s| s.matches(&peer_labels(peer)));
                allowed |= meets_requires;
            }
        }
    }
    let default_deny = selected.iter().any(|(_, r)| r.enables_default_deny(packet.direction));
    if allowed || !default_deny {
        Verdict::Allowed
    } else {
        Verdict::NotAllowed
    }
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

fn peer_matches(rule: &PeerRule, namespace: Option<&str>, peer: &Peer, node_labels: &Labels) -> bool {
    match &rule.peers {
        Peers::Unspecified => !rule.to_ports.is_empty() || !rule.icmps.is_empty(),
        Peers::Endpoints(sels) => sels.iter().any(|s| {
            let s = match namespace {
                Some(ns) => s.in_namespace(ns),
                None => s.clone(),
            };
            match peer {
                Peer::Pod(labels) => s.matches(labels),
                _ => s.names_reserved() && s.matches(&peer_labels(peer)),
            }
        }),
        Peers::Nodes(sels) => matches!(peer, Peer::Host) && sels.iter().any(|s| s.matches(node_labels)),
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
