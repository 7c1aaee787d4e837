//! `Service`, `EndpointSlice` and legacy `Endpoints` documents, with the defaults the API server
//! applies to raw YAML (protocol TCP, target port = port, the ClientIP affinity timeout, node
//! ports for NodePort and LoadBalancer services) and its validation (port names unique and
//! required when there are several, fields only some types may carry). Legacy `Endpoints`
//! become slices here, as Kubernetes' mirroring controller makes them. Cluster IPs and node
//! ports left for the API server to allocate are allocated by [`crate::services::catalog`],
//! which sees every service at once.

use std::net::IpAddr;

use super::error::Located;
use super::yaml::{Fields, Node};
use crate::policy::api::Cidr;

/// `spec.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceType {
    /// `ClusterIP` (the default).
    ClusterIp,
    /// `NodePort`: also a port on every node.
    NodePort,
    /// `LoadBalancer`: also the load balancer's addresses (`status.loadBalancer.ingress`).
    LoadBalancer,
    /// `ExternalName`: a DNS alias, nothing to balance.
    ExternalName,
}

impl ServiceType {
    /// Its name in YAML.
    pub fn name(self) -> &'static str {
        match self {
            ServiceType::ClusterIp => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::ExternalName => "ExternalName",
        }
    }
}

/// A service port's transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum L4Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl L4Protocol {
    /// Its IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            L4Protocol::Tcp => 6,
            L4Protocol::Udp => 17,
            L4Protocol::Sctp => 132,
        }
    }

    /// Its name in YAML.
    pub fn name(self) -> &'static str {
        match self {
            L4Protocol::Tcp => "TCP",
            L4Protocol::Udp => "UDP",
            L4Protocol::Sctp => "SCTP",
        }
    }
}

/// `externalTrafficPolicy` / `internalTrafficPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrafficPolicy {
    /// Any backend in the cluster (the default).
    #[default]
    Cluster,
    /// Only backends on the node the traffic arrived at.
    Local,
}

/// Where a service port sends to on a backend.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// A port name, resolved per backend through its slice's ports.
    Name(String),
}

/// One of a service's ports.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePort {
    /// `name` (empty when the service has one port and it has none).
    pub name: String,
    /// `protocol`.
    pub protocol: L4Protocol,
    /// `port`: the frontend's.
    pub port: u16,
    /// `targetPort` (default: the same number as `port`).
    pub target_port: TargetPort,
    /// `nodePort`, when given (NodePort and LoadBalancer services get one allocated if not).
    pub node_port: Option<u16>,
}

/// `spec.clusterIP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClusterIp {
    /// Not given: allocated from the service range.
    Allocate,
    /// `None`: a headless service, nothing to balance.
    Headless,
    /// Given.
    Address(IpAddr),
}

/// How north-south traffic reaches a remote backend, per service
/// (`service.cilium.io/forwarding-mode`, Cilium's annotation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ForwardingMode {
    /// The node's setting.
    #[default]
    Default,
    /// Source-NAT through the node.
    Snat,
    /// Direct server return.
    Dsr,
    /// DSR for TCP, SNAT for UDP.
    Hybrid,
}

/// The annotation choosing [`ForwardingMode`].
pub const FORWARDING_MODE_ANNOTATION: &str = "service.cilium.io/forwarding-mode";

/// The label tying a slice to its service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The ClientIP affinity timeout the API server fills in (3 h).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;

