//! Records produced by a real program (XDP under BPF_PROG_TEST_RUN) and consumed in place.

use std::time::{Duration, Instant};

use ebpf_core::insn::{helpers::helper_id, AluOp, Assembler, AtomicOp, JmpCond, Reg, Size};
use ebpf_core::{Map, MapSpec, MapType, Program, ProgramSpec, ProgramType, TestRun};
use ebpf_ringbuf::{RingBuf, RingBufError};
use ebpf_test_support::{require_kernel, unique_name};

/// An XDP program that writes the next sequence number (slot 0 of the 16-byte value of the
/// array map "seq") into the ring buffer "events", once per run, and counts the records the
/// ring refused in the value's second word.
fn producer(seq: &Map, events: &Map) -> Program {
    let mut asm = Assembler::new();
    asm.store_imm(Size::W, Reg::R10, -4, 0)
        .mov64_reg(Reg::R2, Reg::R10)
        .alu64_imm(AluOp::Add, Reg::R2, -4)
        .ld_map(Reg::R1, "seq")
        .call(helper_id("bpf_map_lookup_elem").unwrap())
        .jmp_imm(JmpCond::Eq, Reg::R0, 0, "out")
        .mov64_reg(Reg::R6, Reg::R0)
        .mov64_imm(Reg::R1, 1)
        .atomic(AtomicOp::FetchAdd, Size::DW, Reg::R6, 0, Reg::R1)
        .store_reg(Size::DW, Reg::R10, -16, Reg::R1)
        .ld_map(Reg::R1, "events")
        .mov64_reg(Reg::R2, Reg::R10)
        .alu64_imm(AluOp::Add, Reg::R2, -16)
        .mov64_imm(Reg::R3, 8)
        .mov64_imm(Reg::R4, 0)
        .call(helper_id("bpf_ringbuf_output").unwrap())
        .jmp_imm(JmpCond::Eq, Reg::R0, 0, "out")
        .mov64_imm(Reg::R1, 1)
        .atomic(AtomicOp::Add, Size::DW, Reg::R6, 8, Reg::R1)
        .label("out")
        .mov64_imm(Reg::R0, 2)
        .exit();
    let mut spec = ProgramSpec::from_assembled(&unique_name("rbprod"), ProgramType::Xdp, asm.finish().unwrap());
    spec.bind_map("seq", seq).unwrap();
    spec.bind_map("events", events).unwrap();
    Program::load(&spec).unwrap()
}

/// Records the producer's ring refused.
fn drops(seq: &Map) -> u64 {
    let value = seq.get(&0u32.to_ne_bytes()).unwrap().unwrap();
    u64::from_ne_bytes(value[8..16].try_into().unwrap())
}

fn maps(ring_bytes: u32) -> (Map, Map) {
    let seq = Map::create(&MapSpec::new(&unique_name("seq"), MapType::Array, 4, 16, 1)).unwrap();
    let events = Map::create(&MapSpec::new(&unique_name("ev"), MapType::Ringbuf, 0, 0, ring_bytes)).unwrap();
    (seq, events)
}

fn run(program: &Program, times: u32) {
    program.test_run(&TestRun { data: &[0u8; 64], repeat: times, ..TestRun::default() }).unwrap();
}

fn drain(ring: &mut RingBuf) -> Vec<u64> {
    let mut seen = Vec::new();
    ring.consume(|record| seen.push(u64::from_ne_bytes(record.try_into().unwrap()))).unwrap();
    seen
}

#[test]
fn records_arrive_in_order_and_whole() {
    let Some(_root) = require_kernel() else { return };
    let (seq, events) = maps(64 * 1024);
    let program = producer(&seq, &events);
    let mut ring = RingBuf::new(&events).unwrap();
    run(&program, 100);
    assert_eq!(ring.pending_bytes(), 100 * 16);
    assert_eq!(drain(&mut ring), (0..100).collect::<Vec<_>>());
    assert_eq!(ring.pending_bytes(), 0);
}

#[test]
fn a_full_ring_drops_at_the_producer_and_wraps_cleanly_after() {
    let Some(_root) = require_kernel() else { return };
    let page = ebpf_core::mem::page_size() as u32;
    let (seq, events) = maps(page);
    let program = producer(&seq, &events);
    let mut ring = RingBuf::new(&events).unwrap();
    // 16 bytes a record; the kernel keeps the used space below the ring size, so it holds
    // (size - 1) / 16 records and refuses the rest in bpf_ringbuf_output.
    run(&program, 1000);
    let first = drain(&mut ring);
    assert_eq!(first.len() as u32, (page - 1) / 16, "the ring fills exactly");
    assert_eq!(first, (0..first.len() as u64).collect::<Vec<_>>());
    // Every run took a sequence number; the next records continue from 1000, across the wrap.
    for round in 0..5u64 {
        run(&program, 100);
        let expected: Vec<u64> = (1000 + round * 100..1000 + (round + 1) * 100).collect();
        assert_eq!(drain(&mut ring), expected, "round {round}");
    }
}

