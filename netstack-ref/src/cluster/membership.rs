//! An agent's membership of the cluster through the kvstore: its node entry under its lease,
//! its pods' identities allocated cluster-wide. Losing the kvstore never stops the agent:
//! calls fail fast, the agent keeps its datapath on the last state, and reconnects with a
//! backoff (doubling from 1 s to 8 s), publishing its node again when it is back.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::kvstore::{IpcacheEntry, KvError, KvStore, NodeEntry, NodeLease};
use super::policy_status::{NodePolicyStatus, PolicyStatus};
use crate::identity::Labels;

/// How long a node entry outlives its agent.
pub const NODE_TTL: Duration = Duration::from_secs(10);
/// How long one kvstore call may take before the agent moves on.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between reconnection attempts: an agent is back within this (and a call
/// timeout) of the kvstore, before the others' [`super::lingering::GRACE`] runs out.
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// The kvstore's health, as `netstack status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KvStoreHealth {
    /// Where it is.
    pub endpoint: String,
    /// Whether the agent is connected and its node published.
    pub connected: bool,
    /// When the agent last talked to it successfully (seconds since the epoch).
    pub last_sync: Option<u64>,
    /// The latest failure, while disconnected.
    pub error: Option<String>,
    /// Unused identities this node has collected (as the cluster's collector).
    #[serde(default)]
    pub identities_collected: u64,
}

/// The connection an agent keeps.
pub struct Membership {
    endpoint: String,
    node: NodeEntry,
    store: Option<KvStore>,
    lease: Option<NodeLease>,
    next_attempt: Instant,
    backoff: Duration,
    last_sync: Option<SystemTime>,
    error: Option<String>,
    /// This node's pods (identity, `namespace/name`) as last published to the ipcache.
    published: BTreeMap<IpAddr, (u32, String)>,
    /// The cluster identities this node uses: referenced again under every new lease.
    referenced: BTreeSet<u32>,
    /// Identities no node referenced, since when (this node collects them when it is the
    /// collector and the grace period has passed).
    unreferenced_since: BTreeMap<u32, Instant>,
    /// Identities this node has collected.
    collected: u64,
    /// This node's policy statuses as last published.
    published_policies: BTreeMap<String, NodePolicyStatus>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership").field("endpoint", &self.endpoint).field("node", &self.node.name).finish()
    }
}

impl Membership {
    /// A membership of the cluster whose kvstore is at `endpoint`, as node `node` (nothing is
    /// contacted until [`Membership::ensure`]).
    pub fn new(endpoint: &str, node: NodeEntry) -> Membership {
        Membership {
            endpoint: endpoint.to_owned(),
            node,
            store: None,
            lease: None,
            next_attempt: Instant::now(),
            backoff: FIRST_BACKOFF,
            last_sync: None,
            error: None,
            published: BTreeMap::new(),
            referenced: BTreeSet::new(),
            unreferenced_since: BTreeMap::new(),
            collected: 0,
            published_policies: BTreeMap::new(),
        }
    }

