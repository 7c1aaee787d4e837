//! Our maps and ring buffer beside the raw `bpf(2)`/mmap floor, aya 0.14.0 and libbpf-rs 0.27,
//! on the same kernel objects in one process. `cargo bench -p benches --bench peers`.
// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use std::os::fd::AsFd;

use benches::{can_use_bpf, raw_lookup, raw_lookup_bytes, raw_update, RawRing};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ebpf_core::insn::{helpers::helper_id, AluOp, Assembler, Reg, Size};
use ebpf_core::{BatchCursor, Map, MapSpec, MapType, Program, ProgramSpec, ProgramType, TestRun, UpdateFlags};
use libbpf_rs::MapCore;

const KEYS: u32 = 1_000_000;

fn aya_map(map: &Map) -> aya::maps::MapData {
    aya::maps::MapData::from_id(map.info().expect("info").id).expect("aya opens the map")
}

fn libbpf_map(map: &Map) -> libbpf_rs::MapHandle {
    libbpf_rs::MapHandle::from_map_id(map.info().expect("info").id).expect("libbpf-rs opens the map")
}

fn hash_maps(c: &mut Criterion) {
    let (map, typed) = benches::fixtures::hash_u32_u64("bench_1m", KEYS);
    let aya: aya::maps::HashMap<_, u32, u64> =
        aya::maps::HashMap::try_from(aya::maps::Map::HashMap(aya_map(&map))).expect("aya");
    let libbpf = libbpf_map(&map);
    let step = |k: &mut u32| {
        *k = (*k + 7919) % KEYS;
        *k
    };

    let mut group = c.benchmark_group("hash_lookup_u32_u64_1M");
    group.bench_function("raw_syscall", |b| {
        let (mut k, mut v) = (0, 0u64);
        b.iter(|| black_box(raw_lookup(map.as_fd(), &step(&mut k), &mut v)))
    });
    group.bench_function("ebpf_core_bytes", |b| {
        let (mut k, mut v) = (0, [0u8; 8]);
        b.iter(|| black_box(map.lookup(&step(&mut k).to_ne_bytes(), &mut v).expect("lookup")))
    });
    group.bench_function("ebpf_maps_typed", |b| {
        let mut k = 0;
        b.iter(|| black_box(typed.get(&step(&mut k)).expect("get")))
    });
    group.bench_function("aya", |b| {
        let mut k = 0;
        b.iter(|| black_box(aya.get(&step(&mut k), 0).expect("get")))
    });
    group.bench_function("libbpf_rs", |b| {
        let mut k = 0;
        b.iter(|| black_box(libbpf.lookup(&step(&mut k).to_ne_bytes(), libbpf_rs::MapFlags::ANY).expect("lookup")))
    });
    group.finish();

    let mut aya = aya;
    let mut group = c.benchmark_group("hash_update_u32_u64_1M");
    group.bench_function("raw_syscall", |b| {
        let mut k = 0;
        b.iter(|| black_box(raw_update(map.as_fd(), &step(&mut k).to_ne_bytes(), &7u64.to_ne_bytes())))
    });
    group.bench_function("ebpf_maps_typed", |b| {
        let mut k = 0;
        b.iter(|| typed.insert(&step(&mut k), &7, UpdateFlags::ANY).expect("insert"))
    });
    group.bench_function("aya", |b| {
        let mut k = 0;
        b.iter(|| aya.insert(step(&mut k), 7, 0).expect("insert"))
    });
    group.bench_function("libbpf_rs", |b| {
        let mut k = 0;
        b.iter(|| {
            libbpf.update(&step(&mut k).to_ne_bytes(), &7u64.to_ne_bytes(), libbpf_rs::MapFlags::ANY).expect("update")
        })
    });
    group.finish();

    // Batch: walk 100 000 elements (a map holding exactly that many), per element.
    let small = Map::create(&MapSpec::new("bench_100k", MapType::Hash, 4, 8, 100_000)).expect("map");
    let kb: Vec<u8> = (0..100_000u32).flat_map(|x| x.to_ne_bytes()).collect();
    let vb: Vec<u8> = (0..100_000u64).flat_map(|x| x.to_ne_bytes()).collect();
    small.update_batch(&kb, &vb, UpdateFlags::ANY).expect("fill");
    let small_libbpf = libbpf_map(&small);
    let mut group = c.benchmark_group("batch_lookup_100k");
    group.throughput(Throughput::Elements(100_000));
    group.sample_size(20);
    group.bench_function("raw_syscall_batch_10k", |b| {
        let (mut keys, mut values) = (vec![0u32; 10_000], vec![0u64; 10_000]);
        b.iter(|| assert_eq!(benches::raw_batch_walk(small.as_fd(), 10_000, &mut keys, &mut values), 100_000))
    });
    for (name, chunk) in [("ebpf_core_batch_100k", 100_000), ("ebpf_core_batch", 10_000)] {
        group.bench_function(name, |b| {
            let (mut keys, mut values) = (vec![0u8; 4 * chunk], vec![0u8; 8 * chunk]);
            b.iter(|| {
                let (mut cursor, mut total) = (BatchCursor::default(), 0);
                while !cursor.is_done() {
                    total += small.lookup_batch(&mut cursor, &mut keys, &mut values).expect("batch");
                }
                assert_eq!(total, 100_000, "lossless");
                total
            })
        });
    }
    group.bench_function("libbpf_rs_batch", |b| {
        b.iter(|| {
            small_libbpf
                .lookup_batch(10_000, libbpf_rs::MapFlags::ANY, libbpf_rs::MapFlags::ANY)
                .expect("batch")
                .count()
        })
    });
    // Two one-by-one baselines: looking up keys already known (one syscall per element), and
    // walking the map as a batch lookup does — discovering the keys — with a next-key and a
    // lookup per element, as every library's iterator does.
    group.bench_function("ebpf_core_one_by_one", |b| {
        let mut v = [0u8; 8];
        b.iter(|| (0..100_000u32).filter(|k| small.lookup(&k.to_ne_bytes(), &mut v).expect("lookup")).count())
    });
    group.bench_function("ebpf_core_one_by_one_walk", |b| {
        let (mut key, mut next, mut v) = ([0u8; 4], [0u8; 4], [0u8; 8]);
        b.iter(|| {
            let mut n = 0;
            let mut at_start = true;
            while small.next_key(if at_start { None } else { Some(&key) }, &mut next).expect("next key") {
                at_start = false;
                key = next;
                n += usize::from(small.lookup(&key, &mut v).expect("lookup"));
            }
            assert_eq!(n, 100_000, "walked every element");
            n
        })
    });
    group.finish();
    let got =
        small_libbpf.lookup_batch(10_000, libbpf_rs::MapFlags::ANY, libbpf_rs::MapFlags::ANY).expect("batch").count();
    eprintln!("libbpf-rs lookup_batch returned {got} of 100000 elements");
}

