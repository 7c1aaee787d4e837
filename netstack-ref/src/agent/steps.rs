//! The agent's reconcile, as named steps: read the desired state, remove what is gone, bring
//! endpoints and their identities up, name CIDR identities, write the ipcache, write each
//! endpoint's policy map. The decisions (security labels, addresses, the ipcache's contents)
//! are pure functions, tested here; the steps apply them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use super::endpoint::{self, EndpointRecord};
use super::sources::ResourceSource;
use super::{Agent, AgentError, LiveEndpoint};
use crate::cluster::policy_status::NodePolicyStatus;
use crate::cluster::routing::underlay_ipv4;
use crate::datapath::{Conntrack, Encrypt, IpcacheTarget};
use crate::identity::{pod_security_labels, Labels, ReservedIdentity};
use crate::manifest::{Namespace, Pod, Resource};
use crate::policy::api::Cidr;
use crate::policy::resolve::selects;
use crate::policy::{resolve_with, Policy, Universe};

/// What the sources ask for.
#[derive(Debug, Default)]
pub struct Desired {
    /// Namespaces by name.
    pub namespaces: BTreeMap<String, Namespace>,
    /// Pods by `namespace/name`.
    pub pods: BTreeMap<String, Pod>,
    /// Policies in force.
    pub policies: Vec<Policy>,
    /// Services.
    pub services: Vec<crate::manifest::service::Service>,
    /// Endpoint slices given (and those mirrored from legacy Endpoints).
    pub slices: Vec<crate::manifest::service::EndpointSlice>,
    /// Every pod of the cluster by `namespace/name`, whichever node runs it: services select
    /// backends among them.
    pub all_pods: BTreeMap<String, Pod>,
}

impl Desired {
    /// Sorts resources by kind, keeping the pods this node runs: those scheduled to `node`
    /// (`spec.nodeName`) or to no node.
    pub fn read(resources: Vec<Resource>, node: &str) -> Desired {
        let mut desired = Desired::default();
        for r in resources {
            match r {
                Resource::Namespace(n) => {
                    desired.namespaces.insert(n.name.clone(), n);
                }
                Resource::Pod(p) => {
                    let key = format!("{}/{}", p.namespace, p.name);
                    if p.node_name.as_deref().is_none_or(|n| n == node) {
                        desired.pods.insert(key.clone(), p.clone());
                    }
                    desired.all_pods.insert(key, p);
                }
                Resource::Policy(p) => desired.policies.push(p),
                Resource::Service(s) => desired.services.push(s),
                Resource::EndpointSlice(s) => desired.slices.push(s),
                Resource::Endpoints(e) => desired.slices.extend(e.slices),
            }
        }
        desired
    }

    /// A pod's security labels: its own, its namespace's, its service account.
    pub fn security_labels(&self, pod: &Pod) -> Labels {
        let ns_labels = self.namespaces.get(&pod.namespace).map(|n| n.labels.clone()).unwrap_or_default();
        pod_security_labels(
            pod.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &pod.namespace,
            ns_labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &pod.service_account,
        )
    }
}

/// A new endpoint's record: the lowest free endpoint id, the lowest free address of the pod
/// CIDR past its gateway, interface and namespace names unique to node and pod (and short:
/// IFNAMSIZ).
pub fn new_record(
    existing: &BTreeMap<String, EndpointRecord>,
    node: &str,
    pod_cidr: &Cidr,
    key: &str,
    identity: u32,
) -> Result<EndpointRecord, AgentError> {
    let IpAddr::V4(base) = pod_cidr.addr else { return Err(AgentError::PodCidrNotIpv4(*pod_cidr)) };
    let size = 1u32 << (32 - pod_cidr.len as u32);
    let ipv4 = (2..size.saturating_sub(1))
        .map(|i| Ipv4Addr::from(u32::from(base) + i))
        .find(|a| !existing.values().any(|r| r.ipv4 == *a))
        .ok_or(AgentError::PodCidrFull(*pod_cidr))?;
    let id = (1..).find(|i| !existing.values().any(|r| r.id == *i)).expect("ids left");
    let hash = format!("{node}/{key}").bytes().fold(0x811c9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x01000193));
    Ok(EndpointRecord {
        id,
        pod: key.to_string(),
        ipv4,
        netns: format!("{node}-{}", key.replace('/', "-")),
        host_if: format!("lxc{hash:08x}"),
        identity,
    })
}

