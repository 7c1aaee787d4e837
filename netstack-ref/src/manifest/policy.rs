//! CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy documents → [`Policy`], strictly: unknown
//! fields, wrong types and invalid combinations are errors at their line and field.

use super::error::Located;
use super::yaml::{Fields, Node};

use crate::policy::api::*;
use crate::policy::selector::{strip_source, LabelSelector, Operator, Requirement};

const RULE_FIELDS: &[&str] = &[
    "endpointSelector",
    "nodeSelector",
    "ingress",
    "ingressDeny",
    "egress",
    "egressDeny",
    "enableDefaultDeny",
    "labels",
    "description",
];

/// Decodes the `spec`/`specs` of a policy document whose metadata is already read.
pub fn decode_policy(name: String, namespace: Option<String>, doc: &mut Fields<'_, '_>) -> Result<Policy, Located> {
    let mut rules = Vec::new();
    let clusterwide = namespace.is_none();
    if let Some(spec) = doc.get("spec") {
        rules.push(decode_rule(&spec, clusterwide)?);
    }
    if let Some(specs) = doc.get("specs") {
        for spec in specs.list()? {
            rules.push(decode_rule(&spec, clusterwide)?);
        }
    }
    if rules.is_empty() {
        return Err(doc.error("spec", "a policy needs `spec` or `specs`"));
    }
    Ok(Policy { name, namespace, rules })
}

fn origin(node: &Node<'_, '_>) -> Origin {
    Origin { line: node.line(), field: node.path().to_string() }
}

fn decode_rule(node: &Node<'_, '_>, clusterwide: bool) -> Result<Rule, Located> {
    let mut f = node.fields()?;
    let subject = match (f.get("endpointSelector"), f.get("nodeSelector")) {
        (Some(_), Some(_)) => {
            return Err(f.error("nodeSelector", "endpointSelector and nodeSelector are mutually exclusive"))
        }
        (Some(sel), None) => (Subject::Endpoints(selector(&sel)?), origin(&sel)),
        (None, Some(sel)) if clusterwide => (Subject::Nodes(selector(&sel)?), origin(&sel)),
        (None, Some(_)) => {
            return Err(
                f.error("nodeSelector", "host policies (nodeSelector) exist only in CiliumClusterwideNetworkPolicy")
            )
        }
        (None, None) => return Err(f.error("", "a rule needs endpointSelector or nodeSelector")),
    };
    let mut rule = Rule {
        subject: subject.0,
        subject_origin: subject.1,
        ingress: Vec::new(),
        ingress_deny: Vec::new(),
        egress: Vec::new(),
        egress_deny: Vec::new(),
        default_deny_ingress: None,
        default_deny_egress: None,
        description: None,
    };
    let host = matches!(rule.subject, Subject::Nodes(_));
    for (field, direction, deny) in [
        ("ingress", Direction::Ingress, false),
        ("ingressDeny", Direction::Ingress, true),
        ("egress", Direction::Egress, false),
        ("egressDeny", Direction::Egress, true),
    ] {
        let Some(list) = f.get(field) else { continue };
        let mut rules = Vec::new();
        for item in list.list()? {
            rules.push(peer_rule(&item, Section { direction, deny, host })?);
        }
        match (direction, deny) {
            (Direction::Ingress, false) => rule.ingress = rules,
            (Direction::Ingress, true) => rule.ingress_deny = rules,
            (Direction::Egress, false) => rule.egress = rules,
            (Direction::Egress, true) => rule.egress_deny = rules,
        }
    }
    if let Some(dd) = f.get("enableDefaultDeny") {
        let mut d = dd.fields()?;
        rule.default_deny_ingress = d.get("ingress").map(|n| n.bool()).transpose()?;
        rule.default_deny_egress = d.get("egress").map(|n| n.bool()).transpose()?;
        d.finish(&["ingress", "egress"])?;
    }
    if let Some(labels) = f.get("labels") {
        for item in labels.list()? {
            let mut l = item.fields()?;
            for key in ["key", "value", "source"] {
                if let Some(v) = l.get(key) {
                    v.str()?;
                }
            }
            l.finish(&["key", "value", "source"])?;
        }
    }
    rule.description = f.get("description").map(|d| d.str().map(str::to_string)).transpose()?;
    f.finish_ref(RULE_FIELDS)?;
    // pkg/policy/api/rule_validation.go (Rule.Validate): a rule says something in some direction.
    if rule.sections().iter().all(|(_, rules, _)| rules.is_empty()) {
        return Err(f.error("", "a rule needs at least one of ingress, ingressDeny, egress, egressDeny"));
    }
    Ok(rule)
}

