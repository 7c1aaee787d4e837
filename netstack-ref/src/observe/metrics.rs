//! Hubble's flow metrics, counted as the agent decodes flows, and the agent's own health, read
//! at each scrape. Names, labels and label values are Hubble's handlers' (`flow`, `drop`,
//! `tcp`, `port-distribution`, `icmp`, `policy`) and its lost-event counter; the health
//! gauges take Cilium's agent metric names where Cilium has one (`cilium_endpoint`,
//! `cilium_identity`, `cilium_bpf_map_pressure`).
//!
//! Exposition is Prometheus text format 0.0.4 (what `promtool check metrics` and every
//! scraper read) or OpenMetrics when the scraper asks for it.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::flow::{Flow, Layer4, TraceObservationPoint, TrafficDirection, Verdict};

/// `hubble_flows_processed_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlowLabels {
    protocol: &'static str,
    r#type: &'static str,
    subtype: &'static str,
    verdict: &'static str,
}

/// `hubble_drop_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    reason: String,
    protocol: &'static str,
}

/// `hubble_tcp_flags_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TcpFlagLabels {
    flag: &'static str,
    family: &'static str,
}

/// `hubble_port_distribution_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortLabels {
    protocol: &'static str,
    port: u32,
}

/// `hubble_icmp_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IcmpLabels {
    family: &'static str,
    r#type: &'static str,
}

/// `hubble_policy_verdicts_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    direction: &'static str,
    r#match: &'static str,
    action: &'static str,
}

/// The flow metrics, counted per decoded flow.
#[derive(Debug, Default)]
pub struct FlowMetrics {
    flows: Family<FlowLabels, Counter>,
    drops: Family<DropLabels, Counter>,
    tcp_flags: Family<TcpFlagLabels, Counter>,
    ports: Family<PortLabels, Counter>,
    icmp: Family<IcmpLabels, Counter>,
    policy_verdicts: Family<PolicyLabels, Counter>,
}

/// Hubble's `FlowProtocol`: the L4 protocol's name.
fn protocol(flow: &Flow) -> &'static str {
    flow.l4.as_ref().map_or("Unknown", Layer4::name)
}

/// The trace point's name as Hubble's metrics spell it (`to-endpoint`, `from-network` …).
pub fn trace_point_name(point: TraceObservationPoint) -> &'static str {
    match point {
        TraceObservationPoint::UNKNOWN_POINT => "",
        TraceObservationPoint::TO_HOST => "to-host",
        TraceObservationPoint::TO_STACK => "to-stack",
        TraceObservationPoint::TO_OVERLAY => "to-overlay",
        TraceObservationPoint::TO_ENDPOINT => "to-endpoint",
        TraceObservationPoint::FROM_ENDPOINT => "from-endpoint",
        TraceObservationPoint::FROM_HOST => "from-host",
        TraceObservationPoint::FROM_STACK => "from-stack",
        TraceObservationPoint::FROM_OVERLAY => "from-overlay",
        TraceObservationPoint::FROM_NETWORK => "from-network",
        TraceObservationPoint::TO_NETWORK => "to-network",
    }
}

/// Cilium's policy match type names, lowercased as Hubble's policy metric gives them.
fn match_name(match_type: u32) -> &'static str {
    match match_type {
        1 => "l3-only",
        2 => "l3-l4",
        3 => "l4-only",
        4 => "all",
        5 => "l3-proto",
        6 => "proto-only",
        _ => "none",
    }
}

