use std::marker::PhantomData;

use bytemuck::Pod;
use ebpf_core::{Map, MapType, UpdateFlags};

use crate::{check_kind, check_size, MapError};

/// An array map with values `V`, indexed `0..max_entries`.
#[derive(Debug)]
pub struct Array<V: Pod> {
    map: Map,
    _value: PhantomData<V>,
}

impl<V: Pod> TryFrom<Map> for Array<V> {
    type Error = MapError;

    fn try_from(map: Map) -> Result<Self, MapError> {
        check_kind(&map, &[MapType::Array])?;
        check_size::<u32>(&map, "key", map.key_size())?;
        check_size::<V>(&map, "value", map.value_size())?;
        Ok(Array { map, _value: PhantomData })
    }
}

impl<V: Pod> Array<V> {
    fn check_index(&self, index: u32) -> Result<(), MapError> {
        if index < self.map.max_entries() {
            Ok(())
        } else {
            Err(MapError::OutOfBounds { map: self.map.describe(), index, max_entries: self.map.max_entries() })
        }
    }

    /// The value at `index`.
    pub fn get(&self, index: u32) -> Result<V, MapError> {
        self.check_index(index)?;
        let mut value = V::zeroed();
        self.map.lookup(&index.to_ne_bytes(), bytemuck::bytes_of_mut(&mut value))?;
        Ok(value)
    }

    /// Writes the value at `index`.
    pub fn set(&self, index: u32, value: &V) -> Result<(), MapError> {
        self.check_index(index)?;
        Ok(self.map.update(&index.to_ne_bytes(), bytemuck::bytes_of(value), UpdateFlags::ANY)?)
    }

    /// Number of slots.
    pub fn len(&self) -> u32 {
        self.map.max_entries()
    }

    /// True for an array of no slots.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The underlying untyped map.
    pub fn map(&self) -> &Map {
        &self.map
    }
}
