use super::types::*;

/// One raw 8-byte instruction slot (`struct bpf_insn`): opcode, registers, offset, immediate.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RawInsn {
    /// Opcode.
    pub code: u8,
    /// `dst_reg` in the low nibble, `src_reg` in the high nibble (little-endian layout).
    pub regs: u8,
    /// Signed offset.
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

impl RawInsn {
    /// Builds a slot from its fields.
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> RawInsn {
        RawInsn { code, regs: (dst & 0xf) | (src << 4), off, imm }
    }

    /// Destination register number.
    pub const fn dst(self) -> u8 {
        self.regs & 0xf
    }

    /// Source register number.
    pub const fn src(self) -> u8 {
        self.regs >> 4
    }

    /// The 8 bytes as the kernel reads them.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[0] = self.code;
        out[1] = self.regs;
        out[2..4].copy_from_slice(&self.off.to_le_bytes());
        out[4..8].copy_from_slice(&self.imm.to_le_bytes());
        out
    }

    /// Reads a slot from 8 bytes.
    pub fn from_bytes(bytes: [u8; 8]) -> RawInsn {
        RawInsn {
            code: bytes[0],
            regs: bytes[1],
            off: i16::from_le_bytes([bytes[2], bytes[3]]),
            imm: i32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        }
    }
}

// Opcode fields (include/uapi/linux/bpf_common.h and bpf.h).
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const JMP32: u8 = 0x06;
const ALU64: u8 = 0x07;

const MODE_IMM: u8 = 0x00;
const MODE_ABS: u8 = 0x20;
const MODE_IND: u8 = 0x40;
const MODE_MEM: u8 = 0x60;
const MODE_MEMSX: u8 = 0x80;
const MODE_ATOMIC: u8 = 0xc0;

const SRC_X: u8 = 0x08;

const OP_NEG: u8 = 0x80;
const OP_END: u8 = 0xd0;
const OP_MOV: u8 = 0xb0;
const OP_DIV: u8 = 0x30;
const OP_MOD: u8 = 0x90;

const JA: u8 = 0x00;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;
const JCOND: u8 = 0xe0;

const FETCH: i32 = 0x01;
const XCHG: i32 = 0xe0 | FETCH;
const CMPXCHG: i32 = 0xf0 | FETCH;
const LOAD_ACQ: i32 = 0x100;
const STORE_REL: i32 = 0x110;

const ADDR_SPACE_CAST: i16 = 1;

fn size_bits(size: Size) -> u8 {
    match size {
        Size::W => 0x00,
        Size::H => 0x08,
        Size::B => 0x10,
        Size::DW => 0x18,
    }
}

fn size_from_bits(code: u8) -> Size {
    match code & 0x18 {
        0x00 => Size::W,
        0x08 => Size::H,
        0x10 => Size::B,
        _ => Size::DW,
    }
}

fn alu_op_bits(op: AluOp) -> (u8, i16) {
    match op {
        AluOp::Add => (0x00, 0),
        AluOp::Sub => (0x10, 0),
        AluOp::Mul => (0x20, 0),
        AluOp::Div => (OP_DIV, 0),
        AluOp::SDiv => (OP_DIV, 1),
        AluOp::Or => (0x40, 0),
        AluOp::And => (0x50, 0),
        AluOp::Lsh => (0x60, 0),
        AluOp::Rsh => (0x70, 0),
        AluOp::Mod => (OP_MOD, 0),
        AluOp::SMod => (OP_MOD, 1),
        AluOp::Xor => (0xa0, 0),
        AluOp::Mov => (OP_MOV, 0),
        AluOp::Arsh => (0xc0, 0),
    }
}

fn alu_op_from_bits(op: u8, off: i16) -> Option<AluOp> {
    Some(match (op, off) {
        (0x00, _) => AluOp::Add,
        (0x10, _) => AluOp::Sub,
        (0x20, _) => AluOp::Mul,
        (OP_DIV, 1) => AluOp::SDiv,
        (OP_DIV, _) => AluOp::Div,
        (0x40, _) => AluOp::Or,
        (0x50, _) => AluOp::And,
        (0x60, _) => AluOp::Lsh,
        (0x70, _) => AluOp::Rsh,
        (OP_MOD, 1) => AluOp::SMod,
        (OP_MOD, _) => AluOp::Mod,
        (0xa0, _) => AluOp::Xor,
        (OP_MOV, _) => AluOp::Mov,
        (0xc0, _) => AluOp::Arsh,
        _ => return None,
    })
}