/// What the ipcache should hold: the gateway as the host, the nodes' underlay addresses (this
/// node's as the host, the others' as remote-node), every pod's address (the other nodes'
/// behind their tunnel endpoint in tunnel mode), and the policies' CIDRs (a pod's own /32 wins
/// over a CIDR naming the same prefix).
pub fn desired_ipcache<'a>(
    router: Ipv4Addr,
    nodes: impl IntoIterator<Item = (Ipv4Addr, ReservedIdentity)>,
    pods: impl IntoIterator<Item = (Ipv4Addr, IpcacheTarget)>,
    cidrs: impl IntoIterator<Item = (&'a Cidr, u32)>,
) -> BTreeMap<Cidr, IpcacheTarget> {
    let host = |a: Ipv4Addr| Cidr::new(IpAddr::V4(a), 32).expect("host prefix");
    let direct = |identity| IpcacheTarget { identity, tunnel_endpoint: None, encrypt: Encrypt::None };
    let mut desired = BTreeMap::new();
    desired.insert(host(router), direct(ReservedIdentity::Host.id()));
    for (addr, identity) in nodes {
        desired.insert(host(addr), direct(identity.id()));
    }
    for (addr, target) in pods {
        desired.insert(host(addr), target);
    }
    for (c, id) in cidrs {
        desired.entry(*c).or_insert(direct(id));
    }
    desired
}

impl Agent {
    /// Brings endpoints, identities, the ipcache and policy maps to the desired state; returns
    /// the policy entries written and removed. Problems are kept in `errors`.
    pub(super) fn reconcile(&mut self) -> (usize, usize) {
        let desired = Desired::read(self.sources.resources(), &self.config.node_name);
        self.remove_gone(&desired);
        for (key, pod) in &desired.pods {
            self.sync_endpoint(&desired, key, pod);
        }
        self.persisted.identities.retain(|_, id| self.identities.labels(*id).is_some());
        self.policies = desired.policies.clone();
        self.cidr_ids.sync(self.policies.iter().flat_map(|p| p.cidrs()));
        self.sync_ipcache();
        self.sync_services(&desired);
        self.flows.enrich_with(self.enrichment());
        self.sync_policy_maps()
    }

    /// Services: backends are the pods with an address (this node's endpoints and, in a
    /// cluster, the other nodes' pods the kvstore names), frontends on the cluster IP and the
    /// node's addresses.
    fn sync_services(&mut self, desired: &Desired) {
        let node = self.config.node_name.clone();
        use crate::services::catalog::PodAddress;
        // Other nodes' pods as the kvstore names them (their node only ever compared with ours).
        let mut addresses: BTreeMap<String, PodAddress> = self
            .remote_endpoints
            .entries()
            .filter_map(|(ip, e)| {
                let at = PodAddress { address: *ip, node: format!("node at {}", e.node_address), ready: true };
                Some((e.pod.clone()?, at))
            })
            .collect();
        for (key, l) in &self.endpoints {
            let at = PodAddress { address: IpAddr::V4(l.record.ipv4), node: node.clone(), ready: true };
            addresses.insert(key.clone(), at);
        }
        let mut node_addresses = vec![Ipv4Addr::LOCALHOST, self.config.router()];
        if let Some(IpAddr::V4(a)) = self.config.node_address {
            node_addresses.push(a);
        }
        let pod_netns: Vec<String> = self.endpoints.values().map(|l| l.record.netns.clone()).collect();
        let inputs = crate::services::node::ServiceInputs {
            services: &desired.services,
            slices: &desired.slices,
            pods: &desired.all_pods,
            addresses: &addresses,
            node: &node,
            node_addresses: &node_addresses,
            pod_netns: &pod_netns,
        };
        let errors = self.services.sync(&inputs);
        self.errors.extend(errors);
    }

    /// Removes the endpoints whose pods are gone, and forgets their connections (one walk of
    /// the table for all), so a pod that later gets the address starts clean.
    fn remove_gone(&mut self, desired: &Desired) {
        let gone: Vec<String> =
            self.persisted.endpoints.keys().filter(|k| !desired.pods.contains_key(*k)).cloned().collect();
        let mut gone_ids = Vec::new();
        for key in gone {
            let record = self.persisted.endpoints.remove(&key).expect("listed");
            let live = self.endpoints.remove(&key);
            if let Some(l) = &live {
                self.release_identity(&l.labels);
            }
            if let Err(e) = endpoint::remove(&record, live.map(|l| l.datapath)) {
                self.errors.push(format!("remove {e}"));
            }
            gone_ids.push(record.id);
        }
        if gone_ids.is_empty() {
            return;
        }
        if let Ok(conntrack) = Conntrack::open(&self.config.bpffs) {
            if let Err(e) = conntrack.remove_where(|k, _| gone_ids.contains(&k.endpoint_id)) {
                self.errors.push(format!("remove endpoints {gone_ids:?}: conntrack: {e}"));
            }
        }
    }

