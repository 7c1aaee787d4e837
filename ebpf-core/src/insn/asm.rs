use std::collections::HashMap;

use super::types::*;

/// A symbolic map reference left in an assembled program: instruction `index` (a 64-bit
/// immediate load) must point at the map called `name` before the program is loaded.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MapReference {
    /// Index into the instruction list (not the raw slot).
    pub index: usize,
    /// Map name.
    pub name: String,
}

/// The output of [`Assembler::finish`]: instructions with jumps resolved, and the map
/// references still to bind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assembled {
    /// The instructions.
    pub instructions: Vec<Instruction>,
    /// Map loads waiting for a map fd.
    pub map_references: Vec<MapReference>,
}

/// Why a program could not be assembled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    /// A jump or call names a label that was never placed.
    #[error("instruction {index}: label \"{label}\" is never defined")]
    UnknownLabel {
        /// Instruction index of the reference.
        index: usize,
        /// The label.
        label: String,
    },
    /// A label placed twice.
    #[error("label \"{0}\" is defined twice")]
    DuplicateLabel(String),
    /// A jump whose distance does not fit the 16-bit offset.
    #[error(
        "instruction {index}: jump to \"{label}\" spans {distance} slots, beyond the 16-bit offset (use a long jump)"
    )]
    JumpOutOfRange {
        /// Instruction index of the jump.
        index: usize,
        /// The label.
        label: String,
        /// The distance in slots.
        distance: i64,
    },
}

#[derive(Clone, Debug)]
enum Fixup {
    /// Jump offset (`off`) to a label.
    Jump(String),
    /// Long jump (`imm`) to a label.
    LongJump(String),
    /// bpf-to-bpf call to a label.
    Call(String),
    /// Subprogram address load to a label.
    FuncAddr(String),
}

/// Builds a program instruction by instruction, with named labels for jumps and calls and
/// named maps for map loads; [`finish`](Assembler::finish) resolves the labels.
#[derive(Clone, Debug, Default)]
pub struct Assembler {
    insns: Vec<Instruction>,
    fixups: Vec<(usize, Fixup)>,
    labels: HashMap<String, usize>,
    duplicate: Option<String>,
    map_references: Vec<MapReference>,
}

impl Assembler {
    /// An empty program.
    pub fn new() -> Assembler {
        Assembler::default()
    }

    /// Appends a decoded instruction as it is.
    pub fn push(&mut self, insn: Instruction) -> &mut Self {
        self.insns.push(insn);
        self
    }

    /// Places `name` at the next instruction.
    pub fn label(&mut self, name: &str) -> &mut Self {
        if self.labels.insert(name.to_owned(), self.insns.len()).is_some() {
            self.duplicate.get_or_insert_with(|| name.to_owned());
        }
        self
    }

    fn fixed(&mut self, insn: Instruction, fixup: Fixup) -> &mut Self {
        self.fixups.push((self.insns.len(), fixup));
        self.push(insn)
    }

