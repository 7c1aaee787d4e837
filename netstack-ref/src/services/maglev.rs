//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), as Cilium uses it to pick a service's
//! backend for north-south traffic: a prime-sized lookup table of backend indices, filled so
//! that every backend holds an equal share of the slots (within one) and a change of backends
//! moves few slots beyond those of the backend that changed. Each backend's preference order
//! (a permutation of the slots) comes from two hashes of its address with a seed every node
//! shares, and backends are taken in address order, so every node builds the same table from
//! the same backends whatever order it learnt them in.

use std::net::SocketAddr;

/// The default table size: prime, and over 100× the backends of all but the largest services
/// (which keeps each backend's share within 1 % of 1/N).
pub const DEFAULT_TABLE_SIZE: u32 = 16381;

/// Why a table cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MaglevError {
    /// The table size must be prime for every skip to visit every slot.
    #[error("maglev table size {0} is not prime")]
    NotPrime(u32),
    /// More backends than slots.
    #[error("{backends} backends do not fit a maglev table of {size} slots")]
    TooManyBackends {
        /// Backends given.
        backends: usize,
        /// Slots.
        size: u32,
    },
}

/// Whether `n` is prime (trial division: table sizes are small).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u32;
    while d.saturating_mul(d) <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

/// A 64-bit hash of `bytes` under `seed`: each 8-byte word folded in and mixed with
/// SplitMix64's finaliser, the length folded in last so prefixes differ.
fn hash(seed: u64, bytes: &[u8]) -> u64 {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut h = mix(seed ^ 0x9e37_79b9_7f4a_7c15);
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = mix(h ^ u64::from_le_bytes(word));
    }
    mix(h ^ bytes.len() as u64)
}

/// What identifies a backend for hashing: its address and port, as bytes.
fn backend_bytes(backend: &SocketAddr) -> Vec<u8> {
    let mut out = match backend.ip() {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    };
    out.extend_from_slice(&backend.port().to_be_bytes());
    out
}

/// Builds the table of `size` slots for `backends` under `seed`: each slot holds an index into
/// `backends` *sorted* (the order every node agrees on), which is returned beside it.
pub fn table(backends: &[SocketAddr], seed: u64, size: u32) -> Result<(Vec<SocketAddr>, Vec<u32>), MaglevError> {
    if !is_prime(size) {
        return Err(MaglevError::NotPrime(size));
    }
    let mut sorted = backends.to_vec();
    sorted.sort();
    sorted.dedup();
    if sorted.len() > size as usize {
        return Err(MaglevError::TooManyBackends { backends: sorted.len(), size });
    }
    if sorted.is_empty() {
        return Ok((sorted, Vec::new()));
    }
    let m = u64::from(size);
    let permutations: Vec<(u64, u64)> = sorted
        .iter()
        .map(|b| {
            let bytes = backend_bytes(b);
            let offset = hash(seed, &bytes) % m;
            let skip = hash(seed ^ 0x5bd1_e995_5bd1_e995, &bytes) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    const EMPTY: u32 = u32::MAX;
    let mut slots = vec![EMPTY; size as usize];
    let mut next = vec![0u64; sorted.len()];
    let mut filled = 0u32;
    'fill: loop {
        for (index, &(offset, skip)) in permutations.iter().enumerate() {
            // The backend's next preferred slot that is still free.
            let mut slot = (offset + next[index] * skip) % m;
            while slots[slot as usize] != EMPTY {
                next[index] += 1;
                slot = (offset + next[index] * skip) % m;
            }
            slots[slot as usize] = index as u32;
            next[index] += 1;
            filled += 1;
            if filled == size {
                break 'fill;
            }
        }
    }
    Ok((sorted, slots))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn backends(n: usize, salt: u8) -> Vec<SocketAddr> {
        (0..n).map(|i| SocketAddr::from(([10, salt, (i / 250) as u8, (i % 250) as u8 + 1], 8080))).collect()
    }

    fn shares(slots: &[u32], n: usize) -> Vec<usize> {
        let mut counts = vec![0usize; n];
        for &s in slots {
            counts[s as usize] += 1;
        }
        counts
    }

    #[test]
    fn sizes_must_be_prime_and_hold_the_backends() {
        assert!(is_prime(DEFAULT_TABLE_SIZE) && is_prime(251) && !is_prime(16383) && !is_prime(1));
        assert_eq!(table(&backends(2, 0), 1, 16383), Err(MaglevError::NotPrime(16383)));
        assert_eq!(table(&backends(8, 0), 1, 7), Err(MaglevError::TooManyBackends { backends: 8, size: 7 }));
        assert_eq!(table(&[], 1, 7), Ok((Vec::new(), Vec::new())));
    }

    /// Slots that change hands, beyond those of the backend removed (index `removed` in
    /// address order).
    fn moved_by_removal(all: &[SocketAddr], removed: usize, seed: u64, size: u32) -> usize {
        let (before_order, before) = table(all, seed, size).unwrap();
        let gone = before_order[removed];
        let rest: Vec<SocketAddr> = all.iter().copied().filter(|b| *b != gone).collect();
        let (after_order, after) = table(&rest, seed, size).unwrap();
        let owner_before = |slot: &u32| before_order[*slot as usize];
        before
            .iter()
            .zip(&after)
            .filter(|(b, a)| owner_before(b) != gone && owner_before(b) != after_order[**a as usize])
            .count()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Every backend's share is within 1 % of 1/N (the table has over 100 slots per backend).
        #[test]
        fn shares_are_within_one_percent(n in 1usize..=160, salt in any::<u8>(), seed in any::<u64>()) {
            let (_, slots) = table(&backends(n, salt), seed, DEFAULT_TABLE_SIZE).unwrap();
            let ideal = f64::from(DEFAULT_TABLE_SIZE) / n as f64;
            for count in shares(&slots, n) {
                prop_assert!((count as f64 - ideal).abs() <= ideal * 0.01, "{count} vs {ideal}");
            }
        }

        /// Removing one of 100 backends moves few slots beyond its own. With a table of 65521
        /// slots (Cilium's largest but one), over 3000 random cases: median 0.56 %, p99 0.65 %,
        /// worst 1.27 % (4 cases above 1 %, one of them found by CI), bounded here at 1.5 %. At
        /// the default 16381 the rebuilt table's round-robin shifts more (worst 2.55 % over the
        /// same cases), bounded at 3 %.
        #[test]
        fn removing_one_backend_moves_few_other_slots(removed in 0usize..100, salt in any::<u8>(), seed in any::<u64>()) {
            for (size, bound) in [(65521u32, 0.015), (DEFAULT_TABLE_SIZE, 0.03)] {
                let moved = moved_by_removal(&backends(100, salt), removed, seed, size);
                prop_assert!(moved as f64 <= f64::from(size) * bound, "{moved} of {size} slots moved");
            }
        }

        /// Two nodes that learnt the same backends in different orders build the same table.
        #[test]
        fn every_node_builds_the_same_table(n in 1usize..64, seed in any::<u64>(), rotate in 0usize..64) {
            let a = backends(n, 7);
            let mut b = a.clone();
            b.rotate_left(rotate % n);
            b.reverse();
            prop_assert_eq!(table(&a, seed, 251).unwrap(), table(&b, seed, 251).unwrap());
        }
    }
}
