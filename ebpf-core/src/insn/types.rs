use std::fmt;

/// A register: `r0` (return value) to `r10` (read-only frame pointer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reg(u8);

impl Reg {
    /// Return value, and helper results.
    pub const R0: Reg = Reg(0);
    /// First argument; the program's context on entry.
    pub const R1: Reg = Reg(1);
    /// Second argument.
    pub const R2: Reg = Reg(2);
    /// Third argument.
    pub const R3: Reg = Reg(3);
    /// Fourth argument.
    pub const R4: Reg = Reg(4);
    /// Fifth argument.
    pub const R5: Reg = Reg(5);
    /// Callee-saved.
    pub const R6: Reg = Reg(6);
    /// Callee-saved.
    pub const R7: Reg = Reg(7);
    /// Callee-saved.
    pub const R8: Reg = Reg(8);
    /// Callee-saved.
    pub const R9: Reg = Reg(9);
    /// Frame pointer (read-only).
    pub const R10: Reg = Reg(10);

    /// The register numbered `n`, if `n` is 0..=10.
    pub const fn new(n: u8) -> Option<Reg> {
        if n <= 10 {
            Some(Reg(n))
        } else {
            None
        }
    }

    /// The register number.
    pub const fn number(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// Operand width: 32-bit (`BPF_ALU`, `BPF_JMP32`) or 64-bit (`BPF_ALU64`, `BPF_JMP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Width {
    /// 32-bit: upper half of the destination is zeroed (ALU) or ignored (jumps).
    W32,
    /// 64-bit.
    W64,
}

/// The second operand: a register (`BPF_X`) or a 32-bit immediate (`BPF_K`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A register.
    Reg(Reg),
    /// An immediate, sign-extended for 64-bit operations.
    Imm(i32),
}

/// Arithmetic operations with two operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AluOp {
    /// `+=`
    Add,
    /// `-=`
    Sub,
    /// `*=`
    Mul,
    /// Unsigned `/=`.
    Div,
    /// Signed `s/=` (cpu v4).
    SDiv,
    /// `|=`
    Or,
    /// `&=`
    And,
    /// `<<=`
    Lsh,
    /// Logical `>>=`.
    Rsh,
    /// Unsigned `%=`.
    Mod,
    /// Signed `s%=` (cpu v4).
    SMod,
    /// `^=`
    Xor,
    /// `=`
    Mov,
    /// Arithmetic `s>>=`.
    Arsh,
}

/// Memory access size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Size {
    /// 1 byte (`BPF_B`).
    B,
    /// 2 bytes (`BPF_H`).
    H,
    /// 4 bytes (`BPF_W`).
    W,
    /// 8 bytes (`BPF_DW`).
    DW,
}

impl Size {
    /// Bytes accessed.
    pub fn bytes(self) -> usize {
        match self {
            Size::B => 1,
            Size::H => 2,
            Size::W => 4,
            Size::DW => 8,
        }
    }
}

/// Conditional jump comparisons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JmpCond {
    /// `==`
    Eq,
    /// Unsigned `>`.
    Gt,
    /// Unsigned `>=`.
    Ge,
    /// `&` (any common bit set).
    Set,
    /// `!=`
    Ne,
    /// Signed `s>`.
    Sgt,
    /// Signed `s>=`.
    Sge,
    /// Unsigned `<`.
    Lt,
    /// Unsigned `<=`.
    Le,
    /// Signed `s<`.
    Slt,
    /// Signed `s<=`.
    Sle,
}

/// Atomic read-modify-write operations (`BPF_ATOMIC` mode; the operation sits in `imm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AtomicOp {
    /// `lock *(size *)(dst + off) += src`
    Add,
    /// `lock ... |= src`
    Or,
    /// `lock ... &= src`
    And,
    /// `lock ... ^= src`
    Xor,
    /// `src = atomic_fetch_add(...)`
    FetchAdd,
    /// `src = atomic_fetch_or(...)`
    FetchOr,
    /// `src = atomic_fetch_and(...)`
    FetchAnd,
    /// `src = atomic_fetch_xor(...)`
    FetchXor,
    /// `src = atomic_xchg(...)`
    Xchg,
    /// `r0 = atomic_cmpxchg(..., r0, src)`
    CmpXchg,
    /// `dst = load_acquire(...)` (cpu v4, kernel 6.15+); `dst` here is the loaded register.
    LoadAcquire,
    /// `store_release(..., src)` (kernel 6.15+).
    StoreRelease,
}

/// Byte-order conversions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndianKind {
    /// To little-endian (`BPF_ALU | BPF_END | BPF_TO_LE`).
    ToLe,
    /// To big-endian (`BPF_ALU | BPF_END | BPF_TO_BE`).
    ToBe,
    /// Unconditional byte swap (`BPF_ALU64 | BPF_END`, cpu v4).
    Bswap,
}

/// What a 64-bit immediate load (`BPF_LD | BPF_IMM | BPF_DW`) loads, by its `src_reg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoadImm64 {
    /// A plain 64-bit constant.
    Imm(u64),
    /// `BPF_PSEUDO_MAP_FD`: pointer to the map with this fd.
    MapFd(i32),
    /// `BPF_PSEUDO_MAP_VALUE`: pointer into the value of the (array) map with this fd.
    MapValue {
        /// Map fd.
        fd: i32,
        /// Byte offset into the value.
        offset: u32,
    },
    /// `BPF_PSEUDO_BTF_ID`: address of a kernel symbol by BTF id (ksym).
    BtfId {
        /// BTF type id of the variable.
        btf_id: i32,
        /// Index into the fd array of the module BTF, or 0 for vmlinux.
        btf_fd: i32,
    },
    /// `BPF_PSEUDO_FUNC`: address of a subprogram, relative to the next instruction.
    Func(i32),
    /// `BPF_PSEUDO_MAP_IDX`: map by index into the load's fd array.
    MapIdx(i32),
    /// `BPF_PSEUDO_MAP_IDX_VALUE`: map value by fd-array index.
    MapIdxValue {
        /// Index into the fd array.
        index: i32,
        /// Byte offset into the value.
        offset: u32,
    },
}