fn other_maps(c: &mut Criterion) {
    let array = Map::create(&MapSpec::new("bench_arr", MapType::Array, 4, 8, 1024)).expect("array");
    let typed: ebpf_maps::Array<u64> =
        ebpf_maps::Array::try_from(Map::from_fd(array.as_fd()).expect("dup")).expect("typed");
    let aya: aya::maps::Array<_, u64> =
        aya::maps::Array::try_from(aya::maps::Map::Array(aya_map(&array))).expect("aya");
    let libbpf = libbpf_map(&array);
    let mut group = c.benchmark_group("array_lookup_u64");
    group.bench_function("raw_syscall", |b| {
        let mut v = 0u64;
        b.iter(|| black_box(raw_lookup(array.as_fd(), &7, &mut v)))
    });
    group.bench_function("ebpf_maps_typed", |b| b.iter(|| black_box(typed.get(black_box(7)).expect("get"))));
    group.bench_function("aya", |b| b.iter(|| black_box(aya.get(&7, 0).expect("get"))));
    group.bench_function("libbpf_rs", |b| {
        b.iter(|| black_box(libbpf.lookup(&7u32.to_ne_bytes(), libbpf_rs::MapFlags::ANY).expect("lookup")))
    });
    group.finish();

    let percpu = Map::create(&MapSpec::new("bench_pca", MapType::PercpuArray, 4, 8, 16)).expect("percpu");
    let typed: ebpf_maps::PerCpuArray<u64> =
        ebpf_maps::PerCpuArray::try_from(Map::from_fd(percpu.as_fd()).expect("dup")).expect("typed");
    let aya: aya::maps::PerCpuArray<_, u64> =
        aya::maps::PerCpuArray::try_from(aya::maps::Map::PerCpuArray(aya_map(&percpu))).expect("aya");
    let libbpf = libbpf_map(&percpu);
    let mut group = c.benchmark_group("percpu_array_lookup_u64");
    group.bench_function("raw_syscall", |b| {
        let mut v = vec![0u8; percpu.value_stride()];
        b.iter(|| black_box(raw_lookup_bytes(percpu.as_fd(), &3u32.to_ne_bytes(), &mut v)))
    });
    group.bench_function("ebpf_maps_typed_reused_buffer", |b| {
        let mut values = ebpf_maps::PerCpuValues::<u64>::new().expect("values");
        b.iter(|| black_box(typed.get_into(&3, &mut values).expect("get")))
    });
    group.bench_function("aya", |b| b.iter(|| black_box(aya.get(&3, 0).expect("get"))));
    group.bench_function("libbpf_rs", |b| {
        b.iter(|| black_box(libbpf.lookup_percpu(&3u32.to_ne_bytes(), libbpf_rs::MapFlags::ANY).expect("lookup")))
    });
    group.finish();

    let (lpm, typed) = benches::fixtures::lpm_ipv4("bench_lpm");
    let aya: aya::maps::LpmTrie<_, [u8; 4], u32> =
        aya::maps::LpmTrie::try_from(aya::maps::Map::LpmTrie(aya_map(&lpm))).expect("aya");
    let libbpf = libbpf_map(&lpm);
    let full_key: Vec<u8> = 32u32.to_ne_bytes().into_iter().chain([10, 77, 1, 2]).collect();
    let mut group = c.benchmark_group("lpm_lookup_ipv4");
    group.bench_function("raw_syscall", |b| {
        let mut v = [0u8; 4];
        b.iter(|| black_box(raw_lookup_bytes(lpm.as_fd(), &full_key, &mut v)))
    });
    group.bench_function("ebpf_maps_typed", |b| b.iter(|| black_box(typed.lookup(&[10, 77, 1, 2]).expect("lookup"))));
    group.bench_function("aya", |b| {
        let key = aya::maps::lpm_trie::Key::new(32, [10u8, 77, 1, 2]);
        b.iter(|| black_box(aya.get(&key, 0).expect("get")))
    });
    group.bench_function("libbpf_rs", |b| {
        b.iter(|| black_box(libbpf.lookup(&full_key, libbpf_rs::MapFlags::ANY).expect("lookup")))
    });
    group.finish();
}