    fn lost(&mut self, error: &KvError) {
        self.error = Some(error.to_string());
        // Entries went (or will go) with the lease: publish everything again on reconnect.
        self.published.clear();
        self.published_policies.clear();
        // The lease may still hold on the kvstore's side; a new one is taken on reconnect and
        // the old one expires. Dropping it here would block on a revoke that cannot arrive.
        if let Some(lease) = self.lease.take() {
            lease.abandon();
        }
        self.store = None;
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn synced(&mut self) {
        self.error = None;
        self.last_sync = Some(SystemTime::now());
        self.backoff = FIRST_BACKOFF;
    }

    /// Connects and publishes the node when not connected (and the backoff allows); checks
    /// the connection otherwise. True when connected.
    pub fn ensure(&mut self) -> bool {
        if let Some(store) = &self.store {
            return match store.nodes() {
                Ok(nodes) if nodes.iter().any(|n| n.name == self.node.name) => {
                    self.synced();
                    true
                }
                // The lease expired (the kvstore was away too long): publish again.
                Ok(_) => self.publish(),
                Err(e) => {
                    self.lost(&e);
                    false
                }
            };
        }
        if Instant::now() < self.next_attempt {
            return false;
        }
        match KvStore::connect(std::slice::from_ref(&self.endpoint), "netstack", CALL_TIMEOUT) {
            Ok(store) => {
                self.store = Some(store);
                self.publish()
            }
            Err(e) => {
                self.lost(&e);
                false
            }
        }
    }

    /// Replaces this node's entry (a new encryption key), in the kvstore at once when
    /// connected, else when it is again.
    pub fn update_node(&mut self, node: NodeEntry) {
        self.node = node;
        let put = match (&self.store, &self.lease) {
            (Some(store), Some(lease)) => store.put_node(&self.node, lease),
            _ => Ok(()),
        };
        if let Err(e) = put {
            self.lost(&e);
        }
    }

    /// This node's entry as published.
    pub fn node(&self) -> &NodeEntry {
        &self.node
    }

    fn publish(&mut self) -> bool {
        let Some(store) = self.store.clone() else { return false };
        let published = store.lease(NODE_TTL).and_then(|lease| {
            store.put_node(&self.node, &lease)?;
            for &id in &self.referenced {
                store.reference_identity(id, &self.node.name, &lease)?;
            }
            Ok(lease)
        });
        match published {
            Ok(lease) => {
                self.lease = Some(lease);
                self.synced();
                true
            }
            Err(e) => {
                self.lost(&e);
                false
            }
        }
    }

    /// The cluster-wide identity of `labels`, or `None` while the kvstore is away.
    pub fn allocate(&mut self, labels: &Labels) -> Option<u32> {
        let (store, lease) = (self.store.clone()?, self.lease.as_ref()?);
        match store.allocate_identity(labels, &self.node.name, lease) {
            Ok(id) => {
                self.referenced.insert(id);
                self.synced();
                Some(id)
            }
            Err(e) => {
                self.lost(&e);
                None
            }
        }
    }

    /// Notes that this node uses identity `id` it did not get from [`Membership::allocate`]
    /// (the one it had before, while the kvstore is away): referenced once it is back.
    pub fn hold(&mut self, id: u32) {
        self.referenced.insert(id);
    }

    /// Drops this node's reference to identity `id` (collected once no node uses it).
    pub fn release(&mut self, id: u32) {
        self.referenced.remove(&id);
        if let Some(store) = self.store.clone() {
            if let Err(e) = store.release_identity(id, &self.node.name) {
                self.lost(&e);
            }
        }
    }

    /// Collects the identities no node has referenced for `grace`, when this node is the
    /// collector: the live node first by name (one writer, as Cilium's operator is). The grace
    /// covers a node whose lease lapsed while the kvstore was away: it references its
    /// identities again once it reconnects (within its backoff). Returns what was collected.
    pub fn collect_identities(&mut self, grace: Duration) -> Vec<u32> {
        let Some(store) = self.store.clone() else { return Vec::new() };
        match self.is_collector(&store) {
            Some(true) => {}
            Some(false) => {
                self.unreferenced_since.clear();
                return Vec::new();
            }
            None => return Vec::new(),
        }
        let unreferenced = match store.unreferenced_identities() {
            Ok(u) => u,
            Err(e) => {
                self.lost(&e);
                return Vec::new();
            }
        };
        let now = Instant::now();
        let ids: BTreeSet<u32> = unreferenced.iter().map(|(id, _)| *id).collect();
        self.unreferenced_since.retain(|id, _| ids.contains(id));
        let mut collected = Vec::new();
        for (id, labels) in unreferenced {
            let since = *self.unreferenced_since.entry(id).or_insert(now);
            if now.duration_since(since) < grace {
                continue;
            }
            match store.delete_identity(id, &labels) {
                Ok(true) => {
                    self.unreferenced_since.remove(&id);
                    collected.push(id);
                }
                Ok(false) => {}
                Err(e) => {
                    self.lost(&e);
                    break;
                }
            }
        }
        self.collected += collected.len() as u64;
        collected
    }

    /// Whether this node is the cluster's collector (the live node first by name); `None`
    /// when the kvstore failed.
    fn is_collector(&mut self, store: &KvStore) -> Option<bool> {
        match store.nodes() {
            Ok(nodes) => Some(nodes.iter().map(|n| n.name.as_str()).min() == Some(self.node.name.as_str())),
            Err(e) => {
                self.lost(&e);
                None
            }
        }
    }

    /// Publishes how this node enforces each policy (what changed since the last call; the
    /// statuses of policies it no longer has withdrawn).
    pub fn publish_policy_statuses(&mut self, statuses: &BTreeMap<String, NodePolicyStatus>) {
        let (Some(store), Some(lease)) = (self.store.clone(), self.lease.as_ref()) else { return };
        let node = self.node.name.clone();
        let mut result = Ok(());
        for (policy, status) in statuses {
            if self.published_policies.get(policy) != Some(status) {
                result = result.and_then(|()| store.put_node_policy_status(policy, &node, status, lease));
            }
        }
        for policy in self.published_policies.keys().filter(|p| !statuses.contains_key(*p)) {
            result = result.and_then(|()| store.delete_node_policy_status(policy, &node));
        }
        match result {
            Ok(()) => self.published_policies = statuses.clone(),
            Err(e) => self.lost(&e),
        }
    }

    /// Each policy's status across the cluster: aggregated now when this node is the
    /// collector, else as the collector last wrote it. `None` while the kvstore is away.
    pub fn policy_statuses(&mut self) -> Option<BTreeMap<String, PolicyStatus>> {
        let store = self.store.clone()?;
        let result = match self.is_collector(&store)? {
            true => store.aggregate_policy_statuses(),
            false => store.policy_statuses(),
        };
        result.inspect_err(|e| self.lost(e)).ok()
    }

    /// Publishes this node's pods (address → identity) to the cluster's ipcache under the
    /// node's lease: what changed since the last call is written, what went is withdrawn.
    pub fn publish_endpoints(&mut self, endpoints: &BTreeMap<IpAddr, (u32, String)>) {
        let (Some(store), Some(lease)) = (self.store.clone(), self.lease.as_ref()) else { return };
        let node_address = self.node.addresses.first().copied().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let mut result = Ok(());
        for (&ip, (identity, pod)) in endpoints {
            if self.published.get(&ip) != Some(&(*identity, pod.clone())) {
                let entry = IpcacheEntry { identity: *identity, node_address, pod: Some(pod.clone()) };
                result = result.and_then(|()| store.put_ipcache(ip, entry, lease));
            }
        }
        for ip in self.published.keys().filter(|ip| !endpoints.contains_key(ip)) {
            result = result.and_then(|()| store.delete_ipcache(*ip));
        }
        match result {
            Ok(()) => self.published = endpoints.clone(),
            Err(e) => self.lost(&e),
        }
    }

    /// The other nodes' pods (address → identity and node), or `None` while the kvstore is
    /// away.
    pub fn remote_endpoints(&mut self) -> Option<BTreeMap<IpAddr, IpcacheEntry>> {
        let store = self.store.clone()?;
        let own = self.node.addresses.first().copied();
        match store.ipcache() {
            Ok(entries) => Some(entries.into_iter().filter(|(_, e)| Some(e.node_address) != own).collect()),
            Err(e) => {
                self.lost(&e);
                None
            }
        }
    }

    /// The labels of cluster identity `id`, as the kvstore has them (`None` while it is away
    /// or when no node holds `id`).
    pub fn identity_labels(&mut self, id: u32) -> Option<Labels> {
        let store = self.store.clone()?;
        match store.identity_labels(id) {
            Ok(text) => text.map(|t| {
                Labels::from_pairs(
                    t.split(',').filter_map(|pair| pair.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())),
                )
            }),
            Err(e) => {
                self.lost(&e);
                None
            }
        }
    }

    /// The nodes of the cluster, as the kvstore has them now.
    pub fn nodes(&mut self) -> Result<Vec<NodeEntry>, KvError> {
        let store = self.store.clone().ok_or_else(|| KvError::Unavailable {
            operation: "list nodes".to_owned(),
            reason: self.error.clone().unwrap_or_else(|| "not connected yet".to_owned()),
        })?;
        store.nodes().inspect_err(|e| self.lost(e))
    }

    /// Its health.
    pub fn health(&self) -> KvStoreHealth {
        KvStoreHealth {
            endpoint: self.endpoint.clone(),
            connected: self.store.is_some() && self.lease.is_some(),
            last_sync: self.last_sync.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs()),
            error: self.error.clone(),
            identities_collected: self.collected,
        }
    }
}
