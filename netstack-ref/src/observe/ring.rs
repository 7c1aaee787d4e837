//! The agent's ring of recent flows, as Hubble keeps one: a fixed number of slots (a power of
//! two minus one, Hubble's rule, default 4095) overwritten oldest first, written by the decoder
//! and read by any number of observers without locks (each slot an `ArcSwapOption`). Every flow
//! has a sequence number; a follower that falls a lap behind learns how many it lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::flow::Flow;

/// Hubble's default capacity.
pub const DEFAULT_CAPACITY: usize = 4095;

/// A capacity the ring cannot have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("flow ring capacity {0} is not a power of two minus one (1, 3, 7 … 65535)")]
pub struct BadCapacity(pub usize);

struct Entry {
    seq: u64,
    flow: Arc<Flow>,
}

/// The ring.
pub struct FlowRing {
    slots: Box<[ArcSwapOption<Entry>]>,
    mask: u64,
    capacity: u64,
    /// The sequence number the next flow gets (= flows ever written).
    next: AtomicU64,
    /// Flows overwritten before a follower read them, summed over followers.
    lost_to_followers: AtomicU64,
}

impl std::fmt::Debug for FlowRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowRing").field("capacity", &self.capacity).field("written", &self.written()).finish()
    }
}

/// What a follower read: flows in order and how many it missed since its last read.
#[derive(Debug, Default)]
pub struct Read {
    /// (sequence number, flow), oldest first.
    pub flows: Vec<(u64, Arc<Flow>)>,
    /// Flows overwritten before this reader got to them.
    pub lost: u64,
    /// Where to read from next time.
    pub next: u64,
}

impl FlowRing {
    /// A ring of `capacity` flows: 2^n − 1, up to 65535.
    pub fn new(capacity: usize) -> Result<FlowRing, BadCapacity> {
        if capacity == 0 || capacity > 65535 || !(capacity + 1).is_power_of_two() {
            return Err(BadCapacity(capacity));
        }
        let slots: Vec<ArcSwapOption<Entry>> = (0..=capacity).map(|_| ArcSwapOption::empty()).collect();
        Ok(FlowRing {
            slots: slots.into_boxed_slice(),
            mask: capacity as u64,
            capacity: capacity as u64,
            next: AtomicU64::new(0),
            lost_to_followers: AtomicU64::new(0),
        })
    }

    /// Flows ever written.
    pub fn written(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }

    /// Flows overwritten before a follower read them, summed over every follower so far.
    pub fn lost_to_followers(&self) -> u64 {
        self.lost_to_followers.load(Ordering::Relaxed)
    }

    /// How many flows it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Stores `flow` (over the oldest when full); returns its sequence number.
    pub fn push(&self, flow: Flow) -> u64 {
        let seq = self.next.fetch_add(1, Ordering::AcqRel);
        let slot = &self.slots[(seq & self.mask) as usize];
        let new = Some(Arc::new(Entry { seq, flow: Arc::new(flow) }));
        // A writer a lap ahead may have taken the slot already: then this flow is the older
        // one and goes.
        slot.rcu(|current| match current {
            Some(e) if e.seq > seq => current.clone(),
            _ => new.clone(),
        });
        seq
    }

    /// The flow with sequence number `seq`, if the ring still has it.
    fn get(&self, seq: u64) -> Option<Arc<Flow>> {
        let entry = self.slots[(seq & self.mask) as usize].load();
        entry.as_ref().filter(|e| e.seq == seq).map(|e| Arc::clone(&e.flow))
    }

    /// The oldest sequence number the ring may still hold.
    fn oldest(&self, end: u64) -> u64 {
        end.saturating_sub(self.capacity)
    }

    /// The most recent `n` flows, oldest first.
    pub fn last(&self, n: usize) -> Vec<Arc<Flow>> {
        let end = self.written();
        let start = end.saturating_sub(n as u64).max(self.oldest(end));
        (start..end).filter_map(|seq| self.get(seq)).collect()
    }

