//! A flow as Hubble shows it: the fields and values of Hubble's `flow.Flow` (its protobuf
//! field names, enums by name, defaults left out — what `hubble observe -o jsonpb` prints), so
//! tools that read Hubble's JSON read ours.

use serde::{Deserialize, Serialize};

/// What happened to the packet or connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms, non_camel_case_types)]
pub enum Verdict {
    /// No verdict.
    #[default]
    VERDICT_UNKNOWN,
    /// Passed on.
    FORWARDED,
    /// Dropped (see `drop_reason_desc`).
    DROPPED,
    /// Something failed on the way.
    ERROR,
    /// Would have been dropped, but policy is in audit mode.
    AUDIT,
    /// Redirected to a proxy.
    REDIRECTED,
    /// Seen at a trace point, no verdict yet.
    TRACED,
    /// An address was translated (a service).
    TRANSLATED,
}

impl Verdict {
    /// Every verdict, by name (what `--verdict` takes).
    pub const ALL: [Verdict; 8] = [
        Verdict::VERDICT_UNKNOWN,
        Verdict::FORWARDED,
        Verdict::DROPPED,
        Verdict::ERROR,
        Verdict::AUDIT,
        Verdict::REDIRECTED,
        Verdict::TRACED,
        Verdict::TRANSLATED,
    ];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::VERDICT_UNKNOWN => "VERDICT_UNKNOWN",
            Verdict::FORWARDED => "FORWARDED",
            Verdict::DROPPED => "DROPPED",
            Verdict::ERROR => "ERROR",
            Verdict::AUDIT => "AUDIT",
            Verdict::REDIRECTED => "REDIRECTED",
            Verdict::TRACED => "TRACED",
            Verdict::TRANSLATED => "TRANSLATED",
        }
    }

    fn is_unknown(&self) -> bool {
        *self == Verdict::VERDICT_UNKNOWN
    }
}

/// The kind of flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms, non_camel_case_types)]
pub enum FlowType {
    /// Unknown.
    #[default]
    UNKNOWN_TYPE,
    /// A packet's L3/L4 headers.
    L3_L4,
    /// An L7 record.
    L7,
    /// A socket translation.
    SOCK,
}

/// The direction of the connection, as the endpoint sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms, non_camel_case_types)]
pub enum TrafficDirection {
    /// Unknown.
    #[default]
    TRAFFIC_DIRECTION_UNKNOWN,
    /// Into the endpoint.
    INGRESS,
    /// Out of the endpoint.
    EGRESS,
}

impl TrafficDirection {
    fn is_unknown(&self) -> bool {
        *self == TrafficDirection::TRAFFIC_DIRECTION_UNKNOWN
    }
}

/// Where a trace event was observed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms, non_camel_case_types)]
pub enum TraceObservationPoint {
    /// Unknown.
    #[default]
    UNKNOWN_POINT,
    /// Towards the host namespace.
    TO_HOST,
    /// Towards the host's network stack.
    TO_STACK,
    /// Into the tunnel.
    TO_OVERLAY,
    /// Towards an endpoint.
    TO_ENDPOINT,
    /// From an endpoint.
    FROM_ENDPOINT,
    /// From the host namespace.
    FROM_HOST,
    /// From the host's network stack.
    FROM_STACK,
    /// Out of the tunnel.
    FROM_OVERLAY,
    /// From a native device.
    FROM_NETWORK,
    /// Towards a native device.
    TO_NETWORK,
}

impl TraceObservationPoint {
    fn is_unknown(&self) -> bool {
        *self == TraceObservationPoint::UNKNOWN_POINT
    }
}

/// A socket translation's point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms, non_camel_case_types)]
pub enum SocketTranslationPoint {
    /// Unknown.
    #[default]
    SOCK_XLATE_POINT_UNKNOWN,
    /// Before the service translation.
    SOCK_XLATE_POINT_PRE_DIRECTION_FWD,
    /// After the service translation.
    SOCK_XLATE_POINT_POST_DIRECTION_FWD,
    /// Before the reverse translation.
    SOCK_XLATE_POINT_PRE_DIRECTION_REV,
    /// After the reverse translation.
    SOCK_XLATE_POINT_POST_DIRECTION_REV,
}