#[test]
fn poll_waits_for_the_timeout_when_nothing_comes() {
    let Some(_root) = require_kernel() else { return };
    let (_seq, events) = maps(4096 * 4);
    let mut ring = RingBuf::new(&events).unwrap();
    let started = Instant::now();
    assert_eq!(ring.poll(Duration::from_millis(50), |_| panic!("no records")).unwrap(), 0);
    assert!(started.elapsed() >= Duration::from_millis(40));
}

#[test]
fn poll_returns_at_once_when_records_are_pending() {
    let Some(_root) = require_kernel() else { return };
    let (seq, events) = maps(4096 * 4);
    let program = producer(&seq, &events);
    let mut ring = RingBuf::new(&events).unwrap();
    run(&program, 3);
    let started = Instant::now();
    assert_eq!(ring.poll(Duration::from_secs(5), |_| {}).unwrap(), 3);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn other_map_types_are_refused() {
    let Some(_root) = require_kernel() else { return };
    let map = Map::create(&MapSpec::new(&unique_name("nrb"), MapType::Hash, 4, 4, 4)).unwrap();
    assert!(matches!(RingBuf::new(&map), Err(RingBufError::NotARingBuf { .. })));
}

#[test]
fn one_poller_serves_many_rings() {
    let Some(_root) = require_kernel() else { return };
    let mut poller = ebpf_ringbuf::RingBufPoller::new().unwrap();
    let mut programs = Vec::new();
    for _ in 0..3 {
        let (seq, events) = maps(4096 * 4);
        programs.push(producer(&seq, &events));
        poller.add(RingBuf::new(&events).unwrap()).unwrap();
    }
    assert_eq!(poller.poll(Duration::from_millis(20), |_, _| panic!("nothing yet")).unwrap(), 0);
    run(&programs[1], 5);
    let mut from = Vec::new();
    assert_eq!(poller.poll(Duration::from_secs(5), |ring, _| from.push(ring)).unwrap(), 5);
    assert_eq!(from, [1; 5]);
    run(&programs[0], 2);
    run(&programs[2], 3);
    let mut counts = [0; 3];
    poller.consume(|ring, _| counts[ring] += 1).unwrap();
    assert_eq!(counts, [2, 0, 3]);
}

#[test]
fn ten_million_events_arrive_in_order_none_lost_none_repeated() {
    let Some(_root) = require_kernel() else { return };
    let (seq, events) = maps(16 << 20);
    let program = producer(&seq, &events);
    let mut ring = RingBuf::new(&events).unwrap();
    let mut next = 0u64;
    // 20 rounds of 500 000 16-byte records: 8 MB per round in a 16 MiB ring.
    for _ in 0..20 {
        run(&program, 500_000);
        ring.consume(|record| {
            let value = u64::from_ne_bytes(record.try_into().unwrap());
            assert_eq!(value, next, "out of order, lost or repeated");
            next += 1;
        })
        .unwrap();
    }
    assert_eq!(next, 10_000_000);
    assert_eq!(drops(&seq), 0);
}

#[test]
fn a_slow_consumer_sees_exactly_what_the_producer_did_not_drop() {
    let Some(_root) = require_kernel() else { return };
    let (seq, events) = maps(64 * 1024);
    let program = producer(&seq, &events);
    let mut ring = RingBuf::new(&events).unwrap();
    let mut consumed = 0u64;
    // The consumer only catches up between bursts far larger than the ring: each overflows.
    for _ in 0..10 {
        run(&program, 20_000);
        consumed += ring.consume(|_| {}).unwrap() as u64;
    }
    consumed += ring.consume(|_| {}).unwrap() as u64;
    let dropped = drops(&seq);
    assert!(dropped > 0, "the bursts must overflow the ring");
    assert_eq!(consumed + dropped, 200_000, "every record is delivered or counted as dropped, exactly");
}

#[test]
fn a_consumer_keeping_up_with_a_running_producer_misses_no_wakeup() {
    let Some(_root) = require_kernel() else { return };
    let (seq, events) = maps(1 << 20);
    let program = std::sync::Arc::new(producer(&seq, &events));
    let mut ring = RingBuf::new(&events).unwrap();
    let produced = 300_000u32;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producing = {
        let (program, done) = (program.clone(), done.clone());
        std::thread::spawn(move || {
            for _ in 0..30 {
                run(&program, produced / 30);
                std::thread::sleep(Duration::from_millis(2));
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        })
    };
    // The wait is long: a missed wakeup shows as a poll that sleeps it out and then finds
    // records that were committed while it slept.
    let mut consumed = 0usize;
    let mut next = 0u64;
    let mut longest = Duration::ZERO;
    loop {
        let finished = done.load(std::sync::atomic::Ordering::Acquire);
        let started = Instant::now();
        let n = ring
            .poll(Duration::from_millis(500), |record| {
                assert_eq!(u64::from_ne_bytes(record.try_into().unwrap()), next, "in order");
                next += 1;
            })
            .unwrap();
        if n > 0 {
            longest = longest.max(started.elapsed());
        }
        consumed += n;
        if finished && n == 0 && ring.pending_bytes() == 0 {
            break;
        }
    }
    producing.join().unwrap();
    assert_eq!(consumed as u64 + drops(&seq), u64::from(produced));
    assert!(longest < Duration::from_millis(400), "a poll slept {longest:?} before finding committed records");
}
