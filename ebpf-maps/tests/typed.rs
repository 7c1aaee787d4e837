//! Typed views over maps created in the running kernel.

use bytemuck::{Pod, Zeroable};
use ebpf_core::{Map, MapSpec, MapType, UpdateFlags};
use ebpf_maps::{Array, HashMap, MapError};
use ebpf_test_support::{require_kernel, unique_name};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
struct Backend {
    address: u32,
    port: u16,
    flags: u16,
}

#[test]
fn typed_hash_maps_round_trip_structs() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let map = Map::create(&MapSpec::new(&unique_name("be"), MapType::Hash, 4, 8, 16)).unwrap();
    let backends: HashMap<u32, Backend> = HashMap::try_from(map).unwrap();
    let backend = Backend { address: 0x0a00_0001, port: 8080, flags: 1 };
    backends.insert(&3, &backend, UpdateFlags::NO_EXIST).unwrap();
    assert_eq!(backends.get(&3).unwrap(), Some(backend));
    assert_eq!(backends.take(&3).unwrap(), Some(backend));
    assert_eq!(backends.get(&3).unwrap(), None);
    assert!(!backends.remove(&3).unwrap());
}

#[test]
fn views_refuse_maps_whose_sizes_or_kind_do_not_match() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let map = Map::create(&MapSpec::new(&unique_name("sz"), MapType::Hash, 4, 4, 4)).unwrap();
    let err = HashMap::<u32, u64>::try_from(map).unwrap_err();
    assert!(matches!(err, MapError::SizeMismatch { what: "value", actual: 4, expected: 8, .. }), "{err}");
    assert!(err.to_string().contains("value is 4 bytes in the kernel but u64 is 8"), "{err}");

    let array = Map::create(&MapSpec::new(&unique_name("arr"), MapType::Array, 4, 8, 4)).unwrap();
    let err = HashMap::<u32, u64>::try_from(array).unwrap_err();
    assert!(err.to_string().ends_with("map type is array, expected hash or lru_hash"), "{err}");
}

#[test]
fn arrays_index_within_bounds_only() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let map = Map::create(&MapSpec::new(&unique_name("arr"), MapType::Array, 4, 8, 4)).unwrap();
    let array: Array<u64> = Array::try_from(map).unwrap();
    array.set(3, &99).unwrap();
    assert_eq!(array.get(3).unwrap(), 99);
    assert_eq!(array.get(0).unwrap(), 0, "arrays start zeroed");
    assert!(matches!(array.get(4), Err(MapError::OutOfBounds { index: 4, max_entries: 4, .. })));
}