/// A `Service`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `spec.type`.
    pub service_type: ServiceType,
    /// `spec.clusterIP` (or the first of `spec.clusterIPs`).
    pub cluster_ip: ClusterIp,
    /// `spec.ports`.
    pub ports: Vec<ServicePort>,
    /// `spec.selector`: none means the slices (or Endpoints) given are its backends.
    pub selector: Option<Vec<(String, String)>>,
    /// `spec.externalIPs`.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip` (LoadBalancer services).
    pub load_balancer_ingress: Vec<IpAddr>,
    /// `spec.externalTrafficPolicy`.
    pub external_traffic_policy: TrafficPolicy,
    /// `spec.internalTrafficPolicy`.
    pub internal_traffic_policy: TrafficPolicy,
    /// `spec.healthCheckNodePort` (LoadBalancer with Local external policy; allocated if not
    /// given).
    pub health_check_node_port: Option<u16>,
    /// `spec.sessionAffinity: ClientIP`, with its timeout in seconds.
    pub session_affinity: Option<u32>,
    /// `spec.loadBalancerSourceRanges`: who may reach its external frontends (empty: anyone).
    pub load_balancer_source_ranges: Vec<Cidr>,
    /// `spec.publishNotReadyAddresses`: not-ready pods are backends too.
    pub publish_not_ready_addresses: bool,
    /// `spec.allocateLoadBalancerNodePorts` (default true).
    pub allocate_load_balancer_node_ports: bool,
    /// From the forwarding-mode annotation.
    pub forwarding_mode: ForwardingMode,
}

impl Service {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// One port of a slice.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlicePort {
    /// `name` (matches a service port's name).
    pub name: String,
    /// `protocol`.
    pub protocol: L4Protocol,
    /// `port`: the backend's.
    pub port: u16,
}

/// One endpoint of a slice.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SliceEndpoint {
    /// `addresses` (Kubernetes uses the first).
    pub address: IpAddr,
    /// `conditions.ready` (absent: true unless terminating).
    pub ready: bool,
    /// `conditions.serving` (absent: as ready).
    pub serving: bool,
    /// `conditions.terminating` (absent: false).
    pub terminating: bool,
    /// `nodeName`.
    pub node_name: Option<String>,
}

/// An `EndpointSlice` (or one mirrored from `Endpoints`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSlice {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// Its service (the `kubernetes.io/service-name` label).
    pub service: String,
    /// `ports`.
    pub ports: Vec<SlicePort>,
    /// `endpoints` (IPv4 and IPv6 slices; FQDN ones carry none).
    pub endpoints: Vec<SliceEndpoint>,
}

/// Legacy `Endpoints`, as the slices Kubernetes mirrors them into (one per subset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// `metadata.name` (the service's).
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// The mirrored slices.
    pub slices: Vec<EndpointSlice>,
}

fn protocol(node: Option<Node<'_, '_>>) -> Result<L4Protocol, Located> {
    let Some(node) = node else { return Ok(L4Protocol::Tcp) };
    match node.str()? {
        "TCP" => Ok(L4Protocol::Tcp),
        "UDP" => Ok(L4Protocol::Udp),
        "SCTP" => Ok(L4Protocol::Sctp),
        other => Err(node.error(format!("{other:?} is not one of TCP, UDP, SCTP"))),
    }
}

fn port_number(node: &Node<'_, '_>) -> Result<u16, Located> {
    Ok(node.int(1, 65535)? as u16)
}

fn ip(node: &Node<'_, '_>) -> Result<IpAddr, Located> {
    let text = node.str()?;
    text.parse().map_err(|_| node.error(format!("{text:?} is not an IP address")))
}

fn traffic_policy(node: Option<Node<'_, '_>>) -> Result<TrafficPolicy, Located> {
    let Some(node) = node else { return Ok(TrafficPolicy::Cluster) };
    match node.str()? {
        // `Global` is the value's name before Kubernetes 1.24.
        "Cluster" | "Global" => Ok(TrafficPolicy::Cluster),
        "Local" => Ok(TrafficPolicy::Local),
        other => Err(node.error(format!("{other:?} is not one of Cluster, Local"))),
    }
}

fn forwarding_mode(annotations: &[(String, String)], meta: &Fields<'_, '_>) -> Result<ForwardingMode, Located> {
    let Some((_, value)) = annotations.iter().find(|(k, _)| k == FORWARDING_MODE_ANNOTATION) else {
        return Ok(ForwardingMode::Default);
    };
    match value.as_str() {
        "snat" => Ok(ForwardingMode::Snat),
        "dsr" => Ok(ForwardingMode::Dsr),
        "hybrid" => Ok(ForwardingMode::Hybrid),
        other => Err(meta
            .error("annotations", format!("{FORWARDING_MODE_ANNOTATION}: {other:?} is not one of snat, dsr, hybrid"))),
    }
}

