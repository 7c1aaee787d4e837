use std::marker::PhantomData;
use std::os::fd::AsFd;

use bytemuck::Pod;
use ebpf_core::mem::{page_size, MmapRegion};
use ebpf_core::{Map, MapFlags, MapType};

use crate::{check_kind, check_size, MapError};

/// An array created with [`MapFlags::MMAPABLE`], read and written through shared memory:
/// no system call per access.
#[derive(Debug)]
pub struct MmapArray<V: Pod> {
    map: Map,
    region: MmapRegion,
    stride: usize,
    _value: PhantomData<V>,
}

impl<V: Pod> TryFrom<Map> for MmapArray<V> {
    type Error = MapError;

    fn try_from(map: Map) -> Result<Self, MapError> {
        check_kind(&map, &[MapType::Array])?;
        check_size::<V>(&map, "value", map.value_size())?;
        if !map.flags().contains(MapFlags::MMAPABLE) {
            return Err(MapError::NotMmapable { map: map.describe() });
        }
        let stride = map.value_size().next_multiple_of(8);
        let len = (stride * map.max_entries() as usize).next_multiple_of(page_size());
        // A frozen array refuses writable mappings: fall back to reading only.
        let region = MmapRegion::map(map.as_fd(), len, 0, true)
            .or_else(|_| MmapRegion::map(map.as_fd(), len, 0, false))
            .map_err(|e| MapError::Kernel(ebpf_core::Error::syscall(format!("mmap {}", map.describe()), e)))?;
        Ok(MmapArray { map, region, stride, _value: PhantomData })
    }
}

impl<V: Pod> MmapArray<V> {
    fn slot(&self, index: u32) -> Result<usize, MapError> {
        crate::array::check_index(&self.map, index)?;
        Ok(index as usize * self.stride)
    }

    /// The value at `index`, read from shared memory.
    pub fn get(&self, index: u32) -> Result<V, MapError> {
        let at = self.slot(index)?;
        let mut value = V::zeroed();
        self.region.read_words(at, bytemuck::bytes_of_mut(&mut value));
        Ok(value)
    }

    /// Writes the value at `index` into shared memory; fails on a read-only mapping.
    pub fn set(&self, index: u32, value: &V) -> Result<(), MapError> {
        let at = self.slot(index)?;
        if self.region.write_words(at, bytemuck::bytes_of(value)) {
            Ok(())
        } else {
            Err(MapError::ReadOnly { map: self.map.describe() })
        }
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

view_of_borrowed_map!(MmapArray<V>);
