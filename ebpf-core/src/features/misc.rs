use std::fmt;
use std::path::Path;

use ebpf_btf::{BtfBuilder, DatasecVar, EnumValue, IntEncoding, Linkage, Param};

use super::programs::{privilege, return_zero, try_load, ProbeLoad};
use super::{Cache, Support};
use crate::insn::{encode, AluOp, Instruction, JmpCond, LoadImm64, RawInsn, Reg, Source, Width};
use crate::sys::{self, MapCreate};
use crate::types::{MapType, ProgramType};

/// Features that are neither a program, map nor link type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum MiscFeature {
    /// Loops with a bounded trip count pass the verifier (5.3).
    BoundedLoops,
    /// Programs beyond 4096 instructions load (5.2).
    LargeInsnLimit,
    /// `BPF_JLT`/`JLE`/`JSLT`/`JSLE` (cpu v2).
    IsaV2,
    /// `BPF_JMP32` and 32-bit ALU jumps (cpu v3).
    IsaV3,
    /// Signed division, sign-extending moves and loads, `bswap`, `gotol` (cpu v4).
    IsaV4,
    /// BTF loads at all.
    Btf,
    /// BTF `FUNC`/`FUNC_PROTO`.
    BtfFunc,
    /// BTF functions with global linkage.
    BtfFuncGlobal,
    /// BTF `VAR`/`DATASEC`.
    BtfDatasec,
    /// BTF `FLOAT`.
    BtfFloat,
    /// BTF `DECL_TAG`.
    BtfDeclTag,
    /// BTF `TYPE_TAG`.
    BtfTypeTag,
    /// BTF `ENUM64`.
    BtfEnum64,
    /// Array maps with `BPF_F_MMAPABLE`.
    MmapableMaps,
    /// Program and map names.
    ObjectNames,
    /// Direct loads of map values (`.data`/`.rodata`/`.bss`).
    GlobalData,
    /// `BPF_PROG_BIND_MAP`.
    ProgBindMap,
    /// Kernel BTF at `/sys/kernel/btf/vmlinux`.
    KernelBtf,
    /// `BPF_ENABLE_STATS` run-time statistics.
    RunStats,
    /// `bpf_get_attach_cookie` callable from tracepoint programs (5.15; libbpf's
    /// `FEAT_BPF_COOKIE`, behind the virtual kconfig `LINUX_HAS_BPF_COOKIE`).
    BpfCookie,
    /// System calls are entered through architecture wrappers (`__x64_sys_bpf`) that a kprobe
    /// can attach to (libbpf's `FEAT_SYSCALL_WRAPPER`, behind `LINUX_HAS_SYSCALL_WRAPPER`,
    /// which tells `BPF_KSYSCALL` programs where the arguments are).
    SyscallWrapper,
}

impl MiscFeature {
    /// Every misc feature.
    pub const ALL: &'static [MiscFeature] = &[
        MiscFeature::BoundedLoops,
        MiscFeature::LargeInsnLimit,
        MiscFeature::IsaV2,
        MiscFeature::IsaV3,
        MiscFeature::IsaV4,
        MiscFeature::Btf,
        MiscFeature::BtfFunc,
        MiscFeature::BtfFuncGlobal,
        MiscFeature::BtfDatasec,
        MiscFeature::BtfFloat,
        MiscFeature::BtfDeclTag,
        MiscFeature::BtfTypeTag,
        MiscFeature::BtfEnum64,
        MiscFeature::MmapableMaps,
        MiscFeature::ObjectNames,
        MiscFeature::GlobalData,
        MiscFeature::ProgBindMap,
        MiscFeature::KernelBtf,
        MiscFeature::RunStats,
        MiscFeature::BpfCookie,
        MiscFeature::SyscallWrapper,
    ];

    /// Name in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            MiscFeature::BoundedLoops => "bounded_loops",
            MiscFeature::LargeInsnLimit => "large_insn_limit",
            MiscFeature::IsaV2 => "isa_v2",
            MiscFeature::IsaV3 => "isa_v3",
            MiscFeature::IsaV4 => "isa_v4",
            MiscFeature::Btf => "btf",
            MiscFeature::BtfFunc => "btf_func",
            MiscFeature::BtfFuncGlobal => "btf_func_global",
            MiscFeature::BtfDatasec => "btf_datasec",
            MiscFeature::BtfFloat => "btf_float",
            MiscFeature::BtfDeclTag => "btf_decl_tag",
            MiscFeature::BtfTypeTag => "btf_type_tag",
            MiscFeature::BtfEnum64 => "btf_enum64",
            MiscFeature::MmapableMaps => "mmapable_maps",
            MiscFeature::ObjectNames => "object_names",
            MiscFeature::GlobalData => "global_data",
            MiscFeature::ProgBindMap => "prog_bind_map",
            MiscFeature::KernelBtf => "kernel_btf",
            MiscFeature::RunStats => "run_stats",
            MiscFeature::BpfCookie => "bpf_cookie",
            MiscFeature::SyscallWrapper => "syscall_wrapper",
        }
    }
}

