//! `observe`'s output formats, as `hubble observe` prints them: `compact` (one line a flow),
//! `dict` (a block of `KEY: value` lines a flow), `table` (columns), and `json`/`jsonpb`
//! (Hubble's JSON, one `{"flow":…,"node_name":…,"time":…}` a line).

use super::flow::{Endpoint, Flow, FlowResponse, Layer4, SocketTranslationPoint, TraceObservationPoint, Verdict};
use super::time::{parse_rfc3339, stamp_milli};

/// An output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line a flow.
    #[default]
    Compact,
    /// `KEY: value` lines a flow.
    Dict,
    /// Hubble's JSON, a line a flow.
    Json,
    /// The same (Hubble's name for it).
    Jsonpb,
    /// Columns.
    Table,
}

/// `namespace/pod:port` (or `address:port` for what is not a pod).
fn side(endpoint: Option<&Endpoint>, ip: Option<&str>, port: Option<u32>) -> String {
    let name = match endpoint {
        Some(e) if !e.pod_name.is_empty() => format!("{}/{}", e.namespace, e.pod_name),
        _ => ip.unwrap_or("").to_owned(),
    };
    match port {
        Some(p) if p != 0 => format!("{name}:{p}"),
        _ => name,
    }
}

/// ` (ID:259)` or the reserved identity's name (` (world)`).
fn identity(endpoint: Option<&Endpoint>) -> String {
    let Some(e) = endpoint else { return String::new() };
    let reserved = e.labels.iter().find_map(|l| l.strip_prefix("reserved:"));
    match reserved {
        Some(name) => format!(" ({name})"),
        None if e.identity != 0 => format!(" (ID:{})", e.identity),
        None => String::new(),
    }
}

/// What kind of event, as hubble's compact line says it.
pub fn event_label(flow: &Flow) -> String {
    match flow.event_type.kind {
        1 => flow.drop_reason_desc.clone().unwrap_or_else(|| "drop".into()),
        5 => {
            let match_type = match flow.policy_match_type {
                1 => "L3-Only",
                2 => "L3-L4",
                3 => "L4-Only",
                4 => "all",
                _ => "none",
            };
            let outcome = match flow.verdict {
                Verdict::DROPPED => "DENIED",
                Verdict::AUDIT => "AUDITED",
                _ => "ALLOWED",
            };
            format!("policy-verdict:{match_type} {:?} {outcome}", flow.traffic_direction)
        }
        7 => match flow.sock_xlate_point {
            SocketTranslationPoint::SOCK_XLATE_POINT_PRE_DIRECTION_FWD => "pre-xlate-fwd".into(),
            SocketTranslationPoint::SOCK_XLATE_POINT_POST_DIRECTION_FWD => "post-xlate-fwd".into(),
            SocketTranslationPoint::SOCK_XLATE_POINT_PRE_DIRECTION_REV => "pre-xlate-rev".into(),
            SocketTranslationPoint::SOCK_XLATE_POINT_POST_DIRECTION_REV => "post-xlate-rev".into(),
            SocketTranslationPoint::SOCK_XLATE_POINT_UNKNOWN => "trace-sock".into(),
        },
        _ => match flow.trace_observation_point {
            TraceObservationPoint::UNKNOWN_POINT => "trace".into(),
            point => format!("{point:?}").to_ascii_lowercase().replace('_', "-"),
        },
    }
}

/// The flow's summary: its own, else TCP flags or the ICMP type.
pub fn summary(flow: &Flow) -> String {
    if !flow.summary.is_empty() {
        return flow.summary.clone();
    }
    match &flow.l4 {
        Some(Layer4::TCP(t)) => match t.flags {
            Some(f) if !f.names().is_empty() => format!("TCP Flags: {}", f.names().join(", ")),
            _ => "TCP".into(),
        },
        Some(Layer4::UDP(_)) => "UDP".into(),
        Some(Layer4::SCTP(_)) => "SCTP".into(),
        Some(Layer4::ICMPv4(i)) => format!("ICMPv4 type {} code {}", i.kind, i.code),
        Some(Layer4::ICMPv6(i)) => format!("ICMPv6 type {} code {}", i.kind, i.code),
        None => String::new(),
    }
}

fn stamp(flow: &Flow) -> String {
    parse_rfc3339(&flow.time).map(stamp_milli).unwrap_or_else(|| flow.time.clone())
}

fn sides(flow: &Flow) -> (String, String) {
    let ports = flow.l4.as_ref().and_then(Layer4::ports);
    let ip = flow.ip.as_ref();
    (
        side(flow.source.as_ref(), ip.map(|i| i.source.as_str()), ports.map(|p| p.0)),
        side(flow.destination.as_ref(), ip.map(|i| i.destination.as_str()), ports.map(|p| p.1)),
    )
}

