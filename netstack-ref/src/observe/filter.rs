//! `hubble observe`'s filters: flags become flow filters as Hubble builds them — the values of
//! one flag are alternatives, different flags must all hold, a flag that names no side
//! (`--pod`, `--ip`, `-n` …) matches either the source or the destination, and `--not` puts
//! the flag after it into a filter a flow must not match. A flow is shown when it matches one
//! of the allow filters (or there are none) and none of the deny filters.

use std::net::IpAddr;

use super::flow::{drop_reason_code, Flow, Verdict};
use crate::policy::api::Cidr;

/// Why the flags do not make filters.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A flag this command does not know.
    #[error("unknown flag {0}")]
    UnknownFlag(String),
    /// A flag without its value.
    #[error("{0} needs a value")]
    MissingValue(String),
    /// A value the flag cannot take.
    #[error("{flag} {value:?}: {reason}")]
    BadValue {
        /// The flag.
        flag: String,
        /// The value.
        value: String,
        /// Why not.
        reason: String,
    },
    /// `--not` with no filter flag after it.
    #[error("--not must come before a filter flag")]
    DanglingNot,
}

/// One side's criteria (all empty: anything).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Side {
    /// `[namespace/]pod-name-prefix`, or `namespace/` alone.
    pub pods: Vec<String>,
    /// Namespaces.
    pub namespaces: Vec<String>,
    /// Label selectors (each a list of requirements).
    pub labels: Vec<Vec<LabelRequirement>>,
    /// Addresses or CIDRs.
    pub ips: Vec<Cidr>,
    /// `[namespace/]name` of a service.
    pub services: Vec<String>,
    /// Ports.
    pub ports: Vec<u32>,
    /// Security identities.
    pub identities: Vec<u32>,
}

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelRequirement {
    /// `key=value` (or `key==value`).
    Equals(String, String),
    /// `key!=value`.
    NotEquals(String, String),
    /// `key`.
    Exists(String),
    /// `!key`.
    Absent(String),
}

/// A flow filter: every criterion that is set must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowFilter {
    /// The source's criteria.
    pub source: Side,
    /// The destination's criteria.
    pub destination: Side,
    /// Verdicts.
    pub verdicts: Vec<Verdict>,
    /// Drop reasons by code.
    pub drop_reasons: Vec<u32>,
    /// Event types (`trace`, `drop` …) as Cilium's message type numbers.
    pub event_types: Vec<i32>,
    /// Protocols (`tcp`, `udp`, `icmp`, `icmpv6`, `sctp`).
    pub protocols: Vec<String>,
    /// TCP flag sets, each wholly present.
    pub tcp_flags: Vec<Vec<String>>,
    /// `INGRESS` / `EGRESS`.
    pub traffic_directions: Vec<String>,
    /// Node name patterns (`*` matches any run).
    pub node_names: Vec<String>,
    /// Reply or not.
    pub reply: Vec<bool>,
}

/// Which side a flag names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    From,
    To,
    Either,
}

/// Cilium's monitor message types by `--type` name.
pub const EVENT_TYPES: [(&str, i32); 9] = [
    ("drop", 1),
    ("debug", 2),
    ("capture", 3),
    ("trace", 4),
    ("policy-verdict", 5),
    ("recorder", 6),
    ("trace-sock", 7),
    ("l7", 129),
    ("agent", 130),
];

fn bad(flag: &str, value: &str, reason: impl Into<String>) -> FilterError {
    FilterError::BadValue { flag: flag.to_owned(), value: value.to_owned(), reason: reason.into() }
}

