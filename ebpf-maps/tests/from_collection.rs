//! Typed views over the maps of a loaded collection, as API.md shows them.

use ebpf_core::{Collection, CollectionSpec, LoadOptions, TestRun};
use ebpf_maps::{Array, HashMap};
use ebpf_test_support::require_kernel;

#[test]
fn a_typed_view_borrows_a_collections_map() {
    let Some(_root) = require_kernel() else { return };
    let elf = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../bpf-programs/out/tests/xdp_count.o")).unwrap();
    let mut spec = CollectionSpec::from_elf(&elf).unwrap();
    spec.variable_mut("DROP_PORT").unwrap().set(53u16).unwrap();
    let collection = Collection::load(spec, &LoadOptions::default()).unwrap();
    let verdicts: Array<u64> = Array::try_from(collection.map("verdicts").unwrap()).unwrap();
    collection.program("xdp_count").unwrap().test_run(&TestRun::with_data(&[0u8; 64])).unwrap();
    assert_eq!(verdicts.get(2).unwrap(), 1, "one XDP_PASS counted");
    // The view checked the map's kind: the wrong view is refused, and the collection keeps its map.
    assert!(HashMap::<u32, u64>::try_from(collection.map("verdicts").unwrap()).is_err());
    assert!(collection.map("verdicts").is_ok());
}
