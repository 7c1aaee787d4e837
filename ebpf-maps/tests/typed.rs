//! Typed views over maps created in the running kernel.

use bytemuck::{Pod, Zeroable};
use ebpf_core::{Map, MapSpec, MapType, UpdateFlags};
use ebpf_maps::{
    Array, BloomFilter, HashMap, LpmTrie, LruHashMap, MapError, MapOfMaps, PerCpuArray, PerCpuHashMap, PerCpuValues,
    Queue, Stack,
};
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
    assert!(err.to_string().ends_with("map type is array, expected hash"), "{err}");
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

#[test]
fn iteration_survives_concurrent_deletes_without_repeats() {
    let Some(_root) = require_kernel() else { return };
    let map = Map::create(&MapSpec::new(&unique_name("it"), MapType::Hash, 4, 8, 8192)).unwrap();
    let hash: HashMap<u32, u64> = HashMap::try_from(map).unwrap();
    let keys: Vec<u32> = (0..5000).collect();
    let values: Vec<u64> = keys.iter().map(|&k| u64::from(k) * 2).collect();
    assert_eq!(hash.insert_batch(&keys, &values, UpdateFlags::ANY).unwrap(), 5000);
    let mut seen = std::collections::HashSet::new();
    for (n, entry) in hash.iter().enumerate() {
        let (key, value) = entry.unwrap();
        assert_eq!(value, u64::from(key) * 2);
        assert!(seen.insert(key), "key {key} yielded twice");
        if n % 100 == 0 {
            // Another writer deletes odd keys while the walk goes on.
            for odd in (1..5000).step_by(2).skip(n / 100 * 50).take(50) {
                hash.remove(&odd).unwrap();
            }
        }
    }
    for even in (0..5000).step_by(2) {
        assert!(seen.contains(&even), "never-deleted key {even} was missed");
    }
}