/// Parses a label selector: comma-separated `key=value`, `key!=value`, `key`, `!key`.
pub fn parse_selector(flag: &str, text: &str) -> Result<Vec<LabelRequirement>, FilterError> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let requirement = if let Some((k, v)) = part.split_once("!=") {
            LabelRequirement::NotEquals(k.trim().to_owned(), v.trim().to_owned())
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            LabelRequirement::Equals(k.trim().to_owned(), v.trim().to_owned())
        } else if let Some(k) = part.strip_prefix('!') {
            LabelRequirement::Absent(k.trim().to_owned())
        } else {
            LabelRequirement::Exists(part.to_owned())
        };
        let key = match &requirement {
            LabelRequirement::Equals(k, _)
            | LabelRequirement::NotEquals(k, _)
            | LabelRequirement::Exists(k)
            | LabelRequirement::Absent(k) => k,
        };
        if key.is_empty() {
            return Err(bad(flag, text, "a requirement without a key"));
        }
        out.push(requirement);
    }
    if out.is_empty() {
        return Err(bad(flag, text, "an empty selector"));
    }
    Ok(out)
}

/// The value of a label `key` among `labels` (`source:key=value`; a key given without a
/// source matches any source).
fn label_value<'a>(labels: &'a [String], key: &str) -> Option<&'a str> {
    labels.iter().find_map(|label| {
        let (k, v) = label.split_once('=').unwrap_or((label.as_str(), ""));
        let bare = k.split_once(':').map_or(k, |(_, rest)| rest);
        (k == key || bare == key).then_some(v)
    })
}

fn selector_matches(selector: &[LabelRequirement], labels: &[String]) -> bool {
    selector.iter().all(|r| match r {
        LabelRequirement::Equals(k, v) => label_value(labels, k) == Some(v.as_str()),
        LabelRequirement::NotEquals(k, v) => label_value(labels, k) != Some(v.as_str()),
        LabelRequirement::Exists(k) => label_value(labels, k).is_some(),
        LabelRequirement::Absent(k) => label_value(labels, k).is_none(),
    })
}

/// `*` matches any run of characters; everything else itself.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(after) = text.strip_prefix(head) else { return false };
            (0..=after.len()).filter(|i| after.is_char_boundary(*i)).any(|i| glob(rest, &after[i..]))
        }
    }
}

/// What a flow says of one side.
struct SideView<'a> {
    endpoint: Option<&'a super::flow::Endpoint>,
    ip: Option<&'a str>,
    service: Option<&'a super::flow::Service>,
    port: Option<u32>,
}

impl Side {
    fn is_empty(&self) -> bool {
        *self == Side::default()
    }

    fn matches(&self, view: &SideView<'_>) -> bool {
        let namespace = view.endpoint.map_or("", |e| e.namespace.as_str());
        let pod = view.endpoint.map_or("", |e| e.pod_name.as_str());
        let labels: &[String] = view.endpoint.map_or(&[], |e| &e.labels[..]);
        let pods_ok = self.pods.is_empty()
            || self.pods.iter().any(|p| match p.split_once('/') {
                Some((ns, prefix)) => {
                    ns == namespace && pod.starts_with(prefix) && (!prefix.is_empty() || !ns.is_empty())
                }
                None => !pod.is_empty() && pod.starts_with(p.as_str()),
            });
        let namespaces_ok = self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace);
        let labels_ok = self.labels.is_empty() || self.labels.iter().any(|s| selector_matches(s, labels));
        let address = view.ip.and_then(|ip| ip.parse::<IpAddr>().ok());
        let ips_ok = self.ips.is_empty() || address.is_some_and(|a| self.ips.iter().any(|c| c.contains(a)));
        let services_ok = self.services.is_empty()
            || view.service.is_some_and(|s| {
                self.services.iter().any(|wanted| match wanted.split_once('/') {
                    Some((ns, name)) => ns == s.namespace && (name.is_empty() || s.name.starts_with(name)),
                    None => s.name.starts_with(wanted.as_str()),
                })
            });
        let ports_ok = self.ports.is_empty() || view.port.is_some_and(|p| self.ports.contains(&p));
        let identities_ok =
            self.identities.is_empty() || view.endpoint.is_some_and(|e| self.identities.contains(&e.identity));
        pods_ok && namespaces_ok && labels_ok && ips_ok && services_ok && ports_ok && identities_ok
    }
}

