//! The tokio-driven ring consumer, fed by a real program.
#![cfg(feature = "tokio")]

use std::time::Duration;

use ebpf_core::insn::{helpers::helper_id, Assembler, JmpCond, Reg, Size};
use ebpf_core::{Map, MapSpec, MapType, Program, ProgramSpec, ProgramType, TestRun};
use ebpf_ringbuf::{AsyncRingBuf, RingBuf};
use ebpf_test_support::{require_kernel, unique_name};

fn producer(events: &Map) -> Program {
    let mut asm = Assembler::new();
    asm.ld_map(Reg::R1, "events")
        .mov64_imm(Reg::R2, 8)
        .mov64_imm(Reg::R3, 0)
        .call(helper_id("bpf_ringbuf_reserve").unwrap())
        .jmp_imm(JmpCond::Eq, Reg::R0, 0, "out")
        .store_imm(Size::DW, Reg::R0, 0, 7)
        .mov64_reg(Reg::R1, Reg::R0)
        .mov64_imm(Reg::R2, 0)
        .call(helper_id("bpf_ringbuf_submit").unwrap())
        .label("out")
        .mov64_imm(Reg::R0, 2)
        .exit();
    let mut spec = ProgramSpec::from_assembled(&unique_name("asprod"), ProgramType::Xdp, asm.finish().unwrap());
    spec.bind_map("events", events).unwrap();
    Program::load(&spec).unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn records_wake_the_async_consumer() {
    let Some(_root) = require_kernel() else { return };
    let events = Map::create(&MapSpec::new(&unique_name("aev"), MapType::Ringbuf, 0, 0, 4096 * 4)).unwrap();
    let program = producer(&events);
    let mut ring = AsyncRingBuf::new(RingBuf::new(&events).unwrap()).unwrap();
    // Nothing yet: the wait does not finish.
    let idle = tokio::time::timeout(Duration::from_millis(50), ring.next_batch(|_| {})).await;
    assert!(idle.is_err(), "no records, no wake-up");
    program.test_run(&TestRun { data: &[0u8; 64], repeat: 5, ..TestRun::default() }).unwrap();
    let mut values = Vec::new();
    let handled = tokio::time::timeout(Duration::from_secs(5), ring.next_batch(|r| values.push(r[0])))
        .await
        .expect("woken by the records")
        .unwrap();
    assert_eq!((handled, values), (5, vec![7; 5]));
}