    /// `dst = imm` (64-bit).
    pub fn mov64_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.alu64_imm(AluOp::Mov, dst, imm)
    }

    /// `dst = src` (64-bit).
    pub fn mov64_reg(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.alu64_reg(AluOp::Mov, dst, src)
    }

    /// `wdst = imm` (32-bit).
    pub fn mov32_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.alu32_imm(AluOp::Mov, dst, imm)
    }

    /// `dst op= imm` (64-bit).
    pub fn alu64_imm(&mut self, op: AluOp, dst: Reg, imm: i32) -> &mut Self {
        self.push(Instruction::Alu { width: Width::W64, op, dst, src: Source::Imm(imm) })
    }

    /// `dst op= src` (64-bit).
    pub fn alu64_reg(&mut self, op: AluOp, dst: Reg, src: Reg) -> &mut Self {
        self.push(Instruction::Alu { width: Width::W64, op, dst, src: Source::Reg(src) })
    }

    /// `wdst op= imm` (32-bit).
    pub fn alu32_imm(&mut self, op: AluOp, dst: Reg, imm: i32) -> &mut Self {
        self.push(Instruction::Alu { width: Width::W32, op, dst, src: Source::Imm(imm) })
    }

    /// `wdst op= wsrc` (32-bit).
    pub fn alu32_reg(&mut self, op: AluOp, dst: Reg, src: Reg) -> &mut Self {
        self.push(Instruction::Alu { width: Width::W32, op, dst, src: Source::Reg(src) })
    }

    /// `dst = *(size *)(src + off)`.
    pub fn load(&mut self, size: Size, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(Instruction::Load { size, dst, src, off })
    }

    /// `*(size *)(dst + off) = src`.
    pub fn store_reg(&mut self, size: Size, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.push(Instruction::Store { size, dst, off, src: Source::Reg(src) })
    }

    /// `*(size *)(dst + off) = imm`.
    pub fn store_imm(&mut self, size: Size, dst: Reg, off: i16, imm: i32) -> &mut Self {
        self.push(Instruction::Store { size, dst, off, src: Source::Imm(imm) })
    }

    /// Atomic `lock *(size *)(dst + off) op= src` and the fetching forms.
    pub fn atomic(&mut self, op: AtomicOp, size: Size, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.push(Instruction::Atomic { size, op, dst, src, off })
    }

    /// `dst = imm64`.
    pub fn ld_imm64(&mut self, dst: Reg, imm: u64) -> &mut Self {
        self.push(Instruction::LoadImm64 { dst, value: LoadImm64::Imm(imm) })
    }

    /// `dst = &map` for the map called `name`, bound before load.
    pub fn ld_map(&mut self, dst: Reg, name: &str) -> &mut Self {
        self.map_references.push(MapReference { index: self.insns.len(), name: name.to_owned() });
        self.push(Instruction::LoadImm64 { dst, value: LoadImm64::MapFd(0) })
    }

    /// `dst = &map[0] + offset` for the (array) map called `name`, bound before load.
    pub fn ld_map_value(&mut self, dst: Reg, name: &str, offset: u32) -> &mut Self {
        self.map_references.push(MapReference { index: self.insns.len(), name: name.to_owned() });
        self.push(Instruction::LoadImm64 { dst, value: LoadImm64::MapValue { fd: 0, offset } })
    }

    /// `dst = &subprogram` for the subprogram at `label` (callbacks such as `bpf_loop`'s).
    pub fn ld_func(&mut self, dst: Reg, label: &str) -> &mut Self {
        self.fixed(Instruction::LoadImm64 { dst, value: LoadImm64::Func(0) }, Fixup::FuncAddr(label.to_owned()))
    }

    /// `if dst cond imm goto label` (64-bit compare).
    pub fn jmp_imm(&mut self, cond: JmpCond, dst: Reg, imm: i32, label: &str) -> &mut Self {
        let insn = Instruction::Jump { width: Width::W64, cond, dst, src: Source::Imm(imm), off: 0 };
        self.fixed(insn, Fixup::Jump(label.to_owned()))
    }

    /// `if dst cond src goto label` (64-bit compare).
    pub fn jmp_reg(&mut self, cond: JmpCond, dst: Reg, src: Reg, label: &str) -> &mut Self {
        let insn = Instruction::Jump { width: Width::W64, cond, dst, src: Source::Reg(src), off: 0 };
        self.fixed(insn, Fixup::Jump(label.to_owned()))
    }

    /// `if wdst cond imm goto label` (32-bit compare).
    pub fn jmp32_imm(&mut self, cond: JmpCond, dst: Reg, imm: i32, label: &str) -> &mut Self {
        let insn = Instruction::Jump { width: Width::W32, cond, dst, src: Source::Imm(imm), off: 0 };
        self.fixed(insn, Fixup::Jump(label.to_owned()))
    }

    /// `if wdst cond wsrc goto label` (32-bit compare).
    pub fn jmp32_reg(&mut self, cond: JmpCond, dst: Reg, src: Reg, label: &str) -> &mut Self {
        let insn = Instruction::Jump { width: Width::W32, cond, dst, src: Source::Reg(src), off: 0 };
        self.fixed(insn, Fixup::Jump(label.to_owned()))
    }

    /// `goto label`.
    pub fn ja(&mut self, label: &str) -> &mut Self {
        self.fixed(Instruction::Ja { off: 0 }, Fixup::Jump(label.to_owned()))
    }

    /// `gotol label` (32-bit distance, cpu v4).
    pub fn ja_long(&mut self, label: &str) -> &mut Self {
        self.fixed(Instruction::JaLong { imm: 0 }, Fixup::LongJump(label.to_owned()))
    }

    /// Calls helper `id` (see [`helpers`](super::helpers)).
    pub fn call(&mut self, id: i32) -> &mut Self {
        self.push(Instruction::Call(CallTarget::Helper(id)))
    }

    /// bpf-to-bpf call to the subprogram at `label`.
    pub fn call_local(&mut self, label: &str) -> &mut Self {
        self.fixed(Instruction::Call(CallTarget::Local(0)), Fixup::Call(label.to_owned()))
    }

    /// `exit`.
    pub fn exit(&mut self) -> &mut Self {
        self.push(Instruction::Exit)
    }

    /// Number of instructions so far.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// True when nothing has been added.
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// Resolves labels into relative offsets and returns the program.
    pub fn finish(&self) -> Result<Assembled, AsmError> {
        if let Some(label) = &self.duplicate {
            return Err(AsmError::DuplicateLabel(label.clone()));
        }
        // Slot position of every instruction (and of the end), since 64-bit loads take two.
        let mut slots = Vec::with_capacity(self.insns.len() + 1);
        let mut slot = 0i64;
        for insn in &self.insns {
            slots.push(slot);
            slot += insn.slots() as i64;
        }
        slots.push(slot);

        let mut insns = self.insns.clone();
        for (index, fixup) in &self.fixups {
            let label = match fixup {
                Fixup::Jump(l) | Fixup::LongJump(l) | Fixup::Call(l) | Fixup::FuncAddr(l) => l,
            };
            let target = *self
                .labels
                .get(label)
                .ok_or_else(|| AsmError::UnknownLabel { index: *index, label: label.clone() })?;
            let distance = slots[target] - (slots[*index] + 1);
            let out_of_range = || AsmError::JumpOutOfRange { index: *index, label: label.clone(), distance };
            let as_i32 = i32::try_from(distance).map_err(|_| out_of_range())?;
            insns[*index] = match (insns[*index], fixup) {
                (Instruction::Jump { width, cond, dst, src, .. }, Fixup::Jump(_)) => {
                    let off = i16::try_from(distance).map_err(|_| out_of_range())?;
                    Instruction::Jump { width, cond, dst, src, off }
                }
                (Instruction::Ja { .. }, Fixup::Jump(_)) => {
                    Instruction::Ja { off: i16::try_from(distance).map_err(|_| out_of_range())? }
                }
                (Instruction::JaLong { .. }, _) => Instruction::JaLong { imm: as_i32 },
                (Instruction::Call(_), _) => Instruction::Call(CallTarget::Local(as_i32)),
                (Instruction::LoadImm64 { dst, .. }, _) => {
                    Instruction::LoadImm64 { dst, value: LoadImm64::Func(as_i32) }
                }
                (other, _) => other,
            };
        }
        Ok(Assembled { instructions: insns, map_references: self.map_references.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_count_slots_including_wide_loads() {
        let mut asm = Assembler::new();
        asm.ja("end").ld_imm64(Reg::R1, 7).mov64_imm(Reg::R0, 1).label("end").exit();
        let out = asm.finish().unwrap();
        assert_eq!(out.instructions[0], Instruction::Ja { off: 3 });
    }

    #[test]
    fn backward_jumps_and_calls_resolve() {
        let mut asm = Assembler::new();
        asm.call_local("sub")
            .exit()
            .label("sub")
            .label("loop")
            .mov64_imm(Reg::R0, 0)
            .jmp_imm(JmpCond::Ne, Reg::R0, 0, "loop")
            .exit();
        let out = asm.finish().unwrap();
        assert_eq!(out.instructions[0], Instruction::Call(CallTarget::Local(1)));
        assert!(matches!(out.instructions[3], Instruction::Jump { off: -2, .. }));
    }

    #[test]
    fn bad_labels_are_reported() {
        let mut asm = Assembler::new();
        asm.ja("nowhere");
        assert_eq!(asm.finish(), Err(AsmError::UnknownLabel { index: 0, label: "nowhere".into() }));
        let mut asm = Assembler::new();
        asm.label("a").exit().label("a");
        assert_eq!(asm.finish(), Err(AsmError::DuplicateLabel("a".into())));
        let mut asm = Assembler::new();
        asm.ja("far");
        for _ in 0..40_000 {
            asm.exit();
        }
        asm.label("far").exit();
        assert!(matches!(asm.finish(), Err(AsmError::JumpOutOfRange { distance: 40_000, .. })));
    }

    #[test]
    fn map_loads_are_left_as_named_references() {
        let mut asm = Assembler::new();
        asm.mov64_imm(Reg::R0, 0).ld_map(Reg::R1, "counters").exit();
        let out = asm.finish().unwrap();
        assert_eq!(out.map_references, vec![MapReference { index: 1, name: "counters".into() }]);
    }
}
