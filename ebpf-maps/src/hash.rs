use std::marker::PhantomData;

use bytemuck::Pod;
use ebpf_core::{Map, MapType, UpdateFlags};

use crate::{check_kind, check_size, MapError};

/// A hash map (`hash` or `lru_hash`) with keys `K` and values `V`.
#[derive(Debug)]
pub struct HashMap<K: Pod, V: Pod> {
    map: Map,
    _types: PhantomData<(K, V)>,
}

impl<K: Pod, V: Pod> TryFrom<Map> for HashMap<K, V> {
    type Error = MapError;

    fn try_from(map: Map) -> Result<Self, MapError> {
        check_kind(&map, &[MapType::Hash, MapType::LruHash])?;
        check_size::<K>(&map, "key", map.key_size())?;
        check_size::<V>(&map, "value", map.value_size())?;
        Ok(HashMap { map, _types: PhantomData })
    }
}

impl<K: Pod, V: Pod> HashMap<K, V> {
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

    /// The underlying untyped map.
    pub fn map(&self) -> &Map {
        &self.map
    }

    /// Gives back the untyped map.
    pub fn into_inner(self) -> Map {
        self.map
    }
}
