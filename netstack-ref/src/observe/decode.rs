//! Flow events from the datapath (`struct flow_event`, `bpf-programs/netstack/abi.h`) into
//! Hubble flows, enriched from what the agent knows: an address's pod and identity, an
//! identity's labels, a frontend's service, the node's name.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::flow::{
    drop_reason_name, CiliumEventType, Endpoint, Flow, FlowType, Icmp, Ip, Layer4, NetworkInterface, Ports, Service,
    SocketTranslationPoint, Tcp, TcpFlags, TraceObservationPoint, TrafficDirection, Verdict,
};
use super::time::rfc3339;
use crate::datapath::abi::{event_flags, event_kind, flow_event, sock_trace, sock_xlate_point, trace_point};
use crate::policy::api::Cidr;

/// A pod as flows name it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// Its endpoint id, on this node.
    pub endpoint_id: Option<u32>,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Security identity.
    pub identity: u32,
}

/// What the agent knows to enrich flows with (a snapshot, replaced after every sync).
#[derive(Clone, Debug, Default)]
pub struct Enrichment {
    /// This node.
    pub node_name: String,
    /// Wall-clock nanoseconds minus boot-clock nanoseconds (events carry the boot clock).
    pub boot_to_wall: i128,
    /// Pods by address (this node's and, in a cluster, the others').
    pub pods: BTreeMap<IpAddr, PodInfo>,
    /// Identities' labels (`source:key=value`).
    pub labels: BTreeMap<u32, std::sync::Arc<[String]>>,
    /// The ipcache: prefixes and identities (for addresses that are not pods).
    pub ipcache: Vec<(Cidr, u32)>,
    /// Service frontends: (address, port, protocol number) → (namespace, name).
    pub services: BTreeMap<(IpAddr, u16, u8), (String, String)>,
    /// Interface names by index.
    pub interfaces: BTreeMap<u32, String>,
    /// Network namespaces by cookie (what socket translations name a socket's pod by): a
    /// pod's address, or `None` for the node's own namespace.
    pub netns: BTreeMap<u64, Option<IpAddr>>,
}

/// Why an event is not a flow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the event header.
    #[error("flow event of {0} bytes is shorter than its header")]
    Short(usize),
    /// A kind the decoder does not know.
    #[error("flow event of unknown kind {0}")]
    UnknownKind(u8),
}

/// The L3/L4 facts of a captured packet (Ethernet first).
#[derive(Default)]
struct Packet {
    ip: Option<(IpAddr, IpAddr)>,
    protocol: u8,
    l4: Option<Layer4>,
}

fn parse_packet(data: &[u8]) -> Packet {
    let mut out = Packet::default();
    let Some(ethertype) = data.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]])) else { return out };
    let l3 = &data[14..];
    let (l4, protocol) = match ethertype {
        0x0800 if l3.len() >= 20 => {
            let ihl = usize::from(l3[0] & 0x0f) * 4;
            let src = Ipv4Addr::new(l3[12], l3[13], l3[14], l3[15]);
            let dst = Ipv4Addr::new(l3[16], l3[17], l3[18], l3[19]);
            out.ip = Some((src.into(), dst.into()));
            let fragment = u16::from_be_bytes([l3[6], l3[7]]) & 0x1fff != 0;
            (if fragment { &[][..] } else { l3.get(ihl.max(20)..).unwrap_or(&[]) }, l3[9])
        }
        0x86dd if l3.len() >= 40 => {
            let addr = |at: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&l3[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            };
            out.ip = Some((addr(8), addr(24)));
            (&l3[40..], l3[6])
        }
        _ => return out,
    };
    out.protocol = protocol;
    let port = |at: usize| l4.get(at..at + 2).map(|b| u32::from(u16::from_be_bytes([b[0], b[1]])));
    out.l4 = match protocol {
        6 => Some(Layer4::TCP(Tcp {
            source_port: port(0).unwrap_or(0),
            destination_port: port(2).unwrap_or(0),
            flags: l4.get(13).map(|f| TcpFlags::from_bits(*f, l4.get(12).is_some_and(|b| b & 1 != 0))),
        })),
        17 => Some(Layer4::UDP(Ports { source_port: port(0).unwrap_or(0), destination_port: port(2).unwrap_or(0) })),
        132 => Some(Layer4::SCTP(Ports { source_port: port(0).unwrap_or(0), destination_port: port(2).unwrap_or(0) })),
        1 => l4.get(0..2).map(|b| Layer4::ICMPv4(Icmp { kind: u32::from(b[0]), code: u32::from(b[1]) })),
        58 => l4.get(0..2).map(|b| Layer4::ICMPv6(Icmp { kind: u32::from(b[0]), code: u32::from(b[1]) })),
        _ => None,
    };
    out
}

