//! Security identities: numbers that stand for sets of security labels.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::num::NonZeroU32;

use crate::policy::api::Cidr;

/// Identities the datapath knows without allocation (Cilium's reserved identities).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReservedIdentity {
    /// 0: the peer is not known.
    Unknown,
    /// 1: the local host.
    Host,
    /// 2: anything outside the cluster.
    World,
    /// 3: endpoints not managed by the agent.
    Unmanaged,
    /// 4: health-check endpoints.
    Health,
    /// 5: endpoints whose identity is not resolved yet.
    Init,
    /// 6: other nodes of the cluster.
    RemoteNode,
    /// 7: the Kubernetes API server.
    KubeApiserver,
    /// 8: the ingress proxy.
    Ingress,
    /// 9: the IPv4 world.
    WorldIpv4,
    /// 10: the IPv6 world.
    WorldIpv6,
}

impl ReservedIdentity {
    /// Every reserved identity.
    pub const ALL: [ReservedIdentity; 11] = [
        ReservedIdentity::Unknown,
        ReservedIdentity::Host,
        ReservedIdentity::World,
        ReservedIdentity::Unmanaged,
        ReservedIdentity::Health,
        ReservedIdentity::Init,
        ReservedIdentity::RemoteNode,
        ReservedIdentity::KubeApiserver,
        ReservedIdentity::Ingress,
        ReservedIdentity::WorldIpv4,
        ReservedIdentity::WorldIpv6,
    ];

    /// The number the datapath uses.
    pub fn id(self) -> u32 {
        match self {
            ReservedIdentity::Unknown => 0,
            ReservedIdentity::Host => 1,
            ReservedIdentity::World => 2,
            ReservedIdentity::Unmanaged => 3,
            ReservedIdentity::Health => 4,
            ReservedIdentity::Init => 5,
            ReservedIdentity::RemoteNode => 6,
            ReservedIdentity::KubeApiserver => 7,
            ReservedIdentity::Ingress => 8,
            ReservedIdentity::WorldIpv4 => 9,
            ReservedIdentity::WorldIpv6 => 10,
        }
    }

    /// The `reserved:` label name, as in policy `entities` (`world`, `remote-node`, …).
    pub fn name(self) -> &'static str {
        match self {
            ReservedIdentity::Unknown => "unknown",
            ReservedIdentity::Host => "host",
            ReservedIdentity::World => "world",
            ReservedIdentity::Unmanaged => "unmanaged",
            ReservedIdentity::Health => "health",
            ReservedIdentity::Init => "init",
            ReservedIdentity::RemoteNode => "remote-node",
            ReservedIdentity::KubeApiserver => "kube-apiserver",
            ReservedIdentity::Ingress => "ingress",
            ReservedIdentity::WorldIpv4 => "world-ipv4",
            ReservedIdentity::WorldIpv6 => "world-ipv6",
        }
    }

    /// The reserved identity with number `id`.
    pub fn from_id(id: u32) -> Option<ReservedIdentity> {
        ReservedIdentity::ALL.into_iter().find(|r| r.id() == id)
    }
}

impl fmt::Display for ReservedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reserved:{}", self.name())
    }
}

/// The first identity number handed out for label sets.
pub const FIRST_CLUSTER_IDENTITY: u32 = 256;

/// The first node-local identity (CIDR identities), as Cilium's local scope (bit 24).
pub const FIRST_LOCAL_IDENTITY: u32 = 1 << 24;

impl ReservedIdentity {
    /// The identity's labels: `reserved:<name>` (world ones also carry `reserved:world`).
    pub fn labels(self) -> Labels {
        let mut pairs = vec![(format!("reserved:{}", self.name()), String::new())];
        if matches!(self, ReservedIdentity::WorldIpv4 | ReservedIdentity::WorldIpv6) {
            pairs.push(("reserved:world".to_string(), String::new()));
        }
        Labels::from_pairs(pairs)
    }
}