impl FlowFilter {
    /// Whether `flow` meets every criterion set.
    pub fn matches(&self, flow: &Flow) -> bool {
        let ports = flow.l4.as_ref().and_then(|l4| l4.ports());
        let source = SideView {
            endpoint: flow.source.as_ref(),
            ip: flow.ip.as_ref().map(|ip| ip.source.as_str()),
            service: flow.source_service.as_ref(),
            port: ports.map(|p| p.0),
        };
        let destination = SideView {
            endpoint: flow.destination.as_ref(),
            ip: flow.ip.as_ref().map(|ip| ip.destination.as_str()),
            service: flow.destination_service.as_ref(),
            port: ports.map(|p| p.1),
        };
        let any = |set: bool, ok: bool| !set || ok;
        (self.source.is_empty() || self.source.matches(&source))
            && (self.destination.is_empty() || self.destination.matches(&destination))
            && any(!self.verdicts.is_empty(), self.verdicts.contains(&flow.verdict))
            && any(
                !self.drop_reasons.is_empty(),
                flow.drop_reason_desc
                    .as_deref()
                    .and_then(drop_reason_code)
                    .is_some_and(|c| self.drop_reasons.contains(&c)),
            )
            && any(!self.event_types.is_empty(), self.event_types.contains(&flow.event_type.kind))
            && any(
                !self.protocols.is_empty(),
                flow.l4.as_ref().is_some_and(|l4| self.protocols.iter().any(|p| p == l4.protocol())),
            )
            && any(!self.tcp_flags.is_empty(), {
                let set = match &flow.l4 {
                    Some(super::flow::Layer4::TCP(t)) => t.flags.map(|f| f.names()).unwrap_or_default(),
                    _ => Vec::new(),
                };
                self.tcp_flags.iter().any(|wanted| wanted.iter().all(|w| set.contains(&w.as_str())))
            })
            && any(
                !self.traffic_directions.is_empty(),
                self.traffic_directions.iter().any(|d| format!("{:?}", flow.traffic_direction) == *d),
            )
            && any(!self.node_names.is_empty(), self.node_names.iter().any(|p| glob(p, &flow.node_name)))
            && any(!self.reply.is_empty(), flow.is_reply.is_some_and(|r| self.reply.contains(&r)))
    }
}

/// The filters of an `observe` command line: allow and deny.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    /// A flow must match one of these (when there are any).
    pub allow: Vec<FlowFilter>,
    /// A flow must match none of these.
    pub deny: Vec<FlowFilter>,
}

impl Filters {
    /// Whether `flow` is shown.
    pub fn shows(&self, flow: &Flow) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|f| f.matches(flow)))
            && !self.deny.iter().any(|f| f.matches(flow))
    }
}

/// The filter flags being gathered: a side-less flag opens a second (destination) filter beside
/// the first (source) one, as Hubble's "either" flags do.
#[derive(Default)]
struct Builder {
    left: FlowFilter,
    right: Option<FlowFilter>,
}

impl Builder {
    fn each(&mut self, mut f: impl FnMut(&mut FlowFilter)) {
        f(&mut self.left);
        if let Some(right) = &mut self.right {
            f(right);
        }
    }

    /// Adds a side criterion: `From` to the source of every filter, `To` to the destination,
    /// `Either` to the source of the first and the destination of a second filter.
    fn side(&mut self, which: Which, mut add: impl FnMut(&mut Side)) {
        match which {
            Which::From => self.each(|f| add(&mut f.source)),
            Which::To => self.each(|f| add(&mut f.destination)),
            Which::Either => {
                let right = self.right.get_or_insert_with(|| self.left.clone());
                add(&mut right.destination);
                add(&mut self.left.source);
            }
        }
    }

    fn finish(self) -> Vec<FlowFilter> {
        let mut out = vec![self.left];
        out.extend(self.right);
        out.retain(|f| *f != FlowFilter::default());
        out
    }
}