const SERVICE_SPEC_FIELDS: &[&str] = &[
    "type",
    "clusterIP",
    "clusterIPs",
    "ports",
    "selector",
    "externalIPs",
    "externalTrafficPolicy",
    "internalTrafficPolicy",
    "healthCheckNodePort",
    "sessionAffinity",
    "sessionAffinityConfig",
    "loadBalancerSourceRanges",
    "publishNotReadyAddresses",
    "allocateLoadBalancerNodePorts",
];

/// Decodes a Service's `spec` and `status` (metadata read by the caller); fields the agent does
/// not use (`ipFamilies`, `loadBalancerClass`, …) go to `pruned` as the API server would keep
/// them but nothing here reads them.
pub fn decode_service(
    name: String,
    namespace: String,
    annotations: &[(String, String)],
    meta: &Fields<'_, '_>,
    doc: &mut Fields<'_, '_>,
    ignored: &mut Vec<Located>,
) -> Result<Service, Located> {
    let forwarding_mode = forwarding_mode(annotations, meta)?;
    let spec_node = doc.get("spec").ok_or_else(|| doc.error("spec", "missing"))?;
    let mut spec = spec_node.fields()?;
    let service_type = match spec.get("type") {
        None => ServiceType::ClusterIp,
        Some(t) => match t.str()? {
            "ClusterIP" => ServiceType::ClusterIp,
            "NodePort" => ServiceType::NodePort,
            "LoadBalancer" => ServiceType::LoadBalancer,
            "ExternalName" => ServiceType::ExternalName,
            other => {
                return Err(t.error(format!("{other:?} is not one of ClusterIP, NodePort, LoadBalancer, ExternalName")))
            }
        },
    };
    let cluster_ip_node =
        spec.get("clusterIP").or_else(|| spec.get("clusterIPs").and_then(|l| l.list().ok()?.into_iter().next()));
    let cluster_ip = match cluster_ip_node {
        None => ClusterIp::Allocate,
        Some(n) if n.str()? == "None" => ClusterIp::Headless,
        Some(n) if n.str()?.is_empty() => ClusterIp::Allocate,
        Some(n) => ClusterIp::Address(ip(&n)?),
    };
    spec.get("clusterIPs");
    let mut ports = Vec::new();
    let port_nodes = spec.get("ports").map(|p| p.list()).transpose()?.unwrap_or_default();
    for node in &port_nodes {
        let mut p = node.fields()?;
        let name = match p.get("name") {
            Some(n) => n.str()?.to_owned(),
            None if port_nodes.len() > 1 => {
                return Err(p.error("name", "required when a service has more than one port"))
            }
            None => String::new(),
        };
        let protocol = protocol(p.get("protocol"))?;
        let port = port_number(&p.get("port").ok_or_else(|| p.error("port", "missing"))?)?;
        let target_port = match p.get("targetPort") {
            None => TargetPort::Number(port),
            Some(t) => match t.str_or_int()?.parse::<u16>() {
                Ok(0) => return Err(t.error("0 is not a port")),
                Ok(n) => TargetPort::Number(n),
                Err(_) => TargetPort::Name(t.str()?.to_owned()),
            },
        };
        let node_port = p.get("nodePort").map(|n| port_number(&n)).transpose()?;
        if node_port.is_some() && !matches!(service_type, ServiceType::NodePort | ServiceType::LoadBalancer) {
            return Err(p.error("nodePort", format!("a {} service has no node ports", service_type.name())));
        }
        p.get("appProtocol");
        ignored.extend(p.leftovers());
        if ports.iter().any(|q: &ServicePort| q.name == name) {
            return Err(p.error("name", format!("port name {name:?} is used twice")));
        }
        if ports.iter().any(|q: &ServicePort| q.port == port && q.protocol == protocol) {
            return Err(p.error("port", format!("{}/{port} is used twice", protocol.name())));
        }
        ports.push(ServicePort { name, protocol, port, target_port, node_port });
    }
    let selector = spec.get("selector").map(|s| s.string_map()).transpose()?.filter(|s| !s.is_empty());
    let external_ips: Vec<IpAddr> = spec
        .get("externalIPs")
        .map(|l| l.list())
        .transpose()?
        .unwrap_or_default()
        .iter()
        .map(ip)
        .collect::<Result<_, _>>()?;
    let external_node = spec.get("externalTrafficPolicy");
    let external_traffic_policy = traffic_policy(external_node.clone())?;
    if let (Some(n), ServiceType::ClusterIp) = (&external_node, service_type) {
        if external_ips.is_empty() {
            return Err(
                n.error("only NodePort and LoadBalancer services (or ones with externalIPs) have external traffic")
            );
        }
    }
    let internal_traffic_policy = traffic_policy(spec.get("internalTrafficPolicy"))?;
    let health_check_node_port = match spec.get("healthCheckNodePort") {
        Some(n) if service_type == ServiceType::LoadBalancer && external_traffic_policy == TrafficPolicy::Local => {
            Some(port_number(&n)?)
        }
        Some(n) => return Err(n.error("only a LoadBalancer service with externalTrafficPolicy: Local has one")),
        None => None,
    };
    let session_affinity = match spec.get("sessionAffinity").map(|a| (a.str().map(str::to_owned), a)) {
        None => None,
        Some((Ok(a), _)) if a == "None" => None,
        Some((Ok(a), _)) if a == "ClientIP" => Some(DEFAULT_AFFINITY_TIMEOUT),
        Some((_, n)) => return Err(n.error("not one of None, ClientIP")),
    };
    let session_affinity = match (session_affinity, spec.get("sessionAffinityConfig")) {
        (affinity, None) => affinity,
        (Some(_), Some(config)) => {
            let mut c = config.fields()?;
            let timeout = match c.get("clientIP") {
                Some(client) => {
                    let mut f = client.fields()?;
                    let t = f.get("timeoutSeconds").map(|t| t.int(1, 86_400)).transpose()?;
                    f.finish(&["timeoutSeconds"])?;
                    t.map_or(DEFAULT_AFFINITY_TIMEOUT, |t| t as u32)
                }
                None => DEFAULT_AFFINITY_TIMEOUT,
            };
            c.finish(&["clientIP"])?;
            Some(timeout)
        }
        (None, Some(config)) => return Err(config.error("sessionAffinityConfig needs sessionAffinity: ClientIP")),
    };
    let load_balancer_source_ranges = spec
        .get("loadBalancerSourceRanges")
        .map(|l| l.list())
        .transpose()?
        .unwrap_or_default()
        .iter()
        .map(|n| {
            let text = n.str()?;
            Cidr::parse(text.trim()).ok_or_else(|| n.error(format!("{text:?} is not a CIDR")))
        })
        .collect::<Result<_, _>>()?;
    let publish_not_ready_addresses =
        spec.get("publishNotReadyAddresses").map(|b| b.bool()).transpose()?.unwrap_or(false);
    let allocate_load_balancer_node_ports =
        spec.get("allocateLoadBalancerNodePorts").map(|b| b.bool()).transpose()?.unwrap_or(true);
    // Read by nothing here; the API server keeps them.
    for kept in
        ["ipFamilies", "ipFamilyPolicy", "loadBalancerIP", "loadBalancerClass", "externalName", "trafficDistribution"]
    {
        spec.get(kept);
    }
    ignored.extend(spec.leftovers().into_iter().map(|mut l| {
        l.message = format!("unknown field (known: {}); ignored", SERVICE_SPEC_FIELDS.join(", "));
        l
    }));
    let mut load_balancer_ingress = Vec::new();
    if let Some(status) = doc.get("status") {
        let mut s = status.fields()?;
        if let Some(lb) = s.get("loadBalancer") {
            let mut l = lb.fields()?;
            for entry in l.get("ingress").map(|i| i.list()).transpose()?.unwrap_or_default() {
                let mut e = entry.fields()?;
                if let Some(address) = e.get("ip") {
                    load_balancer_ingress.push(ip(&address)?);
                }
            }
        }
    }
    Ok(Service {
        name,
        namespace,
        service_type,
        cluster_ip,
        ports,
        selector,
        external_ips,
        load_balancer_ingress,
        external_traffic_policy,
        internal_traffic_policy,
        health_check_node_port,
        session_affinity,
        load_balancer_source_ranges,
        publish_not_ready_addresses,
        allocate_load_balancer_node_ports,
        forwarding_mode,
    })
}