impl SocketTranslationPoint {
    fn is_unknown(&self) -> bool {
        *self == SocketTranslationPoint::SOCK_XLATE_POINT_UNKNOWN
    }
}

/// L3.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ip {
    /// Source address.
    pub source: String,
    /// Destination address.
    pub destination: String,
    /// `IPv4` or `IPv6`.
    #[serde(rename = "ipVersion")]
    pub ip_version: String,
    /// Encrypted between nodes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
}

/// TCP flags, each present only when set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TcpFlags {
    /// FIN.
    #[serde(default, rename = "FIN", skip_serializing_if = "std::ops::Not::not")]
    pub fin: bool,
    /// SYN.
    #[serde(default, rename = "SYN", skip_serializing_if = "std::ops::Not::not")]
    pub syn: bool,
    /// RST.
    #[serde(default, rename = "RST", skip_serializing_if = "std::ops::Not::not")]
    pub rst: bool,
    /// PSH.
    #[serde(default, rename = "PSH", skip_serializing_if = "std::ops::Not::not")]
    pub psh: bool,
    /// ACK.
    #[serde(default, rename = "ACK", skip_serializing_if = "std::ops::Not::not")]
    pub ack: bool,
    /// URG.
    #[serde(default, rename = "URG", skip_serializing_if = "std::ops::Not::not")]
    pub urg: bool,
    /// ECE.
    #[serde(default, rename = "ECE", skip_serializing_if = "std::ops::Not::not")]
    pub ece: bool,
    /// CWR.
    #[serde(default, rename = "CWR", skip_serializing_if = "std::ops::Not::not")]
    pub cwr: bool,
    /// NS.
    #[serde(default, rename = "NS", skip_serializing_if = "std::ops::Not::not")]
    pub ns: bool,
}

impl TcpFlags {
    /// From the TCP header's flag byte (and the NS bit of the byte before).
    pub fn from_bits(flags: u8, ns: bool) -> TcpFlags {
        let bit = |b: u8| flags & b != 0;
        TcpFlags {
            fin: bit(0x01),
            syn: bit(0x02),
            rst: bit(0x04),
            psh: bit(0x08),
            ack: bit(0x10),
            urg: bit(0x20),
            ece: bit(0x40),
            cwr: bit(0x80),
            ns,
        }
    }

    /// The set flags by name, in Hubble's order.
    pub fn names(&self) -> Vec<&'static str> {
        let all = [
            (self.syn, "SYN"),
            (self.fin, "FIN"),
            (self.rst, "RST"),
            (self.psh, "PSH"),
            (self.ack, "ACK"),
            (self.urg, "URG"),
            (self.ece, "ECE"),
            (self.cwr, "CWR"),
            (self.ns, "NS"),
        ];
        all.iter().filter(|(set, _)| *set).map(|(_, name)| *name).collect()
    }
}

/// TCP.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tcp {
    /// Source port.
    pub source_port: u32,
    /// Destination port.
    pub destination_port: u32,
    /// Flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<TcpFlags>,
}

/// UDP or SCTP.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    /// Source port.
    pub source_port: u32,
    /// Destination port.
    pub destination_port: u32,
}

/// ICMP, v4 or v6.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Icmp {
    /// Type.
    #[serde(default, rename = "type", skip_serializing_if = "is_zero")]
    pub kind: u32,
    /// Code.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub code: u32,
}

/// L4: one of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum Layer4 {
    /// TCP.
    TCP(Tcp),
    /// UDP.
    UDP(Ports),
    /// ICMPv4.
    ICMPv4(Icmp),
    /// ICMPv6.
    ICMPv6(Icmp),
    /// SCTP.
    SCTP(Ports),
}

