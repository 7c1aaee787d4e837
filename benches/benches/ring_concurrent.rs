//! A producer and a consumer at the same time: an XDP program writes ring-buffer events
//! under `BPF_PROG_TEST_RUN` (large repeat count) on one thread while a consumer on another
//! waits on epoll and drains. Measured: the consumer thread's CPU time per event (what a
//! daemon pays to read its datapath's events), for our reader, aya 0.14.0 and libbpf-rs 0.27.
//! Every session prints produced, consumed and dropped (counted by the program when the ring
//! is full): consumed + dropped must equal produced. Also the latency from submit to the
//! reader's callback, sparse and streaming. `cargo bench -p benches --bench ring_concurrent`.
// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use benches::can_use_bpf;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ebpf_core::insn::{helpers::helper_id, AluOp, Assembler, AtomicOp, JmpCond, Reg, Size};
use ebpf_core::{Map, MapSpec, MapType, Program, ProgramSpec, ProgramType, TestRun};
use nix::time::{clock_gettime, ClockId};

const RING: u32 = 4 << 20;
const EVENTS: u32 = 1_000_000;

/// XDP: reserve a `size`-byte event in "events" and submit it; when the ring is full, count
/// the drop in slot 0 of the array "drops".
fn producer(events: &Map, drops: &Map, size: i32) -> Program {
    let mut asm = Assembler::new();
    asm.ld_map(Reg::R1, "events")
        .mov64_imm(Reg::R2, size)
        .mov64_imm(Reg::R3, 0)
        .call(helper_id("bpf_ringbuf_reserve").expect("helper"))
        .jmp_imm(JmpCond::Eq, Reg::R0, 0, "full")
        .store_imm(Size::DW, Reg::R0, 0, 42)
        .mov64_reg(Reg::R1, Reg::R0)
        .mov64_imm(Reg::R2, 0)
        .call(helper_id("bpf_ringbuf_submit").expect("helper"))
        .ja("out")
        .label("full")
        .store_imm(Size::W, Reg::R10, -4, 0)
        .mov64_reg(Reg::R2, Reg::R10)
        .alu64_imm(AluOp::Add, Reg::R2, -4)
        .ld_map(Reg::R1, "drops")
        .call(helper_id("bpf_map_lookup_elem").expect("helper"))
        .jmp_imm(JmpCond::Eq, Reg::R0, 0, "out")
        .mov64_imm(Reg::R1, 1)
        .atomic(AtomicOp::Add, Size::DW, Reg::R0, 0, Reg::R1)
        .label("out")
        .mov64_imm(Reg::R0, 2)
        .exit();
    let mut spec = ProgramSpec::from_assembled("ringconc", ProgramType::Xdp, asm.finish().expect("assemble"));
    spec.bind_map("events", events).expect("bind");
    spec.bind_map("drops", drops).expect("bind");
    Program::load(&spec).expect("load producer")
}

fn thread_cpu() -> Duration {
    Duration::from(clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).expect("thread CPU clock"))
}

/// Waits (up to 10 ms) for events and drains them; returns how many it handled.
type Reader = Box<dyn FnMut() -> usize>;

/// Builds a reader over a ring map.
type MakeReader = fn(&Map) -> Reader;

/// One session: a fresh ring and a reader on it, then the producer on its own thread while
/// this one reads until the producer is done and a last drain finds nothing. Returns the
/// reader's CPU time scaled to `EVENTS` consumed events (CPU per consumed event × `EVENTS`),
/// so a reader that falls behind and lets the producer drop is not flattered by the events
/// it never read. The reader exists before the first event, so every implementation starts
/// in the same state (caught up).
fn session(size: i32, name: &str, make_reader: MakeReader) -> Duration {
    let events = Map::create(&MapSpec::new("conc_ring", MapType::Ringbuf, 0, 0, RING)).expect("ring");
    let drops = Map::create(&MapSpec::new("conc_drops", MapType::Array, 4, 8, 1)).expect("drops");
    let program = Arc::new(producer(&events, &drops, size));
    let mut read = make_reader(&events);
    let done = Arc::new(AtomicBool::new(false));
    let started = thread_cpu();
    let handle = {
        let (program, done) = (program.clone(), done.clone());
        std::thread::spawn(move || {
            program.test_run(&TestRun { data: &[0u8; 64], repeat: EVENTS, ..TestRun::default() }).expect("produce");
            done.store(true, Ordering::Release);
        })
    };
    let mut consumed = 0;
    loop {
        let finished = done.load(Ordering::Acquire);
        let n = read();
        consumed += n;
        if finished && n == 0 {
            break;
        }
    }
    let cpu = thread_cpu() - started;
    handle.join().expect("producer");
    let dropped =
        u64::from_ne_bytes(drops.get(&0u32.to_ne_bytes()).expect("drops").expect("slot").try_into().expect("8"));
    eprintln!("{name} {size}B: produced {EVENTS}, consumed {consumed}, dropped {dropped}");
    assert_eq!(consumed + dropped as usize, EVENTS as usize, "{name}: an event was silently lost");
    cpu.mul_f64(f64::from(EVENTS) / consumed.max(1) as f64)
}

