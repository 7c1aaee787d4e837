//! What the kvstore last listed of the other nodes, each entry kept for a grace period after it
//! disappears. Entries live under their node's lease, and a lease also ends when the kvstore
//! itself was away longer than its TTL (etcd revokes overdue leases when it resumes): every
//! node's entries vanish at once until each agent reconnects and publishes them again. Acting on
//! that at once would cut every cross-node connection; waiting out the grace cuts none, and a
//! node that is really gone leaves the datapath only that much later.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long an entry outlives its last listing: longer than an agent takes to reconnect
/// (its backoff is at most [`crate::cluster::membership::MAX_BACKOFF`]) and publish again.
pub const GRACE: Duration = Duration::from_secs(15);

/// Entries by key, each with since when listings have left it out (`None`: in the latest).
/// Only listings count: while the kvstore is away there are none, and nothing ages.
#[derive(Debug)]
pub struct Lingering<K, V> {
    entries: BTreeMap<K, (V, Option<Instant>)>,
    grace: Duration,
}

impl<K: Ord + Clone, V: PartialEq + Clone> Lingering<K, V> {
    /// Nothing listed yet; entries linger for `grace`.
    pub fn new(grace: Duration) -> Lingering<K, V> {
        Lingering { entries: BTreeMap::new(), grace }
    }

    /// Takes the latest listing, made at `now`: listed entries are (re)set, unlisted ones kept
    /// until listings have left them out for the grace. True when what
    /// [`Lingering::entries`] gives changed.
    pub fn update(&mut self, listed: BTreeMap<K, V>, now: Instant) -> bool {
        let mut changed = false;
        let grace = self.grace;
        self.entries.retain(|key, (_, absent_since)| {
            if listed.contains_key(key) {
                return true;
            }
            let since = *absent_since.get_or_insert(now);
            let keep = now.duration_since(since) < grace;
            changed |= !keep;
            keep
        });
        for (key, value) in listed {
            match self.entries.get_mut(&key) {
                Some((old, absent_since)) => {
                    changed |= *old != value;
                    *old = value;
                    *absent_since = None;
                }
                None => {
                    changed = true;
                    self.entries.insert(key, (value, None));
                }
            }
        }
        changed
    }

    /// The entries in force.
    pub fn entries(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, (v, _))| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_outlive_their_listing_by_the_grace_only() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let mut l = Lingering::new(Duration::from_secs(10));
        assert!(l.update([("a", 1), ("b", 2)].into(), start));
        assert!(!l.update([("a", 1), ("b", 2)].into(), at(1)), "nothing changed");
        assert!(!l.update([("a", 1)].into(), at(5)), "b lingers");
        assert_eq!(l.entries().count(), 2);
        assert!(l.update([("a", 3)].into(), at(6)), "a value changed");
        assert!(l.update([("a", 3)].into(), at(15)), "b left out of listings for the grace");
        assert_eq!(l.entries().collect::<Vec<_>>(), [(&"a", &3)]);
        assert!(!l.update(BTreeMap::new(), at(20)), "a lingers");
        assert!(l.update(BTreeMap::new(), at(30)));
        assert_eq!(l.entries().count(), 0);
    }

    #[test]
    fn time_without_listings_does_not_count() {
        let start = Instant::now();
        let mut l = Lingering::new(Duration::from_secs(10));
        l.update([("a", 1)].into(), start);
        // The kvstore was away for a minute; its first listing leaves `a` out (its lease
        // ended meanwhile): `a` stays until listings have left it out for the grace.
        let back = start + Duration::from_secs(60);
        assert!(!l.update(BTreeMap::new(), back));
        assert!(!l.update([("a", 1)].into(), back + Duration::from_secs(5)), "published again");
        assert_eq!(l.entries().count(), 1);
    }
}