impl Enrichment {
    /// The identity of `address`: its pod's, else the longest ipcache prefix's.
    fn identity_of(&self, address: IpAddr) -> u32 {
        if let Some(pod) = self.pods.get(&address) {
            return pod.identity;
        }
        self.ipcache.iter().filter(|(c, _)| c.contains(address)).max_by_key(|(c, _)| c.len).map_or(0, |(_, id)| *id)
    }

    fn endpoint(&self, address: Option<IpAddr>, identity: u32) -> Endpoint {
        let pod = address.and_then(|a| self.pods.get(&a));
        let identity = match (identity, pod, address) {
            (0, Some(p), _) => p.identity,
            (0, None, Some(a)) => self.identity_of(a),
            (id, _, _) => id,
        };
        Endpoint {
            id: pod.and_then(|p| p.endpoint_id).unwrap_or(0),
            identity,
            namespace: pod.map(|p| p.namespace.clone()).unwrap_or_default(),
            labels: self.labels.get(&identity).cloned().unwrap_or_default(),
            pod_name: pod.map(|p| p.name.clone()).unwrap_or_default(),
        }
    }

    fn service(&self, address: Option<IpAddr>, port: Option<u32>, protocol: u8) -> Option<Service> {
        let (a, p) = (address?, u16::try_from(port?).ok()?);
        self.services
            .get(&(a, p, protocol))
            .map(|(namespace, name)| Service { name: name.clone(), namespace: namespace.clone() })
    }