/// A set of security labels (`key=value`), ordered so equal sets compare and hash equal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    /// Labels from `(key, value)` pairs; a repeated key keeps its last value.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Labels {
        Labels(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pairs: Vec<String> = self.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&pairs.join(","))
    }
}

/// The security labels of a pod (what its identity stands for): its own labels, its
/// namespace (`io.kubernetes.pod.namespace`), the namespace's labels
/// (`io.cilium.k8s.namespace.labels.<key>`) and its service account.
pub fn pod_security_labels<'a>(
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    namespace: &str,
    namespace_labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    service_account: &str,
) -> Labels {
    let mut pairs: Vec<(String, String)> = labels.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    pairs.extend(
        namespace_labels.into_iter().map(|(k, v)| (format!("io.cilium.k8s.namespace.labels.{k}"), v.to_string())),
    );
    pairs.push(("io.kubernetes.pod.namespace".into(), namespace.into()));
    pairs.push(("io.cilium.k8s.policy.serviceaccount".into(), service_account.into()));
    Labels::from_pairs(pairs)
}

/// Hands out one cluster identity per distinct label set, from [`FIRST_CLUSTER_IDENTITY`] up,
/// and releases it when the last user is gone.
#[derive(Debug, Default)]
pub struct IdentityAllocator {
    by_labels: HashMap<Labels, (NonZeroU32, usize)>,
    by_id: BTreeMap<u32, Labels>,
}

impl IdentityAllocator {
    /// An allocator with nothing allocated.
    pub fn new() -> IdentityAllocator {
        IdentityAllocator::default()
    }

    /// The identity of `labels`, allocating the lowest free number for a new set. Each call
    /// takes a reference that [`release`](Self::release) gives back.
    pub fn allocate(&mut self, labels: &Labels) -> NonZeroU32 {
        if let Some((id, users)) = self.by_labels.get_mut(labels) {
            *users += 1;
            return *id;
        }
        let mut candidate = FIRST_CLUSTER_IDENTITY;
        for &used in self.by_id.keys() {
            if used != candidate {
                break;
            }
            candidate += 1;
        }
        let id = NonZeroU32::new(candidate).expect("cluster identities start at 256");
        self.by_labels.insert(labels.clone(), (id, 1));
        self.by_id.insert(candidate, labels.clone());
        id
    }

    /// Takes a reference to `labels` under a number handed out earlier (by a previous run of
    /// the agent), so identities survive restarts. `false` when the number is taken by other
    /// labels, below [`FIRST_CLUSTER_IDENTITY`], or `labels` already have one (take it with
    /// [`allocate`](Self::allocate)).
    pub fn restore(&mut self, labels: &Labels, id: u32) -> bool {
        if id < FIRST_CLUSTER_IDENTITY || self.by_id.contains_key(&id) || self.by_labels.contains_key(labels) {
            return false;
        }
        let Some(nz) = NonZeroU32::new(id) else { return false };
        self.by_labels.insert(labels.clone(), (nz, 1));
        self.by_id.insert(id, labels.clone());
        true
    }

    /// The identity of `labels`, if allocated.
    pub fn get(&self, labels: &Labels) -> Option<u32> {
        self.by_labels.get(labels).map(|(id, _)| id.get())
    }

    /// Drops one reference to `labels`' identity; frees the number with the last one.
    /// Returns whether the identity was freed.
    pub fn release(&mut self, labels: &Labels) -> bool {
        let Some((id, users)) = self.by_labels.get_mut(labels) else {
            return false;
        };
        *users -= 1;
        if *users > 0 {
            return false;
        }
        let id = id.get();
        self.by_labels.remove(labels);
        self.by_id.remove(&id);
        true
    }

    /// The labels behind a cluster identity.
    pub fn labels(&self, id: u32) -> Option<&Labels> {
        self.by_id.get(&id)
    }

    /// Allocated identities in numeric order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Labels)> {
        self.by_id.iter().map(|(id, labels)| (*id, labels))
    }
}

