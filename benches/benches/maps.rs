//! Hash-map lookups (u32 → u64): ebpf-core's checked `Map::lookup` beside the bare syscall.
// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use std::os::fd::AsFd;

use benches::{can_use_bpf, raw_lookup};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ebpf_core::{Map, MapSpec, MapType, UpdateFlags};

const KEYS: u32 = 100_000;

fn lookups(c: &mut Criterion) {
    if !can_use_bpf() {
        return;
    }
    let map = Map::create(&MapSpec::new("bench_hash", MapType::Hash, 4, 8, KEYS)).expect("create map");
    for k in 0..KEYS {
        map.update(&k.to_ne_bytes(), &u64::from(k).to_ne_bytes(), UpdateFlags::ANY).expect("fill map");
    }
    let mut group = c.benchmark_group("hash_lookup_u32_u64");
    group.bench_function("raw_syscall", |b| {
        let mut k = 0u32;
        let mut value = 0u64;
        b.iter(|| {
            k = (k + 7919) % KEYS;
            black_box(raw_lookup(map.as_fd(), &k, &mut value));
        })
    });
    group.bench_function("ebpf_core", |b| {
        let mut k = 0u32;
        let mut value = [0u8; 8];
        b.iter(|| {
            k = (k + 7919) % KEYS;
            black_box(map.lookup(&k.to_ne_bytes(), &mut value).expect("lookup"));
        })
    });
    group.finish();
}

fn mmap_array(c: &mut Criterion) {
    if !can_use_bpf() {
        return;
    }
    let spec = MapSpec::new("bench_mmap", MapType::Array, 4, 8, 1024).with_flags(ebpf_core::MapFlags::MMAPABLE);
    let map = Map::create(&spec).expect("create mmapable array");
    let syscall_view = Map::from_fd(map.as_fd()).expect("second view");
    let shared: ebpf_maps::MmapArray<u64> = ebpf_maps::MmapArray::try_from(map).expect("mmap");
    let mut group = c.benchmark_group("array_u64");
    group.bench_function("read_syscall", |b| {
        let mut value = [0u8; 8];
        b.iter(|| black_box(syscall_view.lookup(&7u32.to_ne_bytes(), &mut value).expect("lookup")))
    });
    group.bench_function("read_mmap", |b| b.iter(|| black_box(shared.get(black_box(7)).expect("get"))));
    group.bench_function("write_syscall", |b| {
        b.iter(|| syscall_view.update(&7u32.to_ne_bytes(), &42u64.to_ne_bytes(), UpdateFlags::ANY).expect("update"))
    });
    group.bench_function("write_mmap", |b| b.iter(|| shared.set(black_box(7), &42).expect("set")));
    group.finish();
}

criterion_group!(benches, lookups, mmap_array);
criterion_main!(benches);