/// ICMP type names as Hubble's ICMP metric gives them (gopacket's type/code names).
fn icmp_type_name(v6: bool, kind: u32, code: u32) -> &'static str {
    if v6 {
        return match kind {
            1 => "DestinationUnreachable",
            2 => "PacketTooBig",
            3 => "TimeExceeded",
            4 => "ParameterProblem",
            128 => "EchoRequest",
            129 => "EchoReply",
            133 => "RouterSolicitation",
            134 => "RouterAdvertisement",
            135 => "NeighborSolicitation",
            136 => "NeighborAdvertisement",
            137 => "Redirect",
            _ => "Unknown",
        };
    }
    match (kind, code) {
        (0, _) => "EchoReply",
        (3, 0) => "DestinationUnreachable(Net)",
        (3, 1) => "DestinationUnreachable(Host)",
        (3, 2) => "DestinationUnreachable(Protocol)",
        (3, 3) => "DestinationUnreachable(Port)",
        (3, 4) => "DestinationUnreachable(FragmentationNeeded)",
        (3, 13) => "DestinationUnreachable(CommAdminProhibited)",
        (3, _) => "DestinationUnreachable",
        (5, _) => "Redirect",
        (8, _) => "EchoRequest",
        (11, 0) => "TimeExceeded(TTLExceeded)",
        (11, _) => "TimeExceeded",
        (12, _) => "ParameterProblem",
        (13, _) => "TimestampRequest",
        (14, _) => "TimestampReply",
        _ => "Unknown",
    }
}