/// Node-local identities of the CIDRs policies name: one per prefix, numbered from
/// [`FIRST_LOCAL_IDENTITY`] up, each kept while some policy still names its prefix (so a
/// prefix keeps its number across syncs).
#[derive(Clone, Debug, Default)]
pub struct CidrIdentities {
    ids: BTreeMap<Cidr, u32>,
}

impl CidrIdentities {
    /// Brings the set to exactly `prefixes`: numbers of prefixes no longer named are freed,
    /// new prefixes get the lowest free numbers.
    pub fn sync(&mut self, prefixes: impl IntoIterator<Item = Cidr>) {
        let wanted: BTreeSet<Cidr> = prefixes.into_iter().collect();
        self.ids.retain(|c, _| wanted.contains(c));
        let mut used: BTreeSet<u32> = self.ids.values().copied().collect();
        for c in wanted {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.ids.entry(c) {
                let id = (FIRST_LOCAL_IDENTITY..).find(|i| !used.contains(i)).expect("local identities left");
                used.insert(id);
                slot.insert(id);
            }
        }
    }

    /// Every prefix with its identity.
    pub fn iter(&self) -> impl Iterator<Item = (&Cidr, u32)> {
        self.ids.iter().map(|(c, id)| (c, *id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cidr_identities_keep_their_numbers_while_named() {
        let cidr = |t: &str| Cidr::parse(t).unwrap();
        let mut ids = CidrIdentities::default();
        ids.sync([cidr("10.0.0.0/8"), cidr("192.0.2.0/24")]);
        let first: Vec<(Cidr, u32)> = ids.iter().map(|(c, id)| (*c, id)).collect();
        assert_eq!(
            first,
            [(cidr("10.0.0.0/8"), FIRST_LOCAL_IDENTITY), (cidr("192.0.2.0/24"), FIRST_LOCAL_IDENTITY + 1)]
        );
        ids.sync([cidr("192.0.2.0/24"), cidr("2001:db8::/32")]);
        let second: Vec<(Cidr, u32)> = ids.iter().map(|(c, id)| (*c, id)).collect();
        assert_eq!(
            second,
            [(cidr("192.0.2.0/24"), FIRST_LOCAL_IDENTITY + 1), (cidr("2001:db8::/32"), FIRST_LOCAL_IDENTITY)]
        );
    }

    #[test]
    fn reserved_identities_have_the_documented_numbers() {
        assert_eq!(ReservedIdentity::from_id(6), Some(ReservedIdentity::RemoteNode));
        assert_eq!(ReservedIdentity::from_id(8), Some(ReservedIdentity::Ingress));
        assert_eq!(ReservedIdentity::from_id(11), None);
        assert_eq!(ReservedIdentity::WorldIpv6.to_string(), "reserved:world-ipv6");
    }

    #[test]
    fn freed_numbers_are_reused_lowest_first() {
        let mut ids = IdentityAllocator::new();
        let a = Labels::from_pairs([("app", "a")]);
        let b = Labels::from_pairs([("app", "b")]);
        let c = Labels::from_pairs([("app", "c")]);
        assert_eq!(ids.allocate(&a).get(), 256);
        assert_eq!(ids.allocate(&b).get(), 257);
        assert!(ids.release(&a));
        assert_eq!(ids.allocate(&c).get(), 256);
        assert_eq!(ids.labels(257), Some(&b));
    }

    proptest! {
        #[test]
        fn identical_label_sets_share_one_identity_and_distinct_sets_never_do(
            sets in proptest::collection::vec(proptest::collection::btree_map("[a-c]", "[x-z]", 0..3), 1..20)
        ) {
            let mut ids = IdentityAllocator::new();
            let mut seen: HashMap<Labels, NonZeroU32> = HashMap::new();
            for set in sets {
                let labels = Labels(set.into_iter().collect());
                let id = ids.allocate(&labels);
                prop_assert!(id.get() >= FIRST_CLUSTER_IDENTITY);
                if let Some(previous) = seen.insert(labels.clone(), id) {
                    prop_assert_eq!(previous, id);
                }
                prop_assert_eq!(ids.labels(id.get()), Some(&labels));
            }
        }
    }
}
