//! From Services, EndpointSlices and pods to what the datapath balances: each frontend
//! (address, port, protocol) with its backends. What Kubernetes' controllers and kube-proxy
//! would do on the way is done here: cluster IPs and node ports the API server would have
//! allocated, slices the EndpointSlice controller would have written for a service with a
//! selector (unless slices are given), named target ports resolved per backend, and kube-proxy's
//! choice of backends (ready ones; serving-and-terminating ones only when no ready one is left).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use crate::manifest::service::{
    ClusterIp, EndpointSlice, ForwardingMode, L4Protocol, Service, ServicePort, ServiceType, SliceEndpoint, SlicePort,
    TargetPort, TrafficPolicy,
};
use crate::manifest::Pod;

/// The service range cluster IPs are allocated from (Kubernetes' default `10.96.0.0/12`).
pub const SERVICE_RANGE: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 96, 0, 0), 12);

/// The node port range (Kubernetes' default).
pub const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

/// How a frontend is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FrontendKind {
    /// The cluster IP.
    ClusterIp,
    /// A node port (on every node address).
    NodePort,
    /// One of `spec.externalIPs`.
    ExternalIp,
    /// One of the load balancer's ingress addresses.
    LoadBalancer,
}

impl FrontendKind {
    /// How `netstack service list` names it.
    pub fn name(self) -> &'static str {
        match self {
            FrontendKind::ClusterIp => "ClusterIP",
            FrontendKind::NodePort => "NodePort",
            FrontendKind::ExternalIp => "ExternalIP",
            FrontendKind::LoadBalancer => "LoadBalancer",
        }
    }
}

/// A backend as a frontend uses it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend {
    /// Its address.
    pub address: IpAddr,
    /// Its port (the target port, resolved).
    pub port: u16,
    /// Terminating: used only when no ready backend is left.
    pub terminating: bool,
    /// The node it runs on, when known.
    pub node: Option<String>,
}

/// One frontend and its backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frontend {
    /// `namespace/name` of its service.
    pub service: String,
    /// The service port's name.
    pub port_name: String,
    /// How it is reached.
    pub kind: FrontendKind,
    /// Its address (for node ports: unspecified, meaning every node address).
    pub address: IpAddr,
    /// Its port.
    pub port: u16,
    /// Its protocol.
    pub protocol: L4Protocol,
    /// The backends new connections go to: the ready ones, else the serving terminating ones.
    pub backends: Vec<Backend>,
    /// Of them, on this node (for the Local traffic policies).
    pub local_backends: Vec<Backend>,
    /// ClientIP session affinity timeout.
    pub affinity: Option<u32>,
    /// `externalTrafficPolicy`.
    pub external_policy: TrafficPolicy,
    /// `internalTrafficPolicy`.
    pub internal_policy: TrafficPolicy,
    /// `loadBalancerSourceRanges` (external frontends).
    pub source_ranges: Vec<crate::policy::api::Cidr>,
    /// The service's forwarding mode.
    pub forwarding_mode: ForwardingMode,
}

/// A running pod as services see it: its address and node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodAddress {
    /// Its IPv4 address.
    pub address: IpAddr,
    /// Its node.
    pub node: String,
    /// Whether it is ready (running pods here are).
    pub ready: bool,
}

/// Everything the catalog is built from.
#[derive(Clone, Debug, Default)]
pub struct Inputs<'a> {
    /// Services.
    pub services: &'a [Service],
    /// Slices given (and mirrored from Endpoints).
    pub slices: &'a [EndpointSlice],
    /// Every pod of the cluster by `namespace/name`.
    pub pods: Option<&'a BTreeMap<String, Pod>>,
    /// Where the pods run, by `namespace/name` (those with an address).
    pub addresses: Option<&'a BTreeMap<String, PodAddress>>,
    /// This node's name.
    pub node: &'a str,
}