    /// The oldest `n` flows the ring holds, oldest first.
    pub fn first(&self, n: usize) -> Vec<Arc<Flow>> {
        let end = self.written();
        let start = self.oldest(end);
        (start..end).filter_map(|seq| self.get(seq)).take(n).collect()
    }

    /// Everything from sequence number `from` on (for a follower), and how many of those the
    /// ring no longer had.
    pub fn read_from(&self, from: u64) -> Read {
        let read = self.read_from_uncounted(from);
        if read.lost > 0 {
            self.lost_to_followers.fetch_add(read.lost, Ordering::Relaxed);
        }
        read
    }

    fn read_from_uncounted(&self, from: u64) -> Read {
        let end = self.written();
        let oldest = self.oldest(end);
        let start = from.max(oldest);
        let mut lost = start - from.min(start);
        let mut flows = Vec::new();
        for seq in start..end {
            match self.get(seq) {
                Some(flow) => flows.push((seq, flow)),
                // Overwritten while being read, or claimed and not yet stored: a claimed slot
                // is stored within the writer's next instructions, so only the former is
                // counted.
                None if seq < self.oldest(self.written()) => lost += 1,
                None => return Read { flows, lost, next: seq },
            }
        }
        Read { flows, lost, next: end }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(n: u64) -> Flow {
        Flow { time: n.to_string(), ..Default::default() }
    }

    fn times(flows: &[Arc<Flow>]) -> Vec<u64> {
        flows.iter().map(|f| f.time.parse().unwrap()).collect()
    }

    #[test]
    fn capacities_are_powers_of_two_minus_one() {
        assert!(FlowRing::new(DEFAULT_CAPACITY).is_ok());
        assert!(FlowRing::new(1).is_ok());
        for bad in [0, 2, 4096, 1 << 20] {
            assert_eq!(FlowRing::new(bad).unwrap_err(), BadCapacity(bad));
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_and_readers_see_what_they_lost() {
        let ring = FlowRing::new(7).unwrap();
        for n in 0..5 {
            ring.push(flow(n));
        }
        assert_eq!(times(&ring.last(3)), [2, 3, 4]);
        assert_eq!(times(&ring.first(2)), [0, 1]);
        let read = ring.read_from(0);
        assert_eq!((read.flows.len(), read.lost, read.next), (5, 0, 5));
        for n in 5..20 {
            ring.push(flow(n));
        }
        assert_eq!(times(&ring.last(100)), (13..20).collect::<Vec<_>>(), "capacity 7");
        assert_eq!(times(&ring.first(1)), [13]);
        let read = ring.read_from(5);
        assert_eq!(read.lost, 8, "5..13 were overwritten");
        assert_eq!(read.flows.first().map(|(seq, _)| *seq), Some(13));
        assert_eq!(read.next, 20);
    }

    #[test]
    fn concurrent_readers_see_whole_flows_in_order() {
        let ring = Arc::new(FlowRing::new(255).unwrap());
        let writer = {
            let ring = Arc::clone(&ring);
            std::thread::spawn(move || {
                for n in 0..50_000 {
                    ring.push(flow(n));
                }
            })
        };
        let mut next = 0;
        let (mut seen, mut lost) = (0u64, 0u64);
        while !writer.is_finished() || next < ring.written() {
            let read = ring.read_from(next);
            for (seq, f) in &read.flows {
                assert_eq!(f.time, seq.to_string(), "a slot holds the flow of its sequence number");
            }
            let seqs: Vec<u64> = read.flows.iter().map(|(s, _)| *s).collect();
            assert!(seqs.windows(2).all(|w| w[0] < w[1]));
            seen += read.flows.len() as u64;
            lost += read.lost;
            next = read.next;
        }
        writer.join().unwrap();
        assert_eq!(seen + lost, 50_000, "every flow was read or counted lost");
    }
}
