//! Records pushed from user space, drained by a program with `bpf_user_ringbuf_drain`.

use ebpf_btf::{BtfBuilder, IntEncoding, Linkage, Param};
use ebpf_core::insn::{helpers::helper_id, AluOp, Assembler, AtomicOp, JmpCond, Reg, Size};
use ebpf_core::program::ProgramBtf;
use ebpf_core::{Error, Map, MapSpec, MapType, Program, ProgramSpec, ProgramType, TestRun};
use ebpf_ringbuf::UserRingBuf;
use ebpf_test_support::{require_kernel, unique_name};

/// XDP: drain the user ring; a callback adds each record's first 8 bytes to `sums[0]` and
/// counts records in `sums[1]` (one 16-byte value).
fn consumer(ring: &Map, sums: &Map) -> Program {
    let mut asm = Assembler::new();
    asm.ld_map(Reg::R1, "ring")
        .ld_func(Reg::R2, "callback")
        .mov64_imm(Reg::R3, 0)
        .mov64_imm(Reg::R4, 0)
        .call(helper_id("bpf_user_ringbuf_drain").unwrap())
        .mov64_imm(Reg::R0, 2)
        .exit()
        .label("callback")
        .mov64_reg(Reg::R6, Reg::R1)
        .mov64_reg(Reg::R1, Reg::R10)
        .alu64_imm(AluOp::Add, Reg::R1, -8)
        .mov64_imm(Reg::R2, 8)
        .mov64_reg(Reg::R3, Reg::R6)
        .mov64_imm(Reg::R4, 0)
        .mov64_imm(Reg::R5, 0)
        .call(helper_id("bpf_dynptr_read").unwrap())
        .jmp_imm(JmpCond::Ne, Reg::R0, 0, "done")
        .store_imm(Size::W, Reg::R10, -12, 0)
        .mov64_reg(Reg::R2, Reg::R10)
        .alu64_imm(AluOp::Add, Reg::R2, -12)
        .ld_map(Reg::R1, "sums")
        .call(helper_id("bpf_map_lookup_elem").unwrap())
        .jmp_imm(JmpCond::Eq, Reg::R0, 0, "done")
        .load(Size::DW, Reg::R1, Reg::R10, -8)
        .atomic(AtomicOp::Add, Size::DW, Reg::R0, 0, Reg::R1)
        .mov64_imm(Reg::R1, 1)
        .atomic(AtomicOp::Add, Size::DW, Reg::R0, 8, Reg::R1)
        .label("done")
        .mov64_imm(Reg::R0, 0)
        .exit();
    let assembled = asm.finish().unwrap();
    // Callbacks need BTF function info: the main program and the callback, by first slot.
    let callback_slot: usize = assembled.instructions[..7].iter().map(|i| i.slots()).sum();
    let mut btf = BtfBuilder::new();
    let int = btf.add_int("int", 4, IntEncoding::Signed);
    let long = btf.add_int("long", 8, IntEncoding::Signed);
    let void_ptr = btf.add_ptr(None);
    let main_proto = btf.add_func_proto(Some(int), &[Param { name: "ctx", ty: Some(void_ptr) }]);
    let main = btf.add_func("main", main_proto, Linkage::Static);
    let callback_proto = btf.add_func_proto(
        Some(long),
        &[Param { name: "dynptr", ty: Some(void_ptr) }, Param { name: "ctx", ty: Some(void_ptr) }],
    );
    let callback = btf.add_func("callback", callback_proto, Linkage::Static);
    let func_info: Vec<u8> = [(0u32, main.get()), (callback_slot as u32, callback.get())]
        .iter()
        .flat_map(|(slot, id)| slot.to_ne_bytes().into_iter().chain(id.to_ne_bytes()))
        .collect();
    let mut spec = ProgramSpec::from_assembled(&unique_name("urcons"), ProgramType::Xdp, assembled);
    spec.btf = Some(ProgramBtf {
        blob: btf.encode().into(),
        func_info: func_info.into(),
        func_info_rec_size: 8,
        ..ProgramBtf::default()
    });
    spec.bind_map("ring", ring).unwrap();
    spec.bind_map("sums", sums).unwrap();
    match Program::load(&spec) {
        Ok(program) => program,
        Err(Error::Verifier(v)) => panic!("{v}"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn pushed_records_are_drained_by_the_program() {
    let Some(_root) = require_kernel() else { return };
    let ring = Map::create(&MapSpec::new(&unique_name("ur"), MapType::UserRingbuf, 0, 0, 4096)).unwrap();
    let sums = Map::create(&MapSpec::new(&unique_name("sum"), MapType::Array, 4, 16, 1)).unwrap();
    let program = consumer(&ring, &sums);
    let mut producer = UserRingBuf::new(&ring).unwrap();
    let mut pushed = 0u64;
    // Fill the ring: 16 bytes a record (8 of data), until it refuses.
    let mut value = 1u64;
    while producer.push(&value.to_ne_bytes()).unwrap() {
        pushed += 1;
        value += 1;
    }
    assert_eq!(pushed, 4096 / 16, "the ring takes exactly what fits");
    program.test_run(&TestRun::with_data(&[0u8; 64])).unwrap();
    let totals = sums.get(&0u32.to_ne_bytes()).unwrap().unwrap();
    let sum = u64::from_ne_bytes(totals[..8].try_into().unwrap());
    let count = u64::from_ne_bytes(totals[8..].try_into().unwrap());
    assert_eq!(count, pushed);
    assert_eq!(sum, pushed * (pushed + 1) / 2);
    // Drained: there is room again, across the wrap-around.
    assert!(producer.push(&7u64.to_ne_bytes()).unwrap());
    assert!(producer.push(&[0u8; 4096]).is_err(), "a record larger than the ring is refused outright");
}
