//! Records produced by a real program (XDP under BPF_PROG_TEST_RUN) and consumed in place.

use std::time::{Duration, Instant};

use ebpf_core::insn::{helpers::helper_id, AluOp, Assembler, AtomicOp, JmpCond, Reg, Size};
use ebpf_core::{Map, MapSpec, MapType, Program, ProgramSpec, ProgramType, TestRun};
use ebpf_ringbuf::{RingBuf, RingBufError};
use ebpf_test_support::{require_kernel, unique_name};

/// An XDP program that writes the next sequence number (from the array map "seq") into the
/// ring buffer "events", once per run.
fn producer(seq: &Map, events: &Map) -> Program {
    let mut asm = Assembler::new();
    asm.store_imm(Size::W, Reg::R10, -4, 0)
        .mov64_reg(Reg::R2, Reg::R10)
        .alu64_imm(AluOp::Add, Reg::R2, -4)
        .ld_map(Reg::R1, "seq")
        .call(helper_id("bpf_map_lookup_elem").unwrap())
        .jmp_imm(JmpCond::Eq, Reg::R0, 0, "out")
        .mov64_imm(Reg::R1, 1)
        .atomic(AtomicOp::FetchAdd, Size::DW, Reg::R0, 0, Reg::R1)
        .store_reg(Size::DW, Reg::R10, -16, Reg::R1)
        .ld_map(Reg::R1, "events")
        .mov64_reg(Reg::R2, Reg::R10)
        .alu64_imm(AluOp::Add, Reg::R2, -16)
        .mov64_imm(Reg::R3, 8)
        .mov64_imm(Reg::R4, 0)
        .call(helper_id("bpf_ringbuf_output").unwrap())
        .label("out")
        .mov64_imm(Reg::R0, 2)
        .exit();
    let mut spec = ProgramSpec::from_assembled(&unique_name("rbprod"), ProgramType::Xdp, asm.finish().unwrap());
    spec.bind_map("seq", seq).unwrap();
    spec.bind_map("events", events).unwrap();
    Program::load(&spec).unwrap()
}

fn maps(ring_bytes: u32) -> (Map, Map) {
    let seq = Map::create(&MapSpec::new(&unique_name("seq"), MapType::Array, 4, 8, 1)).unwrap();
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
    let mut ring = RingBuf::new(events).unwrap();
    run(&program, 100);
    assert_eq!(ring.pending_bytes(), 100 * 16);
    assert_eq!(drain(&mut ring), (0..100).collect::<Vec<_>>());
    assert_eq!(ring.pending_bytes(), 0);
}

#[test]
fn a_full_ring_drops_at_the_producer_and_wraps_cleanly_after() {
    let Some(_root) = require_kernel() else { return };
    let page = ebpf_core::sys::page_size() as u32;
    let (seq, events) = maps(page);
    let program = producer(&seq, &events);
    let mut ring = RingBuf::new(events).unwrap();
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
    let mut ring = RingBuf::new(events).unwrap();
    let started = Instant::now();
    assert_eq!(ring.poll(Duration::from_millis(50), |_| panic!("no records")).unwrap(), 0);
    assert!(started.elapsed() >= Duration::from_millis(40));
}

#[test]
fn poll_returns_at_once_when_records_are_pending() {
    let Some(_root) = require_kernel() else { return };
    let (seq, events) = maps(4096 * 4);
    let program = producer(&seq, &events);
    let mut ring = RingBuf::new(events).unwrap();
    run(&program, 3);
    let started = Instant::now();
    assert_eq!(ring.poll(Duration::from_secs(5), |_| {}).unwrap(), 3);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn other_map_types_are_refused() {
    let Some(_root) = require_kernel() else { return };
    let map = Map::create(&MapSpec::new(&unique_name("nrb"), MapType::Hash, 4, 4, 4)).unwrap();
    assert!(matches!(RingBuf::new(map), Err(RingBufError::NotARingBuf { .. })));
}