impl Layer4 {
    /// The protocol's name as `--protocol` takes it (`tcp`, `udp`, `icmp`, `icmpv6`, `sctp`).
    pub fn protocol(&self) -> &'static str {
        match self {
            Layer4::TCP(_) => "tcp",
            Layer4::UDP(_) => "udp",
            Layer4::ICMPv4(_) => "icmp",
            Layer4::ICMPv6(_) => "icmpv6",
            Layer4::SCTP(_) => "sctp",
        }
    }

    /// The protocol's name as Hubble's metrics and service map give it (`TCP`, `UDP`,
    /// `ICMPv4`, `ICMPv6`, `SCTP`).
    pub fn name(&self) -> &'static str {
        match self {
            Layer4::TCP(_) => "TCP",
            Layer4::UDP(_) => "UDP",
            Layer4::ICMPv4(_) => "ICMPv4",
            Layer4::ICMPv6(_) => "ICMPv6",
            Layer4::SCTP(_) => "SCTP",
        }
    }

    /// (source port, destination port), for protocols with ports.
    pub fn ports(&self) -> Option<(u32, u32)> {
        match self {
            Layer4::TCP(t) => Some((t.source_port, t.destination_port)),
            Layer4::UDP(p) | Layer4::SCTP(p) => Some((p.source_port, p.destination_port)),
            Layer4::ICMPv4(_) | Layer4::ICMPv6(_) => None,
        }
    }
}

/// One side of a flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The endpoint id (local endpoints only).
    #[serde(default, rename = "ID", skip_serializing_if = "is_zero")]
    pub id: u32,
    /// The security identity.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub identity: u32,
    /// The pod's namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Labels, `source:key=value`.
    #[serde(default, skip_serializing_if = "<[String]>::is_empty")]
    pub labels: std::sync::Arc<[String]>,
    /// The pod's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod_name: String,
}

/// A service by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
}

/// The monitor event a flow came from: type and subtype (Cilium's numbers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiliumEventType {
    /// The message type (`1` drop, `4` trace, `5` policy verdict, `9` socket trace …).
    #[serde(rename = "type")]
    pub kind: i32,
    /// The subtype (a drop reason, an observation point …).
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub sub_type: i32,
}

/// The interface a flow was observed on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterface {
    /// Its index.
    pub index: u32,
    /// Its name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// One flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// When it was observed (RFC 3339, nanoseconds).
    pub time: String,
    /// Its unique id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uuid: String,
    /// The verdict.
    #[serde(default, skip_serializing_if = "Verdict::is_unknown")]
    pub verdict: Verdict,
    /// The drop reason's number (deprecated in Hubble, still printed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drop_reason: u32,
    /// L3.
    #[serde(default, rename = "IP", skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ip>,
    /// L4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l4: Option<Layer4>,
    /// The source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Endpoint>,
    /// The destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Endpoint>,
    /// The kind.
    #[serde(default, rename = "Type")]
    pub flow_type: FlowType,
    /// The node it was observed on.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    /// The monitor event it came from.
    #[serde(default)]
    pub event_type: CiliumEventType,
    /// The source's service, when the source is a service address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_service: Option<Service>,
    /// The destination's service, when the destination is a service address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_service: Option<Service>,
    /// Ingress or egress of the endpoint.
    #[serde(default, skip_serializing_if = "TrafficDirection::is_unknown")]
    pub traffic_direction: TrafficDirection,
    /// For policy verdicts: how the rule matched (1 L3 only, 2 L3+L4, 3 L4 only, 4 all).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub policy_match_type: u32,
    /// For traces: where.
    #[serde(default, skip_serializing_if = "TraceObservationPoint::is_unknown")]
    pub trace_observation_point: TraceObservationPoint,
    /// For drops: why, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_reason_desc: Option<String>,
    /// Whether the packet runs against its connection's first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_reply: Option<bool>,
    /// The interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<NetworkInterface>,
    /// For socket translations: where.
    #[serde(default, skip_serializing_if = "SocketTranslationPoint::is_unknown")]
    pub sock_xlate_point: SocketTranslationPoint,
    /// For socket translations: the socket's cookie (a string, as protobuf's JSON gives 64
    /// bits).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub socket_cookie: String,
    /// A one-line summary (`TCP Flags: SYN`).
    #[serde(default, rename = "Summary", skip_serializing_if = "String::is_empty")]
    pub summary: String,
}

