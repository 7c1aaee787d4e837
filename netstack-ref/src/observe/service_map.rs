//! The service map: observed flows folded into a graph, as Hubble UI draws it. Nodes are
//! workloads (pods grouped by their `app` label, else by pod name), services and the reserved
//! peers (world, host, remote nodes); an edge is one (source, destination, port, protocol)
//! with its connections counted by verdict: a connection is dropped when any flow of it was
//! (its source's egress may forward what the destination's ingress drops), else forwarded. A connection made to a service through the socket load
//! balancer runs client → service → backend: the socket translation names the service, and
//! the connection's packets that follow are counted on both legs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::flow::{Endpoint, Flow, FlowType, Verdict};

/// What a node of the map stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    /// Pods with one `app` label (or one pod).
    Workload,
    /// A service.
    Service,
    /// Outside the cluster.
    World,
    /// The node itself.
    Host,
    /// Another node of the cluster.
    RemoteNode,
    /// An identity the map cannot name otherwise.
    Identity,
}

/// A node of the map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MapNode {
    /// Unique: `namespace/name` for workloads, `svc:namespace/name` for services.
    pub id: String,
    /// What it is.
    pub kind: NodeKind,
    /// Its namespace (empty for reserved peers).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Pods seen in it.
    pub pods: Vec<String>,
}

/// An edge's key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EdgeKey {
    /// The source node's id.
    pub from: String,
    /// The destination node's id.
    pub to: String,
    /// The destination port (0 for ICMP).
    pub port: u32,
    /// `TCP`, `UDP`, `ICMPv4` …
    pub protocol: String,
}

/// An edge: flows from one node to another on one port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MapEdge {
    /// Which.
    #[serde(flatten)]
    pub key: EdgeKey,
    /// Connections by verdict name (`FORWARDED`, `DROPPED` …).
    pub verdicts: BTreeMap<String, u64>,
    /// Connections seen.
    pub connections: u64,
    /// Flows seen.
    pub flows: u64,
    /// The latest flow's time.
    pub last_seen: String,
    /// Its most recent flows (up to [`RECENT_PER_EDGE`]), oldest first.
    #[serde(skip)]
    pub recent: VecDeque<Arc<Flow>>,
}

/// How many of an edge's flows the map keeps to list when the edge is clicked.
pub const RECENT_PER_EDGE: usize = 20;

impl MapEdge {
    /// The colour class the page gives it: `dropped` when every connection was dropped,
    /// `mixed` when some were, else `forwarded`.
    pub fn class(&self) -> &'static str {
        let dropped = self.verdicts.get("DROPPED").copied().unwrap_or(0);
        match dropped {
            0 => "forwarded",
            n if n == self.connections => "dropped",
            _ => "mixed",
        }
    }
}

/// The graph.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServiceMap {
    /// Nodes by id.
    pub nodes: Vec<MapNode>,
    /// Edges.
    pub edges: Vec<MapEdge>,
    /// Namespaces seen (for the filter).
    pub namespaces: Vec<String>,
}

/// A workload's or reserved peer's node for one side of a flow.
fn node_of(endpoint: &Endpoint) -> MapNode {
    let label = |key: &str| {
        endpoint
            .labels
            .iter()
            .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')).map(str::to_owned))
    };
    if !endpoint.pod_name.is_empty() {
        let name = label("k8s:app").unwrap_or_else(|| endpoint.pod_name.clone());
        return MapNode {
            id: format!("{}/{name}", endpoint.namespace),
            kind: NodeKind::Workload,
            namespace: endpoint.namespace.clone(),
            name,
            pods: vec![endpoint.pod_name.clone()],
        };
    }
    let reserved = |name: &str| endpoint.labels.iter().any(|l| l == &format!("reserved:{name}"));
    let (kind, name) = if reserved("host") {
        (NodeKind::Host, "host".to_owned())
    } else if reserved("remote-node") {
        (NodeKind::RemoteNode, "remote-node".to_owned())
    } else if reserved("world") || endpoint.identity == 2 {
        (NodeKind::World, "world".to_owned())
    } else {
        (NodeKind::Identity, format!("identity {}", endpoint.identity))
    };
    MapNode { id: name.clone(), kind, namespace: String::new(), name, pods: Vec::new() }
}