/// The fields a peer rule may have, by direction and kind.
fn peer_fields(direction: Direction, deny: bool) -> Vec<&'static str> {
    let mut fields: Vec<&str> = match direction {
        Direction::Ingress => {
            vec!["fromEndpoints", "fromRequires", "fromCIDR", "fromCIDRSet", "fromEntities", "fromNodes"]
        }
        Direction::Egress => {
            vec!["toEndpoints", "toRequires", "toCIDR", "toCIDRSet", "toEntities", "toNodes", "toServices"]
        }
    };
    if direction == Direction::Egress && !deny {
        fields.push("toFQDNs");
    }
    fields.extend(["toPorts", "icmps"]);
    fields
}

/// Where a peer rule stands: its direction, whether it denies, whether its rule is a host
/// policy (nodeSelector).
#[derive(Clone, Copy)]
struct Section {
    direction: Direction,
    deny: bool,
    host: bool,
}

fn peer_rule(node: &Node<'_, '_>, section: Section) -> Result<PeerRule, Located> {
    let Section { direction, deny, .. } = section;
    let mut f = node.fields()?;
    let allowed = peer_fields(direction, deny);
    let p = if direction == Direction::Ingress { "from" } else { "to" };
    let section_name = match (direction, deny) {
        (Direction::Ingress, false) => "ingress",
        (Direction::Ingress, true) => "ingressDeny",
        (Direction::Egress, false) => "egress",
        (Direction::Egress, true) => "egressDeny",
    };
    // A field valid elsewhere but not here gets a pointed message rather than "unknown field".
    for misplaced in ["toFQDNs", "toServices", "fromEndpoints", "toEndpoints", "fromCIDR", "toCIDR", "fromEntities"] {
        if f.has(misplaced) && !allowed.contains(&misplaced) {
            return Err(f.error(misplaced, format!("{misplaced} is not allowed in {section_name}")));
        }
    }

    let mut kinds: Vec<(String, Peers)> = Vec::new();
    if let Some(n) = f.get(&format!("{p}Endpoints")) {
        let sels = n.list()?.iter().map(selector).collect::<Result<_, _>>()?;
        kinds.push((format!("{p}Endpoints"), Peers::Endpoints(sels)));
    }
    if let Some(n) = f.get(&format!("{p}Nodes")) {
        let sels = n.list()?.iter().map(selector).collect::<Result<_, _>>()?;
        kinds.push((format!("{p}Nodes"), Peers::Nodes(sels)));
    }
    if let Some(n) = f.get(&format!("{p}CIDR")) {
        let cidrs: Result<_, Located> =
            n.list()?.iter().map(|item| Ok(CidrRule { cidr: cidr(item)?, except: Vec::new() })).collect();
        kinds.push((format!("{p}CIDR"), Peers::Cidrs(cidrs?)));
    }
    if let Some(n) = f.get(&format!("{p}CIDRSet")) {
        let cidrs = n.list()?.iter().map(cidr_set).collect::<Result<_, _>>()?;
        kinds.push((format!("{p}CIDRSet"), Peers::Cidrs(cidrs)));
    }
    if let Some(n) = f.get(&format!("{p}Entities")) {
        let mut entities = Vec::new();
        for item in n.list()? {
            let name = item.str()?;
            let entity = Entity::NAMES.iter().find(|(n, _)| *n == name).map(|(_, e)| *e).ok_or_else(|| {
                let names: Vec<&str> = Entity::NAMES.iter().map(|(n, _)| *n).collect();
                item.error(format!("{name:?} is not one of {}", names.join(", ")))
            })?;
            entities.push(entity);
        }
        kinds.push((format!("{p}Entities"), Peers::Entities(entities)));
    }
    let services = if direction == Direction::Egress { f.get("toServices") } else { None };
    if let Some(n) = &services {
        let list: Vec<Option<ServiceSelector>> = n.list()?.iter().map(service).collect::<Result<_, _>>()?;
        kinds.push(("toServices".into(), Peers::Services(list.into_iter().flatten().collect())));
    }
    if let Some(n) = f.get("toFQDNs").filter(|_| allowed.contains(&"toFQDNs")) {
        let list = n.list()?.iter().map(fqdn).collect::<Result<_, _>>()?;
        kinds.push(("toFQDNs".into(), Peers::Fqdns(list)));
    }
    if kinds.len() > 1 {
        let names: Vec<&str> = kinds.iter().map(|(n, _)| n.as_str()).collect();
        return Err(f.error(
            &kinds[1].0.clone(),
            format!(
                "one rule takes one kind of L3 peer, found {}; split them into separate rules",
                names.join(" and ")
            ),
        ));
    }
    let peers = kinds.pop().map_or(Peers::Unspecified, |(_, p)| p);

    let requires = match f.get(&format!("{p}Requires")) {
        Some(n) => n.list()?.iter().map(selector).collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let mut to_ports = Vec::new();
    if let Some(n) = f.get("toPorts") {
        if services.is_some() {
            return Err(f.error("toPorts", "toServices cannot be combined with toPorts"));
        }
        for item in n.list()? {
            to_ports.push(port_rule(&item, section)?);
        }
    }
    let mut icmps = Vec::new();
    if let Some(n) = f.get("icmps") {
        for item in n.list()? {
            let mut i = item.fields()?;
            if let Some(fields) = i.get("fields") {
                let fields = fields.list()?;
                if fields.len() > MAX_ICMP_FIELDS {
                    return Err(i.error("fields", format!("too many types, the max is {MAX_ICMP_FIELDS}")));
                }
                for field in fields {
                    icmps.push(icmp_field(&field)?);
                }
            }
            i.finish(&["fields"])?;
        }
        if !to_ports.is_empty() {
            return Err(f.error(
                "icmps",
                "the icmps block may only be present without toPorts; define a separate rule to use toPorts",
            ));
        }
    }
    f.finish(&allowed)?;
    Ok(PeerRule { peers, requires, to_ports, icmps, origin: origin(node) })
}

/// A label selector (`matchLabels`, `matchExpressions`).
pub fn selector(node: &Node<'_, '_>) -> Result<LabelSelector, Located> {
    let mut f = node.fields()?;
    let mut sel = LabelSelector::default();
    if let Some(labels) = f.get("matchLabels") {
        let pairs = labels.string_map()?;
        let keys = labels.fields()?;
        for (k, v) in &pairs {
            if let Some(message) = label_problem(k, std::slice::from_ref(v)) {
                return Err(keys.error(k, message));
            }
        }
        sel.match_labels = pairs.into_iter().map(|(k, v)| (strip_source(&k).to_string(), v)).collect();
    }
    if let Some(exprs) = f.get("matchExpressions") {
        for item in exprs.list()? {
            let mut e = item.fields()?;
            let key = e.get("key").ok_or_else(|| e.error("key", "missing"))?.str()?.to_string();
            let op_node = e.get("operator").ok_or_else(|| e.error("operator", "missing"))?;
            let operator = match op_node.str()? {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(op_node.error(format!("{other:?} is not one of In, NotIn, Exists, DoesNotExist"))),
            };
            let values: Vec<String> = match e.get("values") {
                Some(v) => v.list()?.iter().map(|n| n.str_or_int()).collect::<Result<_, _>>()?,
                None => Vec::new(),
            };
            match operator {
                Operator::In | Operator::NotIn if values.is_empty() => {
                    return Err(e.error("values", format!("{:?} needs at least one value", op_node.str()?)))
                }
                Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                    return Err(e.error("values", format!("{:?} takes no values", op_node.str()?)))
                }
                _ => {}
            }
            if let Some(message) = label_problem(&key, &values) {
                return Err(e.error("key", message));
            }
            e.finish(&["key", "operator", "values"])?;
            sel.match_expressions.push(Requirement { key: strip_source(&key).to_string(), operator, values });
        }
    }
    f.finish(&["matchLabels", "matchExpressions"])?;
    Ok(sel)
}

