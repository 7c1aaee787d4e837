//! Single-element map operations, ours beside the raw `bpf(2)` floor, measured paired: each
//! sample alternates blocks of 16 raw calls and 16 of ours, timing each side, so both run in
//! the same cache, frequency and host-contention state. (Measured one after the other, as in
//! `peers`, the order of the functions alone moves a 650 ns syscall by 2–4 %.) The `raw_syscall`
//! and `ours` functions of a group run the same interleaved loop and report their own half; the
//! median of the per-sample ratio ours / raw is printed after each group.
//! `cargo bench -p benches --bench paired`.
// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use benches::paired::pair;
use benches::{can_use_bpf, raw_lookup, raw_lookup_bytes, raw_update};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ebpf_core::{Map, MapSpec, MapType, UpdateFlags};
use std::os::fd::AsFd;

fn single_ops(c: &mut Criterion) {
    if !can_use_bpf() {
        return;
    }
    const KEYS: u32 = 1_000_000;
    let (hash, typed) = benches::fixtures::hash_u32_u64("paired_1m", KEYS);
    // Both sides walk the same key sequence from cursors half the map apart, so neither finds
    // the other's keys in the cache.
    let step = |k: &mut u32| {
        *k = (*k + 7919) % KEYS;
        *k
    };
    let (mut raw_key, mut our_key, mut raw_value) = (0u32, KEYS / 2, 0u64);
    pair(
        c,
        "paired_hash_lookup_u32_u64_1M",
        || {
            black_box(raw_lookup(hash.as_fd(), &step(&mut raw_key), &mut raw_value));
        },
        || {
            black_box(typed.get(&step(&mut our_key)).expect("get"));
        },
    );
    let (mut raw_key, mut our_key) = (0u32, KEYS / 2);
    pair(
        c,
        "paired_hash_update_u32_u64_1M",
        || {
            black_box(raw_update(hash.as_fd(), &step(&mut raw_key).to_ne_bytes(), &7u64.to_ne_bytes()));
        },
        || typed.insert(&step(&mut our_key), &7, UpdateFlags::ANY).expect("insert"),
    );

    let array = Map::create(&MapSpec::new("paired_arr", MapType::Array, 4, 8, 1024)).expect("array");
    let typed: ebpf_maps::Array<u64> =
        ebpf_maps::Array::try_from(Map::from_fd(array.as_fd()).expect("dup")).expect("typed");
    let mut raw_value = 0u64;
    pair(
        c,
        "paired_array_lookup_u64",
        || {
            black_box(raw_lookup(array.as_fd(), &7, &mut raw_value));
        },
        || {
            black_box(typed.get(black_box(7)).expect("get"));
        },
    );

    let percpu = Map::create(&MapSpec::new("paired_pca", MapType::PercpuArray, 4, 8, 16)).expect("percpu");
    let typed: ebpf_maps::PerCpuArray<u64> =
        ebpf_maps::PerCpuArray::try_from(Map::from_fd(percpu.as_fd()).expect("dup")).expect("typed");
    let mut raw_values = vec![0u8; percpu.value_stride()];
    let mut values = ebpf_maps::PerCpuValues::<u64>::new().expect("values");
    pair(
        c,
        "paired_percpu_array_lookup_u64",
        || {
            black_box(raw_lookup_bytes(percpu.as_fd(), &3u32.to_ne_bytes(), &mut raw_values));
        },
        || {
            black_box(typed.get_into(&3, &mut values).expect("get"));
        },
    );

    let (lpm, typed) = benches::fixtures::lpm_ipv4("paired_lpm");
    let full_key: Vec<u8> = 32u32.to_ne_bytes().into_iter().chain([10, 77, 1, 2]).collect();
    let mut raw_value = [0u8; 4];
    pair(
        c,
        "paired_lpm_lookup_ipv4",
        || {
            black_box(raw_lookup_bytes(lpm.as_fd(), &full_key, &mut raw_value));
        },
        || {
            black_box(typed.lookup(&[10, 77, 1, 2]).expect("lookup"));
        },
    );
}

criterion_group!(benches, single_ops);
criterion_main!(benches);