#[test]
fn batches_read_into_caller_buffers_remove_and_clear() {
    let Some(_root) = require_kernel() else { return };
    let map = Map::create(&MapSpec::new(&unique_name("bat"), MapType::Hash, 4, 8, 4096)).unwrap();
    let hash: HashMap<u32, u64> = HashMap::try_from(map).unwrap();
    let keys: Vec<u32> = (0..1000).collect();
    let values: Vec<u64> = keys.iter().map(|&k| u64::from(k) + 7).collect();
    hash.insert_batch(&keys, &values, UpdateFlags::ANY).unwrap();

    // A walk in batches of 64 into the same two buffers.
    let (mut key_buf, mut value_buf) = ([0u32; 64], [0u64; 64]);
    let mut cursor = ebpf_core::BatchCursor::default();
    let mut seen = Vec::new();
    while !cursor.is_done() {
        let n = hash.get_batch(&mut cursor, &mut key_buf, &mut value_buf).unwrap();
        assert!(n <= 64);
        for i in 0..n {
            assert_eq!(value_buf[i], u64::from(key_buf[i]) + 7);
            seen.push(key_buf[i]);
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, keys);
    assert!(matches!(
        hash.get_batch(&mut ebpf_core::BatchCursor::default(), &mut key_buf, &mut value_buf[..3]),
        Err(MapError::BatchMismatch { keys: 64, values: 3 })
    ));

    assert_eq!(hash.remove_batch(&keys[..100]).unwrap(), 100);
    assert_eq!(hash.get(&5).unwrap(), None);
    let mut cursor = ebpf_core::BatchCursor::default();
    let taken = hash.take_batch(&mut cursor, &mut key_buf, &mut value_buf).unwrap();
    assert!(taken > 0);
    assert_eq!(hash.get(&key_buf[0]).unwrap(), None, "taken elements are gone");
    assert_eq!(hash.clear().unwrap(), 900 - taken);
    assert_eq!(hash.iter().count(), 0);
}

#[test]
fn lru_maps_evict_instead_of_refusing() {
    let Some(_root) = require_kernel() else { return };
    let map = Map::create(&MapSpec::new(&unique_name("lru"), MapType::LruHash, 4, 8, 64)).unwrap();
    assert!(matches!(
        HashMap::<u32, u64>::try_from(Map::from_fd(std::os::fd::AsFd::as_fd(&map)).unwrap()),
        Err(MapError::WrongType { .. })
    ));
    let lru: LruHashMap<u32, u64> = LruHashMap::try_from(map).unwrap();
    for k in 0..1000u32 {
        lru.insert(&k, &u64::from(k), UpdateFlags::ANY).unwrap();
    }
    assert_eq!(lru.get(&999).unwrap(), Some(999));
    assert!(lru.iter().count() <= 64 + 64, "bounded by capacity (plus per-CPU free lists)");
}

#[test]
fn per_cpu_values_round_trip_without_allocating_per_lookup() {
    let Some(_root) = require_kernel() else { return };
    let map = Map::create(&MapSpec::new(&unique_name("pca"), MapType::PercpuArray, 4, 4, 2)).unwrap();
    let array: PerCpuArray<u32> = PerCpuArray::try_from(map).unwrap();
    let mut values = PerCpuValues::<u32>::new().unwrap();
    for cpu in 0..values.len() {
        values.set(cpu, cpu as u32 + 10);
    }
    array.set(&1, &values, UpdateFlags::ANY).unwrap();
    let mut back = PerCpuValues::<u32>::new().unwrap();
    assert!(array.get_into(&1, &mut back).unwrap());
    assert_eq!(back.iter().collect::<Vec<_>>(), (0..values.len() as u32).map(|c| c + 10).collect::<Vec<_>>());

    let map = Map::create(&MapSpec::new(&unique_name("pch"), MapType::PercpuHash, 8, 8, 4)).unwrap();
    let hash: PerCpuHashMap<u64, u64> = PerCpuHashMap::try_from(map).unwrap();
    hash.set(&7, &PerCpuValues::filled(3).unwrap(), UpdateFlags::ANY).unwrap();
    assert_eq!(hash.get(&7).unwrap().unwrap().iter().sum::<u64>(), 3 * back.len() as u64);
    assert!(hash.get(&8).unwrap().is_none());
}

/// An LPM trie of `K` key data (after the 4-byte prefix length) to u32 values.
fn lpm_trie<K: Pod>(name: &str) -> LpmTrie<K, u32> {
    let key_size = 4 + std::mem::size_of::<K>() as u32;
    let spec = MapSpec::new(&unique_name(name), MapType::LpmTrie, key_size, 4, 16)
        .with_flags(ebpf_core::MapFlags::NO_PREALLOC);
    LpmTrie::try_from(Map::create(&spec).unwrap()).unwrap()
}

#[test]
fn lpm_tries_find_the_longest_prefix() {
    let Some(_root) = require_kernel() else { return };
    let trie = lpm_trie::<[u8; 4]>("lpm");
    trie.insert(&[10, 0, 0, 0], 8, &1, UpdateFlags::ANY).unwrap();
    trie.insert(&[10, 1, 0, 0], 16, &2, UpdateFlags::ANY).unwrap();
    assert_eq!(trie.lookup(&[10, 1, 2, 3]).unwrap(), Some(2));
    assert_eq!(trie.lookup(&[10, 9, 2, 3]).unwrap(), Some(1));
    assert_eq!(trie.lookup(&[11, 0, 0, 1]).unwrap(), None);
    assert_eq!(trie.get_exact(&[10, 0, 0, 0], 8).unwrap(), Some(1));
    let mut all = trie.entries().unwrap();
    all.sort();
    assert_eq!(all, vec![([10, 0, 0, 0], 8, 1), ([10, 1, 0, 0], 16, 2)]);
    assert!(trie.remove(&[10, 1, 0, 0], 16).unwrap());
    assert_eq!(trie.lookup(&[10, 1, 2, 3]).unwrap(), Some(1));
    assert!(matches!(trie.insert(&[0; 4], 33, &0, UpdateFlags::ANY), Err(MapError::PrefixTooLong { .. })));
}

#[test]
fn lpm_tries_with_long_keys() {
    let Some(_root) = require_kernel() else { return };
    // 48 bytes of key data: beyond the small key buffer, so the large one is exercised.
    let trie = lpm_trie::<[u8; 48]>("lpm48");
    let mut prefix = [0u8; 48];
    prefix[..2].copy_from_slice(&[0xfd, 0x01]);
    trie.insert(&prefix, 16, &7, UpdateFlags::ANY).unwrap();
    let mut address = prefix;
    address[47] = 9;
    assert_eq!(trie.lookup(&address).unwrap(), Some(7));
    assert_eq!(trie.get_exact(&prefix, 16).unwrap(), Some(7));
    assert!(trie.remove(&prefix, 16).unwrap());
    assert_eq!(trie.lookup(&address).unwrap(), None);
}

#[test]
fn queues_stacks_and_bloom_filters() {
    let Some(_root) = require_kernel() else { return };
    let queue: Queue<u32> =
        Queue::try_from(Map::create(&MapSpec::new(&unique_name("q"), MapType::Queue, 0, 4, 4)).unwrap()).unwrap();
    let stack: Stack<u32> =
        Stack::try_from(Map::create(&MapSpec::new(&unique_name("s"), MapType::Stack, 0, 4, 4)).unwrap()).unwrap();
    for v in 1..=3 {
        queue.push(&v, UpdateFlags::ANY).unwrap();
        stack.push(&v, UpdateFlags::ANY).unwrap();
    }
    assert_eq!(queue.peek().unwrap(), Some(1));
    assert_eq!((queue.pop().unwrap(), stack.pop().unwrap()), (Some(1), Some(3)));
    let bloom: BloomFilter<u64> =
        BloomFilter::try_from(Map::create(&MapSpec::new(&unique_name("b"), MapType::BloomFilter, 0, 8, 100)).unwrap())
            .unwrap();
    bloom.insert(&42).unwrap();
    assert!(bloom.contains(&42).unwrap());
    let false_positives = (1000..1100u64).filter(|v| bloom.contains(v).unwrap()).count();
    assert!(false_positives < 20, "{false_positives} false positives of 100");
}

#[test]
fn maps_of_maps_hold_inner_maps() {
    let Some(_root) = require_kernel() else { return };
    let mut spec = MapSpec::new(&unique_name("mom"), MapType::ArrayOfMaps, 4, 4, 2);
    spec.inner = Some(Box::new(MapSpec::new("inner", MapType::Array, 4, 8, 1)));
    let outer: MapOfMaps<u32> = MapOfMaps::try_from(Map::create(&spec).unwrap()).unwrap();
    let inner = Map::create(&MapSpec::new(&unique_name("in"), MapType::Array, 4, 8, 1)).unwrap();
    inner.update(&0u32.to_ne_bytes(), &77u64.to_ne_bytes(), UpdateFlags::ANY).unwrap();
    outer.set(&1, &inner, UpdateFlags::ANY).unwrap();
    let back = outer.get(&1).unwrap().unwrap();
    assert_eq!(back.get(&0u32.to_ne_bytes()).unwrap(), Some(77u64.to_ne_bytes().to_vec()));
    assert_eq!(outer.map_id(&0).unwrap(), None);
}

#[test]
fn mmapable_arrays_share_memory_with_the_syscall_view() {
    let Some(_root) = require_kernel() else { return };
    let spec = MapSpec::new(&unique_name("mm"), MapType::Array, 4, 12, 1000).with_flags(ebpf_core::MapFlags::MMAPABLE);
    let map = Map::create(&spec).unwrap();
    let syscall_view = Map::from_fd(std::os::fd::AsFd::as_fd(&map)).unwrap();
    let shared: ebpf_maps::MmapArray<[u32; 3]> = ebpf_maps::MmapArray::try_from(map).unwrap();
    shared.set(999, &[1, 2, 3]).unwrap();
    let mut value = [0u8; 12];
    assert!(syscall_view.lookup(&999u32.to_ne_bytes(), &mut value).unwrap());
    assert_eq!(value, bytemuck::cast::<[u32; 3], [u8; 12]>([1, 2, 3]));
    syscall_view
        .update(&5u32.to_ne_bytes(), &bytemuck::cast::<[u32; 3], [u8; 12]>([7, 8, 9]), UpdateFlags::ANY)
        .unwrap();
    assert_eq!(shared.get(5).unwrap(), [7, 8, 9]);
    assert!(matches!(shared.get(1000), Err(MapError::OutOfBounds { .. })));

    let plain = Map::create(&MapSpec::new(&unique_name("np"), MapType::Array, 4, 4, 4)).unwrap();
    assert!(matches!(ebpf_maps::MmapArray::<u32>::try_from(plain), Err(MapError::NotMmapable { .. })));
}

#[test]
fn redirect_maps_hold_devices_cpus_and_sockets() {
    use ebpf_maps::{CpuMap, DevMap, SockMap, XskMap};
    let Some(_root) = require_kernel() else { return };
    let devmap: DevMap =
        DevMap::try_from(Map::create(&MapSpec::new(&unique_name("dev"), MapType::Devmap, 4, 4, 4)).unwrap()).unwrap();
    devmap.set(&0, 1, UpdateFlags::ANY).unwrap(); // loopback
    assert_eq!(devmap.ifindex(&0).unwrap(), Some(1));
    assert!(devmap.remove(&0).unwrap());

    let cpumap: CpuMap =
        CpuMap::try_from(Map::create(&MapSpec::new(&unique_name("cpu"), MapType::Cpumap, 4, 4, 1)).unwrap()).unwrap();
    cpumap.set(&0, 192, UpdateFlags::ANY).unwrap();
    assert_eq!(cpumap.queue_size(&0).unwrap(), Some(192));

    // An XSK map is created and typed; filling it needs an AF_XDP socket (not made here).
    XskMap::<u32>::try_from(Map::create(&MapSpec::new(&unique_name("xsk"), MapType::Xskmap, 4, 4, 1)).unwrap())
        .unwrap();

    let sockmap: SockMap =
        SockMap::try_from(Map::create(&MapSpec::new(&unique_name("sock"), MapType::Sockmap, 4, 8, 2)).unwrap())
            .unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sockmap.set(&1, &socket, UpdateFlags::ANY).unwrap();
    assert!(sockmap.cookie(&1).unwrap().is_some_and(|c| c != 0));
    assert!(matches!(
        DevMap::<u32>::try_from(Map::create(&MapSpec::new(&unique_name("arr"), MapType::Array, 4, 4, 1)).unwrap()),
        Err(MapError::WrongType { .. })
    ));
}

#[test]
fn every_kind_pins_reopens_and_keeps_its_typed_view() {
    let Some(_root) = require_kernel() else { return };
    let Some(dir) = ebpf_test_support::bpffs_dir() else { return };
    let kinds: [(MapType, u32, u32, ebpf_core::MapFlags); 9] = [
        (MapType::Hash, 4, 8, ebpf_core::MapFlags::empty()),
        (MapType::LruHash, 4, 8, ebpf_core::MapFlags::empty()),
        (MapType::Array, 4, 8, ebpf_core::MapFlags::empty()),
        (MapType::PercpuHash, 4, 8, ebpf_core::MapFlags::empty()),
        (MapType::PercpuArray, 4, 8, ebpf_core::MapFlags::empty()),
        (MapType::LpmTrie, 8, 8, ebpf_core::MapFlags::NO_PREALLOC),
        (MapType::Queue, 0, 8, ebpf_core::MapFlags::empty()),
        (MapType::Stack, 0, 8, ebpf_core::MapFlags::empty()),
        (MapType::BloomFilter, 0, 8, ebpf_core::MapFlags::empty()),
    ];
    for (kind, key, value, flags) in kinds {
        let map = Map::create(&MapSpec::new(&unique_name("pin"), kind, key, value, 8).with_flags(flags)).unwrap();
        let path = dir.join(unique_name("pinned"));
        map.pin(&path).unwrap();
        let reopened = Map::from_pin(&path);
        ebpf_core::program::unpin(&path).unwrap();
        let reopened = reopened.unwrap();
        assert_eq!(reopened.map_type(), Some(kind));
        let typed_ok = match kind {
            MapType::Hash => HashMap::<u32, u64>::try_from(reopened).is_ok(),
            MapType::LruHash => LruHashMap::<u32, u64>::try_from(reopened).is_ok(),
            MapType::Array => Array::<u64>::try_from(reopened).is_ok(),
            MapType::PercpuHash => PerCpuHashMap::<u32, u64>::try_from(reopened).is_ok(),
            MapType::PercpuArray => PerCpuArray::<u64>::try_from(reopened).is_ok(),
            MapType::LpmTrie => LpmTrie::<[u8; 4], u64>::try_from(reopened).is_ok(),
            MapType::Queue => Queue::<u64>::try_from(reopened).is_ok(),
            MapType::Stack => Stack::<u64>::try_from(reopened).is_ok(),
            _ => BloomFilter::<u64>::try_from(reopened).is_ok(),
        };
        assert!(typed_ok, "{kind} reopened from its pin takes its typed view");
        assert!(!path.exists());
    }
}
