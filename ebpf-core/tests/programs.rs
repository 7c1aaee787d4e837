//! Programs assembled here, loaded into and run by the running kernel.

use std::process::Command;

use ebpf_core::insn::{helpers, AluOp, Assembler, AtomicOp, CallNames, Disassembler, JmpCond, Reg, Size};
use ebpf_core::kallsyms::KernelSymbols;
use ebpf_core::program::{program_ids, unpin};
use ebpf_core::Errno;
use ebpf_core::{Error, LoadOptions, LogLevel, Map, MapSpec, MapType, Program, ProgramSpec, ProgramType, TestRun};
use ebpf_test_support::{bpffs_dir, require_kernel, unique_name};

const PACKET: [u8; 64] = {
    let mut p = [0u8; 64];
    p[12] = 0x08; // EtherType IPv4
    p
};

/// Returns the packet length: `data_end - data` for XDP, `skb->len` for skb programs.
fn packet_length(program_type: ProgramType) -> ProgramSpec {
    let mut asm = Assembler::new();
    if program_type == ProgramType::Xdp {
        asm.load(Size::W, Reg::R2, Reg::R1, 0) // xdp_md.data
            .load(Size::W, Reg::R0, Reg::R1, 4) // xdp_md.data_end
            .alu64_reg(AluOp::Sub, Reg::R0, Reg::R2);
    } else {
        asm.load(Size::W, Reg::R0, Reg::R1, 0); // __sk_buff.len
    }
    asm.exit();
    ProgramSpec::from_assembled(&unique_name("len"), program_type, asm.finish().unwrap())
}

#[test]
fn test_runs_return_what_the_program_computes() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let run = |program_type| {
        let program = Program::load(&packet_length(program_type)).unwrap();
        program.test_run(&TestRun::with_data(&PACKET)).unwrap()
    };
    assert_eq!(run(ProgramType::Xdp).retval, 64);
    // tc programs see the frame from its Ethernet header on…
    let tc = run(ProgramType::SchedCls);
    assert_eq!(tc.retval, 64);
    assert_eq!(tc.data, PACKET);
    // …socket filters from the network header.
    assert_eq!(run(ProgramType::SocketFilter).retval, 64 - 14);
}

#[test]
fn an_edited_copy_of_a_loaded_spec_loads_its_own_instructions() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let returning = |value: i32| {
        let mut asm = Assembler::new();
        asm.mov64_imm(Reg::R0, value).exit();
        asm.finish().unwrap().instructions
    };
    let original = ProgramSpec::new(&unique_name("ret"), ProgramType::Xdp, returning(1));
    let retval =
        |spec: &ProgramSpec| Program::load(spec).unwrap().test_run(&TestRun::with_data(&PACKET)).unwrap().retval;
    assert_eq!(retval(&original), 1);
    // The copy shares the instructions and their encoding until it edits them.
    let mut copy = original.clone();
    assert!(std::ptr::eq(copy.instructions.encoded(), original.instructions.encoded()));
    copy.instructions[0] = returning(2)[0];
    assert_eq!(retval(&copy), 2);
    assert_eq!(retval(&original), 1);
    // Edited again in place (it holds its instructions alone now): encoded afresh all the same.
    copy.instructions[0] = returning(3)[0];
    assert_eq!(retval(&copy), 3);
}

/// Adds 1 to slot 0 of the array map "counter" on every run, and returns XDP_PASS.
fn counting_program() -> ProgramSpec {
    let mut asm = Assembler::new();
    asm.store_imm(Size::W, Reg::R10, -4, 0)
        .mov64_reg(Reg::R2, Reg::R10)
        .alu64_imm(AluOp::Add, Reg::R2, -4)
        .ld_map(Reg::R1, "counter")
        .call(helpers::helper_id("bpf_map_lookup_elem").unwrap())
        .jmp_imm(JmpCond::Eq, Reg::R0, 0, "out")
        .mov64_imm(Reg::R1, 1)
        .atomic(AtomicOp::Add, Size::DW, Reg::R0, 0, Reg::R1)
        .label("out")
        .mov64_imm(Reg::R0, 2)
        .exit();
    ProgramSpec::from_assembled(&unique_name("count"), ProgramType::Xdp, asm.finish().unwrap())
}