fn ours(events: &Map) -> Reader {
    let mut ring = ebpf_ringbuf::RingBuf::new(events).expect("ours");
    Box::new(move || {
        ring.poll(Duration::from_millis(10), |r| {
            black_box(r);
        })
        .expect("poll")
    })
}

fn aya(events: &Map) -> Reader {
    let data = aya::maps::MapData::from_id(events.info().expect("info").id).expect("aya map");
    let mut ring = aya::maps::RingBuf::try_from(aya::maps::Map::RingBuf(data)).expect("aya");
    let waiter = events.try_clone().expect("dup");
    Box::new(move || {
        let mut n = 0;
        while let Some(item) = ring.next() {
            black_box(&*item);
            n += 1;
        }
        if n == 0 {
            // aya has no blocking read: wait for the ring to become readable, as its docs
            // suggest (any fd of the map will do).
            let mut fds = [nix::poll::PollFd::new(waiter.as_fd(), nix::poll::PollFlags::POLLIN)];
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10u8));
        }
        n
    })
}

fn libbpf(events: &Map) -> Reader {
    let handle = libbpf_rs::MapHandle::from_map_id(events.info().expect("info").id).expect("libbpf map");
    let counted = std::rc::Rc::new(std::cell::Cell::new(0usize));
    let mut builder = libbpf_rs::RingBufferBuilder::new();
    let c = counted.clone();
    builder
        .add(&handle, move |data: &[u8]| {
            black_box(data);
            c.set(c.get() + 1);
            0
        })
        .expect("libbpf ring");
    let ring = builder.build().expect("libbpf ring");
    Box::new(move || {
        let before = counted.get();
        ring.poll(Duration::from_millis(10)).expect("poll");
        counted.get() - before
    })
}

fn concurrent(c: &mut Criterion) {
    if !can_use_bpf() {
        return;
    }
    let readers: [(&str, MakeReader); 3] = [("ebpf_ringbuf", ours), ("aya", aya), ("libbpf_rs", libbpf)];
    for size in [16i32, 256] {
        let mut group = c.benchmark_group(format!("ringbuf_concurrent_consumer_cpu_{size}B"));
        group.throughput(Throughput::Elements(u64::from(EVENTS)));
        group.sample_size(10);
        for (name, make_reader) in readers {
            group.bench_function(name, |b| {
                b.iter_custom(|iterations| (0..iterations).map(|_| session(size, name, make_reader)).sum())
            });
        }
        group.finish();
    }
}

/// XDP: one 8-byte event holding `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) at submit.
fn timestamper(events: &Map) -> Program {
    let mut asm = Assembler::new();
    asm.ld_map(Reg::R1, "events")
        .mov64_imm(Reg::R2, 8)
        .mov64_imm(Reg::R3, 0)
        .call(helper_id("bpf_ringbuf_reserve").expect("helper"))
        .jmp_imm(JmpCond::Eq, Reg::R0, 0, "out")
        .mov64_reg(Reg::R6, Reg::R0)
        .call(helper_id("bpf_ktime_get_ns").expect("helper"))
        .store_reg(Size::DW, Reg::R6, 0, Reg::R0)
        .mov64_reg(Reg::R1, Reg::R6)
        .mov64_imm(Reg::R2, 0)
        .call(helper_id("bpf_ringbuf_submit").expect("helper"))
        .label("out")
        .mov64_imm(Reg::R0, 2)
        .exit();
    let mut spec = ProgramSpec::from_assembled("ringlat", ProgramType::Xdp, asm.finish().expect("assemble"));
    spec.bind_map("events", events).expect("bind");
    Program::load(&spec).expect("load timestamper")
}