impl FlowMetrics {
    /// Counts `flow` as each of Hubble's handlers would.
    pub fn observe(&self, flow: &Flow) {
        let protocol = protocol(flow);
        let (kind, subtype) = match flow.event_type.kind {
            1 => ("Drop", ""),
            3 => ("Capture", ""),
            4 => ("Trace", trace_point_name(flow.trace_observation_point)),
            5 => ("PolicyVerdict", ""),
            7 => ("SockTrace", ""),
            129 => ("L7", ""),
            _ => ("Unknown", ""),
        };
        self.flows.get_or_create(&FlowLabels { protocol, r#type: kind, subtype, verdict: flow.verdict.name() }).inc();
        if flow.verdict == Verdict::DROPPED {
            let reason = flow.drop_reason_desc.clone().unwrap_or_else(|| "DROP_REASON_UNKNOWN".to_owned());
            self.drops.get_or_create(&DropLabels { reason, protocol }).inc();
        }
        // Hubble leaves out verdicts on the host's connections: the host may reach every
        // local endpoint.
        let from_host = flow.source.as_ref().is_some_and(|s| s.identity == 1);
        if flow.event_type.kind == 5 && !from_host {
            let direction = match flow.traffic_direction {
                TrafficDirection::INGRESS => "ingress",
                TrafficDirection::EGRESS => "egress",
                TrafficDirection::TRAFFIC_DIRECTION_UNKNOWN => "traffic_direction_unknown",
            };
            let action = match flow.verdict {
                Verdict::VERDICT_UNKNOWN => "verdict_unknown",
                Verdict::FORWARDED => "forwarded",
                Verdict::DROPPED => "dropped",
                Verdict::ERROR => "error",
                Verdict::AUDIT => "audit",
                Verdict::REDIRECTED => "redirected",
                Verdict::TRACED => "traced",
                Verdict::TRANSLATED => "translated",
            };
            self.policy_verdicts
                .get_or_create(&PolicyLabels { direction, r#match: match_name(flow.policy_match_type), action })
                .inc();
        }
        let family = flow.ip.as_ref().map(|ip| if ip.ip_version == "IPv6" { "IPv6" } else { "IPv4" });
        match (&flow.l4, flow.verdict, family) {
            (Some(Layer4::TCP(tcp)), Verdict::FORWARDED, Some(family)) => {
                if let Some(flags) = &tcp.flags {
                    let count = |flag| self.tcp_flags.get_or_create(&TcpFlagLabels { flag, family }).inc();
                    if flags.fin {
                        count("FIN");
                    }
                    if flags.syn {
                        count(if flags.ack { "SYN-ACK" } else { "SYN" });
                    }
                    if flags.rst {
                        count("RST");
                    }
                }
            }
            (Some(Layer4::ICMPv4(icmp)), _, _) => {
                let labels = IcmpLabels { family: "IPv4", r#type: icmp_type_name(false, icmp.kind, icmp.code) };
                self.icmp.get_or_create(&labels).inc();
            }
            (Some(Layer4::ICMPv6(icmp)), _, _) => {
                let labels = IcmpLabels { family: "IPv6", r#type: icmp_type_name(true, icmp.kind, icmp.code) };
                self.icmp.get_or_create(&labels).inc();
            }
            _ => {}
        }
        // A flow not known to be a request says nothing of which port was asked for.
        let forwarded = matches!(flow.verdict, Verdict::FORWARDED | Verdict::REDIRECTED);
        if forwarded && flow.is_reply == Some(false) {
            if let Some(l4) = &flow.l4 {
                let port = l4.ports().map_or(0, |(_, destination)| destination);
                self.ports.get_or_create(&PortLabels { protocol, port }).inc();
            }
        }
    }

    fn register(self: &Arc<Self>, registry: &mut Registry) {
        let hubble = registry.sub_registry_with_prefix("hubble");
        hubble.register("flows_processed", "Total number of flows processed", self.flows.clone());
        hubble.register("drop", "Number of drops", self.drops.clone());
        hubble.register("tcp_flags", "TCP flag occurrences", self.tcp_flags.clone());
        hubble.register("port_distribution", "Numbers of packets distributed by destination port", self.ports.clone());
        hubble.register("icmp", "Number of ICMP messages", self.icmp.clone());
        hubble.register(
            "policy_verdicts",
            "Total number of Cilium network policy verdicts",
            self.policy_verdicts.clone(),
        );
    }
}

/// Events lost on their way to a reader, by where.
#[derive(Debug, Default)]
pub struct LostEvents {
    /// Events the datapath could not put into the BPF ring (it was full): the decoder reads
    /// that ring directly, so this is also its queue's loss.
    pub bpf_ring: AtomicU64,
    /// Flows overwritten in the flow ring before a follower read them.
    pub flow_ring: AtomicU64,
    /// Events read that did not decode.
    pub undecodable: AtomicU64,
}

/// The agent's health as of its latest sync.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentHealth {
    /// Live endpoints.
    pub endpoints: u64,
    /// Identities in use by kind (`reserved`, `local`, `remote`, `cidr`).
    pub identities: Vec<(&'static str, u64)>,
    /// Maps' fill, 0 to 1, by map name.
    pub map_pressure: Vec<(String, f64)>,
    /// Errors of the latest sync.
    pub sync_errors: u64,
    /// Syncs since the agent started.
    pub syncs: u64,
    /// Whether the kvstore is reachable (`None` without one).
    pub kvstore_connected: Option<bool>,
}

/// What each scrape reads afresh: the health snapshot and the lost-event counters.
#[derive(Debug)]
struct ScrapeTime {
    health: Arc<ArcSwap<AgentHealth>>,
    lost: Arc<LostEvents>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MapLabel {
    map_name: String,
}

/// A value read at scrape time: a counter (whole) or a gauge.
#[derive(Clone, Copy)]
enum Sample {
    Counter(u64),
    Gauge(f64),
    /// A gauge that counts things.
    Level(i64),
}

impl Sample {
    fn metric_type(self) -> prometheus_client::metrics::MetricType {
        match self {
            Sample::Counter(_) => ConstCounter::new(0u64).metric_type(),
            Sample::Gauge(_) | Sample::Level(_) => ConstGauge::new(0i64).metric_type(),
        }
    }

    fn encode(self, metric: prometheus_client::encoding::MetricEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Sample::Counter(n) => ConstCounter::new(n).encode(metric),
            Sample::Gauge(v) => ConstGauge::new(v).encode(metric),
            Sample::Level(n) => ConstGauge::new(n).encode(metric),
        }
    }
}

/// One unlabelled metric.
fn encode_one(encoder: &mut DescriptorEncoder, name: &str, help: &str, sample: Sample) -> Result<(), std::fmt::Error> {
    sample.encode(encoder.encode_descriptor(name, help, None, sample.metric_type())?)
}

/// One metric family, a sample per label set (its type is `kind`'s, when there are none).
fn encode_family<S: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: Sample,
    rows: impl IntoIterator<Item = (S, Sample)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, kind.metric_type())?;
    for (labels, sample) in rows {
        sample.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for ScrapeTime {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let count = |n: &AtomicU64| Sample::Counter(n.load(Ordering::Relaxed));
        let lost = [("perf_event_ring_buffer", &self.lost.bpf_ring), ("hubble_ring_buffer", &self.lost.flow_ring)];
        encode_family(
            &mut encoder,
            "hubble_lost_events",
            "Number of lost events",
            Sample::Counter(0),
            lost.map(|(source, n)| (SourceLabel { source }, count(n))),
        )?;
        encode_one(
            &mut encoder,
            "netstack_flow_events_undecodable",
            "Flow events read from the datapath that did not decode",
            count(&self.lost.undecodable),
        )?;
        let health = self.health.load();
        let gauge = |n: u64| Sample::Level(n as i64);
        encode_one(
            &mut encoder,
            "cilium_endpoint",
            "Number of endpoints managed by this agent",
            gauge(health.endpoints),
        )?;
        encode_family(
            &mut encoder,
            "cilium_identity",
            "Number of identities currently allocated",
            Sample::Gauge(0.0),
            health.identities.iter().map(|(kind, n)| (TypeLabel { r#type: kind }, gauge(*n))),
        )?;
        encode_family(
            &mut encoder,
            "cilium_bpf_map_pressure",
            "Fill percentage of map, tagged by map name",
            Sample::Gauge(0.0),
            health.map_pressure.iter().map(|(map, fill)| (MapLabel { map_name: map.clone() }, Sample::Gauge(*fill))),
        )?;
        encode_one(
            &mut encoder,
            "netstack_agent_sync_errors",
            "Errors of the agent's latest sync",
            gauge(health.sync_errors),
        )?;
        encode_one(
            &mut encoder,
            "netstack_agent_syncs",
            "Syncs since the agent started",
            Sample::Counter(health.syncs),
        )?;
        if let Some(connected) = health.kvstore_connected {
            let help = "Whether the kvstore is reachable (1) or not (0)";
            encode_one(&mut encoder, "netstack_kvstore_connected", help, gauge(u64::from(connected)))?;
        }
        Ok(())
    }
}

/// Everything `/metrics` shows: the flow metrics, lost events, the agent's health.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Counted per flow by the decoder.
    pub flows: Arc<FlowMetrics>,
    /// Counted where events are lost.
    pub lost: Arc<LostEvents>,
    /// Replaced by the agent after each sync.
    pub health: Arc<ArcSwap<AgentHealth>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The exposition formats `/metrics` serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposition {
    /// Prometheus text format 0.0.4.
    PrometheusText,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

impl Exposition {
    /// The format an `Accept` header asks for (OpenMetrics only when named).
    pub fn from_accept(accept: Option<&str>) -> Exposition {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Exposition::OpenMetrics,
            _ => Exposition::PrometheusText,
        }
    }

    /// Its `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Exposition::PrometheusText => "text/plain; version=0.0.4; charset=utf-8",
            Exposition::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

impl Metrics {
    /// Empty metrics, registered.
    pub fn new() -> Metrics {
        let flows = Arc::new(FlowMetrics::default());
        let lost = Arc::new(LostEvents::default());
        let health = Arc::new(ArcSwap::from_pointee(AgentHealth::default()));
        let mut registry = Registry::default();
        flows.register(&mut registry);
        registry.register_collector(Box::new(ScrapeTime { health: Arc::clone(&health), lost: Arc::clone(&lost) }));
        Metrics { registry, flows, lost, health }
    }

    /// The scrape in `format`.
    pub fn encode(&self, format: Exposition) -> String {
        let mut open_metrics = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut open_metrics, &self.registry);
        match format {
            Exposition::OpenMetrics => open_metrics,
            Exposition::PrometheusText => prometheus_text(&open_metrics),
        }
    }
}

/// OpenMetrics text into Prometheus text 0.0.4: a counter's family is named with its `_total`
/// (in OpenMetrics the family drops it, in 0.0.4 the samples and family share one name), and
/// 0.0.4 has no `# EOF` or `# UNIT`.
pub fn prometheus_text(open_metrics: &str) -> String {
    let mut counters = std::collections::BTreeSet::new();
    for line in open_metrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.insert(name.to_owned());
            }
        }
    }
    let mut out = String::with_capacity(open_metrics.len() + 64);
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let described = ["# HELP ", "# TYPE "].iter().find_map(|p| line.strip_prefix(p).map(|rest| (*p, rest)));
        match described {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let name = if counters.contains(name) { format!("{name}_total") } else { name.to_owned() };
                let _ = writeln!(out, "{prefix}{name} {tail}");
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::flow::{CiliumEventType, Icmp, Ip, Tcp, TcpFlags};

    fn flow(kind: i32, verdict: Verdict, l4: Layer4) -> Flow {
        Flow {
            verdict,
            event_type: CiliumEventType { kind, sub_type: 0 },
            ip: Some(Ip {
                source: "10.0.0.1".into(),
                destination: "10.0.0.2".into(),
                ip_version: "IPv4".into(),
                ..Default::default()
            }),
            l4: Some(l4),
            is_reply: Some(false),
            ..Default::default()
        }
    }

    fn syn(port: u32) -> Layer4 {
        Layer4::TCP(Tcp { source_port: 40000, destination_port: port, flags: Some(TcpFlags::from_bits(0x02, false)) })
    }

    #[test]
    fn every_handler_counts_with_hubbles_labels() {
        let metrics = Metrics::new();
        let mut trace = flow(4, Verdict::FORWARDED, syn(8080));
        trace.trace_observation_point = TraceObservationPoint::TO_ENDPOINT;
        metrics.flows.observe(&trace);
        let mut drop = flow(1, Verdict::DROPPED, syn(5432));
        drop.drop_reason_desc = Some("POLICY_DENIED".into());
        metrics.flows.observe(&drop);
        let mut verdict = flow(5, Verdict::FORWARDED, syn(8080));
        verdict.traffic_direction = TrafficDirection::INGRESS;
        verdict.policy_match_type = 2;
        metrics.flows.observe(&verdict);
        metrics.flows.observe(&flow(4, Verdict::FORWARDED, Layer4::ICMPv4(Icmp { kind: 8, code: 0 })));
        metrics.lost.bpf_ring.store(3, Ordering::Relaxed);
        let text = metrics.encode(Exposition::PrometheusText);
        for line in [
            "# TYPE hubble_flows_processed_total counter",
            r#"hubble_flows_processed_total{protocol="TCP",type="Trace",subtype="to-endpoint",verdict="FORWARDED"} 1"#,
            r#"hubble_flows_processed_total{protocol="TCP",type="Drop",subtype="",verdict="DROPPED"} 1"#,
            r#"hubble_flows_processed_total{protocol="TCP",type="PolicyVerdict",subtype="",verdict="FORWARDED"} 1"#,
            r#"hubble_drop_total{reason="POLICY_DENIED",protocol="TCP"} 1"#,
            r#"hubble_tcp_flags_total{flag="SYN",family="IPv4"} 2"#,
            r#"hubble_port_distribution_total{protocol="TCP",port="8080"} 2"#,
            r#"hubble_port_distribution_total{protocol="ICMPv4",port="0"} 1"#,
            r#"hubble_icmp_total{family="IPv4",type="EchoRequest"} 1"#,
            r#"hubble_policy_verdicts_total{direction="ingress",match="l3-l4",action="forwarded"} 1"#,
            r#"hubble_lost_events_total{source="perf_event_ring_buffer"} 3"#,
            "# TYPE cilium_endpoint gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("# EOF"));
        let open = metrics.encode(Exposition::OpenMetrics);
        assert!(open.ends_with("# EOF\n"));
        assert!(open.contains("# TYPE hubble_flows_processed counter"));
    }

    #[test]
    fn a_scrape_reads_the_latest_health() {
        let metrics = Metrics::new();
        metrics.health.store(Arc::new(AgentHealth {
            endpoints: 4,
            identities: vec![("local", 3)],
            map_pressure: vec![("ipcache".into(), 0.25)],
            sync_errors: 1,
            syncs: 9,
            kvstore_connected: Some(true),
        }));
        let text = metrics.encode(Exposition::PrometheusText);
        for line in [
            "cilium_endpoint 4",
            r#"cilium_identity{type="local"} 3"#,
            r#"cilium_bpf_map_pressure{map_name="ipcache"} 0.25"#,
            "netstack_agent_sync_errors 1",
            "netstack_agent_syncs_total 9",
            "netstack_kvstore_connected 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
