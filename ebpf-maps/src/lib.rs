//! Typed views over BPF maps.
//!
//! A view checks, when it is made, that the map's kind and its key and value sizes match the
//! Rust types, so a mismatch is an error at construction rather than corruption later. Keys
//! and values are plain-old-data ([`bytemuck::Pod`]).
//!
//! Views: [`HashMap`], [`LruHashMap`], [`Array`], [`PerCpuHashMap`] and [`PerCpuArray`]
//! (with reusable [`PerCpuValues`] buffers), [`MmapArray`] (shared memory, no system calls), [`LpmTrie`], [`ProgramArray`], [`MapOfMaps`],
//! [`Queue`], [`Stack`], [`BloomFilter`], and the redirect targets [`DevMap`], [`CpuMap`],
//! [`XskMap`] and [`SockMap`]. The untyped byte-level API stays available on
//! [`ebpf_core::Map`].
//!
//! ```no_run
//! use ebpf_core::{Map, MapSpec, MapType, UpdateFlags};
//! use ebpf_maps::HashMap;
//!
//! let map = Map::create(&MapSpec::new("counters", MapType::Hash, 4, 8, 1024))?;
//! let counters: HashMap<u32, u64> = HashMap::try_from(map)?;
//! counters.insert(&7, &1, UpdateFlags::ANY)?;
//! assert_eq!(counters.get(&7)?, Some(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Over a loaded object's maps, the view borrows the map (it takes its own fd):
//!
//! ```no_run
//! use ebpf_core::{Collection, CollectionSpec, LoadOptions};
//! use ebpf_maps::Array;
//!
//! let spec = CollectionSpec::from_elf(&std::fs::read("bpf-programs/out/tests/xdp_count.o")?)?;
//! let collection = Collection::load(spec, &LoadOptions::default())?;
//! let verdicts: Array<u64> = Array::try_from(collection.map("verdicts")?)?;
//! println!("passed: {}", verdicts.get(2)?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

/// `TryFrom<&Map>` for a typed view: the view takes its own handle on the map (a duplicated
/// fd), so a map borrowed from a loaded `Collection` can be viewed without giving it up.
macro_rules! view_of_borrowed_map {
    ($name:ident $(<$($g:ident),+>)?) => {
        impl$(<$($g: bytemuck::Pod),+>)? TryFrom<&ebpf_core::Map> for $name$(<$($g),+>)? {
            type Error = $crate::MapError;

            fn try_from(map: &ebpf_core::Map) -> Result<Self, $crate::MapError> {
                Self::try_from(map.try_clone()?)
            }
        }
    };
}

mod array;
mod hash;
mod lpm;
mod mmap_array;
mod per_cpu;
mod queue;
mod redirect;

pub use array::{Array, MapOfMaps, ProgramArray};
pub use bytemuck::Pod;
/// Update flags, re-exported so a typed-map user needs only this crate (as API.md shows).
pub use ebpf_core::UpdateFlags;
pub use hash::{Entries, HashMap, LruHashMap};
pub use lpm::LpmTrie;
pub use mmap_array::MmapArray;
pub use per_cpu::{PerCpuArray, PerCpuHashMap, PerCpuValues};
pub use queue::{BloomFilter, Queue, Stack};
pub use redirect::{CpuMap, DevMap, SockMap, XskMap};

use ebpf_core::{Map, MapType};

/// Why a typed view could not be made or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// The map is of another kind than the view.
    #[error("{map}: map type is {actual}, expected {expected}")]
    WrongType {
        /// The map, as errors name it.
        map: String,
        /// Kinds the view accepts.
        expected: String,
        /// The map's kind.
        actual: String,
    },
    /// The map's key or value size differs from the Rust type's.
    #[error("{map}: {what} is {actual} bytes in the kernel but {rust_type} is {expected}")]
    SizeMismatch {
        /// The map, as errors name it.
        map: String,
        /// `key` or `value`.
        what: &'static str,
        /// Size in the kernel.
        actual: usize,
        /// Size of the Rust type.
        expected: usize,
        /// The Rust type.
        rust_type: &'static str,
    },
    /// An array index at or past `max_entries`.
    #[error("{map}: index {index} is out of bounds (max_entries {max_entries})")]
    OutOfBounds {
        /// The map, as errors name it.
        map: String,
        /// The index.
        index: u32,
        /// Capacity.
        max_entries: u32,
    },
    /// A batch with different numbers of keys and values.
    #[error("batch of {keys} keys and {values} values")]
    BatchMismatch {
        /// Keys given.
        keys: usize,
        /// Values given.
        values: usize,
    },
    /// An LPM prefix longer than the key.
    #[error("{map}: prefix length {prefix_len} exceeds the key's {bits} bits")]
    PrefixTooLong {
        /// The map, as errors name it.
        map: String,
        /// The prefix length asked for.
        prefix_len: u32,
        /// Bits in the key data.
        bits: u32,
    },
    /// The array was not created with `BPF_F_MMAPABLE`.
    #[error("{map}: not created mmapable (BPF_F_MMAPABLE)")]
    NotMmapable {
        /// The map, as errors name it.
        map: String,
    },
    /// A write to a map mapped read-only (a frozen array).
    #[error("{map}: mapped read-only (frozen)")]
    ReadOnly {
        /// The map, as errors name it.
        map: String,
    },
    /// The kernel refused an operation.
    #[error(transparent)]
    Kernel(#[from] ebpf_core::Error),
}

fn check_kind(map: &Map, accepted: &[MapType]) -> Result<(), MapError> {
    match map.map_type() {
        Some(kind) if accepted.contains(&kind) => Ok(()),
        other => Err(MapError::WrongType {
            map: map.describe(),
            expected: accepted.iter().map(|t| t.name()).collect::<Vec<_>>().join(" or "),
            actual: other.map_or("unknown".to_owned(), |t| t.name().to_owned()),
        }),
    }
}

fn check_size<T>(map: &Map, what: &'static str, actual: usize) -> Result<(), MapError> {
    let expected = std::mem::size_of::<T>();
    if actual == expected {
        Ok(())
    } else {
        Err(MapError::SizeMismatch {
            map: map.describe(),
            what,
            actual,
            expected,
            rust_type: std::any::type_name::<T>(),
        })
    }
}