#[test]
fn programs_update_bound_maps_on_every_run() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let counter = Map::create(&MapSpec::new(&unique_name("ctr"), MapType::Array, 4, 8, 1)).unwrap();
    let mut spec = counting_program();
    assert!(matches!(Program::load(&spec), Err(Error::UnboundMap { .. })));
    assert_eq!(spec.bind_map("counter", &counter).unwrap(), 1);
    let program = Program::load(&spec).unwrap();
    let result = program.test_run(&TestRun { data: &PACKET, repeat: 1000, ..TestRun::default() }).unwrap();
    assert_eq!(result.retval, 2);
    let value = counter.get(&0u32.to_ne_bytes()).unwrap().unwrap();
    assert_eq!(u64::from_ne_bytes(value.try_into().unwrap()), 1000);
    assert_eq!(program.info().unwrap().map_ids, vec![counter.info().unwrap().id]);
}

#[test]
fn a_rejected_program_returns_the_log_naming_the_failing_instruction() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let mut asm = Assembler::new();
    asm.mov64_imm(Reg::R0, 0).mov64_reg(Reg::R0, Reg::R2).exit();
    let mut spec = ProgramSpec::from_assembled("reads_r2", ProgramType::SocketFilter, asm.finish().unwrap());
    spec.section = Some("socket".into());
    let Err(Error::Verifier(rejection)) = Program::load(&spec) else { panic!("the verifier must refuse r2") };
    assert_eq!(rejection.errno, Errno::EACCES);
    assert!(rejection.log.contains("1: (bf) r0 = r2"), "{}", rejection.log);
    assert_eq!(rejection.summary(), Some("R2 !read_ok"));
    let text = rejection.to_string();
    assert!(text
        .starts_with("load program \"reads_r2\" (section socket): rejected by the verifier (EACCES); log follows\n"));
}

#[test]
fn verifier_logs_larger_than_16_mib_come_back_whole() {
    let Some(_root) = require_kernel() else {
        return;
    };
    // A bounded loop the verifier walks iteration by iteration; level 2 logs every step.
    let mut asm = Assembler::new();
    asm.mov64_imm(Reg::R1, 0)
        .mov64_imm(Reg::R2, 0)
        .label("loop")
        .alu64_imm(AluOp::Add, Reg::R1, 1)
        .alu64_imm(AluOp::Add, Reg::R2, 3)
        .jmp_imm(JmpCond::Lt, Reg::R1, 240_000, "loop")
        .mov64_imm(Reg::R0, 0)
        .exit();
    let spec = ProgramSpec::from_assembled("long_log", ProgramType::SocketFilter, asm.finish().unwrap());
    let options = LoadOptions {
        log_level: LogLevel::INSTRUCTIONS | LogLevel::STATS,
        initial_log_size: 1 << 20,
        ..LoadOptions::default()
    };
    let program = Program::load_with(&spec, &options).unwrap();
    let log = program.verifier_log().unwrap();
    assert!(log.len() > 16 << 20, "log is only {} bytes", log.len());
    assert!(log.starts_with("func#0 @0\n") || log.starts_with("0: "), "{}", &log[..200]);
    let last = log.lines().rfind(|l| l.starts_with("processed ")).expect("the closing statistics line");
    assert!(last.contains("insns (limit 1000000)"), "{last}");
}

