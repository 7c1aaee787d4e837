use std::marker::PhantomData;

use bytemuck::Pod;
use ebpf_core::{Map, MapType, UpdateFlags};

use crate::{check_kind, check_size, MapError};

/// One value per possible CPU, in the kernel's layout (each slot 8-byte aligned). Reusable:
/// lookups fill an existing buffer, so hot paths allocate nothing.
#[derive(Clone, Debug)]
pub struct PerCpuValues<V: Pod> {
    bytes: Vec<u8>,
    stride: usize,
    _value: PhantomData<V>,
}

impl<V: Pod> PerCpuValues<V> {
    /// Zeroed values for every possible CPU.
    pub fn new() -> Result<PerCpuValues<V>, MapError> {
        let cpus = ebpf_core::possible_cpus().map_err(|e| {
            MapError::Kernel(ebpf_core::Error::Io {
                operation: "count CPUs",
                path: "/sys/devices/system/cpu/possible".into(),
                source: e,
            })
        })?;
        let stride = std::mem::size_of::<V>().next_multiple_of(8);
        Ok(PerCpuValues { bytes: vec![0; stride * cpus], stride, _value: PhantomData })
    }

    /// Every CPU's value set to `value`.
    pub fn filled(value: V) -> Result<PerCpuValues<V>, MapError> {
        let mut values = Self::new()?;
        for cpu in 0..values.len() {
            values.set(cpu, value);
        }
        Ok(values)
    }

    /// Number of possible CPUs.
    pub fn len(&self) -> usize {
        self.bytes.len() / self.stride
    }

    /// True on a machine with no CPUs (never).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// CPU `cpu`'s value.
    pub fn get(&self, cpu: usize) -> Option<V> {
        let at = cpu.checked_mul(self.stride)?;
        self.bytes.get(at..at + std::mem::size_of::<V>()).map(bytemuck::pod_read_unaligned)
    }

    /// Sets CPU `cpu`'s value (ignored past the last CPU).
    pub fn set(&mut self, cpu: usize, value: V) {
        let at = cpu * self.stride;
        if let Some(slot) = self.bytes.get_mut(at..at + std::mem::size_of::<V>()) {
            slot.copy_from_slice(bytemuck::bytes_of(&value));
        }
    }

    /// The values, CPU 0 first.
    pub fn iter(&self) -> impl Iterator<Item = V> + '_ {
        (0..self.len()).filter_map(|cpu| self.get(cpu))
    }
}

macro_rules! per_cpu_map {
    ($(#[$doc:meta])* $name:ident, $kind:ident, key = $key:ty $(, $generic:ident)?) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name<$($generic: Pod,)? V: Pod> {
            map: Map,
            _types: PhantomData<($($generic,)? V,)>,
        }

        view_of_borrowed_map!($name<$($generic,)? V>);

        impl<$($generic: Pod,)? V: Pod> TryFrom<Map> for $name<$($generic,)? V> {
            type Error = MapError;

            fn try_from(map: Map) -> Result<Self, MapError> {
                check_kind(&map, &[MapType::$kind])?;
                check_size::<$key>(&map, "key", map.key_size())?;
                check_size::<V>(&map, "value", map.value_size())?;
                Ok($name { map, _types: PhantomData })
            }
        }

        impl<$($generic: Pod,)? V: Pod> $name<$($generic,)? V> {
            /// Fills `values` with every CPU's value for `key`; `false` when absent.
            pub fn get_into(&self, key: &$key, values: &mut PerCpuValues<V>) -> Result<bool, MapError> {
                Ok(self.map.lookup(bytemuck::bytes_of(key), &mut values.bytes)?)
            }

            /// Every CPU's value for `key`.
            pub fn get(&self, key: &$key) -> Result<Option<PerCpuValues<V>>, MapError> {
                let mut values = PerCpuValues::new()?;
                Ok(self.get_into(key, &mut values)?.then_some(values))
            }

            /// Writes every CPU's value for `key`.
            pub fn set(&self, key: &$key, values: &PerCpuValues<V>, flags: UpdateFlags) -> Result<(), MapError> {
                Ok(self.map.update(bytemuck::bytes_of(key), &values.bytes, flags)?)
            }

            /// The underlying untyped map.
            pub fn map(&self) -> &Map {
                &self.map
            }
        }
    };
}

per_cpu_map!(
    /// A per-CPU hash map (`percpu_hash`): each key holds one `V` per possible CPU.
    PerCpuHashMap,
    PercpuHash,
    key = K,
    K
);

per_cpu_map!(
    /// A per-CPU array (`percpu_array`): each index holds one `V` per possible CPU.
    PerCpuArray,
    PercpuArray,
    key = u32
);
