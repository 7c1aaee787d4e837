//! Maps created in the running kernel.

use ebpf_core::{BatchCursor, Errno};
use ebpf_core::{Error, Map, MapFlags, MapSpec, MapType, UpdateFlags};
use ebpf_test_support::{bpffs_dir, require_kernel, unique_name};

fn hash_map(entries: u32) -> Map {
    Map::create(&MapSpec::new(&unique_name("hash"), MapType::Hash, 4, 8, entries)).expect("create hash map")
}

#[test]
fn hash_map_stores_updates_and_deletes_values() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let map = hash_map(16);
    let key = 7u32.to_ne_bytes();
    assert_eq!(map.get(&key).unwrap(), None);
    map.update(&key, &42u64.to_ne_bytes(), UpdateFlags::ANY).unwrap();
    assert_eq!(map.get(&key).unwrap(), Some(42u64.to_ne_bytes().to_vec()));

    let err = map.update(&key, &1u64.to_ne_bytes(), UpdateFlags::NO_EXIST).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::EEXIST));

    let mut taken = [0u8; 8];
    assert!(map.take(&key, &mut taken).unwrap());
    assert_eq!(u64::from_ne_bytes(taken), 42);
    assert!(!map.delete(&key).unwrap());
}

#[test]
fn a_full_map_says_so_and_names_itself() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let map = hash_map(2);
    for k in 0u32..2 {
        map.update(&k.to_ne_bytes(), &0u64.to_ne_bytes(), UpdateFlags::ANY).unwrap();
    }
    let err = map.update(&9u32.to_ne_bytes(), &0u64.to_ne_bytes(), UpdateFlags::ANY).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with(&format!("update map \"{}\" (hash, 2 entries): E2BIG", map.name())), "{text}");
    assert!(text.ends_with("the map is full"), "{text}");
}

#[test]
fn wrong_sized_buffers_are_refused_before_the_kernel_sees_them() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let map = hash_map(4);
    let err = map.update(&[0u8; 3], &[0u8; 8], UpdateFlags::ANY).unwrap_err();
    assert!(matches!(err, Error::SizeMismatch { what: "key", actual: 3, expected: 4, .. }), "{err}");
}

#[test]
fn keys_iterate_in_kernel_order_until_the_end() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let map = hash_map(64);
    for k in 0u32..10 {
        map.update(&k.to_ne_bytes(), &u64::from(k).to_ne_bytes(), UpdateFlags::ANY).unwrap();
    }
    let mut seen = Vec::new();
    let mut key = [0u8; 4];
    let mut have = map.next_key(None, &mut key).unwrap();
    while have {
        seen.push(u32::from_ne_bytes(key));
        let current = key;
        have = map.next_key(Some(&current), &mut key).unwrap();
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
}

#[test]
fn per_cpu_values_have_one_padded_slot_per_possible_cpu() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let map = Map::create(&MapSpec::new(&unique_name("pcpu"), MapType::PercpuArray, 4, 4, 1)).unwrap();
    let cpus = ebpf_core::possible_cpus().unwrap();
    assert_eq!(map.value_stride(), 8 * cpus);
    let mut values = vec![0u8; map.value_stride()];
    for cpu in 0..cpus {
        values[cpu * 8..cpu * 8 + 4].copy_from_slice(&(cpu as u32 + 1).to_ne_bytes());
    }
    map.update(&0u32.to_ne_bytes(), &values, UpdateFlags::ANY).unwrap();
    let back = map.get(&0u32.to_ne_bytes()).unwrap().unwrap();
    assert_eq!(back, values);
}

#[test]
fn batch_operations_move_many_elements_per_call() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let map = hash_map(1024);
    let n = 500u32;
    let keys: Vec<u8> = (0..n).flat_map(u32::to_ne_bytes).collect();
    let values: Vec<u8> = (0..n).flat_map(|k| u64::from(k * 3).to_ne_bytes()).collect();
    assert_eq!(map.update_batch(&keys, &values, UpdateFlags::ANY).unwrap(), n as usize);

    let mut cursor = BatchCursor::default();
    let mut got = Vec::new();
    while !cursor.is_done() {
        let mut k = vec![0u8; 128 * 4];
        let mut v = vec![0u8; 128 * 8];
        let count = map.lookup_batch(&mut cursor, &mut k, &mut v).unwrap();
        for i in 0..count {
            let key = u32::from_ne_bytes(k[i * 4..i * 4 + 4].try_into().unwrap());
            let value = u64::from_ne_bytes(v[i * 8..i * 8 + 8].try_into().unwrap());
            assert_eq!(value, u64::from(key * 3));
            got.push(key);
        }
    }
    got.sort_unstable();
    assert_eq!(got, (0..n).collect::<Vec<_>>());

    assert_eq!(map.delete_batch(&keys[..100 * 4]).unwrap(), 100);
    assert_eq!(map.get(&50u32.to_ne_bytes()).unwrap(), None);
    assert!(map.get(&150u32.to_ne_bytes()).unwrap().is_some());
}

#[test]
fn frozen_maps_refuse_user_writes() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let map = Map::create(&MapSpec::new(&unique_name("frz"), MapType::Array, 4, 4, 1)).unwrap();
    map.update(&0u32.to_ne_bytes(), &5u32.to_ne_bytes(), UpdateFlags::ANY).unwrap();
    map.freeze().unwrap();
    let err = map.update(&0u32.to_ne_bytes(), &6u32.to_ne_bytes(), UpdateFlags::ANY).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::EPERM));
    assert_eq!(map.get(&0u32.to_ne_bytes()).unwrap(), Some(5u32.to_ne_bytes().to_vec()));
}

#[test]
fn unknown_flag_combinations_are_refused_with_the_map_named() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let spec = MapSpec::new("badflags", MapType::Hash, 4, 4, 4).with_flags(MapFlags::MMAPABLE);
    let err = Map::create(&spec).unwrap_err();
    assert_eq!(err.errno(), Some(Errno::EINVAL));
    assert!(
        err.to_string().starts_with("create map \"badflags\" (hash, key 4 B, value 4 B, 4 entries): EINVAL"),
        "{err}"
    );
}

#[test]
fn pinned_maps_reopen_with_their_sizes() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let Some(dir) = bpffs_dir() else { return };
    let map = hash_map(8);
    map.update(&1u32.to_ne_bytes(), &11u64.to_ne_bytes(), UpdateFlags::ANY).unwrap();
    let path = dir.join(unique_name("pin"));
    map.pin(&path).unwrap();
    let reopened = Map::from_pin(&path).unwrap();
    ebpf_core::program::unpin(&path).unwrap();
    assert_eq!((reopened.key_size(), reopened.value_size()), (4, 8));
    assert_eq!(reopened.map_type(), Some(MapType::Hash));
    assert_eq!(reopened.get(&1u32.to_ne_bytes()).unwrap(), Some(11u64.to_ne_bytes().to_vec()));
    let by_id = Map::from_id(map.info().unwrap().id).unwrap();
    assert_eq!(by_id.name(), map.name());
}
