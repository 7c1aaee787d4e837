//! Which tail calls the kernel can turn into direct jumps. The JIT patches
//! `bpf_tail_call(ctx, &map, index)` into a direct jump only when the verifier sees the same
//! map and the same constant index on every path to the call; this analysis tracks constants
//! through registers and stack slots over the program's control flow to say the same.

use std::collections::HashMap;

use crate::insn::{AluOp, AtomicOp, CallTarget, Instruction, LoadImm64, Reg, Size, Source, Width};
use crate::program::ProgramSpec;

/// `BPF_FUNC_tail_call`.
const TAIL_CALL: i32 = 12;

/// The index a tail call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TailCallIndex {
    /// The same constant on every path: the kernel can emit a direct jump.
    Constant(u32),
    /// Computed at run time (or different constants on different paths): an indirect jump
    /// through the prog array, with its bounds check and retpoline.
    Dynamic,
}

/// One `bpf_tail_call` in a program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailCallSite {
    /// Index of the call instruction in [`ProgramSpec::instructions`].
    pub instruction: usize,
    /// The prog array, when one map reaches the call on every path.
    pub map: Option<String>,
    /// The slot index.
    pub index: TailCallIndex,
}

impl TailCallSite {
    /// True when the kernel can patch this call into a direct jump.
    pub fn is_direct(&self) -> bool {
        self.map.is_some() && matches!(self.index, TailCallIndex::Constant(_))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Unknown,
    Const(u64),
    Map(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    regs: [Value; 11],
    /// Stack slots written through `r10`: (offset, bytes) → value.
    stack: HashMap<(i16, u8), Value>,
}

impl State {
    fn unknown() -> State {
        State { regs: std::array::from_fn(|_| Value::Unknown), stack: HashMap::new() }
    }

    fn join(&mut self, other: &State) -> bool {
        let mut changed = false;
        for (mine, theirs) in self.regs.iter_mut().zip(&other.regs) {
            if *mine != *theirs && *mine != Value::Unknown {
                *mine = Value::Unknown;
                changed = true;
            }
        }
        let before = self.stack.len();
        self.stack.retain(|k, v| other.stack.get(k) == Some(v));
        changed || self.stack.len() != before
    }

    fn reg(&self, r: Reg) -> &Value {
        &self.regs[r.number() as usize]
    }

    fn set(&mut self, r: Reg, v: Value) {
        self.regs[r.number() as usize] = v;
    }

    fn clobber_call(&mut self) {
        for r in 0..=5 {
            self.regs[r] = Value::Unknown;
        }
    }

    fn forget_stack(&mut self, off: i16, size: usize) {
        let (start, end) = (i32::from(off), i32::from(off) + size as i32);
        self.stack.retain(|&(o, s), _| i32::from(o) + i32::from(s) <= start || i32::from(o) >= end);
    }
}

fn alu(op: AluOp, a: u64, b: u64, width: Width) -> Option<u64> {
    let (a, b) = if width == Width::W32 { (a as u32 as u64, b as u32 as u64) } else { (a, b) };
    let bits = if width == Width::W32 { 32 } else { 64 };
    let r = match op {
        AluOp::Add => a.wrapping_add(b),
        AluOp::Sub => a.wrapping_sub(b),
        AluOp::Mul => a.wrapping_mul(b),
        AluOp::Div => a.checked_div(b).unwrap_or(0),
        AluOp::Mod => a.checked_rem(b).unwrap_or(a),
        AluOp::Or => a | b,
        AluOp::And => a & b,
        AluOp::Xor => a ^ b,
        AluOp::Lsh => a.checked_shl((b % bits) as u32).unwrap_or(0),
        AluOp::Rsh => a.checked_shr((b % bits) as u32).unwrap_or(0),
        AluOp::Mov => b,
        _ => return None,
    };
    Some(if width == Width::W32 { r as u32 as u64 } else { r })
}

/// Every tail call of `spec`, with its map and whether its index is constant.
pub fn tail_call_sites(spec: &ProgramSpec) -> Vec<TailCallSite> {
    let insns = &spec.instructions;
    let map_at: HashMap<usize, &str> = spec.map_references.iter().map(|r| (r.index, r.name.as_str())).collect();
    let slot_of = crate::insn::slot_offsets(insns);
    let target = |i: usize, off: i64| -> Option<usize> {
        let t = slot_of[i] as i64 + insns[i].slots() as i64 + off;
        usize::try_from(t).ok().and_then(|t| slot_of.binary_search(&t).ok())
    };

    let mut states: Vec<Option<State>> = vec![None; insns.len()];
    let mut work = Vec::new();
    if !insns.is_empty() {
        states[0] = Some(State::unknown());
        work.push(0);
    }
    for (i, insn) in insns.iter().enumerate() {
        if let Instruction::Call(CallTarget::Local(off)) = insn {
            if let Some(t) = target(i, i64::from(*off)) {
                if states[t].is_none() {
                    states[t] = Some(State::unknown());
                    work.push(t);
                }
            }
        }
    }
    // States are kept only where paths meet (jump and call targets, and the entry); straight
    // code between them is walked with one state, neither stored nor cloned per instruction.
    let mut joins = vec![false; insns.len()];
    if let Some(first) = joins.first_mut() {
        *first = true;
    }
    for (i, insn) in insns.iter().enumerate() {
        let off = match *insn {
            Instruction::Ja { off } | Instruction::MayGoto { off } | Instruction::Jump { off, .. } => i64::from(off),
            Instruction::JaLong { imm } => i64::from(imm),
            Instruction::Call(CallTarget::Local(off)) => i64::from(off),
            _ => continue,
        };
        if let Some(t) = target(i, off) {
            joins[t] = true;
        }
    }
    let mut sites: HashMap<usize, (Value, Value)> = HashMap::new();
    let mut successors: Vec<usize> = Vec::with_capacity(2);
    while let Some(start) = work.pop() {
        let Some(mut state) = states[start].clone() else { continue };
        let mut i = start;
        loop {
            successors.clear();
            let next = (i + 1 < insns.len()).then_some(i + 1);
            match insns[i] {
                Instruction::Alu { width, op, dst, src } => {
                    let b = match src {
                        Source::Imm(v) => Value::Const(v as i64 as u64),
                        Source::Reg(r) => state.reg(r).clone(),
                    };
                    let value = match (op, state.reg(dst), &b) {
                        (AluOp::Mov, _, Value::Map(m)) if width == Width::W64 => Value::Map(m.clone()),
                        (_, Value::Const(a), Value::Const(b)) => {
                            alu(op, *a, *b, width).map_or(Value::Unknown, Value::Const)
                        }
                        (AluOp::Mov, _, Value::Const(b)) => alu(op, 0, *b, width).map_or(Value::Unknown, Value::Const),
                        _ => Value::Unknown,
                    };
                    state.set(dst, value);
                    successors.extend(next);
                }
                Instruction::MovSx { dst, .. }
                | Instruction::Neg { dst, .. }
                | Instruction::Endian { dst, .. }
                | Instruction::AddrSpaceCast { dst, .. }
                | Instruction::LoadSx { dst, .. } => {
                    state.set(dst, Value::Unknown);
                    successors.extend(next);
                }
                Instruction::Load { size, dst, src, off } => {
                    let value = if src == Reg::R10 {
                        state.stack.get(&(off, size.bytes() as u8)).cloned().unwrap_or(Value::Unknown)
                    } else {
                        Value::Unknown
                    };
                    state.set(dst, value);
                    successors.extend(next);
                }
                Instruction::Store { size, dst, off, src } => {
                    if dst == Reg::R10 {
                        state.forget_stack(off, size.bytes());
                        let value = match src {
                            Source::Imm(v) => Value::Const(truncate(v as i64 as u64, size)),
                            Source::Reg(r) => match state.reg(r) {
                                Value::Const(c) => Value::Const(truncate(*c, size)),
                                Value::Map(m) if size == Size::DW => Value::Map(m.clone()),
                                _ => Value::Unknown,
                            },
                        };
                        state.stack.insert((off, size.bytes() as u8), value);
                    }
                    successors.extend(next);
                }
                Instruction::Atomic { size, op, dst, src, off } => {
                    if dst == Reg::R10 {
                        state.forget_stack(off, size.bytes());
                    }
                    match op {
                        AtomicOp::CmpXchg => state.set(Reg::R0, Value::Unknown),
                        AtomicOp::Add | AtomicOp::Or | AtomicOp::And | AtomicOp::Xor | AtomicOp::StoreRelease => {}
                        _ => state.set(src, Value::Unknown),
                    }
                    successors.extend(next);
                }
                Instruction::LoadImm64 { dst, value } => {
                    let v = match value {
                        LoadImm64::Imm(v) => Value::Const(v),
                        LoadImm64::MapFd(fd) => match map_at.get(&i) {
                            Some(name) => Value::Map((*name).to_owned()),
                            None => Value::Map(format!("fd {fd}")),
                        },
                        _ => Value::Unknown,
                    };
                    state.set(dst, v);
                    successors.extend(next);
                }
                Instruction::LoadAbs { .. } | Instruction::LoadInd { .. } => {
                    state.clobber_call();
                    successors.extend(next);
                }
                Instruction::Call(call) => {
                    if call == CallTarget::Helper(TAIL_CALL) {
                        let seen = (state.reg(Reg::R2).clone(), state.reg(Reg::R3).clone());
                        match sites.get_mut(&i) {
                            Some((map, index)) => {
                                if *map != seen.0 {
                                    *map = Value::Unknown;
                                }
                                if *index != seen.1 {
                                    *index = Value::Unknown;
                                }
                            }
                            None => {
                                sites.insert(i, seen);
                            }
                        }
                    }
                    state.clobber_call();
                    successors.extend(next);
                }
                Instruction::Exit => {}
                Instruction::Ja { off } => successors.extend(target(i, i64::from(off))),
                Instruction::JaLong { imm } => successors.extend(target(i, i64::from(imm))),
                Instruction::MayGoto { off } | Instruction::Jump { off, .. } => {
                    successors.extend(next);
                    successors.extend(target(i, i64::from(off)));
                }
                Instruction::Nospec => successors.extend(next),
            }
            let mut fallthrough = None;
            for &s in &successors {
                if !joins[s] {
                    // Only the instruction before reaches it: carry on with this state.
                    fallthrough = Some(s);
                    continue;
                }
                match &mut states[s] {
                    Some(existing) => {
                        if existing.join(&state) {
                            work.push(s);
                        }
                    }
                    slot @ None => {
                        *slot = Some(state.clone());
                        work.push(s);
                    }
                }
            }
            match fallthrough {
                Some(s) => i = s,
                None => break,
            }
        }
    }
    let mut out: Vec<TailCallSite> = sites
        .into_iter()
        .map(|(instruction, (map, index))| TailCallSite {
            instruction,
            map: match map {
                Value::Map(m) => Some(m),
                _ => None,
            },
            index: match index {
                Value::Const(c) if c <= u64::from(u32::MAX) => TailCallIndex::Constant(c as u32),
                _ => TailCallIndex::Dynamic,
            },
        })
        .collect();
    out.sort_by_key(|s| s.instruction);
    out
}

fn truncate(v: u64, size: Size) -> u64 {
    match size {
        Size::B => v & 0xff,
        Size::H => v & 0xffff,
        Size::W => v & 0xffff_ffff,
        Size::DW => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insn::{Assembler, JmpCond};
    use crate::types::ProgramType;

    fn spec(asm: &mut Assembler) -> ProgramSpec {
        ProgramSpec::from_assembled("p", ProgramType::SchedCls, asm.finish().unwrap())
    }

    #[test]
    fn a_constant_index_on_every_path_is_direct() {
        let mut asm = Assembler::new();
        asm.ld_map(Reg::R2, "jumps").mov64_imm(Reg::R3, 3).call(TAIL_CALL).mov64_imm(Reg::R0, 0).exit();
        let sites = tail_call_sites(&spec(&mut asm));
        assert_eq!(sites.len(), 1);
        assert_eq!(sites[0].map.as_deref(), Some("jumps"));
        assert_eq!(sites[0].index, TailCallIndex::Constant(3));
        assert!(sites[0].is_direct());
    }

    #[test]
    fn different_constants_on_two_paths_are_dynamic() {
        let mut asm = Assembler::new();
        asm.mov64_imm(Reg::R3, 1)
            .jmp_imm(JmpCond::Eq, Reg::R1, 0, "call")
            .mov64_imm(Reg::R3, 2)
            .label("call")
            .ld_map(Reg::R2, "jumps")
            .call(TAIL_CALL)
            .mov64_imm(Reg::R0, 0)
            .exit();
        let sites = tail_call_sites(&spec(&mut asm));
        assert_eq!(sites[0].index, TailCallIndex::Dynamic);
    }

    #[test]
    fn an_index_through_the_stack_stays_constant() {
        let mut asm = Assembler::new();
        asm.mov64_imm(Reg::R1, 7)
            .store_reg(Size::W, Reg::R10, -4, Reg::R1)
            .load(Size::W, Reg::R3, Reg::R10, -4)
            .ld_map(Reg::R2, "jumps")
            .call(TAIL_CALL)
            .mov64_imm(Reg::R0, 0)
            .exit();
        assert_eq!(tail_call_sites(&spec(&mut asm))[0].index, TailCallIndex::Constant(7));
    }
}
