//! Every identity the node knows, indexed by label so a selector finds its identities without
//! testing each one.

use std::collections::HashMap;

use crate::identity::{Labels, ReservedIdentity};

use super::api::Cidr;
use super::selector::{LabelSelector, Operator};

/// What an identity stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityKind {
    /// A reserved identity.
    Reserved(ReservedIdentity),
    /// Pods with these security labels.
    Endpoint,
    /// A node-local CIDR identity: addresses whose longest match in the ipcache is this prefix.
    Cidr(Cidr),
}

/// One identity with its labels.
#[derive(Clone, Debug)]
pub struct IdentityEntry {
    /// The number.
    pub id: u32,
    /// What it stands for.
    pub kind: IdentityKind,
    /// Its security labels.
    pub labels: Labels,
}

/// The identities policy is resolved against.
#[derive(Clone, Debug, Default)]
pub struct Universe {
    entries: Vec<IdentityEntry>,
    by_pair: HashMap<(String, String), Vec<usize>>,
    by_key: HashMap<String, Vec<usize>>,
    endpoints: Vec<usize>,
    by_id: HashMap<u32, usize>,
    /// The local node's labels (`fromNodes`/`toNodes` select the host identity by them).
    pub node_labels: Labels,
}

impl Universe {
    /// The reserved identities, then `endpoints` (id, labels) and `cidrs` (id, prefix).
    pub fn new(
        node_labels: Labels,
        endpoints: impl IntoIterator<Item = (u32, Labels)>,
        cidrs: impl IntoIterator<Item = (u32, Cidr)>,
    ) -> Universe {
        let mut u = Universe { node_labels, ..Universe::default() };
        for r in ReservedIdentity::ALL {
            if r != ReservedIdentity::Unknown {
                u.push(IdentityEntry { id: r.id(), kind: IdentityKind::Reserved(r), labels: r.labels() });
            }
        }
        for (id, labels) in endpoints {
            u.push(IdentityEntry { id, kind: IdentityKind::Endpoint, labels });
        }
        for (id, cidr) in cidrs {
            // CIDR identities are part of the world, as in Cilium.
            let family = if cidr.addr.is_ipv4() { "reserved:world-ipv4" } else { "reserved:world-ipv6" };
            let labels = Labels::from_pairs([
                (format!("cidr:{cidr}"), String::new()),
                ("reserved:world".to_string(), String::new()),
                (family.to_string(), String::new()),
            ]);
            u.push(IdentityEntry { id, kind: IdentityKind::Cidr(cidr), labels });
        }
        u
    }

    fn push(&mut self, entry: IdentityEntry) {
        let index = self.entries.len();
        for (k, v) in entry.labels.iter() {
            self.by_pair.entry((k.to_string(), v.to_string())).or_default().push(index);
            self.by_key.entry(k.to_string()).or_default().push(index);
        }
        self.by_id.insert(entry.id, index);
        if entry.kind == IdentityKind::Endpoint {
            self.endpoints.push(index);
        }
        self.entries.push(entry);
    }

    /// Every identity.
    pub fn entries(&self) -> &[IdentityEntry] {
        &self.entries
    }

    /// The identity numbered `id`.
    pub fn get(&self, id: u32) -> Option<&IdentityEntry> {
        self.by_id.get(&id).map(|&i| &self.entries[i])
    }

    /// Identities an endpoint selector selects: pod identities whose labels match, and reserved
    /// identities only when the selector asks for a `reserved:` label.
    pub fn select_endpoints(&self, selector: &LabelSelector) -> Vec<u32> {
        let candidates: Vec<usize> = match self.narrowest(selector) {
            Some(list) => list,
            None if selector.names_reserved() => (0..self.entries.len()).collect(),
            None => self.endpoints.clone(),
        };
        candidates
            .into_iter()
            .map(|i| &self.entries[i])
            .filter(|e| match e.kind {
                IdentityKind::Endpoint => true,
                IdentityKind::Reserved(_) | IdentityKind::Cidr(_) => selector.names_reserved(),
            })
            .filter(|e| selector.matches(&e.labels))
            .map(|e| e.id)
            .collect()
    }

    /// The smallest candidate set every match must be in, when the selector names one: a
    /// `matchLabels` pair, or an `In`/`Exists` expression (the union of its values' lists).
    fn narrowest(&self, selector: &LabelSelector) -> Option<Vec<usize>> {
        let empty: &[usize] = &[];
        let pair = |k: &str, v: &str| self.by_pair.get(&(k.to_string(), v.to_string())).map_or(empty, Vec::as_slice);
        let mut options: Vec<Vec<&[usize]>> = Vec::new();
        for (k, v) in &selector.match_labels {
            options.push(vec![pair(k, v)]);
        }
        for r in &selector.match_expressions {
            match r.operator {
                Operator::Exists => options.push(vec![self.by_key.get(&r.key).map_or(empty, Vec::as_slice)]),
                Operator::In => options.push(r.values.iter().map(|v| pair(&r.key, v)).collect()),
                Operator::NotIn | Operator::DoesNotExist => {}
            }
        }
        let best = options.into_iter().min_by_key(|lists| lists.iter().map(|l| l.len()).sum::<usize>())?;
        let mut out: Vec<usize> = best.concat();
        out.sort_unstable();
        out.dedup();
        Some(out)
    }

    /// Whether identity `id`'s labels match every selector (for `fromRequires`).
    pub fn matching(&self, selectors: &[LabelSelector], id: u32) -> bool {
        self.get(id).is_some_and(|e| selectors.iter().all(|s| s.matches(&e.labels)))
    }

    /// CIDR identities inside `cidr` and outside every `except`.
    pub fn select_cidr(&self, cidr: &Cidr, except: &[Cidr]) -> Vec<u32> {
        self.entries
            .iter()
            .filter_map(|e| match &e.kind {
                IdentityKind::Cidr(p) if cidr.covers(p) && !except.iter().any(|x| x.covers(p)) => Some(e.id),
                _ => None,
            })
            .collect()
    }

    /// Pod identities.
    pub fn endpoint_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.endpoints.iter().map(|&i| self.entries[i].id)
    }

    /// CIDR identities, with the family of their prefix.
    pub fn cidr_ids(&self) -> impl Iterator<Item = (u32, &Cidr)> + '_ {
        self.entries.iter().filter_map(|e| match &e.kind {
            IdentityKind::Cidr(c) => Some((e.id, c)),
            _ => None,
        })
    }
}