/// What is wrong with a label by Kubernetes' syntax (ValidateLabelSelector, which Cilium's EndpointSelector validation
/// runs): a key is an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric; a value is such a name or
/// empty. Cilium's source prefixes (`k8s:`, `reserved:`, …) come off the key first.
fn label_problem(key: &str, values: &[String]) -> Option<String> {
    fn name_ok(name: &str) -> bool {
        let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        name.len() <= 63
            && ends(name.chars().next())
            && ends(name.chars().last())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    }
    fn subdomain_ok(prefix: &str) -> bool {
        prefix.len() <= 253
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && !part.starts_with('-')
                    && !part.ends_with('-')
                    && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
    }
    let bare = match key.split_once(':') {
        Some((source, rest)) if ["k8s", "any", "container", "unspec", "reserved"].contains(&source) => rest,
        _ => key,
    };
    let key_ok = match bare.rsplit_once('/') {
        Some((prefix, name)) => subdomain_ok(prefix) && name_ok(name),
        None => name_ok(bare),
    };
    // Reserved labels (`reserved:host`) are Cilium's own names.
    let reserved = key.starts_with("reserved:") && !bare.is_empty();
    if !(key_ok || reserved) {
        return Some(format!("{key:?} is not a valid label key"));
    }
    values.iter().find(|v| !v.is_empty() && !name_ok(v)).map(|v| format!("{v:?} is not a valid label value"))
}

