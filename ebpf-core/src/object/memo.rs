//! The process's memo of parsed objects. A daemon that opens the same object again and again
//! (one load per endpoint, say, with different constants) gets a copy of the earlier parse:
//! the parse runs its whole code path cold after every program load (the kernel's JIT patches
//! text through a temporary mm and flushes this process's TLB), about 15 µs for a one-program
//! object on the reference VM, where a copy costs a fifth of that.
//!
//! An object is kept only when it is opened a second time, so a process that opens each
//! object once pays one fingerprint per open and holds nothing. Hits are exact: the bytes are
//! compared whole. Bounded: at most [`MAX_ENTRIES`] objects of at most [`MAX_OBJECT_BYTES`]
//! each, least recently used out first. A spec is plain data and a parse is a pure function
//! of the bytes, so a copy of an earlier parse is indistinguishable from a new one.

use std::sync::Mutex;

use super::error::ObjectError;
use super::spec::CollectionSpec;

/// Objects kept at most.
pub const MAX_ENTRIES: usize = 8;
/// Larger objects are parsed every time (they are rarely opened in a loop, and would hold
/// memory).
pub const MAX_OBJECT_BYTES: usize = 1 << 20;
/// Fingerprints of objects seen once, remembered to recognise a second opening.
const SEEN: usize = 32;

struct Entry {
    bytes: Box<[u8]>,
    spec: CollectionSpec,
    last_used: u64,
}

struct Memo {
    entries: Vec<Entry>,
    seen: [u64; SEEN],
    next_seen: usize,
    clock: u64,
}

static MEMO: Mutex<Memo> = Mutex::new(Memo { entries: Vec::new(), seen: [0; SEEN], next_seen: 0, clock: 0 });

/// A cheap fingerprint: the length and a sample of the contents. It only decides whether an
/// object looks seen before (worth keeping); hits compare the bytes whole.
fn fingerprint(bytes: &[u8]) -> u64 {
    let mut hash = (bytes.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let step = (bytes.len() / 64).max(8);
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let word = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        hash = (hash ^ word).wrapping_mul(0x0100_0000_01b3).rotate_left(29);
        at += step;
    }
    hash
}

/// The spec of `bytes`: a copy of the memo's when it holds them, else `parse(bytes)`.
pub(super) fn parse_memoized(
    bytes: &[u8],
    parse: impl FnOnce(&[u8]) -> Result<CollectionSpec, ObjectError>,
) -> Result<CollectionSpec, ObjectError> {
    if bytes.len() > MAX_OBJECT_BYTES {
        return parse(bytes);
    }
    let seen_before = {
        let mut memo = MEMO.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        memo.clock += 1;
        let now = memo.clock;
        if let Some(entry) = memo.entries.iter_mut().find(|e| *e.bytes == *bytes) {
            entry.last_used = now;
            return Ok(entry.spec.clone());
        }
        let print = fingerprint(bytes);
        let seen = memo.seen.contains(&print);
        if !seen {
            let slot = memo.next_seen;
            memo.seen[slot] = print;
            memo.next_seen = (slot + 1) % SEEN;
        }
        seen
    };
    let spec = parse(bytes)?;
    if seen_before {
        let mut memo = MEMO.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !memo.entries.iter().any(|e| *e.bytes == *bytes) {
            if memo.entries.len() >= MAX_ENTRIES {
                let oldest = (0..memo.entries.len()).min_by_key(|&i| memo.entries[i].last_used).expect("full");
                memo.entries.swap_remove(oldest);
            }
            let last_used = memo.clock;
            memo.entries.push(Entry { bytes: bytes.into(), spec: spec.clone(), last_used });
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counting_parse(calls: &mut u32) -> impl FnOnce(&[u8]) -> Result<CollectionSpec, ObjectError> + '_ {
        move |_| {
            *calls += 1;
            Ok(CollectionSpec::default())
        }
    }

    #[test]
    fn an_object_is_kept_from_its_second_opening_and_hits_are_exact() {
        // Unique contents: other tests share the process memo.
        let object: Vec<u8> = (0..4096u32).flat_map(|i| (i ^ 0x5eed_0001).to_le_bytes()).collect();
        let mut calls = 0;
        for _ in 0..4 {
            parse_memoized(&object, counting_parse(&mut calls)).unwrap();
        }
        assert_eq!(calls, 2, "parsed on the first and second opening, copied after");

        let mut changed = object.clone();
        changed[4000] ^= 1;
        assert_eq!(fingerprint(&changed), fingerprint(&object), "the sample skips this byte");
        let mut calls = 0;
        parse_memoized(&changed, counting_parse(&mut calls)).unwrap();
        assert_eq!(calls, 1, "same fingerprint, different bytes: parsed, not served from the memo");
    }

    #[test]
    fn failures_and_large_objects_are_not_kept() {
        let object: Vec<u8> = (0..512u32).flat_map(|i| (i ^ 0x5eed_0002).to_le_bytes()).collect();
        for _ in 0..3 {
            let failed = parse_memoized(&object, |_| Err(ObjectError::Elf("bad".to_owned())));
            assert!(failed.is_err());
        }
        let large = vec![7u8; MAX_OBJECT_BYTES + 1];
        let mut calls = 0;
        for _ in 0..3 {
            parse_memoized(&large, |_| {
                calls += 1;
                Ok(CollectionSpec::default())
            })
            .unwrap();
        }
        assert_eq!(calls, 3);
    }

    #[test]
    fn the_least_recently_used_object_goes_first() {
        let objects: Vec<Vec<u8>> = (0..=MAX_ENTRIES as u32)
            .map(|n| (0..256u32).flat_map(|i| (i ^ (0x5eed_1000 + n)).to_le_bytes()).collect())
            .collect();
        let parses = |object: &[u8]| {
            let mut calls = 0;
            parse_memoized(object, counting_parse(&mut calls)).unwrap();
            calls
        };
        for object in &objects[..MAX_ENTRIES] {
            parses(object);
            parses(object);
        }
        assert_eq!(parses(&objects[1]), 0, "held");
        // One more object fills the memo past its bound: the least recently used (the first)
        // goes, the one just used stays.
        parses(&objects[MAX_ENTRIES]);
        parses(&objects[MAX_ENTRIES]);
        assert_eq!(parses(&objects[1]), 0, "recently used, still held");
        assert_eq!(parses(&objects[MAX_ENTRIES]), 0, "newest, held");
        assert_eq!(parses(&objects[0]), 1, "least recently used, evicted");
    }
}