#[test]
fn loaded_programs_report_info_pin_and_list_by_id() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let Some(dir) = bpffs_dir() else { return };
    let spec = packet_length(ProgramType::Xdp);
    let program = Program::load(&spec).unwrap();
    let info = program.info().unwrap();
    assert_eq!(info.name, spec.name);
    assert_eq!(info.prog_type, ProgramType::Xdp.raw());
    assert_ne!(info.tag, [0; 8]);
    // The kernel rewrites context accesses to its own xdp_buff layout: 32-bit loads become 64-bit.
    let translated = program.translated().unwrap();
    assert_eq!(translated.len(), spec.instructions.len());
    assert!(matches!(translated[0], ebpf_core::insn::Instruction::Load { size: Size::DW, .. }), "{translated:?}");
    assert!(program_ids().map(Result::unwrap).any(|id| id == info.id));

    let path = dir.join(unique_name("prog"));
    program.pin(&path).unwrap();
    let reopened = Program::from_pin(&path).unwrap();
    unpin(&path).unwrap();
    assert_eq!(reopened.info().unwrap().id, info.id);
    assert_eq!(Program::from_id(info.id).unwrap().name(), spec.name);
    assert!(Program::from_pin(&path).is_err(), "the pin is gone");
}

#[test]
fn disassembly_matches_bpftool_xlated_line_for_line() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let Ok(out) = Command::new("bpftool").arg("version").output() else {
        if std::env::var("EBPF_REQUIRE_KERNEL").is_ok_and(|v| v == "1") {
            panic!("bpftool is not installed (apt-get install bpftool)");
        }
        eprintln!("SKIPPED: bpftool is not installed");
        return;
    };
    assert!(out.status.success());

    let counter = Map::create(&MapSpec::new(&unique_name("ctr"), MapType::Hash, 4, 8, 4)).unwrap();
    let mut asm = Assembler::new();
    asm.mov64_reg(Reg::R6, Reg::R1)
        .call(helpers::helper_id("bpf_ktime_get_ns").unwrap())
        .store_reg(Size::DW, Reg::R10, -16, Reg::R0)
        .store_imm(Size::W, Reg::R10, -4, 0)
        .mov64_reg(Reg::R2, Reg::R10)
        .alu64_imm(AluOp::Add, Reg::R2, -4)
        .ld_map(Reg::R1, "counter")
        .call(helpers::helper_id("bpf_map_lookup_elem").unwrap())
        .jmp_imm(JmpCond::Eq, Reg::R0, 0, "out")
        .load(Size::DW, Reg::R1, Reg::R0, 0)
        .alu32_imm(AluOp::Lsh, Reg::R1, 3)
        .jmp32_imm(JmpCond::Sgt, Reg::R1, -7, "out")
        .atomic(AtomicOp::Add, Size::W, Reg::R0, 4, Reg::R1)
        .ld_imm64(Reg::R3, 0x1234_5678_9abc_def0)
        .label("out")
        .mov64_imm(Reg::R0, 2)
        .exit();
    let mut spec = ProgramSpec::from_assembled(&unique_name("dis"), ProgramType::Xdp, asm.finish().unwrap());
    spec.bind_map("counter", &counter).unwrap();
    let program = Program::load(&spec).unwrap();
    let id = program.info().unwrap().id;

    let bpftool = Command::new("bpftool").args(["prog", "dump", "xlated", "id", &id.to_string()]).output().unwrap();
    assert!(bpftool.status.success(), "{}", String::from_utf8_lossy(&bpftool.stderr));
    let theirs = String::from_utf8(bpftool.stdout).unwrap();

    let symbols = KernelSymbols::load().unwrap();
    let ours = Disassembler::with_names(CallNames::Xlated(&symbols)).listing(&program.translated().unwrap());
    let theirs: Vec<&str> = theirs.lines().filter(|l| !l.trim().is_empty()).collect();
    let ours: Vec<&str> = ours.lines().collect();
    assert!(theirs.len() >= 16, "bpftool printed:\n{}", theirs.join("\n"));
    assert_eq!(ours, theirs);
}