fn cidr(node: &Node<'_, '_>) -> Result<Cidr, Located> {
    let text = node.str()?;
    Cidr::parse(text).ok_or_else(|| node.error(format!("{text:?} is not a CIDR (a.b.c.d/n or x:y::/n)")))
}

/// A prefix in `address/length` notation (a CIDR set takes no bare address, unlike `fromCIDR`).
fn prefix(node: &Node<'_, '_>) -> Result<Cidr, Located> {
    let text = node.str()?;
    match text.contains('/') {
        true => cidr(node),
        false => Err(node.error(format!("{text:?} is not a prefix (address/length)"))),
    }
}

fn cidr_set(node: &Node<'_, '_>) -> Result<CidrRule, Located> {
    let mut f = node.fields()?;
    let prefix = prefix(&f.get("cidr").ok_or_else(|| f.error("cidr", "missing"))?)?;
    let mut except = Vec::new();
    if let Some(list) = f.get("except") {
        for item in list.list()? {
            let e = self::prefix(&item)?;
            if !prefix.covers(&e) {
                return Err(item.error(format!("{e} is not inside {prefix}")));
            }
            except.push(e);
        }
    }
    if f.has("cidrGroupRef") {
        return Err(f.error("cidrGroupRef", "CiliumCIDRGroup references are not supported; list the prefixes"));
    }
    f.finish(&["cidr", "except"])?;
    Ok(CidrRule { cidr: prefix, except })
}