impl fmt::Display for MiscFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

static CACHE: Cache<MiscFeature> = Cache::new();

/// Whether the kernel has `feature`.
pub fn misc(feature: MiscFeature) -> Support {
    CACHE.get_or_probe(feature, || probe(feature))
}

fn loads(insns: &[RawInsn]) -> Support {
    match try_load(ProgramType::SocketFilter, ProbeLoad::default(), insns) {
        (Ok(_), _) => Support::Yes,
        (Err(e), log) => {
            let last = log.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("no log").to_owned();
            Support::No(format!("{}: {last}", e.errno))
        }
    }
}

fn mov(dst: Reg, imm: i32) -> Instruction {
    Instruction::Alu { width: Width::W64, op: AluOp::Mov, dst, src: Source::Imm(imm) }
}

fn jump(width: Width, cond: JmpCond, imm: i32, off: i16) -> Instruction {
    Instruction::Jump { width, cond, dst: Reg::R0, src: Source::Imm(imm), off }
}

fn btf_loads(build: impl FnOnce(&mut BtfBuilder)) -> Support {
    let mut btf = BtfBuilder::new();
    build(&mut btf);
    match sys::btf_load(&btf.encode()) {
        Ok(_) => Support::Yes,
        Err(e) => Support::No(e.to_string().lines().last().unwrap_or("").to_owned()),
    }
}

fn kernel_btf() -> Support {
    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        Support::Yes
    } else {
        Support::No("/sys/kernel/btf/vmlinux does not exist (CONFIG_DEBUG_INFO_BTF off)".to_owned())
    }
}

/// The prefix of this architecture's syscall wrappers (`__<prefix>_sys_bpf`), as the kernel's
/// `arch/*/include/asm/syscall_wrapper.h` names them.
fn syscall_wrapper_prefix() -> Option<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Some("x64"),
        "x86" => Some("ia32"),
        "aarch64" => Some("arm64"),
        "arm" => Some("arm"),
        "s390x" => Some("s390x"),
        "riscv64" => Some("riscv"),
        "powerpc64" => Some("powerpc64"),
        "powerpc" => Some("powerpc"),
        "loongarch64" => Some("loongarch"),
        "mips" | "mips64" => Some("mips"),
        _ => None,
    }
}

/// libbpf's answer: a kprobe on the wrapper of `bpf(2)` opens through the kprobe PMU or, on
/// kernels with only tracefs kprobe events, the wrapper is a kernel symbol a kprobe event could
/// name (read from `/proc/kallsyms` rather than by writing a probe into tracefs).
fn syscall_wrapper() -> Support {
    let Some(prefix) = syscall_wrapper_prefix() else {
        return Support::No(format!("{} has no syscall wrappers", std::env::consts::ARCH));
    };
    let symbol = format!("__{prefix}_sys_bpf");
    let pmu = std::fs::read_to_string("/sys/bus/event_source/devices/kprobe/type");
    if let Some(pmu_type) = pmu.ok().and_then(|t| t.trim().parse::<u32>().ok()) {
        let name = std::ffi::CString::new(symbol.clone()).expect("no NUL in a symbol name");
        return match sys::perf_event_open_kprobe(pmu_type, &name) {
            Ok(_) => Support::Yes,
            Err(errno) => Support::No(format!("kprobe on {symbol}: {errno}")),
        };
    }
    let tracefs = ["/sys/kernel/tracing/kprobe_events", "/sys/kernel/debug/tracing/kprobe_events"];
    if !tracefs.iter().any(|p| Path::new(p).exists()) {
        return Support::No("no kprobe PMU and no tracefs kprobe_events: kprobes cannot attach".to_owned());
    }
    match std::fs::read_to_string("/proc/kallsyms") {
        Ok(symbols) if symbols.lines().any(|l| l.split_whitespace().nth(2) == Some(symbol.as_str())) => Support::Yes,
        Ok(_) => Support::No(format!("{symbol} is not a kernel symbol")),
        Err(e) => Support::Unknown(format!("read /proc/kallsyms: {e}")),
    }
}

