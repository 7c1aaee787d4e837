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

criterion_group!(benches, lookups);
criterion_main!(benches);
