use std::fmt::Write as _;

use super::helpers::{helper_name, HELPER_MAX_ID};
use super::types::*;
use crate::kallsyms::KernelSymbols;

/// How call targets and 64-bit immediates are named.
#[derive(Clone, Copy, Debug, Default)]
pub enum CallNames<'a> {
    /// As the verifier log prints a program before it is translated: helpers by their
    /// `bpf_` name and id, map loads as raw immediates.
    #[default]
    Verifier,
    /// As `bpftool prog dump xlated` prints a loaded program: helper calls are address deltas
    /// from `__bpf_call_base`, named through kernel symbols; map loads name the map id
    /// (the kernel puts ids in the dump).
    Xlated(&'a KernelSymbols),
}

/// Prints instructions in the kernel's verifier syntax (`kernel/bpf/disasm.c`), line for line
/// what `bpftool prog dump xlated` shows.
#[derive(Clone, Copy, Debug, Default)]
pub struct Disassembler<'a> {
    names: CallNames<'a>,
}

fn w(width: Width) -> char {
    match width {
        Width::W32 => 'w',
        Width::W64 => 'r',
    }
}

fn alu_str(op: AluOp) -> &'static str {
    match op {
        AluOp::Add => "+=",
        AluOp::Sub => "-=",
        AluOp::Mul => "*=",
        AluOp::Div => "/=",
        AluOp::SDiv => "s/=",
        AluOp::Or => "|=",
        AluOp::And => "&=",
        AluOp::Lsh => "<<=",
        AluOp::Rsh => ">>=",
        AluOp::Mod => "%=",
        AluOp::SMod => "s%=",
        AluOp::Xor => "^=",
        AluOp::Mov => "=",
        AluOp::Arsh => "s>>=",
    }
}

fn jmp_str(cond: JmpCond) -> &'static str {
    match cond {
        JmpCond::Eq => "==",
        JmpCond::Gt => ">",
        JmpCond::Ge => ">=",
        JmpCond::Set => "&",
        JmpCond::Ne => "!=",
        JmpCond::Sgt => "s>",
        JmpCond::Sge => "s>=",
        JmpCond::Lt => "<",
        JmpCond::Le => "<=",
        JmpCond::Slt => "s<",
        JmpCond::Sle => "s<=",
    }
}

fn ldst(size: Size) -> &'static str {
    match size {
        Size::B => "u8",
        Size::H => "u16",
        Size::W => "u32",
        Size::DW => "u64",
    }
}

fn ldsx(size: Size) -> &'static str {
    match size {
        Size::B => "s8",
        Size::H => "s16",
        _ => "s32",
    }
}

/// `rD = *(TYPE *)(rS +OFF)`.
fn load_text(dst: Reg, ty: &str, src: Reg, off: i16) -> String {
    format!("r{} = *({ty} *)(r{} {})", dst.number(), src.number(), signed(off))
}

/// `%+d` of C's printf.
fn signed(off: impl Into<i64>) -> String {
    format!("{:+}", off.into())
}