/// One `toServices` entry; `None` for an empty one (`{}`), which selects no service: Cilium's
/// Service with neither selector matches nothing, like any explicitly empty peer list.
fn service(node: &Node<'_, '_>) -> Result<Option<ServiceSelector>, Located> {
    let mut f = node.fields()?;
    let out = if let Some(svc) = f.get("k8sService") {
        let mut s = svc.fields()?;
        let name = s.get("serviceName").ok_or_else(|| s.error("serviceName", "missing"))?.str()?.to_string();
        let namespace = s.get("namespace").map(|n| n.str().map(str::to_string)).transpose()?;
        s.finish(&["serviceName", "namespace"])?;
        ServiceSelector::Named { name, namespace }
    } else if let Some(svc) = f.get("k8sServiceSelector") {
        let mut s = svc.fields()?;
        let selector = selector(&s.get("selector").ok_or_else(|| s.error("selector", "missing"))?)?;
        let namespace = s.get("namespace").map(|n| n.str().map(str::to_string)).transpose()?;
        s.finish(&["selector", "namespace"])?;
        ServiceSelector::Selected { selector, namespace }
    } else {
        f.finish(&["k8sService", "k8sServiceSelector"])?;
        return Ok(None);
    };
    f.finish(&["k8sService", "k8sServiceSelector"])?;
    Ok(Some(out))
}

fn fqdn(node: &Node<'_, '_>) -> Result<FqdnSelector, Located> {
    let mut f = node.fields()?;
    let out = match (f.get("matchName"), f.get("matchPattern")) {
        (Some(n), None) => FqdnSelector::Name(dns_text(&n, false)?),
        (None, Some(p)) => FqdnSelector::Pattern(dns_text(&p, true)?),
        (Some(_), Some(_)) => return Err(f.error("matchPattern", "give matchName or matchPattern, not both")),
        (None, None) => return Err(f.error("", "needs matchName or matchPattern")),
    };
    f.finish(&["matchName", "matchPattern"])?;
    Ok(out)
}

fn dns_text(node: &Node<'_, '_>, pattern: bool) -> Result<String, Located> {
    let text = node.str()?;
    let ok = !text.is_empty()
        && text.len() <= 255
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' || (pattern && c == '*'));
    if !ok {
        return Err(node.error(format!("{text:?} is not a DNS name{}", if pattern { " pattern" } else { "" })));
    }
    Ok(text.to_string())
}

fn port_rule(node: &Node<'_, '_>, section: Section) -> Result<PortRule, Located> {
    let mut f = node.fields()?;
    let mut ports = Vec::new();
    if let Some(list) = f.get("ports") {
        let items = list.list()?;
        if items.len() > MAX_PORTS {
            return Err(list.error(format!("too many ports, the max is {MAX_PORTS}")));
        }
        for item in items {
            ports.push(port_protocol(&item)?);
        }
    }
    let mut l7 = Vec::new();
    if let Some(rules) = f.get("rules") {
        if section.deny {
            return Err(f.error("rules", "L7 rules are not allowed in a deny section"));
        }
        let mut r = rules.fields()?;
        if let Some(http) = r.get("http") {
            for item in http.list()? {
                let mut h = item.fields()?;
                let text = |n: Option<Node<'_, '_>>| n.map(|n| n.str().map(str::to_string)).transpose();
                let method = text(h.get("method"))?;
                let path = text(h.get("path"))?;
                let host = text(h.get("host"))?;
                let headers = match h.get("headers") {
                    Some(list) => list.list()?.iter().map(|n| n.str().map(str::to_string)).collect::<Result<_, _>>()?,
                    None => Vec::new(),
                };
                h.finish(&["method", "path", "host", "headers"])?;
                l7.push(L7Rule::Http { method, path, host, headers });
            }
        }
        if let Some(dns) = r.get("dns") {
            for item in dns.list()? {
                l7.push(L7Rule::Dns(fqdn(&item)?));
            }
        }
        r.finish_ref(&["http", "dns"])?;
        if let Some(message) = l7_problem(&l7, &ports, section) {
            return Err(f.error("rules", message));
        }
    }
    f.finish(&["ports", "rules"])?;
    Ok(PortRule { ports, l7, origin: origin(node) })
}