fn probe(feature: MiscFeature) -> Support {
    if feature == MiscFeature::KernelBtf {
        return kernel_btf();
    }
    if let Err(why) = privilege() {
        return Support::Unknown(why);
    }

    let exit = Instruction::Exit;
    match feature {
        MiscFeature::BoundedLoops => loads(&encode(&[
            mov(Reg::R0, 0),
            Instruction::Alu { width: Width::W64, op: AluOp::Add, dst: Reg::R0, src: Source::Imm(1) },
            jump(Width::W64, JmpCond::Lt, 4, -2),
            exit,
        ])),
        MiscFeature::LargeInsnLimit => {
            let mut insns = vec![mov(Reg::R0, 0); 4096];
            insns.push(exit);
            loads(&encode(&insns))
        }
        MiscFeature::IsaV2 => loads(&encode(&[mov(Reg::R0, 0), jump(Width::W64, JmpCond::Lt, 0, 0), exit])),
        MiscFeature::IsaV3 => loads(&encode(&[mov(Reg::R0, 0), jump(Width::W32, JmpCond::Lt, 0, 0), exit])),
        MiscFeature::IsaV4 => loads(&encode(&[
            mov(Reg::R0, 1),
            Instruction::Alu { width: Width::W64, op: AluOp::SDiv, dst: Reg::R0, src: Source::Imm(1) },
            Instruction::MovSx { width: Width::W64, dst: Reg::R0, src: Reg::R0, bits: 8 },
            Instruction::Endian { kind: crate::insn::EndianKind::Bswap, dst: Reg::R0, bits: 16 },
            Instruction::JaLong { imm: 0 },
            exit,
        ])),
        MiscFeature::Btf => btf_loads(|b| {
            b.add_int("int", 4, IntEncoding::Signed);
        }),
        MiscFeature::BtfFunc | MiscFeature::BtfFuncGlobal => btf_loads(|b| {
            let int = b.add_int("int", 4, IntEncoding::Signed);
            let proto = b.add_func_proto(Some(int), &[Param { name: "x", ty: Some(int) }]);
            let linkage = if feature == MiscFeature::BtfFunc { Linkage::Static } else { Linkage::Global };
            b.add_func("probe", proto, linkage);
        }),
        MiscFeature::BtfDatasec => btf_loads(|b| {
            let int = b.add_int("int", 4, IntEncoding::Signed);
            let var = b.add_var("x", int, Linkage::Global);
            b.add_datasec(".data", 4, &[DatasecVar { var, offset: 0, size: 4 }]);
        }),
        MiscFeature::BtfFloat => btf_loads(|b| {
            b.add_float("float", 4);
        }),
        MiscFeature::BtfDeclTag => btf_loads(|b| {
            let int = b.add_int("int", 4, IntEncoding::Signed);
            let var = b.add_var("x", int, Linkage::Global);
            b.add_decl_tag("tag", var, -1);
        }),
        MiscFeature::BtfTypeTag => btf_loads(|b| {
            let int = b.add_int("int", 4, IntEncoding::Signed);
            let tag = b.add_type_tag("tag", int);
            b.add_ptr(tag);
        }),
        MiscFeature::BtfEnum64 => btf_loads(|b| {
            b.add_enum64("e", 8, false, &[EnumValue { name: "big", value: 1 << 40 }]);
        }),
        MiscFeature::MmapableMaps | MiscFeature::ObjectNames | MiscFeature::GlobalData | MiscFeature::ProgBindMap => {
            let flags = if feature == MiscFeature::MmapableMaps { 1 << 10 } else { 0 };
            let name = if feature == MiscFeature::ObjectNames { "probe_name" } else { "" };
            let map = match sys::map_create(&MapCreate {
                map_type: MapType::Array.raw(),
                key_size: 4,
                value_size: 8,
                max_entries: 1,
                map_flags: flags,
                name,
                ..Default::default()
            }) {
                Ok(map) => map,
                Err(e) => return Support::No(format!("array map creation failed: {}", e.errno)),
            };
            match feature {
                MiscFeature::GlobalData => {
                    use std::os::fd::{AsFd, AsRawFd};
                    let fd = map.as_fd().as_raw_fd();
                    loads(&encode(&[
                        Instruction::LoadImm64 { dst: Reg::R1, value: LoadImm64::MapValue { fd, offset: 0 } },
                        mov(Reg::R0, 0),
                        exit,
                    ]))
                }
                MiscFeature::ProgBindMap => {
                    use std::os::fd::AsFd;
                    let Ok(prog) = try_load(ProgramType::SocketFilter, ProbeLoad::default(), &return_zero()).0 else {
                        return Support::Unknown("probe program did not load".to_owned());
                    };
                    match sys::prog_bind_map(prog.as_fd(), map.as_fd()) {
                        Ok(()) => Support::Yes,
                        Err(e) => Support::No(format!("{}", e.errno)),
                    }
                }
                _ => Support::Yes,
            }
        }
        MiscFeature::RunStats => match sys::enable_stats(0) {
            Ok(_) => Support::Yes,
            Err(e) => Support::No(format!("{}", e.errno)),
        },
        MiscFeature::KernelBtf => kernel_btf(),
        MiscFeature::BpfCookie => {
            let id = crate::insn::helpers::helper_id("bpf_get_attach_cookie").expect("a known helper");
            super::helpers::helper(ProgramType::Tracepoint, id)
        }
        MiscFeature::SyscallWrapper => syscall_wrapper(),
    }
}