    /// Gives the pod its identity (stable numbers for known label sets) and, when it has none
    /// yet, an endpoint — a new one or the one a previous agent left running.
    fn sync_endpoint(&mut self, desired: &Desired, key: &str, pod: &Pod) {
        let labels = desired.security_labels(pod);
        let previous = self.endpoints.get(key).map(|l| l.labels.clone());
        if previous.as_ref() == Some(&labels) {
            return;
        }
        if let Some(old) = previous {
            self.release_identity(&old);
        }
        let text = labels.to_string();
        let identity = if self.cluster.is_some() {
            match self.cluster_identity(&labels, &text) {
                Some(id) => id,
                None => {
                    self.errors.push(format!(
                        "pod {key}: waits for its cluster identity (labels {text}): the kvstore is unavailable"
                    ));
                    return;
                }
            }
        } else {
            match (self.identities.get(&labels), self.persisted.identities.get(&text)) {
                (None, Some(&id)) if self.identities.restore(&labels, id) => id,
                _ => self.identities.allocate(&labels).get(),
            }
        };
        self.persisted.identities.insert(text, identity);
        if let Some(live) = self.endpoints.get_mut(key) {
            live.labels = labels;
            live.identity = identity;
            live.pod = pod.clone();
            return;
        }
        match self.start_endpoint(key, identity) {
            Ok((record, datapath)) => {
                let policy = datapath
                    .read_policy()
                    .map(|entries| entries.into_iter().map(|(k, v, _)| (k, v)).collect())
                    .unwrap_or_default();
                self.persisted.endpoints.insert(key.to_owned(), record.clone());
                let live = LiveEndpoint { record, pod: pod.clone(), labels, identity, datapath, policy };
                self.endpoints.insert(key.to_owned(), live);
            }
            Err(e) => {
                self.errors.push(e.to_string());
                self.release_identity(&labels);
            }
        }
    }

    /// The cluster-wide identity of `labels` (`text`), mirrored in the local allocator: from
    /// the kvstore, or while it is away the one this node last had for them (the datapath
    /// keeps its last state). `None` when neither knows it.
    fn cluster_identity(&mut self, labels: &Labels, text: &str) -> Option<u32> {
        let cluster = self.cluster.as_mut()?;
        let id = match cluster.allocate(labels) {
            Some(id) => id,
            None => {
                let id = self.persisted.identities.get(text).copied()?;
                cluster.hold(id);
                id
            }
        };
        match self.identities.get(labels) {
            Some(held) if held == id => {
                // One more use of an identity this node holds.
                self.identities.allocate(labels);
            }
            Some(_) => {
                // The cluster re-allocated it (collected while this node was away).
                while !self.identities.release(labels) {}
                self.identities.restore(labels, id);
            }
            None => {
                if !self.identities.restore(labels, id) {
                    self.errors.push(format!("identity {id} of {text} is held here by other labels"));
                    return None;
                }
            }
        }
        Some(id)
    }

    /// Drops one use of `labels`' identity; the last use here also drops this node's
    /// reference in the kvstore.
    fn release_identity(&mut self, labels: &Labels) {
        let id = self.identities.get(labels);
        if self.identities.release(labels) {
            if let (Some(cluster), Some(id)) = (self.cluster.as_mut(), id) {
                cluster.release(id);
            }
        }
    }

    fn start_endpoint(
        &self,
        key: &str,
        identity: u32,
    ) -> Result<(EndpointRecord, crate::datapath::EndpointDatapath), AgentError> {
        let record = match self.persisted.endpoints.get(key) {
            Some(r) => r.clone(),
            None => new_record(
                &self.persisted.endpoints,
                &self.config.pod_netns_prefix,
                &self.config.pod_cidr,
                key,
                identity,
            )?,
        };
        let shared = &self.config.bpffs;
        let tunnel = self.tunnel.as_ref().map_or(0, |t| t.ifindex());
        let datapath = endpoint::create(&record, self.config.router(), tunnel, &shared.join("endpoints"), shared)?;
        Ok((record, datapath))
    }