/// What `hubble observe -o jsonpb` prints per line: the flow with its node and time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowResponse {
    /// The flow.
    pub flow: Flow,
    /// Its node.
    pub node_name: String,
    /// Its time.
    pub time: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}

/// Hubble's name for Cilium drop reason `code` (`DropReason` of flow.proto), if it has one.
pub fn drop_reason_name(code: u32) -> Option<&'static str> {
    DROP_REASONS.iter().find(|(c, _)| *c == code).map(|(_, name)| *name)
}

/// The Cilium drop reason Hubble calls `name`.
pub fn drop_reason_code(name: &str) -> Option<u32> {
    DROP_REASONS.iter().find(|(_, n)| n.eq_ignore_ascii_case(name)).map(|(c, _)| *c)
}

/// flow.proto's `DropReason`: code and name.
const DROP_REASONS: &[(u32, &str)] = &[
    (130, "INVALID_SOURCE_MAC"),
    (131, "INVALID_DESTINATION_MAC"),
    (132, "INVALID_SOURCE_IP"),
    (133, "POLICY_DENIED"),
    (134, "INVALID_PACKET_DROPPED"),
    (135, "CT_TRUNCATED_OR_INVALID_HEADER"),
    (136, "CT_MISSING_TCP_ACK_FLAG"),
    (137, "CT_UNKNOWN_L4_PROTOCOL"),
    (138, "CT_CANNOT_CREATE_ENTRY_FROM_PACKET"),
    (139, "UNSUPPORTED_L3_PROTOCOL"),
    (140, "MISSED_TAIL_CALL"),
    (141, "ERROR_WRITING_TO_PACKET"),
    (142, "UNKNOWN_L4_PROTOCOL"),
    (143, "UNKNOWN_ICMPV4_CODE"),
    (144, "UNKNOWN_ICMPV4_TYPE"),
    (145, "UNKNOWN_ICMPV6_CODE"),
    (146, "UNKNOWN_ICMPV6_TYPE"),
    (147, "ERROR_RETRIEVING_TUNNEL_KEY"),
    (148, "ERROR_RETRIEVING_TUNNEL_OPTIONS"),
    (149, "INVALID_GENEVE_OPTION"),
    (150, "UNKNOWN_L3_TARGET_ADDRESS"),
    (151, "STALE_OR_UNROUTABLE_IP"),
    (152, "NO_MATCHING_LOCAL_CONTAINER_FOUND"),
    (153, "ERROR_WHILE_CORRECTING_L3_CHECKSUM"),
    (154, "ERROR_WHILE_CORRECTING_L4_CHECKSUM"),
    (155, "CT_MAP_INSERTION_FAILED"),
    (156, "INVALID_IPV6_EXTENSION_HEADER"),
    (157, "IP_FRAGMENTATION_NOT_SUPPORTED"),
    (158, "SERVICE_BACKEND_NOT_FOUND"),
    (160, "NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT"),
    (161, "FAILED_TO_INSERT_INTO_PROXYMAP"),
    (162, "REACHED_EDT_RATE_LIMITING_DROP_HORIZON"),
    (163, "UNKNOWN_CONNECTION_TRACKING_STATE"),
    (164, "LOCAL_HOST_IS_UNREACHABLE"),
    (165, "NO_CONFIGURATION_AVAILABLE_TO_PERFORM_POLICY_DECISION"),
    (166, "UNSUPPORTED_L2_PROTOCOL"),
    (167, "NO_MAPPING_FOR_NAT_MASQUERADE"),
    (168, "UNSUPPORTED_PROTOCOL_FOR_NAT_MASQUERADE"),
    (169, "FIB_LOOKUP_FAILED"),
    (170, "ENCAPSULATION_TRAFFIC_IS_PROHIBITED"),
    (171, "INVALID_IDENTITY"),
    (172, "UNKNOWN_SENDER"),
    (173, "NAT_NOT_NEEDED"),
    (174, "IS_A_CLUSTERIP"),
    (175, "FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND"),
    (176, "FORBIDDEN_ICMPV6_MESSAGE"),
    (177, "DENIED_BY_LB_SRC_RANGE_CHECK"),
    (178, "SOCKET_LOOKUP_FAILED"),
    (179, "SOCKET_ASSIGN_FAILED"),
    (180, "PROXY_REDIRECTION_NOT_SUPPORTED_FOR_PROTOCOL"),
    (181, "POLICY_DENY"),
    (182, "VLAN_FILTERED"),
    (183, "INVALID_VNI"),
    (184, "INVALID_TC_BUFFER"),
    (185, "NO_SID"),
    (186, "MISSING_SRV6_STATE"),
    (187, "NAT46"),
    (188, "NAT64"),
    (189, "AUTH_REQUIRED"),
    (190, "CT_NO_MAP_FOUND"),
    (191, "SNAT_NO_MAP_FOUND"),
    (192, "INVALID_CLUSTER_ID"),
    (193, "UNSUPPORTED_PROTOCOL_FOR_DSR_ENCAP"),
    (194, "NO_EGRESS_GATEWAY"),
    (195, "UNENCRYPTED_TRAFFIC"),
    (196, "TTL_EXCEEDED"),
    (197, "NO_NODE_ID"),
    (202, "DROP_HOST_NOT_READY"),
    (203, "DROP_EP_NOT_READY"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_serialises_with_hubbles_field_names_and_leaves_defaults_out() {
        let flow = Flow {
            time: "2026-12-05T04:00:00.000000001Z".into(),
            verdict: Verdict::DROPPED,
            drop_reason: 133,
            ip: Some(Ip {
                source: "10.200.1.2".into(),
                destination: "10.200.2.2".into(),
                ip_version: "IPv4".into(),
                encrypted: false,
            }),
            l4: Some(Layer4::TCP(Tcp {
                source_port: 40000,
                destination_port: 80,
                flags: Some(TcpFlags::from_bits(0x02, false)),
            })),
            source: Some(Endpoint { id: 7, identity: 256, namespace: "shop".into(), ..Default::default() }),
            flow_type: FlowType::L3_L4,
            event_type: CiliumEventType { kind: 1, sub_type: 133 },
            traffic_direction: TrafficDirection::INGRESS,
            drop_reason_desc: drop_reason_name(133).map(str::to_owned),
            is_reply: Some(false),
            ..Default::default()
        };
        let json = serde_json::to_value(&flow).unwrap();
        assert_eq!(json["verdict"], "DROPPED");
        assert_eq!(json["IP"]["ipVersion"], "IPv4");
        assert_eq!(json["l4"]["TCP"]["destination_port"], 80);
        assert_eq!(json["l4"]["TCP"]["flags"], serde_json::json!({"SYN": true}));
        assert_eq!(json["source"]["ID"], 7);
        assert_eq!(json["Type"], "L3_L4");
        assert_eq!(json["event_type"], serde_json::json!({"type": 1, "sub_type": 133}));
        assert_eq!(json["traffic_direction"], "INGRESS");
        assert_eq!(json["drop_reason_desc"], "POLICY_DENIED");
        assert_eq!(json["is_reply"], false);
        for absent in ["destination", "uuid", "trace_observation_point", "policy_match_type", "Summary"] {
            assert!(json.get(absent).is_none(), "{absent} is left out: {json}");
        }
        let back: Flow = serde_json::from_value(json).unwrap();
        assert_eq!(back, flow);
    }

    #[test]
    fn drop_reasons_are_named_as_hubble_names_them() {
        assert_eq!(drop_reason_name(181), Some("POLICY_DENY"));
        assert_eq!(drop_reason_name(177), Some("DENIED_BY_LB_SRC_RANGE_CHECK"));
        assert_eq!(drop_reason_name(158), Some("SERVICE_BACKEND_NOT_FOUND"));
        assert_eq!(drop_reason_code("policy_denied"), Some(133));
        assert_eq!(drop_reason_name(0), None);
    }
}
