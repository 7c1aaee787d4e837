//! The cluster's kvstore: etcd (the `etcd-client` crate), behind a blocking interface the
//! agent's steps call. What lives there, under one prefix:
//!
//! - `nodes/<name>`: a node's entry (JSON), under the node's lease, so a dead agent's node
//!   disappears when the lease expires;
//! - `identities/labels/<labels>` → id and `identities/id/<id>` → labels: identities agreed
//!   cluster-wide, allocated in transactions (the same labels get the same id on every node,
//!   whoever asks first); `identities/refs/<id>/<node>` under each user's lease, so ids no node
//!   uses any more can be collected;
//! - `ipcache/<ip>`: which identity and node an address belongs to, under its node's lease;
//! - `policy-status/…`: each node's enforcement of each policy, and their aggregate
//!   ([`super::policy_status`]);
//! - `resources/<file>`: manifest files every agent reads when the cluster's resources live
//!   in the kvstore (`netstack cluster up --resources kvstore`, `netstack cluster apply`).

use std::net::IpAddr;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use crate::identity::{Labels, FIRST_CLUSTER_IDENTITY, FIRST_LOCAL_IDENTITY};

/// What went wrong talking to the kvstore, naming the operation.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The kvstore could not be reached or did not answer in time.
    #[error("kvstore {operation}: {reason}")]
    Unavailable {
        /// What was being done.
        operation: String,
        /// What the client said.
        reason: String,
    },
    /// Something stored there is not what this agent writes.
    #[error("kvstore {key}: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong with its value.
        reason: String,
    },
    /// Allocation kept losing races, or the identity space is used up.
    #[error("kvstore identity allocation for {labels}: {reason}")]
    Allocation {
        /// The labels.
        labels: String,
        /// Why it gave up.
        reason: String,
    },
}

/// A node as the kvstore holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// Node name.
    pub name: String,
    /// Underlay addresses.
    pub addresses: Vec<IpAddr>,
    /// The pod CIDR, as `10.0.1.0/24`.
    pub pod_cidr: String,
    /// The node's encryption public key (base64), once it has one.
    #[serde(default)]
    pub encryption_key: Option<String>,
}

/// An ipcache entry: who an address is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpcacheEntry {
    /// Security identity.
    pub identity: u32,
    /// The owning node's underlay address, for tunnelling to it.
    pub node_address: IpAddr,
    /// The pod (`namespace/name`) the address belongs to, when it is one: other nodes' services
    /// find their selected pods' addresses by it.
    #[serde(default)]
    pub pod: Option<String>,
}

/// A connection to the kvstore. Cheap to clone (the client is shared).
#[derive(Clone)]
pub struct KvStore {
    runtime: std::sync::Arc<tokio::runtime::Runtime>,
    client: Client,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore").field("prefix", &self.prefix).finish()
    }
}

/// A lease the node holds while it lives: its node entry, ipcache entries and identity
/// references are written under it. Kept alive by a task; dropping it revokes the lease, so
/// everything written under it goes at once. A node that dies without dropping it loses its
/// entries when the TTL runs out.
pub struct NodeLease {
    id: i64,
    store: KvStore,
    keeper: Option<tokio::task::JoinHandle<()>>,
    /// False once abandoned: dropping then leaves the lease to expire.
    revoke: bool,
}

impl std::fmt::Debug for NodeLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLease").field("id", &self.id).finish()
    }
}

impl NodeLease {
    /// The lease id.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Stops renewing without revoking: what a crash looks like to the other nodes (the
    /// entries go when the TTL runs out).
    pub fn abandon(mut self) {
        self.revoke = false;
    }
}

impl Drop for NodeLease {
    fn drop(&mut self) {
        if let Some(keeper) = self.keeper.take() {
            keeper.abort();
        }
        if !self.revoke {
            return;
        }
        let mut client = self.store.client.clone();
        let id = self.id;
        let _ = self
            .store
            .runtime
            .block_on(async move { tokio::time::timeout(Duration::from_secs(2), client.lease_revoke(id)).await });
    }
}

fn unavailable(operation: &str, error: impl std::fmt::Display) -> KvError {
    KvError::Unavailable { operation: operation.to_owned(), reason: error.to_string() }
}

/// Labels as one key segment: `k=v,k=v` in key order (labels are sorted).
fn labels_key(labels: &Labels) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