fn jmp_bits(cond: JmpCond) -> u8 {
    match cond {
        JmpCond::Eq => 0x10,
        JmpCond::Gt => 0x20,
        JmpCond::Ge => 0x30,
        JmpCond::Set => 0x40,
        JmpCond::Ne => 0x50,
        JmpCond::Sgt => 0x60,
        JmpCond::Sge => 0x70,
        JmpCond::Lt => 0xa0,
        JmpCond::Le => 0xb0,
        JmpCond::Slt => 0xc0,
        JmpCond::Sle => 0xd0,
    }
}

fn jmp_from_bits(op: u8) -> Option<JmpCond> {
    Some(match op {
        0x10 => JmpCond::Eq,
        0x20 => JmpCond::Gt,
        0x30 => JmpCond::Ge,
        0x40 => JmpCond::Set,
        0x50 => JmpCond::Ne,
        0x60 => JmpCond::Sgt,
        0x70 => JmpCond::Sge,
        0xa0 => JmpCond::Lt,
        0xb0 => JmpCond::Le,
        0xc0 => JmpCond::Slt,
        0xd0 => JmpCond::Sle,
        _ => return None,
    })
}

fn atomic_imm(op: AtomicOp) -> i32 {
    match op {
        AtomicOp::Add => 0x00,
        AtomicOp::Or => 0x40,
        AtomicOp::And => 0x50,
        AtomicOp::Xor => 0xa0,
        AtomicOp::FetchAdd => FETCH,
        AtomicOp::FetchOr => 0x40 | FETCH,
        AtomicOp::FetchAnd => 0x50 | FETCH,
        AtomicOp::FetchXor => 0xa0 | FETCH,
        AtomicOp::Xchg => XCHG,
        AtomicOp::CmpXchg => CMPXCHG,
        AtomicOp::LoadAcquire => LOAD_ACQ,
        AtomicOp::StoreRelease => STORE_REL,
    }
}

fn atomic_from_imm(imm: i32) -> Option<AtomicOp> {
    Some(match imm {
        0x00 => AtomicOp::Add,
        0x40 => AtomicOp::Or,
        0x50 => AtomicOp::And,
        0xa0 => AtomicOp::Xor,
        FETCH => AtomicOp::FetchAdd,
        0x41 => AtomicOp::FetchOr,
        0x51 => AtomicOp::FetchAnd,
        0xa1 => AtomicOp::FetchXor,
        XCHG => AtomicOp::Xchg,
        CMPXCHG => AtomicOp::CmpXchg,
        LOAD_ACQ => AtomicOp::LoadAcquire,
        STORE_REL => AtomicOp::StoreRelease,
        _ => return None,
    })
}

fn class_alu(width: Width) -> u8 {
    match width {
        Width::W32 => ALU,
        Width::W64 => ALU64,
    }
}

fn class_jmp(width: Width) -> u8 {
    match width {
        Width::W32 => JMP32,
        Width::W64 => JMP,
    }
}