/// One flow in `format` (a table row for [`Format::Table`]; see [`table_header`]).
pub fn render(flow: &Flow, format: Format) -> String {
    let (source, destination) = sides(flow);
    match format {
        Format::Compact => format!(
            "{}: {source}{} {} {destination}{} {} {} ({})",
            stamp(flow),
            identity(flow.source.as_ref()),
            if flow.is_reply == Some(true) { "<-" } else { "->" },
            identity(flow.destination.as_ref()),
            event_label(flow),
            flow.verdict.name(),
            summary(flow)
        ),
        Format::Dict => {
            let mut lines = vec![
                format!("  TIMESTAMP: {}", stamp(flow)),
                format!("     SOURCE: {source}"),
                format!("DESTINATION: {destination}"),
                format!("       TYPE: {}", event_label(flow)),
                format!("    VERDICT: {}", flow.verdict.name()),
                format!("    SUMMARY: {}", summary(flow)),
            ];
            if !flow.node_name.is_empty() {
                lines.push(format!("  NODE NAME: {}", flow.node_name));
            }
            lines.join("\n") + "\n------------"
        }
        Format::Json | Format::Jsonpb => serde_json::to_string(&FlowResponse {
            flow: flow.clone(),
            node_name: flow.node_name.clone(),
            time: flow.time.clone(),
        })
        .expect("flows serialise"),
        Format::Table => format!(
            "{:<20} {:<32} {:<32} {:<28} {:<10} {}",
            stamp(flow),
            source,
            destination,
            event_label(flow),
            flow.verdict.name(),
            summary(flow)
        ),
    }
}

/// The header line of [`Format::Table`].
pub fn table_header() -> String {
    format!("{:<20} {:<32} {:<32} {:<28} {:<10} {}", "TIMESTAMP", "SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY")
}

#[cfg(test)]
mod tests {
    use super::super::flow::*;
    use super::*;

    fn dropped() -> Flow {
        Flow {
            time: "2026-12-05T04:00:00.123Z".into(),
            verdict: Verdict::DROPPED,
            drop_reason: 133,
            ip: Some(Ip {
                source: "10.200.1.3".into(),
                destination: "10.200.3.2".into(),
                ip_version: "IPv4".into(),
                encrypted: false,
            }),
            l4: Some(Layer4::TCP(Tcp {
                source_port: 40000,
                destination_port: 5432,
                flags: Some(TcpFlags::from_bits(0x02, false)),
            })),
            source: Some(Endpoint {
                id: 3,
                identity: 259,
                namespace: "shop".into(),
                labels: vec!["k8s:app=frontend".to_owned()].into(),
                pod_name: "frontend".into(),
            }),
            destination: Some(Endpoint {
                identity: 2,
                labels: vec!["reserved:world".to_owned()].into(),
                ..Default::default()
            }),
            flow_type: FlowType::L3_L4,
            node_name: "node3".into(),
            event_type: CiliumEventType { kind: 1, sub_type: 133 },
            traffic_direction: TrafficDirection::INGRESS,
            drop_reason_desc: Some("POLICY_DENIED".into()),
            is_reply: Some(false),
            ..Default::default()
        }
    }

    #[test]
    fn compact_reads_as_hubbles() {
        assert_eq!(
            render(&dropped(), Format::Compact),
            "Dec  5 04:00:00.123: shop/frontend:40000 (ID:259) -> 10.200.3.2:5432 (world) POLICY_DENIED DROPPED \
             (TCP Flags: SYN)"
        );
    }

    #[test]
    fn json_is_hubbles_and_reads_back() {
        let line = render(&dropped(), Format::Jsonpb);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["node_name"], "node3");
        assert_eq!(value["flow"]["verdict"], "DROPPED");
        assert_eq!(value["flow"]["l4"]["TCP"]["destination_port"], 5432);
        let back: FlowResponse = serde_json::from_str(&line).unwrap();
        assert_eq!(back.flow, dropped());
    }

    #[test]
    fn dict_and_table_carry_the_same_facts() {
        let dict = render(&dropped(), Format::Dict);
        assert!(dict.contains("DESTINATION: 10.200.3.2:5432") && dict.contains("VERDICT: DROPPED"), "{dict}");
        let row = render(&dropped(), Format::Table);
        assert!(row.starts_with("Dec  5 04:00:00.123") && row.contains("POLICY_DENIED"), "{row}");
        assert!(table_header().starts_with("TIMESTAMP"));
    }

    #[test]
    fn policy_verdicts_and_traces_are_labelled() {
        let mut f = dropped();
        f.event_type = CiliumEventType { kind: 5, sub_type: 0 };
        f.verdict = Verdict::FORWARDED;
        f.policy_match_type = 2;
        assert_eq!(event_label(&f), "policy-verdict:L3-L4 INGRESS ALLOWED");
        f.event_type = CiliumEventType { kind: 4, sub_type: 0 };
        f.trace_observation_point = TraceObservationPoint::TO_ENDPOINT;
        assert_eq!(event_label(&f), "to-endpoint");
    }
}