fn hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Cluster IPs for the services that leave it to the API server: a hash of the service's name
/// into the service range, the next free address on a collision. Deterministic, so every node
/// allocates the same; services with a given address keep theirs and are never collided into.
pub fn allocate_cluster_ips(services: &[Service]) -> BTreeMap<String, IpAddr> {
    let base = u32::from(SERVICE_RANGE.0);
    let size = 1u32 << (32 - SERVICE_RANGE.1);
    let mut taken: BTreeSet<IpAddr> = BTreeSet::new();
    let mut out = BTreeMap::new();
    for s in services {
        if let ClusterIp::Address(a) = s.cluster_ip {
            taken.insert(a);
            out.insert(s.key(), a);
        }
    }
    let mut wanting: Vec<&Service> = services.iter().filter(|s| s.cluster_ip == ClusterIp::Allocate).collect();
    wanting.sort_by_key(|s| s.key());
    for s in wanting {
        // Skip the network and the first address (Kubernetes gives it to the API server).
        let mut offset = 2 + (hash(&s.key()) % u64::from(size - 3)) as u32;
        loop {
            let candidate = IpAddr::V4(Ipv4Addr::from(base + offset));
            if taken.insert(candidate) {
                out.insert(s.key(), candidate);
                break;
            }
            offset = if offset + 1 >= size - 1 { 2 } else { offset + 1 };
        }
    }
    out
}

/// The port-name key of a service's health check node port in [`allocate_node_ports`]: no
/// port can have it (port names are DNS labels), unlike `""`, the name of a lone unnamed port.
pub const HEALTH_CHECK_KEY: &str = "#healthCheck";

/// Node ports (and health check node ports) for the services that leave them to the API
/// server, by (`namespace/name`, port name; [`HEALTH_CHECK_KEY`] for the health check's):
/// allocated like cluster IPs, from [`NODE_PORT_RANGE`].
pub fn allocate_node_ports(services: &[Service]) -> BTreeMap<(String, String), u16> {
    let wants_ports = |s: &Service| match s.service_type {
        ServiceType::NodePort => true,
        ServiceType::LoadBalancer => s.allocate_load_balancer_node_ports,
        _ => false,
    };
    let mut taken: BTreeSet<u16> = BTreeSet::new();
    let mut out = BTreeMap::new();
    for s in services.iter().filter(|s| wants_ports(s)) {
        for p in &s.ports {
            if let Some(n) = p.node_port {
                taken.insert(n);
                out.insert((s.key(), p.name.clone()), n);
            }
        }
        if let Some(n) = s.health_check_node_port {
            taken.insert(n);
            out.insert((s.key(), HEALTH_CHECK_KEY.to_owned()), n);
        }
    }
    let (low, high) = (*NODE_PORT_RANGE.start(), *NODE_PORT_RANGE.end());
    let span = u64::from(high - low) + 1;
    let mut wanting: Vec<(String, String)> = Vec::new();
    for s in services.iter().filter(|s| wants_ports(s)) {
        wanting.extend(s.ports.iter().filter(|p| p.node_port.is_none()).map(|p| (s.key(), p.name.clone())));
    }
    for s in services {
        let local_lb = s.service_type == ServiceType::LoadBalancer && s.external_traffic_policy == TrafficPolicy::Local;
        if local_lb && s.health_check_node_port.is_none() {
            wanting.push((s.key(), HEALTH_CHECK_KEY.to_owned()));
        }
    }
    wanting.sort();
    for key in wanting {
        let mut port = low + (hash(&format!("{}#{}", key.0, key.1)) % span) as u16;
        if taken.len() >= span as usize {
            break;
        }
        while !taken.insert(port) {
            port = if port == high { low } else { port + 1 };
        }
        out.insert(key, port);
    }
    out
}

/// A candidate backend and how its port is found.
struct Candidate<'a> {
    endpoint: SliceEndpoint,
    ports: PortSource<'a>,
}

