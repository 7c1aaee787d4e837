//! Instruction decoding and disassembly throughput over a 4096-instruction program.
// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ebpf_core::insn::{decode_bytes, encode_bytes, AluOp, Assembler, Disassembler, JmpCond, Reg, Size};

fn program() -> Vec<u8> {
    let mut asm = Assembler::new();
    for i in 0..512 {
        let label = format!("skip{i}");
        asm.load(Size::W, Reg::R2, Reg::R1, 0)
            .alu64_imm(AluOp::Add, Reg::R2, i)
            .jmp_imm(JmpCond::Gt, Reg::R2, 100, &label)
            .store_reg(Size::DW, Reg::R10, -8, Reg::R2)
            .ld_imm64(Reg::R3, 0xdead_beef_0000_0000 | i as u64)
            .mov64_reg(Reg::R0, Reg::R3)
            .label(&label)
            .alu32_imm(AluOp::Xor, Reg::R0, 1);
    }
    asm.exit();
    encode_bytes(&asm.finish().expect("assemble").instructions)
}

fn codec(c: &mut Criterion) {
    let bytes = program();
    let insns = decode_bytes(&bytes).expect("decode");
    let mut group = c.benchmark_group("insn");
    group.throughput(Throughput::Elements(insns.len() as u64));
    group.bench_function("decode", |b| b.iter(|| decode_bytes(black_box(&bytes)).expect("decode")));
    group.bench_function("encode", |b| b.iter(|| encode_bytes(black_box(&insns))));
    group.bench_function("disassemble", |b| b.iter(|| Disassembler::new().listing(black_box(&insns))));
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