fn service_node(service: &super::flow::Service) -> MapNode {
    MapNode {
        id: format!("svc:{}/{}", service.namespace, service.name),
        kind: NodeKind::Service,
        namespace: service.namespace.clone(),
        name: service.name.clone(),
        pods: Vec::new(),
    }
}

/// Builds the map.
#[derive(Debug, Default)]
pub struct MapBuilder {
    nodes: BTreeMap<String, MapNode>,
    edges: BTreeMap<EdgeKey, MapEdge>,
    /// (client address, backend address, backend port) → the service a socket translation
    /// sent that client there through.
    translated: HashMap<(String, String, u32), MapNode>,
    /// Each connection's verdict so far (by its request's addresses, ports and protocol).
    connections: HashMap<ConnectionKey, Verdict>,
}

/// (source address, source port, destination address, destination port, protocol).
type ConnectionKey = (String, u32, String, u32, &'static str);

impl MapBuilder {
    fn add_node(&mut self, node: MapNode) -> String {
        let id = node.id.clone();
        let entry = self.nodes.entry(id.clone()).or_insert_with(|| MapNode { pods: Vec::new(), ..node.clone() });
        for pod in node.pods {
            if !entry.pods.contains(&pod) {
                entry.pods.push(pod);
            }
        }
        id
    }

    /// Counts `flow` on edge `key`; `change` is its connection's verdict before and after it
    /// (`None` before: a new connection; no change: nothing to recount).
    fn count(&mut self, key: EdgeKey, flow: &Arc<Flow>, change: Option<(Option<Verdict>, Verdict)>) {
        let edge = self.edges.entry(key.clone()).or_insert_with(|| MapEdge {
            key,
            verdicts: BTreeMap::new(),
            connections: 0,
            flows: 0,
            last_seen: String::new(),
            recent: VecDeque::new(),
        });
        if edge.recent.len() == RECENT_PER_EDGE {
            edge.recent.pop_front();
        }
        edge.recent.push_back(Arc::clone(flow));
        if let Some((before, after)) = change {
            match before {
                Some(before) => {
                    if let Some(n) = edge.verdicts.get_mut(before.name()) {
                        *n = n.saturating_sub(1);
                    }
                }
                None => edge.connections += 1,
            }
            *edge.verdicts.entry(after.name().to_owned()).or_default() += 1;
        }
        edge.flows += 1;
        if flow.time > edge.last_seen {
            edge.last_seen = flow.time.clone();
        }
    }

    /// Folds one flow in (replies are the same edge's other direction and are left out).
    pub fn add(&mut self, flow: &Arc<Flow>) {
        if flow.is_reply == Some(true) {
            return;
        }
        let (Some(source), Some(destination)) = (&flow.source, &flow.destination) else { return };
        let Some(l4) = &flow.l4 else { return };
        let port = l4.ports().map_or(0, |(_, destination)| destination);
        let protocol = l4.name().to_owned();
        let (source_ip, destination_ip) =
            flow.ip.as_ref().map(|ip| (ip.source.clone(), ip.destination.clone())).unwrap_or_default();
        let source_port = l4.ports().map_or(0, |(source, _)| source);
        let change = self.connection_verdict(
            (source_ip.clone(), source_port, destination_ip.clone(), port, l4.name()),
            flow.verdict,
        );
        let from = self.add_node(node_of(source));
        let service = match (&flow.destination_service, flow.flow_type) {
            (Some(service), FlowType::SOCK) => {
                let node = service_node(service);
                self.translated.insert((source_ip, destination_ip, port), node.clone());
                Some(node)
            }
            (Some(service), _) => Some(service_node(service)),
            (None, _) => self.translated.get(&(source_ip, destination_ip, port)).cloned(),
        };
        let to = if destination.pod_name.is_empty() && destination.identity == 0 {
            None
        } else {
            Some(self.add_node(node_of(destination)))
        };
        match service {
            Some(service) => {
                let via = self.add_node(service);
                self.count(EdgeKey { from, to: via.clone(), port, protocol: protocol.clone() }, flow, change);
                // A translation alone says where the socket was sent, not that anything
                // reached the backend.
                if let (Some(to), false) = (to, flow.verdict == Verdict::TRANSLATED) {
                    self.count(EdgeKey { from: via, to, port, protocol }, flow, change);
                }
            }
            None => {
                if let Some(to) = to {
                    self.count(EdgeKey { from, to, port, protocol }, flow, change);
                }
            }
        }
    }

    /// The connection's verdict with `verdict` seen: a drop decides it; a translation says
    /// nothing of it yet. Returns (before, after) when this flow changed it.
    fn connection_verdict(&mut self, key: ConnectionKey, verdict: Verdict) -> Option<(Option<Verdict>, Verdict)> {
        if verdict == Verdict::TRANSLATED {
            return None;
        }
        let known = self.connections.get(&key).copied();
        let after = match known {
            Some(Verdict::DROPPED) => return None,
            Some(_) if verdict != Verdict::DROPPED => return None,
            _ => verdict,
        };
        self.connections.insert(key, after);
        Some((known, after))
    }

    /// The map, cut to `namespace`'s nodes and their peers when one is given.
    pub fn build(&self, namespace: Option<&str>) -> ServiceMap {
        let mut namespaces: Vec<String> =
            self.nodes.values().map(|n| n.namespace.clone()).filter(|n| !n.is_empty()).collect();
        namespaces.sort();
        namespaces.dedup();
        let in_namespace =
            |id: &String| namespace.is_none_or(|ns| self.nodes.get(id).is_some_and(|n| n.namespace == ns));
        let edges: Vec<MapEdge> =
            self.edges.values().filter(|e| in_namespace(&e.key.from) || in_namespace(&e.key.to)).cloned().collect();
        let nodes = self
            .nodes
            .values()
            .filter(|n| {
                namespace.is_none_or(|ns| n.namespace == ns)
                    || edges.iter().any(|e| e.key.from == n.id || e.key.to == n.id)
            })
            .cloned()
            .collect();
        ServiceMap { nodes, edges, namespaces }
    }

    /// The edge `key`'s most recent flows, oldest first.
    pub fn edge_flows(&self, key: &EdgeKey) -> Vec<Arc<Flow>> {
        self.edges.get(key).map(|e| e.recent.iter().cloned().collect()).unwrap_or_default()
    }
}

impl<'a> FromIterator<&'a Arc<Flow>> for MapBuilder {
    fn from_iter<I: IntoIterator<Item = &'a Arc<Flow>>>(flows: I) -> MapBuilder {
        let mut builder = MapBuilder::default();
        for flow in flows {
            builder.add(flow);
        }
        builder
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::flow::{Ip, Layer4, Service, Tcp};

    fn pod(namespace: &str, name: &str, app: &str, identity: u32) -> Endpoint {
        Endpoint {
            id: 0,
            identity,
            namespace: namespace.into(),
            labels: vec![format!("k8s:app={app}"), format!("k8s:io.kubernetes.pod.namespace={namespace}")].into(),
            pod_name: name.into(),
        }
    }

    fn tcp(source: Endpoint, destination: Endpoint, addresses: (&str, &str), port: u32, verdict: Verdict) -> Flow {
        Flow {
            time: "2026-12-05T06:00:00Z".into(),
            verdict,
            ip: Some(Ip { source: addresses.0.into(), destination: addresses.1.into(), ..Default::default() }),
            l4: Some(Layer4::TCP(Tcp { source_port: 40000, destination_port: port, flags: None })),
            source: Some(source),
            destination: Some(destination),
            flow_type: FlowType::L3_L4,
            is_reply: Some(false),
            ..Default::default()
        }
    }

    #[test]
    fn pods_of_one_app_are_one_workload_and_verdicts_are_counted_per_edge() {
        let frontend = |n| pod("shop", &format!("frontend-{n}"), "frontend", 100);
        let backend = pod("shop", "backend-0", "backend", 101);
        let reply = tcp(backend.clone(), frontend(0), ("10.0.0.3", "10.0.0.1"), 40000, Verdict::FORWARDED);
        let flows = [
            tcp(frontend(0), backend.clone(), ("10.0.0.1", "10.0.0.3"), 8080, Verdict::FORWARDED),
            tcp(frontend(1), backend.clone(), ("10.0.0.2", "10.0.0.3"), 8080, Verdict::FORWARDED),
            // The client's egress forwards what the server's ingress drops: one dropped
            // connection.
            tcp(frontend(1), backend.clone(), ("10.0.0.2", "10.0.0.3"), 5432, Verdict::FORWARDED),
            tcp(frontend(1), backend.clone(), ("10.0.0.2", "10.0.0.3"), 5432, Verdict::DROPPED),
            Flow { is_reply: Some(true), ..reply },
        ]
        .map(Arc::new);
        let builder: MapBuilder = flows.iter().collect();
        let map = builder.build(None);
        assert_eq!(map.nodes.len(), 2);
        let frontend_node = map.nodes.iter().find(|n| n.id == "shop/frontend").unwrap();
        assert_eq!(frontend_node.pods, ["frontend-0", "frontend-1"]);
        assert_eq!(map.edges.len(), 2, "one edge per port; the reply is not an edge");
        let allowed = map.edges.iter().find(|e| e.key.port == 8080).unwrap();
        assert_eq!((allowed.connections, allowed.flows, allowed.class()), (2, 2, "forwarded"));
        let denied = map.edges.iter().find(|e| e.key.port == 5432).unwrap();
        assert_eq!((denied.connections, denied.flows, denied.class()), (1, 2, "dropped"));
        assert_eq!(denied.verdicts["DROPPED"], 1);
        assert_eq!(builder.edge_flows(&denied.key), [Arc::clone(&flows[2]), Arc::clone(&flows[3])]);
    }

    #[test]
    fn a_translated_connection_runs_through_its_service() {
        let client = pod("shop", "frontend-0", "frontend", 100);
        let backend = pod("shop", "backend-0", "backend", 101);
        let service = Service { name: "backend".into(), namespace: "shop".into() };
        let translation = Flow {
            flow_type: FlowType::SOCK,
            destination_service: Some(service),
            ..tcp(client.clone(), backend.clone(), ("10.0.0.1", "10.0.0.3"), 8080, Verdict::TRANSLATED)
        };
        let packet = tcp(client, backend, ("10.0.0.1", "10.0.0.3"), 8080, Verdict::FORWARDED);
        let map = [Arc::new(translation), Arc::new(packet)].iter().collect::<MapBuilder>().build(None);
        let edges: Vec<(&str, &str, u64)> =
            map.edges.iter().map(|e| (e.key.from.as_str(), e.key.to.as_str(), e.flows)).collect();
        assert_eq!(edges, [("shop/frontend", "svc:shop/backend", 2), ("svc:shop/backend", "shop/backend", 1)]);
        assert!(map.nodes.iter().any(|n| n.kind == NodeKind::Service));
    }

    #[test]
    fn a_namespace_keeps_its_workloads_and_their_peers() {
        let monitor = pod("ops", "monitor", "monitor", 102);
        let backend = pod("shop", "backend-0", "backend", 101);
        let db = pod("shop", "db-0", "db", 103);
        let flows = [
            tcp(monitor, backend.clone(), ("10.0.0.9", "10.0.0.3"), 9090, Verdict::FORWARDED),
            tcp(backend, db, ("10.0.0.3", "10.0.0.4"), 5432, Verdict::FORWARDED),
        ]
        .map(Arc::new);
        let map = flows.iter().collect::<MapBuilder>().build(Some("ops"));
        assert_eq!(map.edges.len(), 1);
        let ids: Vec<&str> = map.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["ops/monitor", "shop/backend"]);
        assert_eq!(map.namespaces, ["ops", "shop"]);
    }
}