impl Instruction {
    /// The raw slot(s): the second is present only for 64-bit immediate loads.
    pub fn to_raw(&self) -> (RawInsn, Option<RawInsn>) {
        let one = |code, dst: Reg, src: u8, off, imm| (RawInsn::new(code, dst.number(), src, off, imm), None);
        let r0 = Reg::R0;
        match *self {
            Instruction::Alu { width, op, dst, src } => {
                let (bits, off) = alu_op_bits(op);
                match src {
                    Source::Reg(s) => one(class_alu(width) | bits | SRC_X, dst, s.number(), off, 0),
                    Source::Imm(imm) => one(class_alu(width) | bits, dst, 0, off, imm),
                }
            }
            Instruction::MovSx { width, dst, src, bits } => {
                one(class_alu(width) | OP_MOV | SRC_X, dst, src.number(), i16::from(bits), 0)
            }
            Instruction::Neg { width, dst } => one(class_alu(width) | OP_NEG, dst, 0, 0, 0),
            Instruction::Endian { kind, dst, bits } => {
                let code = match kind {
                    EndianKind::ToLe => ALU | OP_END,
                    EndianKind::ToBe => ALU | OP_END | SRC_X,
                    EndianKind::Bswap => ALU64 | OP_END,
                };
                one(code, dst, 0, 0, i32::from(bits))
            }
            Instruction::AddrSpaceCast { dst, src, imm } => {
                one(ALU64 | OP_MOV | SRC_X, dst, src.number(), ADDR_SPACE_CAST, imm)
            }
            Instruction::Load { size, dst, src, off } => {
                one(LDX | MODE_MEM | size_bits(size), dst, src.number(), off, 0)
            }
            Instruction::LoadSx { size, dst, src, off } => {
                one(LDX | MODE_MEMSX | size_bits(size), dst, src.number(), off, 0)
            }
            Instruction::Store { size, dst, off, src: Source::Reg(s) } => {
                one(STX | MODE_MEM | size_bits(size), dst, s.number(), off, 0)
            }
            Instruction::Store { size, dst, off, src: Source::Imm(imm) } => {
                one(ST | MODE_MEM | size_bits(size), dst, 0, off, imm)
            }
            Instruction::Atomic { size, op, dst, src, off } => {
                one(STX | MODE_ATOMIC | size_bits(size), dst, src.number(), off, atomic_imm(op))
            }
            Instruction::LoadImm64 { dst, value } => {
                let (src, lo, hi) = match value {
                    LoadImm64::Imm(v) => (0, v as u32 as i32, (v >> 32) as u32 as i32),
                    LoadImm64::MapFd(fd) => (1, fd, 0),
                    LoadImm64::MapValue { fd, offset } => (2, fd, offset as i32),
                    LoadImm64::BtfId { btf_id, btf_fd } => (3, btf_id, btf_fd),
                    LoadImm64::Func(rel) => (4, rel, 0),
                    LoadImm64::MapIdx(index) => (5, index, 0),
                    LoadImm64::MapIdxValue { index, offset } => (6, index, offset as i32),
                };
                (
                    RawInsn::new(LD | MODE_IMM | size_bits(Size::DW), dst.number(), src, 0, lo),
                    Some(RawInsn::new(0, 0, 0, 0, hi)),
                )
            }
            Instruction::LoadAbs { size, imm } => one(LD | MODE_ABS | size_bits(size), r0, 0, 0, imm),
            Instruction::LoadInd { size, src, imm } => one(LD | MODE_IND | size_bits(size), r0, src.number(), 0, imm),
            Instruction::Ja { off } => one(JMP | JA, r0, 0, off, 0),
            Instruction::JaLong { imm } => one(JMP32 | JA, r0, 0, 0, imm),
            Instruction::MayGoto { off } => one(JMP | JCOND, r0, 0, off, 0),
            Instruction::Jump { width, cond, dst, src: Source::Reg(s), off } => {
                one(class_jmp(width) | jmp_bits(cond) | SRC_X, dst, s.number(), off, 0)
            }
            Instruction::Jump { width, cond, dst, src: Source::Imm(imm), off } => {
                one(class_jmp(width) | jmp_bits(cond), dst, 0, off, imm)
            }
            Instruction::Call(CallTarget::Helper(id)) => one(JMP | CALL, r0, 0, 0, id),
            Instruction::Call(CallTarget::Local(rel)) => one(JMP | CALL, r0, 1, 0, rel),
            Instruction::Call(CallTarget::Kfunc { btf_id, btf_fd_index }) => {
                one(JMP | CALL, r0, 2, btf_fd_index, btf_id)
            }
            Instruction::Exit => one(JMP | EXIT, r0, 0, 0, 0),
            Instruction::Nospec => one(ST | MODE_ATOMIC, r0, 0, 0, 0),
        }
    }

