use std::marker::PhantomData;

use bytemuck::Pod;
use ebpf_core::{Map, MapType, UpdateFlags};

use crate::{check_kind, check_size, MapError};

macro_rules! keyless {
    ($(#[$doc:meta])* $name:ident, $kind:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name<V: Pod> {
            map: Map,
            _value: PhantomData<V>,
        }

        view_of_borrowed_map!($name<V>);

        impl<V: Pod> TryFrom<Map> for $name<V> {
            type Error = MapError;

            fn try_from(map: Map) -> Result<Self, MapError> {
                check_kind(&map, &[MapType::$kind])?;
                check_size::<V>(&map, "value", map.value_size())?;
                Ok($name { map, _value: PhantomData })
            }
        }

        impl<V: Pod> $name<V> {
            /// The underlying untyped map.
            pub fn map(&self) -> &Map {
                &self.map
            }
        }
    };
}

keyless!(
    /// A FIFO queue (`queue`).
    Queue,
    Queue
);

keyless!(
    /// A LIFO stack (`stack`).
    Stack,
    Stack
);

keyless!(
    /// A bloom filter (`bloom_filter`): membership with false positives, never false negatives.
    BloomFilter,
    BloomFilter
);

macro_rules! push_pop {
    ($name:ident) => {
        impl<V: Pod> $name<V> {
            /// Adds `value`; with [`UpdateFlags::EXIST`] a full map drops its oldest element
            /// instead of refusing.
            pub fn push(&self, value: &V, flags: UpdateFlags) -> Result<(), MapError> {
                Ok(self.map.update(&[], bytemuck::bytes_of(value), flags)?)
            }

            /// Removes and returns the next element.
            pub fn pop(&self) -> Result<Option<V>, MapError> {
                let mut value = V::zeroed();
                Ok(self.map.take(&[], bytemuck::bytes_of_mut(&mut value))?.then_some(value))
            }

            /// The next element, left in place.
            pub fn peek(&self) -> Result<Option<V>, MapError> {
                let mut value = V::zeroed();
                Ok(self.map.lookup(&[], bytemuck::bytes_of_mut(&mut value))?.then_some(value))
            }
        }
    };
}

push_pop!(Queue);
push_pop!(Stack);

impl<V: Pod> BloomFilter<V> {
    /// Adds `value` to the set.
    pub fn insert(&self, value: &V) -> Result<(), MapError> {
        Ok(self.map.update(&[], bytemuck::bytes_of(value), UpdateFlags::ANY)?)
    }

    /// `false` when `value` was certainly never inserted; `true` when it may have been.
    pub fn contains(&self, value: &V) -> Result<bool, MapError> {
        // The kernel looks the value up through the value pointer and copies nothing back.
        let mut probe = *value;
        Ok(self.map.lookup(&[], bytemuck::bytes_of_mut(&mut probe))?)
    }
}