enum PortSource<'a> {
    /// A given slice's ports: the one named as the service port (what the EndpointSlice
    /// controller writes, and kube-proxy reads).
    Slice(&'a [SlicePort]),
    /// A selected pod's named container ports (the controller's own resolution).
    Pod(&'a [(String, L4Protocol, u16)]),
}

impl PortSource<'_> {
    fn target(&self, port: &ServicePort) -> Option<u16> {
        match (self, &port.target_port) {
            (PortSource::Slice(ports), _) => {
                ports.iter().find(|p| p.name == port.name && p.protocol == port.protocol).map(|p| p.port)
            }
            (PortSource::Pod(_), TargetPort::Number(n)) => Some(*n),
            (PortSource::Pod(named), TargetPort::Name(name)) => {
                named.iter().find(|(n, protocol, _)| n == name && *protocol == port.protocol).map(|(_, _, p)| *p)
            }
        }
    }
}

/// What the EndpointSlice controller would list for `service` (with a selector): the matching
/// pods of its namespace that have an address.
fn selected<'a>(service: &Service, selector: &[(String, String)], inputs: &Inputs<'a>) -> Vec<Candidate<'a>> {
    let (Some(pods), Some(addresses)) = (inputs.pods, inputs.addresses) else { return Vec::new() };
    pods.iter()
        .filter(|(_, pod)| {
            pod.namespace == service.namespace
                && selector.iter().all(|(k, v)| pod.labels.iter().any(|(pk, pv)| pk == k && pv == v))
        })
        .filter_map(|(key, pod)| {
            let at = addresses.get(key)?;
            let ready = at.ready || service.publish_not_ready_addresses;
            let endpoint = SliceEndpoint {
                address: at.address,
                ready,
                serving: ready,
                terminating: false,
                node_name: Some(at.node.clone()),
            };
            Some(Candidate { endpoint, ports: PortSource::Pod(&pod.named_ports) })
        })
        .collect()
}