fn monotonic_ns() -> u64 {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("monotonic clock");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

/// A reader that appends each event's latency (now minus the stamp it carries) to the vector
/// and returns how many events it read.
type TimedReader = Box<dyn FnMut(&mut Vec<Duration>) -> usize>;

/// Builds a timed reader over a ring map.
type MakeTimedReader = fn(&Map) -> TimedReader;

fn latency_of(event: &[u8]) -> Duration {
    let stamp = u64::from_ne_bytes(event[..8].try_into().expect("8 bytes"));
    Duration::from_nanos(monotonic_ns().saturating_sub(stamp))
}

fn ours_timed(events: &Map) -> TimedReader {
    let mut ring = ebpf_ringbuf::RingBuf::new(events).expect("ours");
    Box::new(move |out| ring.poll(Duration::from_millis(10), |r| out.push(latency_of(r))).expect("poll"))
}

fn libbpf_timed(events: &Map) -> TimedReader {
    let handle = libbpf_rs::MapHandle::from_map_id(events.info().expect("info").id).expect("libbpf map");
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut builder = libbpf_rs::RingBufferBuilder::new();
    let sink = seen.clone();
    builder
        .add(&handle, move |data: &[u8]| {
            sink.borrow_mut().push(latency_of(data));
            0
        })
        .expect("libbpf ring");
    let ring = builder.build().expect("libbpf ring");
    Box::new(move |out| {
        ring.poll(Duration::from_millis(10)).expect("poll");
        let mut seen = seen.borrow_mut();
        let n = seen.len();
        out.append(&mut seen);
        n
    })
}

/// One latency session: `count` events, produced `gap` apart (0: back to back, in bursts of
/// 64 — the streaming case where our reader naps instead of waking per event), each one's
/// latency from submit to the reader's callback. Returns the latencies, sorted.
fn latency_session(count: u32, gap: Duration, make_reader: MakeTimedReader) -> Vec<Duration> {
    let events = Map::create(&MapSpec::new("lat_ring", MapType::Ringbuf, 0, 0, RING)).expect("ring");
    let program = Arc::new(timestamper(&events));
    let mut read = make_reader(&events);
    let done = Arc::new(AtomicBool::new(false));
    let handle = {
        let (program, done) = (program.clone(), done.clone());
        std::thread::spawn(move || {
            let (runs, repeat) = if gap.is_zero() { (count / 64, 64) } else { (count, 1) };
            for _ in 0..runs {
                program.test_run(&TestRun { data: &[0u8; 64], repeat, ..TestRun::default() }).expect("produce");
                if !gap.is_zero() {
                    std::thread::sleep(gap);
                }
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut latencies = Vec::with_capacity(count as usize);
    loop {
        let finished = done.load(Ordering::Acquire);
        let before = latencies.len();
        read(&mut latencies);
        if finished && latencies.len() == before {
            break;
        }
    }
    handle.join().expect("producer");
    latencies.sort_unstable();
    latencies
}

/// Submit-to-callback latency: what `RingBuf::poll`'s wake-up coalescing (a nap of up to 50 µs
/// while the producer streams) adds, beside libbpf-rs, which asks for a wake-up per event.
fn latency(c: &mut Criterion) {
    if !can_use_bpf() {
        return;
    }
    let readers: [(&str, MakeTimedReader); 2] = [("ebpf_ringbuf", ours_timed), ("libbpf_rs", libbpf_timed)];
    for (case, gap) in [("sparse_200us", Duration::from_micros(200)), ("streaming", Duration::ZERO)] {
        let mut group = c.benchmark_group(format!("ringbuf_latency_{case}"));
        group.sample_size(10);
        for (name, make_reader) in readers {
            let probe = latency_session(2048, gap, make_reader);
            let at = |q: f64| probe[((probe.len() - 1) as f64 * q) as usize];
            eprintln!(
                "latency {case} {name}: median {:?}, p90 {:?}, p99 {:?}, max {:?} ({} events)",
                at(0.5),
                at(0.9),
                at(0.99),
                at(1.0),
                probe.len()
            );
            // Criterion's figure: the mean latency per event.
            group.bench_function(name, |b| {
                b.iter_custom(|iterations| {
                    let count = (iterations as u32).clamp(64, 4096).next_multiple_of(64);
                    let all = latency_session(count, gap, make_reader);
                    let total: Duration = all.iter().sum();
                    total.mul_f64(iterations as f64 / all.len().max(1) as f64)
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, concurrent, latency);
criterion_main!(benches);