    /// The opcode byte of the (first) slot.
    pub fn opcode(&self) -> u8 {
        self.to_raw().0.code
    }
}

/// Why raw bytes are not a valid instruction stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The byte length is not a multiple of 8.
    #[error("instruction bytes are {0} long, not a multiple of 8")]
    Length(usize),
    /// An opcode no instruction has.
    #[error("instruction {index}: unknown opcode {code:#04x}")]
    UnknownOpcode {
        /// Slot index.
        index: usize,
        /// The opcode.
        code: u8,
    },
    /// A register above r10.
    #[error("instruction {index}: register r{reg} does not exist")]
    InvalidRegister {
        /// Slot index.
        index: usize,
        /// The register number.
        reg: u8,
    },
    /// A field value the opcode does not allow (endian width, atomic op, pseudo source…).
    #[error("instruction {index} (opcode {code:#04x}): invalid {field} {value}")]
    InvalidField {
        /// Slot index.
        index: usize,
        /// The opcode.
        code: u8,
        /// Which field.
        field: &'static str,
        /// Its value.
        value: i64,
    },
    /// A 64-bit immediate load in the last slot, missing its second half.
    #[error("instruction {0}: 64-bit immediate load is missing its second slot")]
    TruncatedLoadImm64(usize),
}

fn reg(index: usize, n: u8) -> Result<Reg, DecodeError> {
    Reg::new(n).ok_or(DecodeError::InvalidRegister { index, reg: n })
}