fn port_protocol(node: &Node<'_, '_>) -> Result<PortProtocol, Located> {
    let mut f = node.fields()?;
    // Cilium's ParseL4Proto takes any capitalisation.
    let protocol = match f.get("protocol") {
        None => Protocol::Any,
        Some(p) => match p.str()?.to_ascii_uppercase().as_str() {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            "ICMP" => Protocol::Icmp,
            "ICMPV6" => Protocol::Icmpv6,
            "ANY" | "" => Protocol::Any,
            "VRRP" => Protocol::Vrrp,
            "IGMP" => Protocol::Igmp,
            _ => {
                return Err(
                    p.error(format!("{:?} is not one of TCP, UDP, SCTP, ICMP, ICMPv6, VRRP, IGMP, ANY", p.str()?))
                )
            }
        },
    };
    // Protocols without ports (Cilium >= 1.17's extended protocols) take none.
    let portless = matches!(protocol, Protocol::Vrrp | Protocol::Igmp);
    let port = match f.get("port") {
        None if portless => 0,
        None => return Err(f.error("port", "port must be specified (\"0\" for every port)")),
        Some(p) => {
            let text = p.str_or_int()?;
            match text.parse::<u32>() {
                Ok(n) if n <= 65535 => n as u16,
                Ok(n) => return Err(p.error(format!("{n} is not a port (0-65535)"))),
                Err(_) if is_port_name(&text) => {
                    return Err(p.error(format!(
                    "named port {text:?} cannot be resolved: pods do not declare container ports yet; use the number"
                )))
                }
                Err(_) => return Err(p.error(format!("{text:?} is neither a port number nor a port name"))),
            }
        }
    };
    let end_port = match f.get("endPort") {
        None => None,
        Some(e) => {
            let end = e.int(0, 65535)? as u16;
            if port == 0 {
                return Err(e.error("endPort needs port"));
            }
            if end < port {
                return Err(e.error(format!("endPort {end} is below port {port}")));
            }
            Some(end)
        }
    };
    if matches!(protocol, Protocol::Icmp | Protocol::Icmpv6) && port != 0 {
        return Err(f.error("port", "ICMP has no ports; name ICMP types under icmps"));
    }
    if portless && port != 0 {
        return Err(f.error("port", format!("port must be empty or 0 for {}", protocol.name())));
    }
    f.finish(&["port", "endPort", "protocol"])?;
    Ok(PortProtocol { port, end_port, protocol })
}