    /// Writes what changed in the ipcache and removes what is no longer wanted.
    fn sync_ipcache(&mut self) {
        let tunnelled = self.tunnel.is_some();
        let local = self.endpoints.values().map(|l| {
            (l.record.ipv4, IpcacheTarget { identity: l.identity, tunnel_endpoint: None, encrypt: Encrypt::None })
        });
        let encryption = self.encryption.as_ref();
        let remote = self.remote_endpoints.entries().filter_map(|(ip, entry)| match (ip, entry.node_address) {
            (IpAddr::V4(v4), IpAddr::V4(node)) => Some((
                *v4,
                IpcacheTarget {
                    identity: entry.identity,
                    tunnel_endpoint: tunnelled.then_some(node),
                    encrypt: encryption.map_or(Encrypt::None, |e| e.encrypt_to(node)),
                },
            )),
            _ => None,
        });
        let own = self.config.node_address.and_then(|a| underlay_ipv4(&[a])).map(|a| (a, ReservedIdentity::Host));
        let others = self
            .remote_nodes
            .entries()
            .filter_map(|(_, n)| underlay_ipv4(&n.addresses))
            .map(|a| (a, ReservedIdentity::RemoteNode));
        let mut desired = desired_ipcache(
            self.config.router(),
            own.into_iter().chain(others),
            local.chain(remote),
            self.cidr_ids.iter(),
        );
        // Encrypting, each other node's whole pod CIDR says how to reach it (as world, which an
        // address no pod holds is anyway): a pod the kvstore has not named yet is encrypted
        // (or, strict, dropped) too, never sent in clear.
        if let Some(encryption) = &self.encryption {
            for (_, node) in self.remote_nodes.entries() {
                let (Some(cidr), Some(address)) = (Cidr::parse(&node.pod_cidr), underlay_ipv4(&node.addresses)) else {
                    continue;
                };
                desired.entry(cidr).or_insert(IpcacheTarget {
                    identity: ReservedIdentity::WorldIpv4.id(),
                    tunnel_endpoint: tunnelled.then_some(address),
                    encrypt: encryption.encrypt_to(address),
                });
            }
        }
        for (c, target) in &desired {
            if self.ipcache_state.get(c) != Some(target) {
                if let Err(e) = self.ipcache.set(c, *target) {
                    self.errors.push(e.to_string());
                }
            }
        }
        for c in self.ipcache_state.keys().filter(|c| !desired.contains_key(c)) {
            if let Err(e) = self.ipcache.remove(c) {
                self.errors.push(e.to_string());
            }
        }
        self.ipcache_state = desired;
    }

    /// Resolves policy for every endpoint and writes what changed into its map.
    fn sync_policy_maps(&mut self) -> (usize, usize) {
        let universe = Universe::new(
            Labels::from_pairs([("kubernetes.io/hostname", self.config.node_name.as_str())]),
            self.endpoints
                .values()
                .map(|l| (l.identity, l.labels.clone()))
                .chain(self.remote_identities.iter().map(|(&id, labels)| (id, labels.clone()))),
            self.cidr_ids.iter().map(|(c, id)| (id, *c)),
        );
        let (mut written, mut removed) = (0, 0);
        let mut failed = BTreeMap::new();
        for (key, live) in &mut self.endpoints {
            let state = resolve_with(&self.policies, &live.labels, &universe, self.config.allow_localhost);
            match live.datapath.apply_policy(&live.policy, &state) {
                Ok((w, r)) => {
                    written += w;
                    removed += r;
                    live.policy = state;
                }
                Err(e) => {
                    failed.insert(key.clone(), e.to_string());
                    self.errors.push(format!("endpoint {key}: {e}"));
                }
            }
        }
        self.policy_enforcement = self
            .policies
            .iter()
            .map(|p| {
                let selected: Vec<&String> = self
                    .endpoints
                    .iter()
                    .filter(|(_, l)| p.rules.iter().any(|r| selects(p, r, &l.labels)))
                    .map(|(k, _)| k)
                    .collect();
                let error = selected.iter().find_map(|k| failed.get(*k).map(|e| format!("endpoint {k}: {e}")));
                let status = NodePolicyStatus {
                    enforcing: error.is_none(),
                    endpoints: selected.len(),
                    revision: revision(p),
                    error,
                };
                (p.key(), status)
            })
            .collect();
        (written, removed)
    }
}

