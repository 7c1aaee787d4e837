//! Per-CPU perf rings filled by a real program (XDP under BPF_PROG_TEST_RUN).

use ebpf_core::insn::{helpers::helper_id, AluOp, Assembler, AtomicOp, JmpCond, Reg, Size};
use ebpf_core::{Map, MapSpec, MapType, Program, ProgramSpec, ProgramType, TestRun};
use ebpf_ringbuf::{PerfBuffer, PerfEvent};
use ebpf_test_support::{require_kernel, unique_name};

const BPF_F_CURRENT_CPU: i32 = -1; // 0xffffffff as the flags' low word

/// Writes the next sequence number to the perf array "events" on the current CPU.
fn producer(seq: &Map, events: &Map) -> Program {
    let mut asm = Assembler::new();
    asm.mov64_reg(Reg::R6, Reg::R1)
        .store_imm(Size::W, Reg::R10, -4, 0)
        .mov64_reg(Reg::R2, Reg::R10)
        .alu64_imm(AluOp::Add, Reg::R2, -4)
        .ld_map(Reg::R1, "seq")
        .call(helper_id("bpf_map_lookup_elem").unwrap())
        .jmp_imm(JmpCond::Eq, Reg::R0, 0, "out")
        .mov64_imm(Reg::R1, 1)
        .atomic(AtomicOp::FetchAdd, Size::DW, Reg::R0, 0, Reg::R1)
        .store_reg(Size::DW, Reg::R10, -16, Reg::R1)
        .mov64_reg(Reg::R1, Reg::R6)
        .ld_map(Reg::R2, "events")
        .ld_imm64(Reg::R3, BPF_F_CURRENT_CPU as u32 as u64)
        .mov64_reg(Reg::R4, Reg::R10)
        .alu64_imm(AluOp::Add, Reg::R4, -16)
        .mov64_imm(Reg::R5, 8)
        .call(helper_id("bpf_perf_event_output").unwrap())
        .label("out")
        .mov64_imm(Reg::R0, 2)
        .exit();
    let mut spec = ProgramSpec::from_assembled(&unique_name("pfprod"), ProgramType::Xdp, asm.finish().unwrap());
    spec.bind_map("seq", seq).unwrap();
    spec.bind_map("events", events).unwrap();
    Program::load(&spec).unwrap()
}

/// Keeps this test thread on one CPU: `BPF_F_CURRENT_CPU` writes to the ring of whichever CPU
/// the run is on, and a thread that migrates between runs would split records across rings.
fn stay_on_one_cpu() {
    let mut set = nix::sched::CpuSet::new();
    set.set(0).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
}

fn setup() -> (Program, PerfBuffer) {
    stay_on_one_cpu();
    let cpus = ebpf_core::possible_cpus().unwrap() as u32;
    let seq = Map::create(&MapSpec::new(&unique_name("seq"), MapType::Array, 4, 8, 1)).unwrap();
    let events = Map::create(&MapSpec::new(&unique_name("pev"), MapType::PerfEventArray, 4, 4, cpus)).unwrap();
    let program = producer(&seq, &events);
    let buffer = PerfBuffer::new(&events, 1).unwrap();
    (program, buffer)
}

fn run(program: &Program, times: u32) {
    program.test_run(&TestRun { data: &[0u8; 64], repeat: times, ..TestRun::default() }).unwrap();
}

/// (sequence numbers seen, records lost)
fn drain(buffer: &mut PerfBuffer) -> (Vec<u64>, u64) {
    let (mut seen, mut lost) = (Vec::new(), 0);
    buffer.consume(|event| match event {
        PerfEvent::Sample { data, .. } => seen.push(u64::from_ne_bytes(data[..8].try_into().unwrap())),
        PerfEvent::Lost { count, .. } => lost += count,
    });
    (seen, lost)
}

#[test]
fn samples_arrive_in_order_across_wrap_arounds() {
    let Some(_root) = require_kernel() else { return };
    let (program, mut buffer) = setup();
    assert!(!buffer.cpus().is_empty());
    // A one-page ring holds about 170 of these 24-byte records; ten rounds of 100 wrap it.
    for round in 0..10u64 {
        run(&program, 100);
        let (seen, lost) = drain(&mut buffer);
        assert_eq!(lost, 0);
        assert_eq!(seen, (round * 100..(round + 1) * 100).collect::<Vec<_>>(), "round {round}");
    }
}

#[test]
fn overflow_is_reported_as_lost_samples_and_nothing_vanishes() {
    let Some(_root) = require_kernel() else { return };
    let (program, mut buffer) = setup();
    run(&program, 1000);
    let (seen, lost) = drain(&mut buffer);
    assert_eq!(seen, (0..seen.len() as u64).collect::<Vec<_>>());
    // The kernel writes its loss report once the ring has room again: with the next record.
    run(&program, 1);
    let (after, lost_after) = drain(&mut buffer);
    assert_eq!(after, [1000]);
    let lost = lost + lost_after;
    assert!(lost > 0, "a one-page ring cannot hold 1000 records");
    assert_eq!(seen.len() as u64 + lost + 1, 1001, "every record is either delivered or counted as lost");
}
