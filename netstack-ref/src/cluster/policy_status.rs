//! Policy enforcement status across the cluster, as Cilium 1.7 handed CNP node status over
//! through the kvstore: every agent writes how it enforces each policy under its lease
//! (`policy-status/nodes/<policy>/<node>`), one writer (the cluster's collector) aggregates them
//! into each policy's status (`policy-status/policies/<policy>`), and `netstack policy get`
//! shows it. A node that dies takes its entries with its lease; the next aggregation drops it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::kvstore::{KvError, KvStore, NodeLease};

/// How one node enforces one policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePolicyStatus {
    /// Whether every local endpoint the policy selects has it in its policy map.
    pub enforcing: bool,
    /// The local endpoints it selects.
    pub endpoints: usize,
    /// The policy's revision as this node has it (a hash of its rules): nodes that differ run
    /// different versions.
    pub revision: String,
    /// Why it is not enforced, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One policy's status across the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyStatus {
    /// Each node's status, by node name.
    pub nodes: BTreeMap<String, NodePolicyStatus>,
}

impl PolicyStatus {
    /// `enforcing/nodes`, as `netstack policy get` prints it.
    pub fn summary(&self) -> String {
        let ok = self.nodes.values().filter(|s| s.enforcing).count();
        format!("{ok}/{}", self.nodes.len())
    }
}

/// A policy key (`namespace/name` or `name`) as one key segment: namespaces and names never
/// hold a `:`.
fn segment(policy: &str) -> String {
    policy.replace('/', ":")
}

fn corrupt(key: String, e: impl std::fmt::Display) -> KvError {
    KvError::Corrupt { key, reason: e.to_string() }
}

impl KvStore {
    /// Writes how `node` enforces `policy`, under the node's lease.
    pub fn put_node_policy_status(
        &self,
        policy: &str,
        node: &str,
        status: &NodePolicyStatus,
        lease: &NodeLease,
    ) -> Result<(), KvError> {
        let value = serde_json::to_vec(status).expect("statuses serialise");
        self.put(&format!("policy-status/nodes/{}/{node}", segment(policy)), value, Some(lease.id()))
    }

    /// Withdraws `node`'s status of `policy` (it no longer has the policy).
    pub fn delete_node_policy_status(&self, policy: &str, node: &str) -> Result<(), KvError> {
        self.delete(&format!("policy-status/nodes/{}/{node}", segment(policy)))
    }

    /// Every node's status of every policy, gathered per policy.
    pub fn node_policy_statuses(&self) -> Result<BTreeMap<String, PolicyStatus>, KvError> {
        let mut out: BTreeMap<String, PolicyStatus> = BTreeMap::new();
        for (key, value) in self.get_prefix("policy-status/nodes/")? {
            let rest = key.strip_prefix("policy-status/nodes/").unwrap_or_default();
            let Some((policy, node)) = rest.split_once('/') else {
                return Err(corrupt(key, "not policy/node"));
            };
            let status = serde_json::from_slice(&value).map_err(|e| corrupt(key.clone(), e))?;
            out.entry(policy.replace(':', "/")).or_default().nodes.insert(node.to_owned(), status);
        }
        Ok(out)
    }

    /// Writes the aggregate status of `policy`.
    pub fn put_policy_status(&self, policy: &str, status: &PolicyStatus) -> Result<(), KvError> {
        let value = serde_json::to_vec(status).expect("statuses serialise");
        self.put(&format!("policy-status/policies/{}", segment(policy)), value, None)
    }

    /// Deletes the aggregate status of `policy` (no node has it any more).
    pub fn delete_policy_status(&self, policy: &str) -> Result<(), KvError> {
        self.delete(&format!("policy-status/policies/{}", segment(policy)))
    }

    /// The aggregate status of every policy, by policy key.
    pub fn policy_statuses(&self) -> Result<BTreeMap<String, PolicyStatus>, KvError> {
        let mut out = BTreeMap::new();
        for (key, value) in self.get_prefix("policy-status/policies/")? {
            let policy = key.strip_prefix("policy-status/policies/").unwrap_or_default().replace(':', "/");
            let status = serde_json::from_slice(&value).map_err(|e| corrupt(key.clone(), e))?;
            out.insert(policy, status);
        }
        Ok(out)
    }

    /// Brings the aggregates in line with the nodes' statuses (the collector's job): changed
    /// ones written, those of policies no node has deleted. Returns the aggregates.
    pub fn aggregate_policy_statuses(&self) -> Result<BTreeMap<String, PolicyStatus>, KvError> {
        let current = self.node_policy_statuses()?;
        let written = self.policy_statuses()?;
        for (policy, status) in &current {
            if written.get(policy) != Some(status) {
                self.put_policy_status(policy, status)?;
            }
        }
        for policy in written.keys().filter(|p| !current.contains_key(*p)) {
            self.delete_policy_status(policy)?;
        }
        Ok(current)
    }
}