impl<'a> Disassembler<'a> {
    /// A disassembler in verifier-log style.
    pub fn new() -> Disassembler<'static> {
        Disassembler { names: CallNames::Verifier }
    }

    /// A disassembler naming calls and immediates as chosen.
    pub fn with_names(names: CallNames<'a>) -> Disassembler<'a> {
        Disassembler { names }
    }

    fn call_name(&self, target: CallTarget) -> String {
        match target {
            CallTarget::Helper(id) if (0..HELPER_MAX_ID).contains(&id) && helper_name(id).is_some() => {
                helper_name(id).unwrap_or("unknown").to_owned()
            }
            CallTarget::Helper(delta) => match self.names {
                CallNames::Xlated(symbols) => {
                    let address = symbols.call_base().wrapping_add_signed(i64::from(delta));
                    match symbols.name_at(address) {
                        Some(name) => name.to_owned(),
                        None if address != 0 => format!("{address:#x}"),
                        None => "unknown".to_owned(),
                    }
                }
                CallNames::Verifier => "unknown".to_owned(),
            },
            CallTarget::Local(rel) => signed(rel),
            CallTarget::Kfunc { .. } => "kernel-function".to_owned(),
        }
    }

    fn imm64(&self, value: LoadImm64) -> String {
        match (self.names, value) {
            (CallNames::Xlated(_), LoadImm64::MapFd(id)) => format!("map[id:{}]", id as u32),
            (CallNames::Xlated(_), LoadImm64::MapValue { fd, offset }) => {
                format!("map[id:{}][0]+{offset}", fd as u32)
            }
            (CallNames::Xlated(_), LoadImm64::MapIdxValue { index, offset }) => {
                format!("map[idx:{}]+{offset}", index as u32)
            }
            (CallNames::Xlated(_), LoadImm64::Func(rel)) => format!("subprog[{}]", signed(rel)),
            (_, other) => {
                let (raw, second) = Instruction::LoadImm64 { dst: Reg::R0, value: other }.to_raw();
                let hi = second.map_or(0, |s| s.imm);
                let full = u64::from(raw.imm as u32) | (u64::from(hi as u32) << 32);
                format!("{full:#x}")
            }
        }
    }

    /// One instruction, as `(opcode) text`, without index or newline.
    pub fn format(&self, insn: &Instruction) -> String {
        let code = insn.opcode();
        let text = match *insn {
            Instruction::Alu { width, op, dst, src: Source::Reg(src) } => {
                format!("{}{} {} {}{}", w(width), dst.number(), alu_str(op), w(width), src.number())
            }
            Instruction::Alu { width, op, dst, src: Source::Imm(imm) } => {
                format!("{}{} {} {imm}", w(width), dst.number(), alu_str(op))
            }
            Instruction::MovSx { width, dst, src, bits } => {
                format!("{}{} = (s{bits}){}{}", w(width), dst.number(), w(width), src.number())
            }
            Instruction::Neg { width, dst } => {
                format!("{c}{n} = -{c}{n}", c = w(width), n = dst.number())
            }
            Instruction::Endian { kind, dst, bits } => {
                let name = match kind {
                    EndianKind::ToLe => "le",
                    EndianKind::ToBe => "be",
                    EndianKind::Bswap => "bswap",
                };
                format!("r{n} = {name}{bits} r{n}", n = dst.number())
            }
            Instruction::AddrSpaceCast { dst, src, imm } => format!(
                "r{} = addr_space_cast(r{}, {}, {})",
                dst.number(),
                src.number(),
                (imm as u32) >> 16,
                imm as u16
            ),
            Instruction::Load { size, dst, src, off } => load_text(dst, ldst(size), src, off),
            Instruction::LoadSx { size, dst, src, off } => load_text(dst, ldsx(size), src, off),
            Instruction::Store { size, dst, off, src: Source::Reg(src) } => {
                format!("*({} *)(r{} {}) = r{}", ldst(size), dst.number(), signed(off), src.number())
            }
            Instruction::Store { size, dst, off, src: Source::Imm(imm) } => {
                format!("*({} *)(r{} {}) = {imm}", ldst(size), dst.number(), signed(off))
            }
            Instruction::Atomic { size, op, dst, src, off } => {
                let at = format!("({} *)(r{} {})", ldst(size), dst.number(), signed(off));
                let bits = if size == Size::DW { "64" } else { "" };
                let (d, s) = (dst.number(), src.number());
                match op {
                    AtomicOp::Add | AtomicOp::Or | AtomicOp::And | AtomicOp::Xor => {
                        let sym = match op {
                            AtomicOp::Add => "+=",
                            AtomicOp::Or => "|=",
                            AtomicOp::And => "&=",
                            _ => "^=",
                        };
                        format!("lock *{at} {sym} r{s}")
                    }
                    AtomicOp::FetchAdd | AtomicOp::FetchOr | AtomicOp::FetchAnd | AtomicOp::FetchXor => {
                        let name = match op {
                            AtomicOp::FetchAdd => "add",
                            AtomicOp::FetchOr => "or",
                            AtomicOp::FetchAnd => "and",
                            _ => "xor",
                        };
                        format!("r{s} = atomic{bits}_fetch_{name}({at}, r{s})")
                    }
                    AtomicOp::Xchg => format!("r{s} = atomic{bits}_xchg({at}, r{s})"),
                    AtomicOp::CmpXchg => format!("r0 = atomic{bits}_cmpxchg({at}, r0, r{s})"),
                    AtomicOp::LoadAcquire => {
                        format!("r{d} = load_acquire(({} *)(r{s} {}))", ldst(size), signed(off))
                    }
                    AtomicOp::StoreRelease => format!("store_release({at}, r{s})"),
                }
            }
            Instruction::LoadImm64 { dst, value } => {
                format!("r{} = {}", dst.number(), self.imm64(value))
            }
            Instruction::LoadAbs { size, imm } => format!("r0 = *({} *)skb[{imm}]", ldst(size)),
            Instruction::LoadInd { size, src, imm } => {
                format!("r0 = *({} *)skb[r{} + {imm}]", ldst(size), src.number())
            }
            Instruction::Ja { off } => format!("goto pc{}", signed(off)),
            Instruction::JaLong { imm } => format!("gotol pc{}", signed(imm)),
            Instruction::MayGoto { off } => format!("may_goto pc{}", signed(off)),
            Instruction::Jump { width, cond, dst, src: Source::Reg(src), off } => format!(
                "if {c}{} {} {c}{} goto pc{}",
                dst.number(),
                jmp_str(cond),
                src.number(),
                signed(off),
                c = w(width)
            ),
            Instruction::Jump { width, cond, dst, src: Source::Imm(imm), off } => {
                format!("if {}{} {} {:#x} goto pc{}", w(width), dst.number(), jmp_str(cond), imm as u32, signed(off))
            }
            Instruction::Call(target @ CallTarget::Local(_)) => {
                format!("call pc{}", self.call_name(target))
            }
            Instruction::Call(target) => {
                let imm = match target {
                    CallTarget::Helper(id) => id,
                    CallTarget::Kfunc { btf_id, .. } => btf_id,
                    CallTarget::Local(rel) => rel,
                };
                format!("call {}#{imm}", self.call_name(target))
            }
            Instruction::Exit => "exit".to_owned(),
            Instruction::Nospec => "nospec".to_owned(),
        };
        format!("({code:02x}) {text}")
    }

    /// A listing as `bpftool prog dump xlated` prints it: slot index, colon, instruction.
    pub fn listing(&self, insns: &[Instruction]) -> String {
        let mut out = String::new();
        let mut slot = 0usize;
        for insn in insns {
            // bpftool prints the index with printf's "% 4d".
            let _ = writeln!(out, "{:>4}: {}", format!(" {slot}"), self.format(insn));
            slot += insn.slots();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(insn: Instruction) -> String {
        Disassembler::new().format(&insn)
    }

    #[test]
    fn prints_the_kernel_syntax() {
        let r = |n| Reg::new(n).unwrap();
        assert_eq!(
            show(Instruction::Alu { width: Width::W64, op: AluOp::Mov, dst: r(0), src: Source::Imm(0) }),
            "(b7) r0 = 0"
        );
        assert_eq!(
            show(Instruction::Alu { width: Width::W32, op: AluOp::Add, dst: r(1), src: Source::Imm(-3) }),
            "(04) w1 += -3"
        );
        assert_eq!(
            show(Instruction::Alu { width: Width::W64, op: AluOp::SDiv, dst: r(1), src: Source::Reg(r(2)) }),
            "(3f) r1 s/= r2"
        );
        assert_eq!(show(Instruction::MovSx { width: Width::W64, dst: r(1), src: r(2), bits: 8 }), "(bf) r1 = (s8)r2");
        assert_eq!(show(Instruction::Endian { kind: EndianKind::ToBe, dst: r(3), bits: 16 }), "(dc) r3 = be16 r3");
        assert_eq!(show(Instruction::Endian { kind: EndianKind::Bswap, dst: r(3), bits: 64 }), "(d7) r3 = bswap64 r3");
        assert_eq!(
            show(Instruction::Store { size: Size::DW, dst: r(10), off: -8, src: Source::Reg(r(1)) }),
            "(7b) *(u64 *)(r10 -8) = r1"
        );
        assert_eq!(
            show(Instruction::Store { size: Size::W, dst: r(10), off: -4, src: Source::Imm(0) }),
            "(62) *(u32 *)(r10 -4) = 0"
        );
        assert_eq!(
            show(Instruction::Load { size: Size::W, dst: r(0), src: r(1), off: 0 }),
            "(61) r0 = *(u32 *)(r1 +0)"
        );
        assert_eq!(
            show(Instruction::LoadSx { size: Size::H, dst: r(0), src: r(1), off: 2 }),
            "(89) r0 = *(s16 *)(r1 +2)"
        );
        assert_eq!(
            show(Instruction::Atomic { size: Size::DW, op: AtomicOp::Add, dst: r(1), src: r(2), off: 0 }),
            "(db) lock *(u64 *)(r1 +0) += r2"
        );
        assert_eq!(
            show(Instruction::Atomic { size: Size::W, op: AtomicOp::FetchAdd, dst: r(1), src: r(2), off: 4 }),
            "(c3) r2 = atomic_fetch_add((u32 *)(r1 +4), r2)"
        );
        assert_eq!(
            show(Instruction::Atomic { size: Size::DW, op: AtomicOp::CmpXchg, dst: r(1), src: r(2), off: 0 }),
            "(db) r0 = atomic64_cmpxchg((u64 *)(r1 +0), r0, r2)"
        );
        assert_eq!(
            show(Instruction::LoadImm64 { dst: r(1), value: LoadImm64::Imm(0x1_0000_0000) }),
            "(18) r1 = 0x100000000"
        );
        assert_eq!(
            show(Instruction::Jump { width: Width::W64, cond: JmpCond::Gt, dst: r(1), src: Source::Imm(16), off: 3 }),
            "(25) if r1 > 0x10 goto pc+3"
        );
        assert_eq!(
            show(Instruction::Jump { width: Width::W32, cond: JmpCond::Ne, dst: r(1), src: Source::Imm(-1), off: -2 }),
            "(56) if w1 != 0xffffffff goto pc-2"
        );
        assert_eq!(
            show(Instruction::Jump {
                width: Width::W64,
                cond: JmpCond::Sle,
                dst: r(1),
                src: Source::Reg(r(2)),
                off: 1
            }),
            "(dd) if r1 s<= r2 goto pc+1"
        );
        assert_eq!(show(Instruction::Call(CallTarget::Helper(1))), "(85) call bpf_map_lookup_elem#1");
        assert_eq!(show(Instruction::Call(CallTarget::Local(5))), "(85) call pc+5");
        assert_eq!(show(Instruction::Ja { off: -1 }), "(05) goto pc-1");
        assert_eq!(show(Instruction::JaLong { imm: 7 }), "(06) gotol pc+7");
        assert_eq!(show(Instruction::LoadAbs { size: Size::B, imm: 23 }), "(30) r0 = *(u8 *)skb[23]");
        assert_eq!(show(Instruction::Exit), "(95) exit");
    }

    #[test]
    fn listings_count_slots_like_bpftool() {
        let insns = [Instruction::LoadImm64 { dst: Reg::R1, value: LoadImm64::Imm(1) }, Instruction::Exit];
        assert_eq!(Disassembler::new().listing(&insns), "   0: (18) r1 = 0x1\n   2: (95) exit\n");
        let many: Vec<_> = std::iter::repeat_n(Instruction::Exit, 1001).collect();
        assert!(Disassembler::new().listing(&many).ends_with(" 1000: (95) exit\n"));
    }
}