/// Which filter flag `flag` is: (side, criterion name), or `None` for a flag that is not one.
fn side_flag(flag: &str) -> Option<(Which, &'static str)> {
    let names: [(&str, &str); 7] = [
        ("pod", "pod"),
        ("namespace", "namespace"),
        ("label", "label"),
        ("ip", "ip"),
        ("service", "service"),
        ("port", "port"),
        ("identity", "identity"),
    ];
    let bare = flag.trim_start_matches('-');
    let short = match flag {
        "-n" => Some("namespace"),
        "-l" => Some("label"),
        _ => None,
    };
    if let Some(name) = short {
        return Some((Which::Either, name));
    }
    for (long, name) in names {
        if bare == long {
            return Some((Which::Either, name));
        }
        if bare == format!("from-{long}") {
            return Some((Which::From, name));
        }
        if bare == format!("to-{long}") {
            return Some((Which::To, name));
        }
    }
    None
}

fn add_side(builder: &mut Builder, which: Which, name: &str, flag: &str, value: &str) -> Result<(), FilterError> {
    match name {
        "pod" => builder.side(which, |s| s.pods.push(value.to_owned())),
        "namespace" => builder.side(which, |s| s.namespaces.push(value.to_owned())),
        "label" => {
            let selector = parse_selector(flag, value)?;
            builder.side(which, |s| s.labels.push(selector.clone()));
        }
        "ip" => {
            let cidr = Cidr::parse(value).ok_or_else(|| bad(flag, value, "not an address or CIDR"))?;
            builder.side(which, |s| s.ips.push(cidr));
        }
        "service" => builder.side(which, |s| s.services.push(value.to_owned())),
        "port" => {
            let port: u16 = value.parse().map_err(|_| bad(flag, value, "not a port"))?;
            builder.side(which, |s| s.ports.push(u32::from(port)));
        }
        "identity" => {
            let id: u32 = value.parse().map_err(|_| bad(flag, value, "not an identity number"))?;
            builder.side(which, |s| s.identities.push(id));
        }
        _ => unreachable!("side_flag names only these"),
    }
    Ok(())
}

fn add_other(builder: &mut Builder, flag: &str, value: &str) -> Result<bool, FilterError> {
    match flag {
        "--verdict" => {
            let verdict = Verdict::ALL
                .into_iter()
                .find(|v| v.name().eq_ignore_ascii_case(value))
                .ok_or_else(|| bad(flag, value, "not a verdict (FORWARDED, DROPPED, AUDIT, TRANSLATED …)"))?;
            builder.each(|f| f.verdicts.push(verdict));
        }
        "--drop-reason-desc" => {
            let code = drop_reason_code(value).ok_or_else(|| bad(flag, value, "not one of Hubble's drop reasons"))?;
            builder.each(|f| f.drop_reasons.push(code));
        }
        "-t" | "--type" => {
            let kind = EVENT_TYPES
                .iter()
                .find(|(name, _)| *name == value)
                .map(|(_, n)| *n)
                .ok_or_else(|| bad(flag, value, "not an event type (trace, drop, policy-verdict, trace-sock …)"))?;
            builder.each(|f| f.event_types.push(kind));
        }
        "--protocol" => {
            let protocol = value.to_ascii_lowercase();
            let protocol = if protocol == "icmpv4" { "icmp".to_owned() } else { protocol };
            if !["tcp", "udp", "icmp", "icmpv6", "sctp"].contains(&protocol.as_str()) {
                return Err(bad(flag, value, "not tcp, udp, icmp, icmpv6 or sctp"));
            }
            builder.each(|f| f.protocols.push(protocol.clone()));
        }
        "--tcp-flags" => {
            let flags: Vec<String> = value.split(',').map(|s| s.trim().to_ascii_uppercase()).collect();
            const KNOWN: [&str; 9] = ["SYN", "FIN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS"];
            if let Some(unknown) = flags.iter().find(|f| !KNOWN.contains(&f.as_str())) {
                return Err(bad(flag, value, format!("{unknown} is not a TCP flag")));
            }
            builder.each(|f| f.tcp_flags.push(flags.clone()));
        }
        "--traffic-direction" => {
            let direction = value.to_ascii_uppercase();
            if direction != "INGRESS" && direction != "EGRESS" {
                return Err(bad(flag, value, "not ingress or egress"));
            }
            builder.each(|f| f.traffic_directions.push(direction.clone()));
        }
        "--node-name" => builder.each(|f| f.node_names.push(value.to_owned())),
        _ => return Ok(false),
    }
    Ok(true)
}