fn slice_port(node: &Node<'_, '_>) -> Result<Option<SlicePort>, Located> {
    let mut p = node.fields()?;
    let name = p.get("name").map(|n| n.str().map(str::to_owned)).transpose()?.unwrap_or_default();
    let protocol = protocol(p.get("protocol"))?;
    // A port without a number means "all ports" in the API; nothing a service port maps to.
    let port = p.get("port").map(|n| port_number(&n)).transpose()?;
    p.get("appProtocol");
    p.finish(&["name", "protocol", "port", "appProtocol"])?;
    Ok(port.map(|port| SlicePort { name, protocol, port }))
}

/// The `ports` of a slice or an Endpoints subset (those with a number).
fn slice_ports(fields: &mut Fields<'_, '_>) -> Result<Vec<SlicePort>, Located> {
    let mut ports = Vec::new();
    for node in fields.get("ports").map(|l| l.list()).transpose()?.unwrap_or_default() {
        ports.extend(slice_port(&node)?);
    }
    Ok(ports)
}

/// Decodes an EndpointSlice's body (metadata read by the caller; `labels` for its service).
pub fn decode_endpoint_slice(
    name: String,
    namespace: String,
    labels: &[(String, String)],
    meta: &Fields<'_, '_>,
    doc: &mut Fields<'_, '_>,
) -> Result<EndpointSlice, Located> {
    let service =
        labels.iter().find(|(k, _)| k == SERVICE_NAME_LABEL).map(|(_, v)| v.clone()).ok_or_else(|| {
            meta.error("labels", format!("a slice names its service in the {SERVICE_NAME_LABEL} label"))
        })?;
    let address_type = doc.get("addressType").ok_or_else(|| doc.error("addressType", "missing"))?;
    let family = match address_type.str()? {
        "IPv4" => Some(false),
        "IPv6" => Some(true),
        "FQDN" => None,
        other => return Err(address_type.error(format!("{other:?} is not one of IPv4, IPv6, FQDN"))),
    };
    let ports = slice_ports(doc)?;
    let mut endpoints = Vec::new();
    for node in doc.get("endpoints").map(|l| l.list()).transpose()?.unwrap_or_default() {
        let mut e = node.fields()?;
        let addresses = e.get("addresses").ok_or_else(|| e.error("addresses", "missing"))?;
        let first =
            addresses.list()?.into_iter().next().ok_or_else(|| addresses.error("an endpoint needs an address"))?;
        let (mut ready, mut serving, mut terminating) = (None, None, None);
        if let Some(conditions) = e.get("conditions") {
            let mut c = conditions.fields()?;
            ready = c.get("ready").map(|b| b.bool()).transpose()?;
            serving = c.get("serving").map(|b| b.bool()).transpose()?;
            terminating = c.get("terminating").map(|b| b.bool()).transpose()?;
            c.finish(&["ready", "serving", "terminating"])?;
        }
        let node_name = e.get("nodeName").map(|n| n.str().map(str::to_owned)).transpose()?;
        for kept in ["hostname", "targetRef", "zone", "hints", "deprecatedTopology"] {
            e.get(kept);
        }
        e.finish(&["addresses", "conditions", "nodeName", "hostname", "targetRef", "zone", "hints"])?;
        let Some(v6) = family else { continue };
        let address = ip(&first)?;
        if address.is_ipv6() != v6 {
            return Err(first.error(format!("{address} is not of the slice's addressType")));
        }
        let terminating = terminating.unwrap_or(false);
        // The API's reading of absent conditions.
        let ready = ready.unwrap_or(!terminating);
        let serving = serving.unwrap_or(ready);
        endpoints.push(SliceEndpoint { address, ready, serving, terminating, node_name });
    }
    Ok(EndpointSlice { name, namespace, service, ports, endpoints })
}