/// An XDP program writing `size`-byte events into the ring "events", once per run.
fn ring_producer(events: &Map, size: i32) -> Program {
    let mut asm = Assembler::new();
    asm.ld_map(Reg::R1, "events")
        .mov64_imm(Reg::R2, size)
        .mov64_imm(Reg::R3, 0)
        .call(helper_id("bpf_ringbuf_reserve").expect("helper"))
        .jmp_imm(ebpf_core::insn::JmpCond::Eq, Reg::R0, 0, "out")
        .store_imm(Size::DW, Reg::R0, 0, 42)
        .mov64_reg(Reg::R1, Reg::R0)
        .mov64_imm(Reg::R2, 0)
        .call(helper_id("bpf_ringbuf_submit").expect("helper"))
        .label("out")
        .mov64_imm(Reg::R0, 2)
        .alu64_imm(AluOp::Add, Reg::R0, 0)
        .exit();
    let mut spec = ProgramSpec::from_assembled("ringprod", ProgramType::Xdp, asm.finish().expect("assemble"));
    spec.bind_map("events", events).expect("bind");
    Program::load(&spec).expect("load producer")
}

fn ring_buffers(c: &mut Criterion) {
    const RING: u32 = 64 << 20;
    for size in [16i32, 256] {
        let events = Map::create(&MapSpec::new("bench_ring", MapType::Ringbuf, 0, 0, RING)).expect("ring");
        let producer = ring_producer(&events, size);
        let per_fill = RING / (size as u32 + 8).next_multiple_of(8) - 1;
        let fill = || {
            producer.test_run(&TestRun { data: &[0u8; 64], repeat: per_fill, ..TestRun::default() }).expect("produce");
        };
        let mut ours = ebpf_ringbuf::RingBuf::new(&events).expect("ours");
        let mut raw = RawRing::new(events.as_fd(), RING as usize);
        // aya keeps its own copy of the consumer position, so it gets a ring of its own.
        let aya_events = Map::create(&MapSpec::new("bench_ring_aya", MapType::Ringbuf, 0, 0, RING)).expect("ring");
        let aya_producer = ring_producer(&aya_events, size);
        let aya_fill = || {
            aya_producer
                .test_run(&TestRun { data: &[0u8; 64], repeat: per_fill, ..TestRun::default() })
                .expect("produce");
        };
        let mut aya = aya::maps::RingBuf::try_from(aya::maps::Map::RingBuf(aya_map(&aya_events))).expect("aya");
        let libbpf_map = libbpf_map(&events);
        let counted = std::cell::Cell::new(0usize);
        let mut builder = libbpf_rs::RingBufferBuilder::new();
        builder
            .add(&libbpf_map, |data: &[u8]| {
                counted.set(counted.get() + black_box(data.len()).min(1));
                0
            })
            .expect("libbpf-rs ring");
        let libbpf = builder.build().expect("libbpf-rs ring");

        // Every fill must be drained whole: produced, consumed and dropped are checked.
        fill();
        let consumed = ours
            .consume(|r| {
                black_box(r);
            })
            .expect("drain");
        eprintln!(
            "ring {size}-byte events: produced {per_fill} per fill, consumed {consumed}, dropped {}",
            per_fill as usize - consumed
        );
        assert_eq!(consumed, per_fill as usize, "nothing may be silently lost");

        let mut group = c.benchmark_group(format!("ringbuf_drain_{size}B"));
        group.throughput(Throughput::Elements(u64::from(per_fill)));
        group.sample_size(10);
        group.bench_function("raw_mmap", |b| {
            b.iter_batched(
                fill,
                |()| {
                    assert_eq!(
                        raw.drain(|len| {
                            black_box(len);
                        }),
                        per_fill as usize
                    )
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function("ebpf_ringbuf", |b| {
            b.iter_batched(
                fill,
                |()| {
                    assert_eq!(
                        ours.consume(|r| {
                            black_box(r);
                        })
                        .expect("drain"),
                        per_fill as usize
                    )
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function("aya", |b| {
            b.iter_batched(
                aya_fill,
                |()| {
                    let mut n = 0;
                    while let Some(item) = aya.next() {
                        black_box(&*item);
                        n += 1;
                    }
                    assert_eq!(n, per_fill as usize);
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function("libbpf_rs", |b| {
            b.iter_batched(
                || {
                    fill();
                    counted.set(0);
                },
                |()| {
                    libbpf.consume().expect("consume");
                    assert_eq!(counted.get(), per_fill as usize);
                },
                BatchSize::PerIteration,
            )
        });
        group.finish();
    }
}

/// An XDP program writing one 8-byte sample to the perf array "events" on the current CPU.
fn perf_producer(events: &Map) -> Program {
    let mut asm = Assembler::new();
    asm.store_imm(Size::DW, Reg::R10, -8, 42)
        .ld_map(Reg::R2, "events")
        .ld_imm64(Reg::R3, 0xffff_ffff) // BPF_F_CURRENT_CPU
        .mov64_reg(Reg::R4, Reg::R10)
        .alu64_imm(AluOp::Add, Reg::R4, -8)
        .mov64_imm(Reg::R5, 8)
        .call(helper_id("bpf_perf_event_output").expect("helper"))
        .mov64_imm(Reg::R0, 2)
        .exit();
    let mut spec = ProgramSpec::from_assembled("perfprod", ProgramType::Xdp, asm.finish().expect("assemble"));
    spec.bind_map("events", events).expect("bind");
    Program::load(&spec).expect("load producer")
}

fn perf_buffers(c: &mut Criterion) {
    // BPF_F_CURRENT_CPU writes to the running CPU's ring: keep the whole benchmark on CPU 0.
    let mut set = nix::sched::CpuSet::new();
    set.set(0).expect("cpu 0");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).expect("pin to cpu 0");
    const PAGES: usize = 4096; // 16 MiB per CPU
    let cpus = ebpf_core::possible_cpus().expect("cpus") as u32;
    // 8 bytes of sample + 4 of size + 8 of header, padded: 24 bytes a record.
    let per_fill = (PAGES * 4096 / 24 - 16) as u32;
    // Each library puts its own perf events in its map's slots: one map and producer each.
    let setup = || {
        let events = Map::create(&MapSpec::new("bench_perf", MapType::PerfEventArray, 4, 4, cpus)).expect("perf array");
        let producer = perf_producer(&events);
        (events, producer)
    };
    let fill = |producer: &Program| {
        producer.test_run(&TestRun { data: &[0u8; 64], repeat: per_fill, ..TestRun::default() }).expect("produce");
    };
    let mut group = c.benchmark_group("perfbuf_drain_8B");
    group.throughput(Throughput::Elements(u64::from(per_fill)));
    group.sample_size(10);

    let (events, producer) = setup();
    let mut ours = ebpf_ringbuf::PerfBuffer::new(&events, PAGES).expect("ours");
    fill(&producer);
    let (mut seen, mut lost) = (0u64, 0u64);
    ours.consume(|e| match e {
        ebpf_ringbuf::PerfEvent::Sample { .. } => seen += 1,
        ebpf_ringbuf::PerfEvent::Lost { count, .. } => lost += count,
    });
    eprintln!("perf 8-byte samples: produced {per_fill} per fill, consumed {seen}, lost {lost}");
    assert_eq!((seen, lost), (u64::from(per_fill), 0), "nothing may be silently lost");
    group.bench_function("ebpf_ringbuf", |b| {
        b.iter_batched(
            || fill(&producer),
            |()| {
                assert_eq!(
                    ours.consume(|e| {
                        black_box(e);
                    }),
                    per_fill as usize
                )
            },
            BatchSize::PerIteration,
        )
    });

    let (aya_events, aya_producer) = setup();
    let mut aya_array =
        aya::maps::PerfEventArray::try_from(aya::maps::Map::PerfEventArray(aya_map(&aya_events))).expect("aya");
    let mut aya_buffer = aya_array.open(0, Some(PAGES)).expect("aya buffer");
    group.bench_function("aya", |b| {
        b.iter_batched(
            || fill(&aya_producer),
            |()| {
                let mut n = 0usize;
                aya_buffer.for_each(|e| {
                    black_box(&e);
                    n += 1;
                });
                assert_eq!(n, per_fill as usize);
            },
            BatchSize::PerIteration,
        )
    });

    let (libbpf_events, libbpf_producer) = setup();
    let libbpf_map = libbpf_map(&libbpf_events);
    let counted = std::cell::Cell::new(0usize);
    let perf = libbpf_rs::PerfBufferBuilder::new(&libbpf_map)
        .pages(PAGES)
        .sample_cb(|_cpu, data: &[u8]| counted.set(counted.get() + black_box(data.len()).min(1)))
        .build()
        .expect("libbpf-rs perf buffer");
    group.bench_function("libbpf_rs", |b| {
        b.iter_batched(
            || {
                fill(&libbpf_producer);
                counted.set(0);
            },
            |()| {
                perf.consume().expect("consume");
                assert_eq!(counted.get(), per_fill as usize);
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn all(c: &mut Criterion) {
    if !can_use_bpf() {
        return;
    }
    hash_maps(c);
    other_maps(c);
    ring_buffers(c);
    perf_buffers(c);
}

criterion_group!(benches, all);
criterion_main!(benches);