/// What a call instruction calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallTarget {
    /// A helper by id (`enum bpf_func_id`); after verification, an address delta.
    Helper(i32),
    /// A bpf-to-bpf call (`BPF_PSEUDO_CALL`), relative to the next instruction.
    Local(i32),
    /// A kernel function (`BPF_PSEUDO_KFUNC_CALL`) by BTF id, in the BTF at `btf_fd_index`.
    Kfunc {
        /// BTF id of the function.
        btf_id: i32,
        /// Index into the fd array of the module BTF (0 for vmlinux).
        btf_fd_index: i16,
    },
}

/// One decoded instruction. [`LoadImm64`](Instruction::LoadImm64) occupies two raw slots; every
/// other instruction one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Instruction {
    /// `dst op= src`.
    Alu {
        /// 32- or 64-bit.
        width: Width,
        /// The operation.
        op: AluOp,
        /// Destination (and first operand).
        dst: Reg,
        /// Second operand.
        src: Source,
    },
    /// `dst = (s8|s16|s32)src`: sign-extending move (cpu v4).
    MovSx {
        /// 32- or 64-bit destination.
        width: Width,
        /// Destination.
        dst: Reg,
        /// Source.
        src: Reg,
        /// Source width in bits: 8, 16 or 32.
        bits: u8,
    },
    /// `dst = -dst`.
    Neg {
        /// 32- or 64-bit.
        width: Width,
        /// The register.
        dst: Reg,
    },
    /// Byte-order conversion of the low `bits` (16, 32 or 64) of `dst`.
    Endian {
        /// Conversion.
        kind: EndianKind,
        /// The register.
        dst: Reg,
        /// 16, 32 or 64.
        bits: u8,
    },
    /// `dst = addr_space_cast(src, dst_as, src_as)` (arena pointers).
    AddrSpaceCast {
        /// Destination.
        dst: Reg,
        /// Source.
        src: Reg,
        /// `(dst_as << 16) | src_as`.
        imm: i32,
    },
    /// `dst = *(size *)(src + off)`.
    Load {
        /// Access size.
        size: Size,
        /// Destination.
        dst: Reg,
        /// Base address.
        src: Reg,
        /// Offset.
        off: i16,
    },
    /// `dst = *(s8|s16|s32 *)(src + off)`: sign-extending load (cpu v4).
    LoadSx {
        /// Access size (B, H or W).
        size: Size,
        /// Destination.
        dst: Reg,
        /// Base address.
        src: Reg,
        /// Offset.
        off: i16,
    },
    /// `*(size *)(dst + off) = src`.
    Store {
        /// Access size.
        size: Size,
        /// Base address.
        dst: Reg,
        /// Offset.
        off: i16,
        /// Value: register (`BPF_STX`) or immediate (`BPF_ST`).
        src: Source,
    },
    /// Atomic operation on `*(size *)(dst + off)`.
    Atomic {
        /// Access size (W or DW; any for load-acquire/store-release).
        size: Size,
        /// The operation.
        op: AtomicOp,
        /// Base address.
        dst: Reg,
        /// Operand, and for fetching operations the result.
        src: Reg,
        /// Offset.
        off: i16,
    },
    /// 64-bit immediate load into `dst`.
    LoadImm64 {
        /// Destination.
        dst: Reg,
        /// What is loaded.
        value: LoadImm64,
    },
    /// Legacy packet load `r0 = *(size *)skb[imm]`.
    LoadAbs {
        /// Access size.
        size: Size,
        /// Packet offset.
        imm: i32,
    },
    /// Legacy packet load `r0 = *(size *)skb[src + imm]`.
    LoadInd {
        /// Access size.
        size: Size,
        /// Offset register.
        src: Reg,
        /// Packet offset.
        imm: i32,
    },
    /// Unconditional jump by `off` instructions.
    Ja {
        /// Relative to the next instruction.
        off: i16,
    },
    /// Long unconditional jump (`gotol`, cpu v4).
    JaLong {
        /// Relative to the next instruction.
        imm: i32,
    },
    /// `may_goto`: a jump the kernel takes once a loop budget runs out.
    MayGoto {
        /// Relative to the next instruction.
        off: i16,
    },
    /// `if dst cond src goto pc+off`.
    Jump {
        /// 32- or 64-bit comparison.
        width: Width,
        /// The comparison.
        cond: JmpCond,
        /// First operand.
        dst: Reg,
        /// Second operand.
        src: Source,
        /// Relative to the next instruction.
        off: i16,
    },
    /// A call.
    Call(CallTarget),
    /// Return `r0`.
    Exit,
    /// Speculation barrier the kernel inserts (`nospec`; not in UAPI).
    Nospec,
}

impl Instruction {
    /// Raw slots this instruction occupies (2 for 64-bit immediate loads).
    pub fn slots(&self) -> usize {
        match self {
            Instruction::LoadImm64 { .. } => 2,
            _ => 1,
        }
    }
}
