//! eBPF instructions: the raw 8-byte encoding ([`RawInsn`]), a decoded form
//! ([`Instruction`]) covering every opcode class up to cpu v4, an [`Assembler`] with labels
//! and symbolic map/function references, and a [`Disassembler`] that prints the kernel's
//! verifier syntax.
//!
//! ```
//! use ebpf_core::insn::{Assembler, Disassembler, JmpCond, Reg};
//!
//! let mut asm = Assembler::new();
//! asm.mov64_imm(Reg::R0, 0)
//!     .jmp_imm(JmpCond::Ne, Reg::R1, 0, "out")
//!     .mov64_imm(Reg::R0, 2)
//!     .label("out")
//!     .exit();
//! let program = asm.finish().unwrap();
//! let text = Disassembler::new().listing(&program.instructions);
//! assert_eq!(text, "   0: (b7) r0 = 0\n   1: (55) if r1 != 0x0 goto pc+1\n   2: (b7) r0 = 2\n   3: (95) exit\n");
//! ```

mod asm;
mod codec;
mod core_fixup;
mod disasm;
pub mod helpers;
mod types;

pub use asm::{AsmError, Assembled, Assembler, MapReference};
pub use codec::{decode, decode_bytes, encode, encode_bytes, slot_offsets, DecodeError, RawInsn};
pub use core_fixup::{apply_core_fixup, CoreApplyError};
pub use disasm::{CallNames, Disassembler};
pub use types::{AluOp, AtomicOp, CallTarget, EndianKind, Instruction, JmpCond, LoadImm64, Reg, Size, Source, Width};
