use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd};

use bytemuck::Pod;
use ebpf_core::{Map, MapType, Program, UpdateFlags};

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

#[inline]
pub(crate) fn check_index(map: &Map, index: u32) -> Result<(), MapError> {
    if index < map.max_entries() {
        Ok(())
    } else {
        Err(out_of_bounds(map, index))
    }
}

#[cold]
#[inline(never)]
fn out_of_bounds(map: &Map, index: u32) -> MapError {
    MapError::OutOfBounds { map: map.describe(), index, max_entries: map.max_entries() }
}

impl<V: Pod> Array<V> {
    /// The value at `index`.
    pub fn get(&self, index: u32) -> Result<V, MapError> {
        check_index(&self.map, index)?;
        let mut value = V::zeroed();
        self.map.lookup(&index.to_ne_bytes(), bytemuck::bytes_of_mut(&mut value))?;
        Ok(value)
    }

    /// Writes the value at `index`.
    pub fn set(&self, index: u32, value: &V) -> Result<(), MapError> {
        check_index(&self.map, index)?;
        Ok(self.map.update(&index.to_ne_bytes(), bytemuck::bytes_of(value), UpdateFlags::ANY)?)
    }

    /// Every value, index 0 first.
    pub fn iter(&self) -> impl Iterator<Item = Result<V, MapError>> + '_ {
        (0..self.len()).map(|i| self.get(i))
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

/// A program array (`prog_array`): the slots `bpf_tail_call` jumps through.
#[derive(Debug)]
pub struct ProgramArray {
    map: Map,
}

impl TryFrom<Map> for ProgramArray {
    type Error = MapError;

    fn try_from(map: Map) -> Result<Self, MapError> {
        check_kind(&map, &[MapType::ProgArray])?;
        Ok(ProgramArray { map })
    }
}

impl ProgramArray {
    /// Points slot `index` at `program`; tail calls through it jump there from now on
    /// (an atomic swap while traffic flows).
    pub fn set(&self, index: u32, program: &Program) -> Result<(), MapError> {
        check_index(&self.map, index)?;
        let fd = program.as_fd().as_raw_fd() as u32;
        Ok(self.map.update(&index.to_ne_bytes(), &fd.to_ne_bytes(), UpdateFlags::ANY)?)
    }

    /// Empties slot `index`; tail calls through it fall through. `false` if it was empty.
    pub fn clear(&self, index: u32) -> Result<bool, MapError> {
        check_index(&self.map, index)?;
        Ok(self.map.delete(&index.to_ne_bytes())?)
    }

    /// The id of the program in slot `index`, if any.
    pub fn program_id(&self, index: u32) -> Result<Option<u32>, MapError> {
        check_index(&self.map, index)?;
        let mut id = [0u8; 4];
        Ok(self.map.lookup(&index.to_ne_bytes(), &mut id)?.then(|| u32::from_ne_bytes(id)))
    }

    /// The underlying untyped map.
    pub fn map(&self) -> &Map {
        &self.map
    }
}

/// A map of maps (`array_of_maps` or `hash_of_maps`) with keys `K`; values are inner maps
/// compatible with the template the outer map was created with.
#[derive(Debug)]
pub struct MapOfMaps<K: Pod> {
    map: Map,
    _key: PhantomData<K>,
}

impl<K: Pod> TryFrom<Map> for MapOfMaps<K> {
    type Error = MapError;

    fn try_from(map: Map) -> Result<Self, MapError> {
        check_kind(&map, &[MapType::ArrayOfMaps, MapType::HashOfMaps])?;
        check_size::<K>(&map, "key", map.key_size())?;
        Ok(MapOfMaps { map, _key: PhantomData })
    }
}

impl<K: Pod> MapOfMaps<K> {
    /// Stores `inner` under `key` (the kernel keeps its own reference).
    pub fn set(&self, key: &K, inner: &Map, flags: UpdateFlags) -> Result<(), MapError> {
        let fd = inner.as_fd().as_raw_fd() as u32;
        Ok(self.map.update(bytemuck::bytes_of(key), &fd.to_ne_bytes(), flags)?)
    }

    /// The id of the inner map under `key`.
    pub fn map_id(&self, key: &K) -> Result<Option<u32>, MapError> {
        let mut id = [0u8; 4];
        Ok(self.map.lookup(bytemuck::bytes_of(key), &mut id)?.then(|| u32::from_ne_bytes(id)))
    }

    /// Opens the inner map under `key`.
    pub fn get(&self, key: &K) -> Result<Option<Map>, MapError> {
        match self.map_id(key)? {
            Some(id) => Ok(Some(Map::from_id(id)?)),
            None => Ok(None),
        }
    }

    /// Removes `key`; `false` when it was absent.
    pub fn remove(&self, key: &K) -> Result<bool, MapError> {
        Ok(self.map.delete(bytemuck::bytes_of(key))?)
    }

    /// The underlying untyped map.
    pub fn map(&self) -> &Map {
        &self.map
    }
}

view_of_borrowed_map!(Array<V>);
view_of_borrowed_map!(ProgramArray);
view_of_borrowed_map!(MapOfMaps<K>);