fn decode_one(raw: &[RawInsn], index: usize) -> Result<Instruction, DecodeError> {
    let insn = raw[index];
    let code = insn.code;
    let class = code & 0x07;
    let unknown = DecodeError::UnknownOpcode { index, code };
    let invalid = |field, value: i64| DecodeError::InvalidField { index, code, field, value };
    let dst = reg(index, insn.dst())?;
    let src_reg = || reg(index, insn.src());
    Ok(match class {
        ALU | ALU64 => {
            let width = if class == ALU { Width::W32 } else { Width::W64 };
            let op = code & 0xf0;
            let by_reg = code & SRC_X != 0;
            match op {
                OP_NEG => Instruction::Neg { width, dst },
                OP_END => {
                    let bits = match insn.imm {
                        16 | 32 | 64 => insn.imm as u8,
                        other => return Err(invalid("endian width", i64::from(other))),
                    };
                    let kind = match (class, by_reg) {
                        (ALU, false) => EndianKind::ToLe,
                        (ALU, true) => EndianKind::ToBe,
                        (_, false) => EndianKind::Bswap,
                        (_, true) => return Err(unknown),
                    };
                    Instruction::Endian { kind, dst, bits }
                }
                OP_MOV if by_reg && matches!(insn.off, 8 | 16 | 32) => {
                    Instruction::MovSx { width, dst, src: src_reg()?, bits: insn.off as u8 }
                }
                OP_MOV if by_reg && class == ALU64 && insn.off == ADDR_SPACE_CAST => {
                    Instruction::AddrSpaceCast { dst, src: src_reg()?, imm: insn.imm }
                }
                _ => {
                    let op = alu_op_from_bits(op, insn.off).ok_or(unknown)?;
                    let src = if by_reg { Source::Reg(src_reg()?) } else { Source::Imm(insn.imm) };
                    Instruction::Alu { width, op, dst, src }
                }
            }
        }
        LDX => {
            let size = size_from_bits(code);
            match code & 0xe0 {
                MODE_MEM => Instruction::Load { size, dst, src: src_reg()?, off: insn.off },
                MODE_MEMSX if size != Size::DW => Instruction::LoadSx { size, dst, src: src_reg()?, off: insn.off },
                _ => return Err(unknown),
            }
        }
        ST => match code & 0xe0 {
            MODE_MEM => {
                Instruction::Store { size: size_from_bits(code), dst, off: insn.off, src: Source::Imm(insn.imm) }
            }
            MODE_ATOMIC if code == ST | MODE_ATOMIC => Instruction::Nospec,
            _ => return Err(unknown),
        },
        STX => {
            let size = size_from_bits(code);
            match code & 0xe0 {
                MODE_MEM => Instruction::Store { size, dst, off: insn.off, src: Source::Reg(src_reg()?) },
                MODE_ATOMIC => {
                    let op = atomic_from_imm(insn.imm).ok_or(invalid("atomic operation", i64::from(insn.imm)))?;
                    let any_size = matches!(op, AtomicOp::LoadAcquire | AtomicOp::StoreRelease);
                    if !any_size && !matches!(size, Size::W | Size::DW) {
                        return Err(unknown);
                    }
                    Instruction::Atomic { size, op, dst, src: src_reg()?, off: insn.off }
                }
                _ => return Err(unknown),
            }
        }
        LD => {
            let size = size_from_bits(code);
            match code & 0xe0 {
                MODE_IMM if size == Size::DW => {
                    let next = raw.get(index + 1).ok_or(DecodeError::TruncatedLoadImm64(index))?;
                    let (lo, hi) = (insn.imm, next.imm);
                    let value = match insn.src() {
                        0 => LoadImm64::Imm(u64::from(lo as u32) | (u64::from(hi as u32) << 32)),
                        1 => LoadImm64::MapFd(lo),
                        2 => LoadImm64::MapValue { fd: lo, offset: hi as u32 },
                        3 => LoadImm64::BtfId { btf_id: lo, btf_fd: hi },
                        4 => LoadImm64::Func(lo),
                        5 => LoadImm64::MapIdx(lo),
                        6 => LoadImm64::MapIdxValue { index: lo, offset: hi as u32 },
                        other => return Err(invalid("pseudo source", i64::from(other))),
                    };
                    Instruction::LoadImm64 { dst, value }
                }
                MODE_ABS if size != Size::DW => Instruction::LoadAbs { size, imm: insn.imm },
                MODE_IND if size != Size::DW => Instruction::LoadInd { size, src: src_reg()?, imm: insn.imm },
                _ => return Err(unknown),
            }
        }
        _ => {
            // JMP or JMP32
            let width = if class == JMP32 { Width::W32 } else { Width::W64 };
            let op = code & 0xf0;
            let by_reg = code & SRC_X != 0;
            match (op, class) {
                (JA, JMP) if !by_reg => Instruction::Ja { off: insn.off },
                (JA, JMP32) if !by_reg => Instruction::JaLong { imm: insn.imm },
                (JCOND, JMP) if !by_reg && insn.src() == 0 => Instruction::MayGoto { off: insn.off },
                (CALL, JMP) if !by_reg => Instruction::Call(match insn.src() {
                    0 => CallTarget::Helper(insn.imm),
                    1 => CallTarget::Local(insn.imm),
                    2 => CallTarget::Kfunc { btf_id: insn.imm, btf_fd_index: insn.off },
                    other => return Err(invalid("call kind", i64::from(other))),
                }),
                (EXIT, JMP) if !by_reg => Instruction::Exit,
                _ => {
                    let cond = jmp_from_bits(op).ok_or(unknown)?;
                    let src = if by_reg { Source::Reg(src_reg()?) } else { Source::Imm(insn.imm) };
                    Instruction::Jump { width, cond, dst, src, off: insn.off }
                }
            }
        }
    })
}

/// Decodes raw slots into instructions. Never panics, whatever the input.
pub fn decode(raw: &[RawInsn]) -> Result<Vec<Instruction>, DecodeError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut index = 0;
    while index < raw.len() {
        let insn = decode_one(raw, index)?;
        index += insn.slots();
        out.push(insn);
    }
    Ok(out)
}

/// Decodes little-endian instruction bytes (as in an ELF section or an xlated dump).
pub fn decode_bytes(bytes: &[u8]) -> Result<Vec<Instruction>, DecodeError> {
    if bytes.len() % 8 != 0 {
        return Err(DecodeError::Length(bytes.len()));
    }
    let raw: Vec<RawInsn> = bytes
        .chunks_exact(8)
        .map(|c| RawInsn::from_bytes(c.try_into().expect("chunks_exact yields 8 bytes")))
        .collect();
    decode(&raw)
}