/// A policy's revision: a hash of its rules (the same on every node running the same build).
fn revision(policy: &Policy) -> String {
    let text = format!("{:?}", policy.rules);
    let hash = text.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u32, last: u8) -> EndpointRecord {
        EndpointRecord {
            id,
            pod: format!("ns/p{id}"),
            ipv4: Ipv4Addr::new(10, 200, 0, last),
            netns: String::new(),
            host_if: String::new(),
            identity: 256,
        }
    }

    #[test]
    fn new_endpoints_take_the_lowest_free_id_and_address() {
        let cidr = Cidr::parse("10.200.0.0/29").unwrap();
        let existing: BTreeMap<String, EndpointRecord> =
            [("a".to_string(), record(1, 2)), ("b".to_string(), record(3, 4))].into();
        let r = new_record(&existing, "node-1", &cidr, "shop/web", 300).unwrap();
        assert_eq!((r.id, r.ipv4, r.identity), (2, Ipv4Addr::new(10, 200, 0, 3), 300));
        assert_eq!(r.netns, "node-1-shop-web");
        assert!(r.host_if.starts_with("lxc") && r.host_if.len() == 11);
        let full: BTreeMap<String, EndpointRecord> = (2..7).map(|i| (format!("p{i}"), record(i as u32, i))).collect();
        assert!(matches!(new_record(&full, "n", &cidr, "x/y", 1), Err(AgentError::PodCidrFull(_))));
    }

    #[test]
    fn the_ipcache_holds_the_host_nodes_pods_and_cidrs() {
        let cidr = Cidr::parse("10.200.0.5/32").unwrap();
        let world = Cidr::parse("192.0.2.0/24").unwrap();
        let node2 = Ipv4Addr::new(192, 168, 100, 12);
        let pod = |identity, tunnel_endpoint| IpcacheTarget { identity, tunnel_endpoint, encrypt: Encrypt::None };
        let ipcache = desired_ipcache(
            Ipv4Addr::new(10, 200, 0, 1),
            [(Ipv4Addr::new(192, 168, 100, 11), ReservedIdentity::Host), (node2, ReservedIdentity::RemoteNode)],
            [(Ipv4Addr::new(10, 200, 0, 5), pod(300, None)), (Ipv4Addr::new(10, 200, 2, 7), pod(301, Some(node2)))],
            [(&cidr, 1 << 24), (&world, (1 << 24) + 1)],
        );
        let at = |s: &str| ipcache.get(&Cidr::parse(s).unwrap()).copied();
        assert_eq!(at("10.200.0.1/32"), Some(pod(ReservedIdentity::Host.id(), None)));
        assert_eq!(at("192.168.100.11/32"), Some(pod(ReservedIdentity::Host.id(), None)));
        assert_eq!(at("192.168.100.12/32"), Some(pod(ReservedIdentity::RemoteNode.id(), None)));
        assert_eq!(at("10.200.2.7/32"), Some(pod(301, Some(node2))), "a remote pod sits behind its node");
        assert_eq!(ipcache.get(&cidr), Some(&pod(300, None)), "the endpoint's own /32 wins over a CIDR naming it");
        assert_eq!(ipcache.get(&world), Some(&pod((1 << 24) + 1, None)));
    }

    #[test]
    fn security_labels_carry_namespace_and_its_labels() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: red}}\n---\n\
                    apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web}}\n";
        let desired = Desired::read(crate::manifest::parse(std::path::Path::new("d.yaml"), text).unwrap(), "node-1");
        let labels = desired.security_labels(&desired.pods["shop/web"]);
        assert_eq!(
            labels.to_string(),
            "app=web,io.cilium.k8s.namespace.labels.team=red,io.cilium.k8s.policy.serviceaccount=default,\
             io.kubernetes.pod.namespace=shop"
        );
    }

    #[test]
    fn a_node_runs_the_pods_scheduled_to_it_and_the_unscheduled() {
        let pod = |name: &str, node: &str| {
            let spec = if node.is_empty() { String::new() } else { format!("\nspec: {{nodeName: {node}}}") };
            format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}{spec}\n")
        };
        let text = format!("{}{}{}", pod("here", "node-1"), pod("there", "node-2"), pod("anywhere", ""));
        let resources = crate::manifest::parse(std::path::Path::new("d.yaml"), &text).unwrap();
        let pods: Vec<String> = Desired::read(resources, "node-1").pods.into_keys().collect();
        assert_eq!(pods, ["default/anywhere", "default/here"]);
    }
}