/// Whether `flag` is a filter flag (takes a value and lands in a filter).
pub fn is_filter_flag(flag: &str) -> bool {
    side_flag(flag).is_some()
        || [
            "--verdict",
            "--drop-reason-desc",
            "-t",
            "--type",
            "--protocol",
            "--tcp-flags",
            "--traffic-direction",
            "--node-name",
        ]
        .contains(&flag)
}

/// Builds the filters of `flags` (filter flags with their values, and `--not`; `--flag=value`
/// is taken too), in order.
pub fn parse(flags: &[String]) -> Result<Filters, FilterError> {
    let mut allow = Builder::default();
    let mut deny: Vec<FlowFilter> = Vec::new();
    let mut negate = false;
    let mut i = 0;
    while i < flags.len() {
        let raw = flags[i].as_str();
        i += 1;
        if raw == "--not" {
            negate = true;
            continue;
        }
        let (flag, inline) = match raw.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (raw, None),
        };
        if !is_filter_flag(flag) {
            return Err(FilterError::UnknownFlag(flag.to_owned()));
        }
        let value = match inline {
            Some(v) => v,
            None => {
                let v = flags.get(i).ok_or_else(|| FilterError::MissingValue(flag.to_owned()))?.clone();
                i += 1;
                v
            }
        };
        let target = if negate { &mut Builder::default() } else { &mut allow };
        match side_flag(flag) {
            Some((which, name)) => add_side(target, which, name, flag, &value)?,
            None => {
                add_other(target, flag, &value)?;
            }
        }
        if negate {
            let negated = std::mem::take(target);
            deny.extend(negated.finish());
            negate = false;
        }
    }
    if negate {
        return Err(FilterError::DanglingNot);
    }
    Ok(Filters { allow: allow.finish(), deny })
}

#[cfg(test)]
mod tests {
    use super::super::flow::*;
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    fn flow(from: (&str, &str, &str), to: (&str, &str, &str), port: u32, verdict: Verdict) -> Flow {
        let endpoint = |(ns, pod, app): (&str, &str, &str)| Endpoint {
            id: 1,
            identity: if app.is_empty() { 2 } else { 256 + app.len() as u32 },
            namespace: ns.into(),
            labels: if app.is_empty() { vec!["reserved:world".to_owned()] } else { vec![format!("k8s:app={app}")] }
                .into(),
            pod_name: pod.into(),
        };
        Flow {
            verdict,
            ip: Some(Ip {
                source: if from.1.is_empty() { "192.168.100.2".into() } else { "10.200.1.2".into() },
                destination: "10.200.2.2".into(),
                ip_version: "IPv4".into(),
                encrypted: false,
            }),
            l4: Some(Layer4::TCP(Tcp {
                source_port: 40000,
                destination_port: port,
                flags: Some(TcpFlags::from_bits(0x12, false)),
            })),
            source: Some(endpoint(from)),
            destination: Some(endpoint(to)),
            node_name: "node2".into(),
            traffic_direction: TrafficDirection::INGRESS,
            event_type: CiliumEventType { kind: if verdict == Verdict::DROPPED { 1 } else { 4 }, sub_type: 0 },
            drop_reason_desc: (verdict == Verdict::DROPPED).then(|| "POLICY_DENIED".to_owned()),
            is_reply: Some(false),
            ..Default::default()
        }
    }

    /// A recorded set: frontend→backend allowed, db denied, world to frontend.
    fn recorded() -> Vec<Flow> {
        vec![
            flow(("shop", "frontend-1", "frontend"), ("shop", "backend-1", "backend"), 8080, Verdict::FORWARDED),
            flow(("shop", "frontend-1", "frontend"), ("shop", "db-1", "db"), 5432, Verdict::DROPPED),
            flow(("ops", "monitor", "monitor"), ("shop", "backend-1", "backend"), 9090, Verdict::FORWARDED),
            flow(("", "", ""), ("shop", "frontend-1", "frontend"), 80, Verdict::FORWARDED),
        ]
    }