impl KvStore {
    /// Connects to etcd at `endpoints` (`http://127.0.0.1:2379`), keys under `prefix`; every
    /// call gives up after `timeout` (the agent keeps its datapath and retries).
    pub fn connect(endpoints: &[String], prefix: &str, timeout: Duration) -> Result<KvStore, KvError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kvstore")
            .enable_all()
            .build()
            .map_err(|e| unavailable("start the client runtime", e))?;
        let options = ConnectOptions::new().with_connect_timeout(timeout).with_timeout(timeout);
        let client = runtime
            .block_on(async { tokio::time::timeout(timeout, Client::connect(endpoints, Some(options))).await })
            .map_err(|_| unavailable(&format!("connect to {}", endpoints.join(",")), "timed out"))?
            .map_err(|e| unavailable(&format!("connect to {}", endpoints.join(",")), e))?;
        let store = KvStore {
            runtime: std::sync::Arc::new(runtime),
            client,
            prefix: prefix.trim_end_matches('/').to_owned(),
            timeout,
        };
        // A first request, so an unreachable kvstore is an error here and not at first use.
        store.get_prefix("nodes/")?;
        Ok(store)
    }

    fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }

    /// Runs `future` with the call timeout.
    fn run<T>(
        &self,
        operation: &str,
        future: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, KvError> {
        self.runtime
            .block_on(async { tokio::time::timeout(self.timeout, future).await })
            .map_err(|_| unavailable(operation, format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| unavailable(operation, e))
    }

    /// Every (key without the prefix, value) under `rest`.
    pub(super) fn get_prefix(&self, rest: &str) -> Result<Vec<(String, Vec<u8>)>, KvError> {
        let key = self.key(rest);
        let mut client = self.client.clone();
        let response =
            self.run(&format!("list {key}"), client.get(key.clone(), Some(GetOptions::new().with_prefix())))?;
        let strip = self.prefix.len() + 1;
        Ok(response
            .kvs()
            .iter()
            .map(|kv| (String::from_utf8_lossy(kv.key()).get(strip..).unwrap_or("").to_owned(), kv.value().to_vec()))
            .collect())
    }

    fn get(&self, rest: &str) -> Result<Option<Vec<u8>>, KvError> {
        let key = self.key(rest);
        let mut client = self.client.clone();
        let response = self.run(&format!("get {key}"), client.get(key.clone(), None))?;
        Ok(response.kvs().first().map(|kv| kv.value().to_vec()))
    }

    pub(super) fn put(&self, rest: &str, value: Vec<u8>, lease: Option<i64>) -> Result<(), KvError> {
        let key = self.key(rest);
        let mut client = self.client.clone();
        let options = lease.map(|id| PutOptions::new().with_lease(id));
        self.run(&format!("put {key}"), client.put(key.clone(), value, options)).map(drop)
    }

    /// Deletes the key `rest`.
    pub(super) fn delete(&self, rest: &str) -> Result<(), KvError> {
        let key = self.key(rest);
        let mut client = self.client.clone();
        self.run(&format!("delete {key}"), client.delete(key.clone(), None)).map(drop)
    }

    /// Stores a manifest file's text under `resources/<name>`, for agents that take their
    /// resources from the kvstore.
    pub fn put_resource_file(&self, name: &str, text: &str) -> Result<(), KvError> {
        self.put(&format!("resources/{name}"), text.as_bytes().to_vec(), None)
    }

    /// Removes the manifest file `name`; whether it was there.
    pub fn delete_resource_file(&self, name: &str) -> Result<bool, KvError> {
        let key = self.key(&format!("resources/{name}"));
        let mut client = self.client.clone();
        let response = self.run(&format!("delete {key}"), client.delete(key.clone(), None))?;
        Ok(response.deleted() > 0)
    }

    /// Every manifest file stored: (name, text, the revision it was last changed at).
    pub fn resource_files(&self) -> Result<Vec<(String, String, i64)>, KvError> {
        let key = self.key("resources/");
        let mut client = self.client.clone();
        let response =
            self.run(&format!("list {key}"), client.get(key.clone(), Some(GetOptions::new().with_prefix())))?;
        Ok(response
            .kvs()
            .iter()
            .map(|kv| {
                let name = String::from_utf8_lossy(kv.key()).get(key.len()..).unwrap_or("").to_owned();
                (name, String::from_utf8_lossy(kv.value()).into_owned(), kv.mod_revision())
            })
            .collect())
    }

    /// Grants a lease of `ttl` and keeps it alive until the returned handle drops.
    pub fn lease(&self, ttl: Duration) -> Result<NodeLease, KvError> {
        let mut client = self.client.clone();
        let granted = self.run("grant a lease", client.lease_grant(ttl.as_secs().max(1) as i64, None))?;
        let id = granted.id();
        let mut client = self.client.clone();
        let (mut keeper, mut stream) = self.run("keep a lease alive", client.lease_keep_alive(id))?;
        let interval = (ttl / 3).max(Duration::from_millis(200));
        let task = self.runtime.spawn(async move {
            loop {
                if keeper.keep_alive().await.is_err() || stream.message().await.is_err() {
                    // Lost the kvstore: try again at the next tick; the lease may survive.
                }
                tokio::time::sleep(interval).await;
            }
        });
        Ok(NodeLease { id, store: self.clone(), keeper: Some(task), revoke: true })
    }

    /// Publishes `node` under `lease`.
    pub fn put_node(&self, node: &NodeEntry, lease: &NodeLease) -> Result<(), KvError> {
        let value = serde_json::to_vec(node).expect("node entries serialise");
        self.put(&format!("nodes/{}", node.name), value, Some(lease.id()))
    }

    /// Every node whose lease is alive.
    pub fn nodes(&self) -> Result<Vec<NodeEntry>, KvError> {
        self.get_prefix("nodes/")?
            .into_iter()
            .map(|(key, value)| {
                serde_json::from_slice(&value).map_err(|e| KvError::Corrupt { key, reason: e.to_string() })
            })
            .collect()
    }

    /// The cluster-wide identity of `labels`, allocated if no node has yet, and referenced by
    /// `node` under `lease` (so it is not collected while the node uses it). Two nodes asking
    /// at once for the same labels get the same id: the first transaction to claim the labels
    /// wins and the other reads its id.
    pub fn allocate_identity(&self, labels: &Labels, node: &str, lease: &NodeLease) -> Result<u32, KvError> {
        let name = labels_key(labels);
        let labels_at = self.key(&format!("identities/labels/{name}"));
        let failed = |reason: String| KvError::Allocation { labels: name.clone(), reason };
        for _attempt in 0..64 {
            if let Some(existing) = self.get(&format!("identities/labels/{name}"))? {
                let id = std::str::from_utf8(&existing)
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok())
                    .ok_or_else(|| KvError::Corrupt { key: labels_at.clone(), reason: "not an identity".to_owned() })?;
                self.put(&format!("identities/refs/{id}/{node}"), Vec::new(), Some(lease.id()))?;
                // Collection may have taken the id between the read and the reference: then
                // the labels are gone, and the next round allocates again.
                if self.get(&format!("identities/labels/{name}"))? == Some(existing) {
                    return Ok(id);
                }
                self.release_identity(id, node)?;
                continue;
            }
            let candidate = self.next_free_identity()?;
            if candidate >= FIRST_LOCAL_IDENTITY {
                return Err(failed("every cluster identity is in use".to_owned()));
            }
            let id_at = self.key(&format!("identities/id/{candidate}"));
            let txn = Txn::new()
                .when([
                    Compare::version(labels_at.clone(), CompareOp::Equal, 0),
                    Compare::version(id_at.clone(), CompareOp::Equal, 0),
                ])
                .and_then([
                    TxnOp::put(labels_at.clone(), candidate.to_string(), None),
                    TxnOp::put(id_at.clone(), name.clone(), None),
                ]);
            let mut client = self.client.clone();
            let outcome = self.run(&format!("claim identity {candidate}"), client.txn(txn))?;
            if outcome.succeeded() {
                self.put(&format!("identities/refs/{candidate}/{node}"), Vec::new(), Some(lease.id()))?;
                return Ok(candidate);
            }
            // Another node claimed the labels (the next round reads its id) or the id.
        }
        Err(failed("64 attempts lost their race".to_owned()))
    }

    /// The lowest cluster identity not allocated.
    fn next_free_identity(&self) -> Result<u32, KvError> {
        let mut used: Vec<u32> = self
            .get_prefix("identities/id/")?
            .iter()
            .filter_map(|(key, _)| key.rsplit('/').next()?.parse().ok())
            .collect();
        used.sort_unstable();
        let mut next = FIRST_CLUSTER_IDENTITY;
        for id in used {
            if id == next {
                next += 1;
            } else if id > next {
                break;
            }
        }
        Ok(next)
    }

    /// The labels of cluster identity `id`.
    pub fn identity_labels(&self, id: u32) -> Result<Option<String>, KvError> {
        Ok(self.get(&format!("identities/id/{id}"))?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Drops `node`'s reference to identity `id`.
    pub fn release_identity(&self, id: u32, node: &str) -> Result<(), KvError> {
        self.delete(&format!("identities/refs/{id}/{node}"))
    }

    /// Notes that `node` (still) uses identity `id`, under its lease: what a node re-asserts for
    /// every identity it holds when it publishes itself under a new lease.
    pub fn reference_identity(&self, id: u32, node: &str, lease: &NodeLease) -> Result<(), KvError> {
        self.put(&format!("identities/refs/{id}/{node}"), Vec::new(), Some(lease.id()))
    }

    /// The allocated identities no node references now, with their labels' key text.
    pub fn unreferenced_identities(&self) -> Result<Vec<(u32, Vec<u8>)>, KvError> {
        let referenced: std::collections::HashSet<u32> = self
            .get_prefix("identities/refs/")?
            .iter()
            .filter_map(|(key, _)| key.split('/').nth(2)?.parse().ok())
            .collect();
        Ok(self
            .get_prefix("identities/id/")?
            .into_iter()
            .filter_map(|(key, labels)| Some((key.rsplit('/').next()?.parse::<u32>().ok()?, labels)))
            .filter(|(id, _)| !referenced.contains(id))
            .collect())
    }

    /// Deletes identity `id` if it still stands for `labels` (as read by
    /// [`KvStore::unreferenced_identities`]); true when it was deleted.
    pub fn delete_identity(&self, id: u32, labels: &[u8]) -> Result<bool, KvError> {
        let id_at = self.key(&format!("identities/id/{id}"));
        let labels_at = self.key(&format!("identities/labels/{}", String::from_utf8_lossy(labels)));
        let txn = Txn::new()
            .when([Compare::value(id_at.clone(), CompareOp::Equal, labels.to_vec())])
            .and_then([TxnOp::delete(id_at, None), TxnOp::delete(labels_at, None)]);
        let mut client = self.client.clone();
        Ok(self.run("collect an identity", client.txn(txn))?.succeeded())
    }

    /// Deletes the identities no node references now; returns them. An allocation that
    /// references an id while it is being collected notices the labels gone and allocates
    /// again (see [`KvStore::allocate_identity`]). Agents collect with a grace period instead
    /// ([`crate::cluster::membership::Membership::collect_identities`]): a node whose lease
    /// lapsed references its identities again only once it is back.
    pub fn collect_identities(&self) -> Result<Vec<u32>, KvError> {
        let mut collected = Vec::new();
        for (id, labels) in self.unreferenced_identities()? {
            if self.delete_identity(id, &labels)? {
                collected.push(id);
            }
        }
        Ok(collected)
    }

    /// Publishes who `ip` is, under the owning node's lease.
    pub fn put_ipcache(&self, ip: IpAddr, entry: IpcacheEntry, lease: &NodeLease) -> Result<(), KvError> {
        self.put(&format!("ipcache/{ip}"), serde_json::to_vec(&entry).expect("entries serialise"), Some(lease.id()))
    }

    /// Withdraws `ip` from the ipcache.
    pub fn delete_ipcache(&self, ip: IpAddr) -> Result<(), KvError> {
        self.delete(&format!("ipcache/{ip}"))
    }

    /// Every ipcache entry.
    pub fn ipcache(&self) -> Result<Vec<(IpAddr, IpcacheEntry)>, KvError> {
        self.get_prefix("ipcache/")?
            .into_iter()
            .map(|(key, value)| {
                let ip = key
                    .strip_prefix("ipcache/")
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| KvError::Corrupt { key: key.clone(), reason: "not an address".to_owned() })?;
                let entry =
                    serde_json::from_slice(&value).map_err(|e| KvError::Corrupt { key, reason: e.to_string() })?;
                Ok((ip, entry))
            })
            .collect()
    }
}