    /// The flow of one event's bytes.
    pub fn decode(&self, bytes: &[u8]) -> Result<Flow, DecodeError> {
        let header = std::mem::size_of::<flow_event>() - std::mem::size_of::<[u8; 128]>();
        if bytes.len() < header {
            return Err(DecodeError::Short(bytes.len()));
        }
        let mut padded = [0u8; std::mem::size_of::<flow_event>()];
        let n = bytes.len().min(padded.len());
        padded[..n].copy_from_slice(&bytes[..n]);
        let ev: flow_event = bytemuck::pod_read_unaligned(&padded);
        let captured = &ev.data[..(ev.cap_len as usize).min(ev.data.len())];
        let packet = parse_packet(captured);
        let reply = ev.flags & event_flags::EVENT_FLAG_REPLY.0 as u8 != 0;
        let denied = ev.flags & event_flags::EVENT_FLAG_DENIED.0 as u8 != 0;
        let kind = u32::from(ev.kind);
        let time = rfc3339(i128::from(ev.ktime) + self.boot_to_wall);
        if kind == event_kind::EVENT_TRACE_SOCK.0 {
            return Ok(self.socket_translation(&ev, time));
        }
        let (verdict, drop_reason) = if kind == event_kind::EVENT_DROP.0 {
            (Verdict::DROPPED, u32::from(ev.subtype))
        } else if kind == event_kind::EVENT_POLICY_VERDICT.0 {
            (if denied { Verdict::DROPPED } else { Verdict::FORWARDED }, if denied { u32::from(ev.subtype) } else { 0 })
        } else if kind == event_kind::EVENT_TRACE.0 {
            (Verdict::FORWARDED, 0)
        } else {
            return Err(DecodeError::UnknownKind(ev.kind));
        };
        let point = match u32::from(ev.subtype) {
            _ if kind != event_kind::EVENT_TRACE.0 => TraceObservationPoint::UNKNOWN_POINT,
            p if p == trace_point::TRACE_TO_ENDPOINT.0 => TraceObservationPoint::TO_ENDPOINT,
            p if p == trace_point::TRACE_FROM_ENDPOINT.0 => TraceObservationPoint::FROM_ENDPOINT,
            p if p == trace_point::TRACE_TO_OVERLAY.0 => TraceObservationPoint::TO_OVERLAY,
            p if p == trace_point::TRACE_FROM_OVERLAY.0 => TraceObservationPoint::FROM_OVERLAY,
            p if p == trace_point::TRACE_FROM_NETWORK.0 => TraceObservationPoint::FROM_NETWORK,
            _ => TraceObservationPoint::UNKNOWN_POINT,
        };
        let (src, dst) = packet.ip.unzip();
        let ports = packet.l4.as_ref().and_then(Layer4::ports);
        Ok(Flow {
            time: time.clone(),
            verdict,
            drop_reason,
            ip: packet.ip.map(|(s, d)| Ip {
                source: address_text(s),
                destination: address_text(d),
                ip_version: if s.is_ipv4() { "IPv4" } else { "IPv6" }.into(),
                encrypted: false,
            }),
            source: Some(self.endpoint(src, ev.src_identity)),
            destination: Some(self.endpoint(dst, ev.dst_identity)),
            source_service: self.service(src, ports.map(|p| p.0), packet.protocol),
            destination_service: self.service(dst, ports.map(|p| p.1), packet.protocol),
            l4: packet.l4,
            flow_type: FlowType::L3_L4,
            node_name: self.node_name.clone(),
            event_type: CiliumEventType { kind: i32::from(ev.kind), sub_type: i32::from(ev.subtype) },
            traffic_direction: if ev.direction == 0 { TrafficDirection::INGRESS } else { TrafficDirection::EGRESS },
            policy_match_type: if kind == event_kind::EVENT_POLICY_VERDICT.0 { u32::from(ev.r#match) } else { 0 },
            trace_observation_point: point,
            drop_reason_desc: (drop_reason != 0)
                .then(|| drop_reason_name(drop_reason).unwrap_or("DROP_REASON_UNKNOWN").to_owned()),
            is_reply: Some(reply),
            interface: (ev.ifindex != 0).then(|| NetworkInterface {
                index: ev.ifindex,
                name: self.interfaces.get(&ev.ifindex).cloned().unwrap_or_default(),
            }),
            ..Default::default()
        })
    }
}

/// An address as text; IPv4 by hand (the collector writes two per event, and `Display` goes
/// through the formatting machinery).
fn address_text(address: IpAddr) -> String {
    let IpAddr::V4(v4) = address else { return address.to_string() };
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
    out
}

impl Enrichment {
    /// A socket load balancer's translation: the socket's pod (by its namespace's cookie) to
    /// the backend it now goes to (or, reversed, the frontend it is shown again), with the
    /// frontend's service.
    fn socket_translation(&self, ev: &flow_event, time: String) -> Flow {
        let mut bytes = [0u8; std::mem::size_of::<sock_trace>()];
        let n = (ev.cap_len as usize).min(bytes.len());
        bytes[..n].copy_from_slice(&ev.data[..n]);
        let trace: sock_trace = bytemuck::pod_read_unaligned(&bytes);
        let address = |raw: u32| IpAddr::V4(Ipv4Addr::from(raw.to_ne_bytes()));
        let port = |raw: u16| u32::from(u16::from_be(raw));
        let (frontend, backend) = (address(trace.frontend_address), address(trace.backend_address));
        let reverse = u32::from(ev.subtype) == sock_xlate_point::SOCK_XLATE_POST_DIRECTION_REV.0;
        let (destination, destination_port) =
            if reverse { (frontend, port(trace.frontend_port)) } else { (backend, port(trace.backend_port)) };
        let source = match self.netns.get(&trace.netns_cookie) {
            Some(Some(pod)) => self.endpoint(Some(*pod), 0),
            // The node's own sockets: the host identity.
            Some(None) => self.endpoint(None, 1),
            None => Endpoint::default(),
        };
        let l4 = match trace.protocol {
            6 => Some(Layer4::TCP(Tcp { source_port: 0, destination_port, flags: None })),
            17 => Some(Layer4::UDP(Ports { source_port: 0, destination_port })),
            132 => Some(Layer4::SCTP(Ports { source_port: 0, destination_port })),
            _ => None,
        };
        let source_ip = match self.netns.get(&trace.netns_cookie) {
            Some(Some(pod)) => pod.to_string(),
            _ => String::new(),
        };
        Flow {
            time,
            verdict: Verdict::TRANSLATED,
            ip: Some(Ip {
                source: source_ip,
                destination: destination.to_string(),
                ip_version: "IPv4".into(),
                encrypted: false,
            }),
            l4,
            source: Some(source),
            destination: Some(self.endpoint(Some(destination), 0)),
            destination_service: self.service(Some(frontend), Some(port(trace.frontend_port)), trace.protocol),
            flow_type: FlowType::SOCK,
            node_name: self.node_name.clone(),
            event_type: CiliumEventType { kind: i32::from(ev.kind), sub_type: i32::from(ev.subtype) },
            traffic_direction: TrafficDirection::EGRESS,
            is_reply: Some(reverse),
            sock_xlate_point: if reverse {
                SocketTranslationPoint::SOCK_XLATE_POINT_POST_DIRECTION_REV
            } else {
                SocketTranslationPoint::SOCK_XLATE_POINT_POST_DIRECTION_FWD
            },
            socket_cookie: trace.socket_cookie.to_string(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event as the datapath writes it: a TCP SYN from 10.200.1.3:40000 to 10.200.3.2:5432.
    fn event(kind: u32, subtype: u8, flags: u8) -> Vec<u8> {
        let mut ev = flow_event {
            ktime: 1_000_000_000,
            kind: kind as u8,
            subtype,
            flags,
            r#match: 2,
            endpoint_id: 7,
            dst_identity: 258,
            ifindex: 12,
            ..Default::default()
        };
        let mut packet = vec![0u8; 12];
        packet.extend([0x08, 0x00, 0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 200, 1, 3, 10, 200, 3, 2]);
        packet.extend(40000u16.to_be_bytes());
        packet.extend(5432u16.to_be_bytes());
        packet.extend([0; 8]);
        packet.extend([0x50, 0x02, 0, 0, 0, 0, 0, 0]);
        ev.orig_len = packet.len() as u32;
        ev.cap_len = packet.len() as u32;
        ev.data[..packet.len()].copy_from_slice(&packet);
        bytemuck::bytes_of(&ev).to_vec()
    }

    fn enrichment() -> Enrichment {
        let pod = |id, ns: &str, name: &str, identity| PodInfo {
            endpoint_id: id,
            namespace: ns.into(),
            name: name.into(),
            identity,
        };
        Enrichment {
            node_name: "node3".into(),
            boot_to_wall: 1_764_907_200_000_000_000,
            pods: [
                ("10.200.1.3".parse().unwrap(), pod(None, "shop", "frontend", 259)),
                ("10.200.3.2".parse().unwrap(), pod(Some(7), "shop", "db", 258)),
            ]
            .into(),
            labels: [(259, vec!["k8s:app=frontend".to_owned()].into()), (258, vec!["k8s:app=db".to_owned()].into())]
                .into(),
            interfaces: [(12, "lxc7".into())].into(),
            netns: [(77, Some("10.200.1.3".parse().unwrap())), (1, None)].into(),
            services: [(("10.96.0.5".parse().unwrap(), 5432, 6), ("shop".into(), "db".into()))].into(),
            ..Default::default()
        }
    }

    /// A socket translation event: the socket of netns `netns` sent from 10.96.0.5:5432 to
    /// 10.200.3.2:15432.
    fn translation(netns: u64, point: u32) -> Vec<u8> {
        let trace = sock_trace {
            socket_cookie: 4242,
            netns_cookie: netns,
            frontend_address: u32::from_ne_bytes([10, 96, 0, 5]),
            backend_address: u32::from_ne_bytes([10, 200, 3, 2]),
            frontend_port: 5432u16.to_be(),
            backend_port: 15432u16.to_be(),
            protocol: 6,
            ..Default::default()
        };
        let mut ev = flow_event {
            ktime: 1_000_000_000,
            kind: event_kind::EVENT_TRACE_SOCK.0 as u8,
            subtype: point as u8,
            cap_len: std::mem::size_of::<sock_trace>() as u32,
            ..Default::default()
        };
        ev.data[..std::mem::size_of::<sock_trace>()].copy_from_slice(bytemuck::bytes_of(&trace));
        bytemuck::bytes_of(&ev).to_vec()
    }

    proptest::proptest! {
        #[test]
        fn addresses_read_as_display_writes_them(octets in proptest::prelude::any::<[u8; 4]>()) {
            let address = IpAddr::V4(Ipv4Addr::from(octets));
            proptest::prop_assert_eq!(address_text(address), address.to_string());
        }
    }

    #[test]
    fn a_socket_translation_names_the_pod_the_backend_and_the_service() {
        let e = enrichment();
        let flow = e.decode(&translation(77, sock_xlate_point::SOCK_XLATE_POST_DIRECTION_FWD.0)).unwrap();
        assert_eq!((flow.verdict, flow.flow_type), (Verdict::TRANSLATED, FlowType::SOCK));
        assert_eq!(flow.sock_xlate_point, SocketTranslationPoint::SOCK_XLATE_POINT_POST_DIRECTION_FWD);
        assert_eq!(flow.source.as_ref().unwrap().pod_name, "frontend");
        assert_eq!(flow.destination.as_ref().unwrap().pod_name, "db");
        assert_eq!(flow.ip.as_ref().unwrap().destination, "10.200.3.2");
        assert_eq!(flow.l4.as_ref().and_then(Layer4::ports), Some((0, 15432)));
        assert_eq!(flow.destination_service, Some(Service { name: "db".into(), namespace: "shop".into() }));
        assert_eq!(flow.socket_cookie, "4242");
        assert_eq!(flow.event_type.kind, 7);

        let back = e.decode(&translation(77, sock_xlate_point::SOCK_XLATE_POST_DIRECTION_REV.0)).unwrap();
        assert_eq!(back.ip.as_ref().unwrap().destination, "10.96.0.5", "shown as the frontend again");
        assert_eq!(back.is_reply, Some(true));
        let host = e.decode(&translation(1, sock_xlate_point::SOCK_XLATE_POST_DIRECTION_FWD.0)).unwrap();
        assert_eq!(host.source.as_ref().unwrap().identity, 1, "the node's own socket: the host");
    }

    #[test]
    fn a_drop_becomes_a_dropped_flow_with_both_pods() {
        let flow = enrichment().decode(&event(event_kind::EVENT_DROP.0, 133, 0)).unwrap();
        assert_eq!(flow.verdict, Verdict::DROPPED);
        assert_eq!(flow.drop_reason_desc.as_deref(), Some("POLICY_DENIED"));
        assert_eq!(flow.source.as_ref().unwrap().pod_name, "frontend");
        assert_eq!(flow.source.as_ref().unwrap().identity, 259, "looked up by address");
        assert_eq!(flow.destination.as_ref().unwrap().id, 7);
        assert_eq!(flow.destination.as_ref().unwrap().labels[..], ["k8s:app=db"]);
        assert_eq!(
            flow.l4,
            Some(Layer4::TCP(Tcp {
                source_port: 40000,
                destination_port: 5432,
                flags: Some(TcpFlags::from_bits(2, false))
            }))
        );
        assert_eq!(flow.time, "2025-12-05T04:00:01.000000000Z");
        assert_eq!(flow.interface.as_ref().map(|i| i.name.as_str()), Some("lxc7"));
        assert_eq!(flow.node_name, "node3");
    }

    #[test]
    fn verdicts_and_traces_are_told_apart() {
        let e = enrichment();
        let allowed = e.decode(&event(event_kind::EVENT_POLICY_VERDICT.0, 0, 0)).unwrap();
        assert_eq!(
            (allowed.verdict, allowed.policy_match_type, allowed.drop_reason_desc.clone()),
            (Verdict::FORWARDED, 2, None)
        );
        let denied =
            e.decode(&event(event_kind::EVENT_POLICY_VERDICT.0, 133, event_flags::EVENT_FLAG_DENIED.0 as u8)).unwrap();
        assert_eq!(denied.verdict, Verdict::DROPPED);
        let trace = e
            .decode(&event(
                event_kind::EVENT_TRACE.0,
                trace_point::TRACE_TO_ENDPOINT.0 as u8,
                event_flags::EVENT_FLAG_REPLY.0 as u8,
            ))
            .unwrap();
        assert_eq!((trace.trace_observation_point, trace.is_reply), (TraceObservationPoint::TO_ENDPOINT, Some(true)));
    }

    #[test]
    fn short_or_unknown_events_are_errors_and_garbage_never_panics() {
        assert_eq!(enrichment().decode(&[0; 8]), Err(DecodeError::Short(8)));
        assert_eq!(enrichment().decode(&event(99, 0, 0)), Err(DecodeError::UnknownKind(99)));
        let mut garbage = event(event_kind::EVENT_DROP.0, 134, 0);
        for (i, byte) in garbage.iter_mut().enumerate().skip(40) {
            *byte = (i * 37) as u8;
        }
        let _ = enrichment().decode(&garbage);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = enrichment().decode(&bytes);
        }
    }
}