    fn shown(flags: &str) -> Vec<usize> {
        let filters = parse(&args(flags)).unwrap();
        recorded().iter().enumerate().filter(|(_, f)| filters.shows(f)).map(|(i, _)| i).collect()
    }

    #[test]
    fn each_flag_filters_as_hubbles_does() {
        assert_eq!(shown(""), [0, 1, 2, 3]);
        assert_eq!(shown("--from-pod shop/frontend"), [0, 1]);
        assert_eq!(shown("--to-pod shop/backend"), [0, 2]);
        assert_eq!(shown("--pod shop/frontend"), [0, 1, 3], "either side");
        assert_eq!(shown("--pod shop/"), [0, 1, 2, 3], "a namespace alone");
        assert_eq!(shown("-n ops"), [2]);
        assert_eq!(shown("--from-namespace shop --to-namespace shop"), [0, 1]);
        assert_eq!(shown("-l app=db"), [1]);
        assert_eq!(shown("--from-label k8s:app=frontend"), [0, 1]);
        assert_eq!(shown("--label app!=backend,app"), [0, 1, 2, 3]);
        assert_eq!(shown("--to-label app=backend"), [0, 2]);
        assert_eq!(shown("--from-ip 192.168.100.0/24"), [3]);
        assert_eq!(shown("--ip 10.200.2.2"), [0, 1, 2, 3]);
        assert_eq!(shown("--to-port 5432"), [1]);
        assert_eq!(shown("--port 40000"), [0, 1, 2, 3]);
        assert_eq!(shown("--from-identity 2"), [3]);
        assert_eq!(shown("--verdict DROPPED"), [1]);
        assert_eq!(shown("--verdict dropped --verdict FORWARDED"), [0, 1, 2, 3], "values of one flag: either");
        assert_eq!(shown("--drop-reason-desc POLICY_DENIED"), [1]);
        assert_eq!(shown("-t drop"), [1]);
        assert_eq!(shown("--type trace"), [0, 2, 3]);
        assert_eq!(shown("--protocol tcp"), [0, 1, 2, 3]);
        assert_eq!(shown("--protocol udp"), Vec::<usize>::new());
        assert_eq!(shown("--tcp-flags SYN,ACK"), [0, 1, 2, 3]);
        assert_eq!(shown("--tcp-flags FIN"), Vec::<usize>::new());
        assert_eq!(shown("--traffic-direction ingress"), [0, 1, 2, 3]);
        assert_eq!(shown("--traffic-direction egress"), Vec::<usize>::new());
        assert_eq!(shown("--node-name node*"), [0, 1, 2, 3]);
        assert_eq!(shown("--node-name node1"), Vec::<usize>::new());
    }

    #[test]
    fn different_flags_must_all_hold_and_not_excludes() {
        assert_eq!(shown("--from-pod shop/frontend --verdict FORWARDED"), [0]);
        assert_eq!(shown("--pod shop/backend -t trace"), [0, 2]);
        assert_eq!(shown("--not --verdict DROPPED"), [0, 2, 3]);
        assert_eq!(shown("-n shop --not --from-namespace ops"), [0, 1, 3]);
        assert_eq!(shown("--not --pod shop/frontend"), [2], "neither side");
        assert_eq!(shown("--to-port=8080"), [0], "--flag=value");
    }

    #[test]
    fn bad_flags_are_named() {
        assert_eq!(parse(&args("--bogus 1")), Err(FilterError::UnknownFlag("--bogus".into())));
        assert_eq!(parse(&args("--verdict")), Err(FilterError::MissingValue("--verdict".into())));
        assert_eq!(parse(&args("--verdict")).unwrap_err().to_string(), "--verdict needs a value");
        assert!(matches!(parse(&args("--verdict MAYBE")), Err(FilterError::BadValue { .. })));
        assert!(matches!(parse(&args("--to-port 70000")), Err(FilterError::BadValue { .. })));
        assert!(matches!(parse(&args("--ip 10.1")), Err(FilterError::BadValue { .. })));
        assert_eq!(parse(&args("--not")), Err(FilterError::DanglingNot));
        assert!(matches!(parse(&args("-l ,")), Err(FilterError::BadValue { .. })));
    }
}