/// Every frontend of every service, with its backends.
pub fn build(inputs: &Inputs<'_>) -> Vec<Frontend> {
    let cluster_ips = allocate_cluster_ips(inputs.services);
    let node_ports = allocate_node_ports(inputs.services);
    let mut out = Vec::new();
    for service in inputs.services {
        if matches!(service.service_type, ServiceType::ExternalName) || service.cluster_ip == ClusterIp::Headless {
            continue;
        }
        let given: Vec<Candidate<'_>> = inputs
            .slices
            .iter()
            .filter(|s| s.namespace == service.namespace && s.service == service.name)
            .flat_map(|s| {
                s.endpoints.iter().map(|e| Candidate { endpoint: e.clone(), ports: PortSource::Slice(&s.ports) })
            })
            .collect();
        let no_slices = !inputs.slices.iter().any(|s| s.namespace == service.namespace && s.service == service.name);
        let candidates = match &service.selector {
            Some(selector) if no_slices => selected(service, selector, inputs),
            _ => given,
        };
        for port in &service.ports {
            let mut ready = BTreeSet::new();
            let mut terminating = BTreeSet::new();
            for Candidate { endpoint, ports } in &candidates {
                let Some(target) = ports.target(port) else { continue };
                let backend = Backend {
                    address: endpoint.address,
                    port: target,
                    terminating: false,
                    node: endpoint.node_name.clone(),
                };
                if endpoint.ready && !endpoint.terminating {
                    ready.insert(backend);
                } else if endpoint.serving && endpoint.terminating {
                    terminating.insert(Backend { terminating: true, ..backend });
                }
            }
            // kube-proxy's rule: terminating backends only when nothing ready is left.
            let pick = |set: &BTreeSet<Backend>, other: &BTreeSet<Backend>, local: bool| -> Vec<Backend> {
                let keep = |b: &&Backend| !local || b.node.as_deref() == Some(inputs.node);
                let first: Vec<Backend> = set.iter().filter(keep).cloned().collect();
                if first.is_empty() {
                    other.iter().filter(keep).cloned().collect()
                } else {
                    first
                }
            };
            let backends = pick(&ready, &terminating, false);
            let local_backends = pick(&ready, &terminating, true);
            let frontend = |kind, address, frontend_port| Frontend {
                service: service.key(),
                port_name: port.name.clone(),
                kind,
                address,
                port: frontend_port,
                protocol: port.protocol,
                backends: backends.clone(),
                local_backends: local_backends.clone(),
                affinity: service.session_affinity,
                external_policy: service.external_traffic_policy,
                internal_policy: service.internal_traffic_policy,
                source_ranges: service.load_balancer_source_ranges.clone(),
                forwarding_mode: service.forwarding_mode,
            };
            if let Some(ip) = cluster_ips.get(&service.key()).filter(|a| a.is_ipv4()) {
                out.push(frontend(FrontendKind::ClusterIp, *ip, port.port));
            }
            if let Some(n) = node_ports.get(&(service.key(), port.name.clone())) {
                out.push(frontend(FrontendKind::NodePort, IpAddr::V4(Ipv4Addr::UNSPECIFIED), *n));
            }
            for ip in service.external_ips.iter().filter(|a| a.is_ipv4()) {
                out.push(frontend(FrontendKind::ExternalIp, *ip, port.port));
            }
            for ip in service.load_balancer_ingress.iter().filter(|a| a.is_ipv4()) {
                out.push(frontend(FrontendKind::LoadBalancer, *ip, port.port));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::manifest::{parse, Resource};

    struct Scene {
        services: Vec<Service>,
        slices: Vec<EndpointSlice>,
        pods: BTreeMap<String, Pod>,
        addresses: BTreeMap<String, PodAddress>,
    }

    fn scene(yaml: &str) -> Scene {
        let mut scene =
            Scene { services: Vec::new(), slices: Vec::new(), pods: BTreeMap::new(), addresses: BTreeMap::new() };
        for (i, r) in parse(Path::new("t.yaml"), yaml).unwrap().into_iter().enumerate() {
            match r {
                Resource::Service(s) => scene.services.push(s),
                Resource::EndpointSlice(s) => scene.slices.push(s),
                Resource::Endpoints(e) => scene.slices.extend(e.slices),
                Resource::Pod(p) => {
                    let key = format!("{}/{}", p.namespace, p.name);
                    let at = PodAddress {
                        address: IpAddr::from([10, 0, 0, i as u8]),
                        node: p.node_name.clone().unwrap_or_default(),
                        ready: true,
                    };
                    scene.addresses.insert(key.clone(), at);
                    scene.pods.insert(key, p);
                }
                _ => {}
            }
        }
        scene
    }

    fn frontends(scene: &Scene, node: &str) -> Vec<Frontend> {
        build(&Inputs {
            services: &scene.services,
            slices: &scene.slices,
            pods: Some(&scene.pods),
            addresses: Some(&scene.addresses),
            node,
        })
    }

    fn backends(f: &Frontend) -> Vec<String> {
        f.backends
            .iter()
            .map(|b| format!("{}:{}{}", b.address, b.port, if b.terminating { " T" } else { "" }))
            .collect()
    }

    const PODS: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: w1, namespace: shop, labels: {app: web}}\n\
spec:\n  nodeName: n1\n  containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: w2, namespace: shop, labels: {app: web}}\n\
spec:\n  nodeName: n2\n  containers: [{name: c, ports: [{name: http, containerPort: 9090}]}]\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: other, namespace: ops, labels: {app: web}}\nspec: {nodeName: n1}\n";

    #[test]
    fn a_service_with_a_selector_gets_the_matching_pods_with_named_ports_resolved_per_pod() {
        let scene = scene(&format!(
            "{PODS}---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\n\
             spec:\n  type: NodePort\n  selector: {{app: web}}\n  ports: [{{port: 80, targetPort: http}}]\n"
        ));
        let all = frontends(&scene, "n1");
        assert_eq!(all.iter().map(|f| f.kind).collect::<Vec<_>>(), [FrontendKind::ClusterIp, FrontendKind::NodePort]);
        // Pods are parsed in order 0, 1, 2: w1 is 10.0.0.0, w2 10.0.0.1; the ops pod is not selected.
        assert_eq!(backends(&all[0]), ["10.0.0.0:8080", "10.0.0.1:9090"]);
        assert_eq!(all[0].local_backends.len(), 1, "one of them on n1");
        assert!(NODE_PORT_RANGE.contains(&all[1].port));
        let ip = all[0].address;
        assert!(matches!(ip, IpAddr::V4(a) if u32::from(a) >> 20 == u32::from(SERVICE_RANGE.0) >> 20), "{ip}");
        assert_eq!(frontends(&scene, "n2")[0].address, ip, "every node allocates the same");
    }

    #[test]
    fn given_slices_win_over_the_selector_and_terminating_backends_are_a_last_resort() {
        let service = "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: shop}\n\
                       spec:\n  clusterIP: 10.96.0.50\n  selector: {app: web}\n  ports: [{name: pg, port: 5432}]\n";
        let slice = |conditions: &str| {
            format!(
                "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: db-x\n  namespace: shop\n  \
                 labels: {{kubernetes.io/service-name: db}}\naddressType: IPv4\nports: [{{name: pg, port: 6432}}]\n\
                 endpoints:\n- addresses: [10.1.0.1]\n  conditions: {conditions}\n- addresses: [10.1.0.2]\n  \
                 conditions: {{ready: false, serving: true, terminating: true}}\n"
            )
        };
        let ready = scene(&format!("{PODS}---\n{service}{}", slice("{ready: true}")));
        assert_eq!(backends(&frontends(&ready, "n1")[0]), ["10.1.0.1:6432"], "the slice, not the pods; ready only");
        let draining =
            scene(&format!("{PODS}---\n{service}{}", slice("{ready: false, serving: false, terminating: true}")));
        assert_eq!(
            backends(&frontends(&draining, "n1")[0]),
            ["10.1.0.2:6432 T"],
            "nothing ready: the serving terminating one"
        );
        let empty = scene(
            &format!("{service}{}", slice("{ready: false, serving: false}"))
                .replace("serving: true, ", "serving: false, "),
        );
        assert!(frontends(&empty, "n1")[0].backends.is_empty());
    }

    #[test]
    fn a_load_balancer_gets_its_cluster_ip_and_node_port_too_and_headless_gets_nothing() {
        let scene = scene(
            "apiVersion: v1\nkind: Service\nmetadata: {name: lb}\nspec:\n  type: LoadBalancer\n  externalTrafficPolicy: Local\n  \
             externalIPs: [198.51.100.1]\n  ports: [{port: 443}]\nstatus: {loadBalancer: {ingress: [{ip: 203.0.113.5}]}}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {name: headless}\nspec: {clusterIP: None, ports: [{port: 1}]}\n",
        );
        let kinds: Vec<FrontendKind> = frontends(&scene, "n1").iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            [FrontendKind::ClusterIp, FrontendKind::NodePort, FrontendKind::ExternalIp, FrontendKind::LoadBalancer]
        );
        // The lone port is unnamed (""): its node port and the health check's are two ports.
        let ports = allocate_node_ports(&scene.services);
        let node_port = ports.get(&("default/lb".to_owned(), String::new()));
        let health = ports.get(&("default/lb".to_owned(), HEALTH_CHECK_KEY.to_owned()));
        assert!(node_port.is_some() && health.is_some() && node_port != health, "{ports:?}");
    }

    #[test]
    fn allocation_keeps_given_addresses_and_is_stable_when_services_come_and_go() {
        let svc = |name: &str, ip: &str| {
            format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{clusterIP: \"{ip}\", ports: [{{port: 1}}]}}\n")
        };
        let few = scene(&format!("{}{}", svc("a", ""), svc("b", "")));
        let more = scene(&format!("{}{}{}", svc("a", ""), svc("b", ""), svc("c", "")));
        let (x, y) = (allocate_cluster_ips(&few.services), allocate_cluster_ips(&more.services));
        assert_eq!((x["default/a"], x["default/b"]), (y["default/a"], y["default/b"]));
        let fixed = scene(&format!("{}{}", svc("a", "10.96.0.10"), svc("b", "")));
        assert_eq!(allocate_cluster_ips(&fixed.services)["default/a"], "10.96.0.10".parse::<IpAddr>().unwrap());
    }
}