/// IANA service names: 1-15 characters, lower-case letters, digits and inner hyphens.
fn is_port_name(text: &str) -> bool {
    (1..=15).contains(&text.len())
        && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && text.chars().any(|c| c.is_ascii_lowercase())
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// Cilium's names of ICMP types (pkg/policy/api/icmp.go), IPv4.
const ICMPV4_NAMES: &[(&str, u8)] = &[
    ("EchoReply", 0),
    ("DestinationUnreachable", 3),
    ("Redirect", 5),
    ("Echo", 8),
    ("EchoRequest", 8),
    ("RouterAdvertisement", 9),
    ("RouterSelection", 10),
    ("TimeExceeded", 11),
    ("ParameterProblem", 12),
    ("Timestamp", 13),
    ("TimestampReply", 14),
    ("Photuris", 40),
    ("ExtendedEchoRequest", 42),
    ("ExtendedEchoReply", 43),
];

/// Cilium's names of ICMPv6 types.
const ICMPV6_NAMES: &[(&str, u8)] = &[
    ("DestinationUnreachable", 1),
    ("PacketTooBig", 2),
    ("TimeExceeded", 3),
    ("ParameterProblem", 4),
    ("EchoRequest", 128),
    ("EchoReply", 129),
    ("MulticastListenerQuery", 130),
    ("MulticastListenerReport", 131),
    ("MulticastListenerDone", 132),
    ("RouterSolicitation", 133),
    ("RouterAdvertisement", 134),
    ("NeighborSolicitation", 135),
    ("NeighborAdvertisement", 136),
    ("RedirectMessage", 137),
    ("RouterRenumbering", 138),
    ("ICMPNodeInformationQuery", 139),
    ("ICMPNodeInformationResponse", 140),
    ("InverseNeighborDiscoverySolicitation", 141),
    ("InverseNeighborDiscoveryAdvertisement", 142),
    ("HomeAgentAddressDiscoveryRequest", 144),
    ("HomeAgentAddressDiscoveryReply", 145),
    ("MobilePrefixSolicitation", 146),
    ("MobilePrefixAdvertisement", 147),
    ("DuplicateAddressRequestCodeSuffix", 157),
    ("DuplicateAddressConfirmationCodeSuffix", 158),
    ("ExtendedEchoRequest", 160),
    ("ExtendedEchoReply", 161),
];

/// Limits of pkg/policy/api/rule_validation.go.
const MAX_PORTS: usize = 40;
const MAX_ICMP_FIELDS: usize = 40;

/// What is wrong with L7 rules where they stand (pkg/policy/api/rule_validation.go:
/// PortRule.Validate, L7Rules.Validate), if anything.
fn l7_problem(l7: &[L7Rule], ports: &[PortProtocol], section: Section) -> Option<String> {
    let http = l7.iter().any(|r| matches!(r, L7Rule::Http { .. }));
    let dns = l7.iter().any(|r| matches!(r, L7Rule::Dns(_)));
    if http && dns {
        return Some("multiple L7 protocol rule types specified in single rule".into());
    }
    if section.host && (section.direction == Direction::Ingress || http) {
        return Some(format!(
            "L7 protocol {} is not supported on host {} yet",
            if http { "HTTP" } else { "DNS" },
            if section.direction == Direction::Ingress { "ingress" } else { "egress" }
        ));
    }
    if dns && section.direction == Direction::Ingress {
        return Some("DNS rules are not allowed on ingress".into());
    }
    if dns && ports.is_empty() {
        return Some("port 53 must be specified for DNS rules".into());
    }
    if ports.iter().any(|p| p.port == 0) {
        return Some("L7 rules can not be used when a port is 0".into());
    }
    for p in ports {
        if dns && p.end_port.is_some_and(|end| end > p.port) {
            return Some("DNS rules do not support port ranges".into());
        }
        if !dns && p.protocol != Protocol::Tcp {
            return Some(format!("L7 rules can only apply to TCP (not {}) except for DNS rules", p.protocol.name()));
        }
    }
    None
}

fn icmp_field(node: &Node<'_, '_>) -> Result<IcmpType, Located> {
    let mut f = node.fields()?;
    let ipv6 = match f.get("family") {
        None => false,
        Some(fam) => match fam.str()? {
            "IPv4" => false,
            "IPv6" => true,
            other => return Err(fam.error(format!("{other:?} is not one of IPv4, IPv6"))),
        },
    };
    let type_node = f.get("type").ok_or_else(|| f.error("type", "missing"))?;
    let names = if ipv6 { ICMPV6_NAMES } else { ICMPV4_NAMES };
    let text = type_node.str_or_int()?;
    let icmp_type = match text.parse::<u8>() {
        Ok(t) => t,
        Err(_) => names.iter().find(|(n, _)| *n == text).map(|(_, t)| *t).ok_or_else(|| {
            let known: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
            type_node.error(format!(
                "{text:?} is not an ICMP type of {} (0-255 or one of {})",
                if ipv6 { "IPv6" } else { "IPv4" },
                known.join(", ")
            ))
        })?,
    };
    f.finish(&["family", "type"])?;
    Ok(IcmpType { ipv6, icmp_type })
}