#[test]
fn run_stats_count_runs_while_enabled() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let program = Program::load(&packet_length(ProgramType::Xdp)).unwrap();
    let stats = ebpf_core::program::enable_run_stats().unwrap();
    program.test_run(&TestRun { data: &PACKET, repeat: 50, ..TestRun::default() }).unwrap();
    let info = program.info().unwrap();
    drop(stats);
    assert!(info.run_count >= 50, "run_count {}", info.run_count);
    assert!(info.run_time_ns > 0);
}

#[test]
fn clang_built_objects_decode_and_disassemble() {
    // The committed fixture, built by bpf-programs/build.sh with clang-19 (-mcpu=v3).
    let object = include_bytes!("../../bpf-programs/out/tests/xdp_count.o");
    let section = elf_section(object, "xdp").expect("the fixture has an xdp section");
    let insns = ebpf_core::insn::decode_bytes(section).unwrap();
    let listing = Disassembler::new().listing(&insns);
    assert!(listing.contains("call bpf_map_lookup_elem#1"), "{listing}");
    assert!(listing.contains("lock *(u64 *)(r0 +0) += r1"), "{listing}");
    assert!(listing.trim_end().ends_with("(95) exit"), "{listing}");
}

/// The bytes of the section called `name` in a little-endian ELF64 file.
fn elf_section<'a>(elf: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap()) as usize;
    let (shoff, shentsize, shnum, shstrndx) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(header(shstrndx) + 0x18);
    (0..shnum).find_map(|i| {
        let h = header(i);
        let name_at = strtab + u32_at(h);
        let end = elf[name_at..].iter().position(|&b| b == 0)? + name_at;
        (&elf[name_at..end] == name.as_bytes()).then(|| &elf[u64_at(h + 0x18)..u64_at(h + 0x18) + u64_at(h + 0x20)])
    })
}

#[test]
fn a_poisoned_core_relocation_is_reported_by_the_verifier_at_its_use() {
    use ebpf_btf::core::{CoreFixup, POISON_HELPER_ID};
    use ebpf_btf::CoreReloKind;
    let Some(_root) = require_kernel() else { return };
    let mut asm = Assembler::new();
    asm.mov64_imm(Reg::R0, 0)
        .mov64_imm(Reg::R1, 8) // stands for a relocated field offset
        .jmp_imm(JmpCond::Eq, Reg::R0, 0, "out")
        .mov64_imm(Reg::R2, 8) // the same, in dead code
        .label("out")
        .exit();
    let assembled = asm.finish().unwrap();
    let poison = CoreFixup {
        insn_off: 0,
        kind: CoreReloKind::FieldByteOffset,
        local_value: 8,
        target_value: 0,
        poison: true,
        validate: true,
        local_size: 0,
        target_size: 0,
        fail_size_adjust: false,
        target_type_id: 0,
    };
    // Dead code: the verifier removes the poisoned call and the program loads.
    let mut raw = ebpf_core::insn::encode(&assembled.instructions);
    ebpf_core::insn::apply_core_fixup(&mut raw, 3, &poison).unwrap();
    let dead = ProgramSpec::new("core_dead", ProgramType::SocketFilter, ebpf_core::insn::decode(&raw).unwrap());
    Program::load(&dead).expect("a poisoned instruction in dead code is pruned");
    // Reachable: rejected, and the log points at the poisoned instruction.
    ebpf_core::insn::apply_core_fixup(&mut raw, 1, &poison).unwrap();
    let live = ProgramSpec::new("core_live", ProgramType::SocketFilter, ebpf_core::insn::decode(&raw).unwrap());
    let Err(Error::Verifier(rejection)) = Program::load(&live) else {
        panic!("a reachable poisoned instruction must be refused")
    };
    assert!(rejection.log.contains(&format!("invalid func unknown#{POISON_HELPER_ID}")), "{}", rejection.log);
}