/// Encodes instructions into raw slots.
pub fn encode(insns: &[Instruction]) -> Vec<RawInsn> {
    let mut out = Vec::with_capacity(insns.len() + insns.len() / 8);
    for insn in insns {
        let (first, second) = insn.to_raw();
        out.push(first);
        out.extend(second);
    }
    out
}

/// The raw slot each instruction starts at (64-bit loads take two slots).
pub fn slot_offsets(insns: &[Instruction]) -> Vec<usize> {
    let mut offsets = Vec::with_capacity(insns.len());
    let mut slot = 0;
    for insn in insns {
        offsets.push(slot);
        slot += insn.slots();
    }
    offsets
}

/// Encodes instructions into little-endian bytes.
pub fn encode_bytes(insns: &[Instruction]) -> Vec<u8> {
    encode(insns).into_iter().flat_map(RawInsn::to_bytes).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_reg() -> impl Strategy<Value = Reg> {
        (0u8..=10).prop_map(|n| Reg::new(n).unwrap())
    }
    fn any_width() -> impl Strategy<Value = Width> {
        prop_oneof![Just(Width::W32), Just(Width::W64)]
    }
    fn any_size() -> impl Strategy<Value = Size> {
        prop_oneof![Just(Size::B), Just(Size::H), Just(Size::W), Just(Size::DW)]
    }
    fn any_source() -> impl Strategy<Value = Source> {
        prop_oneof![any_reg().prop_map(Source::Reg), any::<i32>().prop_map(Source::Imm)]
    }
    fn any_alu_op() -> impl Strategy<Value = AluOp> {
        use AluOp::*;
        proptest::sample::select(vec![Add, Sub, Mul, Div, SDiv, Or, And, Lsh, Rsh, Mod, SMod, Xor, Mov, Arsh])
    }
    fn any_cond() -> impl Strategy<Value = JmpCond> {
        use JmpCond::*;
        proptest::sample::select(vec![Eq, Gt, Ge, Set, Ne, Sgt, Sge, Lt, Le, Slt, Sle])
    }
    fn any_atomic() -> impl Strategy<Value = (AtomicOp, Size)> {
        use AtomicOp::*;
        let rmw =
            proptest::sample::select(vec![Add, Or, And, Xor, FetchAdd, FetchOr, FetchAnd, FetchXor, Xchg, CmpXchg]);
        let ordered = proptest::sample::select(vec![LoadAcquire, StoreRelease]);
        prop_oneof![(rmw, prop_oneof![Just(Size::W), Just(Size::DW)]), (ordered, any_size()),]
    }
    fn any_imm64() -> impl Strategy<Value = LoadImm64> {
        prop_oneof![
            any::<u64>().prop_map(LoadImm64::Imm),
            any::<i32>().prop_map(LoadImm64::MapFd),
            (any::<i32>(), any::<u32>()).prop_map(|(fd, offset)| LoadImm64::MapValue { fd, offset }),
            (any::<i32>(), any::<i32>()).prop_map(|(btf_id, btf_fd)| LoadImm64::BtfId { btf_id, btf_fd }),
            any::<i32>().prop_map(LoadImm64::Func),
            any::<i32>().prop_map(LoadImm64::MapIdx),
            (any::<i32>(), any::<u32>()).prop_map(|(index, offset)| LoadImm64::MapIdxValue { index, offset }),
        ]
    }
    fn small_size() -> impl Strategy<Value = Size> {
        prop_oneof![Just(Size::B), Just(Size::H), Just(Size::W)]
    }

    fn any_insn() -> impl Strategy<Value = Instruction> {
        prop_oneof![
            (any_width(), any_alu_op(), any_reg(), any_source()).prop_map(|(width, op, dst, src)| Instruction::Alu {
                width,
                op,
                dst,
                src
            }),
            (any_width(), any_reg(), any_reg(), proptest::sample::select(vec![8u8, 16, 32]))
                .prop_map(|(width, dst, src, bits)| Instruction::MovSx { width, dst, src, bits }),
            (any_width(), any_reg()).prop_map(|(width, dst)| Instruction::Neg { width, dst }),
            (
                proptest::sample::select(vec![EndianKind::ToLe, EndianKind::ToBe, EndianKind::Bswap]),
                any_reg(),
                proptest::sample::select(vec![16u8, 32, 64])
            )
                .prop_map(|(kind, dst, bits)| Instruction::Endian { kind, dst, bits }),
            (any_reg(), any_reg(), any::<i32>()).prop_map(|(dst, src, imm)| Instruction::AddrSpaceCast {
                dst,
                src,
                imm
            }),
            (any_size(), any_reg(), any_reg(), any::<i16>())
                .prop_map(|(size, dst, src, off)| { Instruction::Load { size, dst, src, off } }),
            (small_size(), any_reg(), any_reg(), any::<i16>())
                .prop_map(|(size, dst, src, off)| { Instruction::LoadSx { size, dst, src, off } }),
            (any_size(), any_reg(), any::<i16>(), any_source()).prop_map(|(size, dst, off, src)| Instruction::Store {
                size,
                dst,
                off,
                src
            }),
            (any_atomic(), any_reg(), any_reg(), any::<i16>())
                .prop_map(|((op, size), dst, src, off)| Instruction::Atomic { size, op, dst, src, off }),
            (any_reg(), any_imm64()).prop_map(|(dst, value)| Instruction::LoadImm64 { dst, value }),
            (small_size(), any::<i32>()).prop_map(|(size, imm)| Instruction::LoadAbs { size, imm }),
            (small_size(), any_reg(), any::<i32>()).prop_map(|(size, src, imm)| Instruction::LoadInd {
                size,
                src,
                imm
            }),
            any::<i16>().prop_map(|off| Instruction::Ja { off }),
            any::<i32>().prop_map(|imm| Instruction::JaLong { imm }),
            any::<i16>().prop_map(|off| Instruction::MayGoto { off }),
            (any_width(), any_cond(), any_reg(), any_source(), any::<i16>())
                .prop_map(|(width, cond, dst, src, off)| Instruction::Jump { width, cond, dst, src, off }),
            any::<i32>().prop_map(|id| Instruction::Call(CallTarget::Helper(id))),
            any::<i32>().prop_map(|rel| Instruction::Call(CallTarget::Local(rel))),
            (any::<i32>(), any::<i16>())
                .prop_map(|(btf_id, btf_fd_index)| Instruction::Call(CallTarget::Kfunc { btf_id, btf_fd_index })),
            Just(Instruction::Exit),
            Just(Instruction::Nospec),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn encoding_then_decoding_is_the_identity(insns in proptest::collection::vec(any_insn(), 0..32)) {
            let bytes = encode_bytes(&insns);
            prop_assert_eq!(decode_bytes(&bytes).unwrap(), insns);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(insns) = decode_bytes(&bytes) {
                // Whatever decodes re-encodes to the same number of slots.
                prop_assert_eq!(encode(&insns).len() * 8, bytes.len());
            }
        }
    }

    #[test]
    fn known_encodings_match_clang_output() {
        // r0 = 0; exit  — as clang emits for `return 0;`
        let insns = [
            Instruction::Alu { width: Width::W64, op: AluOp::Mov, dst: Reg::R0, src: Source::Imm(0) },
            Instruction::Exit,
        ];
        assert_eq!(encode_bytes(&insns), [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0]);
        let ld = Instruction::LoadImm64 { dst: Reg::R1, value: LoadImm64::MapFd(5) };
        assert_eq!(encode(&[ld])[0], RawInsn::new(0x18, 1, 1, 0, 5));
    }

    #[test]
    fn broken_streams_are_errors_not_panics() {
        assert_eq!(decode_bytes(&[0; 7]), Err(DecodeError::Length(7)));
        assert_eq!(decode(&[RawInsn::new(0x18, 0, 0, 0, 0)]), Err(DecodeError::TruncatedLoadImm64(0)));
        assert!(matches!(
            decode(&[RawInsn::new(0xb7, 11, 0, 0, 0)]),
            Err(DecodeError::InvalidRegister { reg: 11, .. })
        ));
        assert!(matches!(decode(&[RawInsn::new(0xff, 0, 0, 0, 0)]), Err(DecodeError::UnknownOpcode { .. })));
    }
}
