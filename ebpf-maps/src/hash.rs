use std::marker::PhantomData;

use bytemuck::Pod;
use ebpf_core::{BatchCursor, Map, MapType, UpdateFlags};

use crate::{check_kind, check_size, MapError};

/// Elements fetched per batch call while iterating.
const BATCH: usize = 256;

macro_rules! hash_map {
    ($(#[$doc:meta])* $name:ident, $($kind:ident),+) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name<K: Pod, V: Pod> {
            map: Map,
            _types: PhantomData<(K, V)>,
        }

        view_of_borrowed_map!($name<K, V>);

        impl<K: Pod, V: Pod> TryFrom<Map> for $name<K, V> {
            type Error = MapError;

            fn try_from(map: Map) -> Result<Self, MapError> {
                check_kind(&map, &[$(MapType::$kind),+])?;
                check_size::<K>(&map, "key", map.key_size())?;
                check_size::<V>(&map, "value", map.value_size())?;
                Ok($name { map, _types: PhantomData })
            }
        }

        impl<K: Pod, V: Pod> $name<K, V> {
            /// The value for `key`, if present.
            pub fn get(&self, key: &K) -> Result<Option<V>, MapError> {
                let mut value = V::zeroed();
                let found = self.map.lookup(bytemuck::bytes_of(key), bytemuck::bytes_of_mut(&mut value))?;
                Ok(found.then_some(value))
            }

            /// Inserts or replaces `key`, as `flags` allow.
            pub fn insert(&self, key: &K, value: &V, flags: UpdateFlags) -> Result<(), MapError> {
                Ok(self.map.update(bytemuck::bytes_of(key), bytemuck::bytes_of(value), flags)?)
            }

            /// Removes `key`; `false` when it was absent.
            pub fn remove(&self, key: &K) -> Result<bool, MapError> {
                Ok(self.map.delete(bytemuck::bytes_of(key))?)
            }

            /// Removes `key` and returns its value.
            pub fn take(&self, key: &K) -> Result<Option<V>, MapError> {
                let mut value = V::zeroed();
                let found = self.map.take(bytemuck::bytes_of(key), bytemuck::bytes_of_mut(&mut value))?;
                Ok(found.then_some(value))
            }

            /// Writes many pairs in one system call.
            pub fn insert_batch(&self, keys: &[K], values: &[V], flags: UpdateFlags) -> Result<usize, MapError> {
                if keys.len() != values.len() {
                    return Err(MapError::BatchMismatch { keys: keys.len(), values: values.len() });
                }
                Ok(self.map.update_batch(bytemuck::cast_slice(keys), bytemuck::cast_slice(values), flags)?)
            }

            /// Reads the next elements of a walk into the caller's buffers, as many as
            /// `keys.len()` (the batch size; `values` must be as long), after `cursor` (start
            /// with `BatchCursor::default()`); returns how many it wrote. `cursor.is_done()`
            /// once the walk has passed the last element. No allocation per call.
            pub fn get_batch(&self, cursor: &mut BatchCursor, keys: &mut [K], values: &mut [V]) -> Result<usize, MapError> {
                if keys.len() != values.len() {
                    return Err(MapError::BatchMismatch { keys: keys.len(), values: values.len() });
                }
                Ok(self.map.lookup_batch(cursor, bytemuck::cast_slice_mut(keys), bytemuck::cast_slice_mut(values))?)
            }

            /// As [`get_batch`](Self::get_batch), removing what it returns.
            pub fn take_batch(&self, cursor: &mut BatchCursor, keys: &mut [K], values: &mut [V]) -> Result<usize, MapError> {
                if keys.len() != values.len() {
                    return Err(MapError::BatchMismatch { keys: keys.len(), values: values.len() });
                }
                Ok(self.map.lookup_and_delete_batch(cursor, bytemuck::cast_slice_mut(keys), bytemuck::cast_slice_mut(values))?)
            }

            /// Removes `keys` in one system call; returns how many it removed. A key that is
            /// absent stops the batch there with an error naming how many went before.
            pub fn remove_batch(&self, keys: &[K]) -> Result<usize, MapError> {
                Ok(self.map.delete_batch(bytemuck::cast_slice(keys))?)
            }

            /// Removes every element, a batch of up to 256 at a time (elements inserted
            /// meanwhile may stay); returns how many it removed.
            pub fn clear(&self) -> Result<usize, MapError> {
                let mut cursor = BatchCursor::default();
                let (mut keys, mut values) = (vec![K::zeroed(); BATCH], vec![V::zeroed(); BATCH]);
                let mut removed = 0;
                while !cursor.is_done() {
                    match self.take_batch(&mut cursor, &mut keys, &mut values) {
                        Ok(n) => removed += n,
                        // A bucket holds more elements than the batch: ask for more at once.
                        Err(MapError::Kernel(e)) if e.errno() == Some(ebpf_core::Errno::ENOSPC) && keys.len() < 1 << 20 => {
                            keys.resize(keys.len() * 4, K::zeroed());
                            values.resize(values.len() * 4, V::zeroed());
                        }
                        Err(e) => return Err(e),
                    }
                }
                Ok(removed)
            }

            /// Every element, fetched in batches. The walk tolerates concurrent inserts and
            /// deletes: it ends, and never yields a key twice (elements changed meanwhile may
            /// or may not be seen).
            pub fn iter(&self) -> Entries<'_, K, V> {
                Entries { map: &self.map, cursor: BatchCursor::default(), keys: Vec::new(), values: Vec::new(), next: 0, batch: BATCH, failed: false }
            }

            /// The underlying untyped map.
            pub fn map(&self) -> &Map {
                &self.map
            }

            /// Gives back the untyped map.
            pub fn into_inner(self) -> Map {
                self.map
            }
        }
    };
}

hash_map!(
    /// A hash map (`hash`) with keys `K` and values `V`.
    HashMap,
    Hash
);

hash_map!(
    /// An LRU hash map (`lru_hash`): full maps evict the least recently used element.
    LruHashMap,
    LruHash
);

/// Iterator over a hash map's elements, fetched in batches.
#[derive(Debug)]
pub struct Entries<'a, K, V> {
    map: &'a Map,
    cursor: BatchCursor,
    keys: Vec<K>,
    values: Vec<V>,
    next: usize,
    batch: usize,
    failed: bool,
}

impl<K: Pod, V: Pod> Iterator for Entries<'_, K, V> {
    type Item = Result<(K, V), MapError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.next < self.keys.len() {
                self.next += 1;
                return Some(Ok((self.keys[self.next - 1], self.values[self.next - 1])));
            }
            if self.failed || self.cursor.is_done() {
                return None;
            }
            self.keys = vec![K::zeroed(); self.batch];
            self.values = vec![V::zeroed(); self.batch];
            self.next = 0;
            match self.map.lookup_batch(
                &mut self.cursor,
                bytemuck::cast_slice_mut(&mut self.keys),
                bytemuck::cast_slice_mut(&mut self.values),
            ) {
                Ok(n) => {
                    self.keys.truncate(n);
                    self.values.truncate(n);
                }
                // A bucket holds more elements than the batch: ask for more at once.
                Err(e) if e.errno() == Some(ebpf_core::Errno::ENOSPC) && self.batch < 1 << 20 => {
                    self.batch *= 4;
                    self.keys.clear();
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e.into()));
                }
            }
        }
    }
}
