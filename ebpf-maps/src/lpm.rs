use std::marker::PhantomData;

use bytemuck::Pod;
use ebpf_core::{Map, MapType, UpdateFlags};

use crate::{check_kind, check_size, MapError};

/// Largest key data an LPM trie takes (the kernel's limit is 256 bytes of data).
const MAX_DATA: usize = 256;
/// Key data up to this size is built on a small stack buffer.
const SMALL_DATA: usize = 32;

/// A longest-prefix-match trie (`lpm_trie`): keys are `K` (for example `[u8; 4]` for IPv4)
/// with a prefix length in bits, and a lookup finds the longest stored prefix that covers it.
#[derive(Debug)]
pub struct LpmTrie<K: Pod, V: Pod> {
    map: Map,
    _types: PhantomData<(K, V)>,
}

impl<K: Pod, V: Pod> TryFrom<Map> for LpmTrie<K, V> {
    type Error = MapError;

    fn try_from(map: Map) -> Result<Self, MapError> {
        check_kind(&map, &[MapType::LpmTrie])?;
        if std::mem::size_of::<K>() > MAX_DATA {
            return Err(MapError::SizeMismatch {
                map: map.describe(),
                what: "key data",
                actual: std::mem::size_of::<K>(),
                expected: MAX_DATA,
                rust_type: std::any::type_name::<K>(),
            });
        }
        // The kernel's key is a 4-byte prefix length followed by the data.
        check_size::<K>(&map, "key data", map.key_size().saturating_sub(4))?;
        check_size::<V>(&map, "value", map.value_size())?;
        Ok(LpmTrie { map, _types: PhantomData })
    }
}

impl<K: Pod, V: Pod> LpmTrie<K, V> {
    /// Calls `f` with the kernel's key for `data/prefix_len`: the prefix length, then the data.
    /// Keys of up to 32 bytes of data (addresses, the usual case) are built in a small buffer,
    /// so a lookup does not clear 260 bytes.
    #[inline]
    fn with_key<R>(prefix_len: u32, data: &K, f: impl FnOnce(&[u8]) -> R) -> R {
        fn fill<'a>(buf: &'a mut [u8], prefix_len: u32, data: &[u8]) -> &'a [u8] {
            buf[..4].copy_from_slice(&prefix_len.to_ne_bytes());
            buf[4..4 + data.len()].copy_from_slice(data);
            &buf[..4 + data.len()]
        }
        let data = bytemuck::bytes_of(data);
        if data.len() <= SMALL_DATA {
            f(fill(&mut [0u8; SMALL_DATA + 4], prefix_len, data))
        } else {
            f(fill(&mut [0u8; MAX_DATA + 4], prefix_len, data))
        }
    }

    fn check_prefix(&self, prefix_len: u32) -> Result<(), MapError> {
        let bits = 8 * std::mem::size_of::<K>() as u32;
        if prefix_len > bits {
            return Err(MapError::PrefixTooLong { map: self.map.describe(), prefix_len, bits });
        }
        Ok(())
    }

    /// Stores `value` for the prefix `data/prefix_len`.
    pub fn insert(&self, data: &K, prefix_len: u32, value: &V, flags: UpdateFlags) -> Result<(), MapError> {
        self.check_prefix(prefix_len)?;
        Ok(Self::with_key(prefix_len, data, |key| self.map.update(key, bytemuck::bytes_of(value), flags))?)
    }

    /// The value of the longest stored prefix covering all of `data`.
    pub fn lookup(&self, data: &K) -> Result<Option<V>, MapError> {
        let mut value = V::zeroed();
        let found = Self::with_key(8 * std::mem::size_of::<K>() as u32, data, |key| {
            self.map.lookup(key, bytemuck::bytes_of_mut(&mut value))
        })?;
        Ok(found.then_some(value))
    }

    /// The value stored for exactly `data/prefix_len`, if that prefix is stored.
    pub fn get_exact(&self, data: &K, prefix_len: u32) -> Result<Option<V>, MapError> {
        // A lookup returns the longest match, which may be a longer prefix than this one: find
        // the exact key by walking the trie's keys.
        self.check_prefix(prefix_len)?;
        let wanted = Self::with_key(prefix_len, data, <[u8]>::to_vec);
        let len = wanted.len();
        let mut key = vec![0u8; len];
        let mut have = self.map.next_key(None, &mut key)?;
        while have {
            if key == wanted {
                let mut value = V::zeroed();
                return Ok(self.map.lookup(&key, bytemuck::bytes_of_mut(&mut value))?.then_some(value));
            }
            let current = key.clone();
            have = self.map.next_key(Some(&current), &mut key)?;
        }
        Ok(None)
    }

    /// Removes exactly the prefix `data/prefix_len`; `false` when it was not stored.
    pub fn remove(&self, data: &K, prefix_len: u32) -> Result<bool, MapError> {
        self.check_prefix(prefix_len)?;
        Ok(Self::with_key(prefix_len, data, |key| self.map.delete(key))?)
    }

    /// Every stored prefix as (data, prefix length, value). The kernel walks the trie one key
    /// at a time (LPM tries have no batch lookup); a prefix removed meanwhile is skipped.
    pub fn entries(&self) -> Result<Vec<(K, u32, V)>, MapError> {
        let len = 4 + std::mem::size_of::<K>();
        let mut out = Vec::new();
        let mut key = vec![0u8; len];
        let mut have = self.map.next_key(None, &mut key)?;
        while have {
            let mut value = V::zeroed();
            if self.map.lookup(&key, bytemuck::bytes_of_mut(&mut value))? {
                let prefix_len = u32::from_ne_bytes([key[0], key[1], key[2], key[3]]);
                out.push((bytemuck::pod_read_unaligned(&key[4..]), prefix_len, value));
            }
            let current = key.clone();
            have = self.map.next_key(Some(&current), &mut key)?;
        }
        Ok(out)
    }

    /// The underlying untyped map.
    pub fn map(&self) -> &Map {
        &self.map
    }
}

view_of_borrowed_map!(LpmTrie<K, V>);