/// Decodes legacy `Endpoints` into the slices the mirroring controller would write: one per
/// subset, its `addresses` ready and its `notReadyAddresses` not.
pub fn decode_endpoints(name: String, namespace: String, doc: &mut Fields<'_, '_>) -> Result<Endpoints, Located> {
    let mut slices = Vec::new();
    for (index, subset) in doc.get("subsets").map(|l| l.list()).transpose()?.unwrap_or_default().iter().enumerate() {
        let mut s = subset.fields()?;
        let ports = slice_ports(&mut s)?;
        let mut endpoints = Vec::new();
        for (field, ready) in [("addresses", true), ("notReadyAddresses", false)] {
            for a in s.get(field).map(|l| l.list()).transpose()?.unwrap_or_default() {
                let mut f = a.fields()?;
                let address = ip(&f.get("ip").ok_or_else(|| f.error("ip", "missing"))?)?;
                let node_name = f.get("nodeName").map(|n| n.str().map(str::to_owned)).transpose()?;
                f.get("targetRef");
                f.get("hostname");
                f.finish(&["ip", "nodeName", "targetRef", "hostname"])?;
                endpoints.push(SliceEndpoint { address, ready, serving: ready, terminating: false, node_name });
            }
        }
        s.finish(&["addresses", "notReadyAddresses", "ports"])?;
        slices.push(EndpointSlice {
            name: format!("{name}-mirrored-{index}"),
            namespace: namespace.clone(),
            service: name.clone(),
            ports,
            endpoints,
        });
    }
    Ok(Endpoints { name, namespace, slices })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::manifest::{parse, Resource};

    fn one(text: &str) -> Result<Resource, String> {
        parse(Path::new("s.yaml"), text).map(|mut r| r.remove(0)).map_err(|e| e.to_string())
    }

    fn service(text: &str) -> Service {
        match one(text) {
            Ok(Resource::Service(s)) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn raw_yaml_gets_the_api_servers_defaults() {
        let s = service(
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports:\n  - port: 80\n",
        );
        assert_eq!(
            (s.namespace.as_str(), s.service_type, s.cluster_ip),
            ("default", ServiceType::ClusterIp, ClusterIp::Allocate)
        );
        assert_eq!(
            s.ports,
            [ServicePort {
                name: String::new(),
                protocol: L4Protocol::Tcp,
                port: 80,
                target_port: TargetPort::Number(80),
                node_port: None
            }]
        );
        assert_eq!(
            (s.external_traffic_policy, s.internal_traffic_policy),
            (TrafficPolicy::Cluster, TrafficPolicy::Cluster)
        );
        assert_eq!((s.session_affinity, s.allocate_load_balancer_node_ports), (None, true));
    }

    #[test]
    fn every_field_kube_proxy_reads_is_read() {
        let s = service(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: shop\n  namespace: retail\n  annotations:\n    \
             service.cilium.io/forwarding-mode: dsr\nspec:\n  type: LoadBalancer\n  clusterIP: 10.96.5.5\n  \
             externalIPs: [198.51.100.9]\n  externalTrafficPolicy: Local\n  internalTrafficPolicy: Local\n  \
             healthCheckNodePort: 32000\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n  \
             loadBalancerSourceRanges: [192.0.2.0/24]\n  ports:\n  - {name: http, port: 80, targetPort: web, nodePort: 30080}\n  \
             - {name: dns, port: 53, protocol: UDP}\nstatus:\n  loadBalancer:\n    ingress: [{ip: 203.0.113.1}]\n",
        );
        assert_eq!((s.service_type, s.forwarding_mode), (ServiceType::LoadBalancer, ForwardingMode::Dsr));
        assert_eq!(s.cluster_ip, ClusterIp::Address("10.96.5.5".parse().unwrap()));
        assert_eq!(s.ports[0].target_port, TargetPort::Name("web".into()));
        assert_eq!((s.ports[0].node_port, s.ports[1].protocol), (Some(30080), L4Protocol::Udp));
        assert_eq!((s.health_check_node_port, s.session_affinity), (Some(32000), Some(60)));
        assert_eq!(s.load_balancer_ingress, ["203.0.113.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(s.external_ips, ["198.51.100.9".parse::<IpAddr>().unwrap()]);
        assert_eq!(s.load_balancer_source_ranges, [Cidr::parse("192.0.2.0/24").unwrap()]);
        assert_eq!(s.internal_traffic_policy, TrafficPolicy::Local);
    }

    #[test]
    fn what_the_api_server_refuses_is_refused_at_its_field() {
        let head = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n";
        for (spec, field) in [
            ("  ports: [{port: 80}, {port: 81}]\n", "spec.ports[0].name"),
            ("  ports: [{name: a, port: 80}, {name: a, port: 81}]\n", "spec.ports[1].name"),
            ("  ports: [{port: 0}]\n", "spec.ports[0].port"),
            ("  ports: [{port: 80, protocol: ICMP}]\n", "spec.ports[0].protocol"),
            ("  ports: [{port: 80, nodePort: 30000}]\n", "spec.ports[0].nodePort"),
            ("  type: NodePort\n  externalTrafficPolicy: Nowhere\n", "spec.externalTrafficPolicy"),
            ("  externalTrafficPolicy: Local\n", "spec.externalTrafficPolicy"),
            ("  type: NodePort\n  healthCheckNodePort: 30001\n", "spec.healthCheckNodePort"),
            ("  sessionAffinity: Sticky\n", "spec.sessionAffinity"),
            (
                "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}\n",
                "timeoutSeconds",
            ),
            ("  loadBalancerSourceRanges: [banana]\n", "spec.loadBalancerSourceRanges[0]"),
            ("  clusterIP: 10.96.0.300\n", "spec.clusterIP"),
        ] {
            let error = one(&format!("{head}{spec}")).expect_err(spec);
            assert!(error.contains(field), "{spec}: {error}");
        }
        let error = one("apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  annotations: {service.cilium.io/forwarding-mode: fast}\nspec: {}\n")
            .expect_err("bad mode");
        assert!(error.contains("forwarding-mode"), "{error}");
    }

    #[test]
    fn slices_read_absent_conditions_as_the_api_does_and_endpoints_mirror_into_slices() {
        let slice = one(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  labels: {kubernetes.io/service-name: web}\n\
             addressType: IPv4\nports: [{name: http, port: 8080}]\nendpoints:\n- addresses: [10.0.0.1]\n\
             - addresses: [10.0.0.2]\n  conditions: {terminating: true}\n- addresses: [10.0.0.3]\n  conditions: {ready: false, serving: true, terminating: true}\n  nodeName: n2\n",
        );
        let Ok(Resource::EndpointSlice(s)) = slice else { panic!("{slice:?}") };
        let conditions: Vec<(bool, bool, bool)> =
            s.endpoints.iter().map(|e| (e.ready, e.serving, e.terminating)).collect();
        assert_eq!(conditions, [(true, true, false), (false, false, true), (false, true, true)]);
        assert_eq!(
            (s.service.as_str(), s.ports[0].port, s.endpoints[2].node_name.as_deref()),
            ("web", 8080, Some("n2"))
        );
        let unlabelled =
            one("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: x}\naddressType: IPv4\n");
        assert!(unlabelled.expect_err("no service").contains("kubernetes.io/service-name"));

        let endpoints = one(
            "apiVersion: v1\nkind: Endpoints\nmetadata: {name: legacy}\nsubsets:\n- addresses: [{ip: 10.0.0.7, nodeName: n1}]\n  \
             notReadyAddresses: [{ip: 10.0.0.8}]\n  ports: [{port: 9000, protocol: UDP}]\n",
        );
        let Ok(Resource::Endpoints(e)) = endpoints else { panic!("{endpoints:?}") };
        assert_eq!(e.slices.len(), 1);
        let s = &e.slices[0];
        assert_eq!((s.service.as_str(), s.ports[0].protocol, s.endpoints.len()), ("legacy", L4Protocol::Udp, 2));
        assert!(s.endpoints[0].ready && !s.endpoints[1].ready);
    }
}
