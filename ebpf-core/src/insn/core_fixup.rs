//! Applying a resolved CO-RE relocation ([`ebpf_btf::core::CoreFixup`]) to instructions,
//! with libbpf's checks: the instruction must hold the value computed against the local BTF,
//! memory accesses change width only when that is safe, and an unsatisfiable relocation turns
//! the instruction into a call of a helper that does not exist, so the verifier rejects it
//! where it is reached (`invalid func unknown#195896080`) and dead code simply disappears.

use ebpf_btf::core::{CoreFixup, POISON_HELPER_ID};

use super::RawInsn;

/// Why a relocation could not be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("CO-RE {relocation} at instruction {index}: {reason}")]
pub struct CoreApplyError {
    /// Instruction index (slot).
    pub index: usize,
    /// The relocation kind.
    pub relocation: &'static str,
    /// What was wrong.
    pub reason: String,
}

const CLASS_LD: u8 = 0x00;
const CLASS_LDX: u8 = 0x01;
const CLASS_ST: u8 = 0x02;
const CLASS_STX: u8 = 0x03;
const CLASS_ALU: u8 = 0x04;
const CLASS_ALU64: u8 = 0x07;
const LD_IMM64: u8 = 0x18;

fn poison(insn: &mut RawInsn) {
    *insn = RawInsn::new(0x85, 0, 0, 0, POISON_HELPER_ID);
}

fn size_bytes(code: u8) -> u32 {
    match code & 0x18 {
        0x00 => 4,
        0x08 => 2,
        0x10 => 1,
        _ => 8,
    }
}

fn size_bits(bytes: u32) -> Option<u8> {
    Some(match bytes {
        4 => 0x00,
        2 => 0x08,
        1 => 0x10,
        8 => 0x18,
        _ => return None,
    })
}

/// Patches the instruction at slot `index` of `insns` with `fixup`.
pub fn apply_core_fixup(insns: &mut [RawInsn], index: usize, fixup: &CoreFixup) -> Result<(), CoreApplyError> {
    let err = |reason: String| CoreApplyError { index, relocation: fixup.kind.name(), reason };
    let Some(&insn) = insns.get(index) else {
        return Err(err(format!("the program has only {} instructions", insns.len())));
    };
    let wide = insn.code == LD_IMM64;
    if fixup.poison {
        if wide {
            if let Some(second) = insns.get_mut(index + 1) {
                poison(second);
            }
        }
        poison(&mut insns[index]);
        return Ok(());
    }
    let (orig, new) = (fixup.local_value, fixup.target_value);
    match insn.code & 0x07 {
        CLASS_ALU | CLASS_ALU64 => {
            if insn.code & 0x08 != 0 {
                return Err(err("ALU instruction takes its operand from a register, not an immediate".to_owned()));
            }
            if fixup.validate && i64::from(insn.imm) as u64 != orig && insn.imm as u32 as u64 != orig {
                return Err(err(format!("ALU immediate is {}, expected {orig}", insn.imm)));
            }
            insns[index].imm = new as i32;
        }
        CLASS_LDX | CLASS_ST | CLASS_STX => {
            if fixup.validate && i64::from(insn.off) as u64 != orig {
                return Err(err(format!("memory access offset is {}, expected {orig}", insn.off)));
            }
            if new > i16::MAX as u64 {
                return Err(err(format!("new offset {new} does not fit the 16-bit offset field")));
            }
            if fixup.fail_size_adjust {
                // A signed or non-integer field changed size: a load cannot be made right.
                poison(&mut insns[index]);
                return Ok(());
            }
            insns[index].off = new as i16;
            if fixup.local_size != fixup.target_size && fixup.target_size != 0 {
                if size_bytes(insn.code) != fixup.local_size {
                    return Err(err(format!(
                        "access is {} bytes, expected {} for the local field",
                        size_bytes(insn.code),
                        fixup.local_size
                    )));
                }
                let bits = size_bits(fixup.target_size)
                    .ok_or_else(|| err(format!("a {}-byte field cannot be loaded in one access", fixup.target_size)))?;
                insns[index].code = (insn.code & !0x18) | bits;
            }
        }
        CLASS_LD if wide => {
            let Some(&second) = insns.get(index + 1) else {
                return Err(err("64-bit immediate load is missing its second slot".to_owned()));
            };
            if insn.src() != 0 || insn.off != 0 || second.code != 0 || second.regs != 0 || second.off != 0 {
                return Err(err("64-bit immediate load has an unexpected form".to_owned()));
            }
            let imm = u64::from(insn.imm as u32) | (u64::from(second.imm as u32) << 32);
            if fixup.validate && imm != orig {
                return Err(err(format!("64-bit immediate is {imm}, expected {orig}")));
            }
            insns[index].imm = new as u32 as i32;
            insns[index + 1].imm = (new >> 32) as u32 as i32;
        }
        _ => return Err(err(format!("opcode {:#04x} cannot be relocated", insn.code))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebpf_btf::CoreReloKind;

    fn fixup(kind: CoreReloKind, local: u64, target: u64) -> CoreFixup {
        CoreFixup {
            insn_off: 0,
            kind,
            local_value: local,
            target_value: target,
            poison: false,
            validate: true,
            local_size: 0,
            target_size: 0,
            fail_size_adjust: false,
            target_type_id: 0,
        }
    }

    #[test]
    fn alu_immediates_loads_and_wide_loads_take_the_target_value() {
        let mut insns = vec![
            RawInsn::new(0x07, 1, 0, 0, 4),  // r1 += 4
            RawInsn::new(0x61, 0, 1, 4, 0),  // r0 = *(u32 *)(r1 + 4)
            RawInsn::new(0x18, 2, 0, 0, 27), // r2 = 27 ll
            RawInsn::new(0, 0, 0, 0, 0),
        ];
        apply_core_fixup(&mut insns, 0, &fixup(CoreReloKind::FieldByteOffset, 4, 164)).unwrap();
        apply_core_fixup(&mut insns, 1, &fixup(CoreReloKind::FieldByteOffset, 4, 164)).unwrap();
        apply_core_fixup(&mut insns, 2, &fixup(CoreReloKind::EnumvalValue, 27, 1 << 40)).unwrap();
        assert_eq!(insns[0].imm, 164);
        assert_eq!(insns[1].off, 164);
        assert_eq!((insns[2].imm, insns[3].imm), (0, 1 << 8));
    }

    #[test]
    fn a_field_that_grew_widens_the_load() {
        let mut insns = vec![RawInsn::new(0x61, 0, 1, 8, 0)]; // 4-byte load at 8
        let mut f = fixup(CoreReloKind::FieldByteOffset, 8, 16);
        f.local_size = 4;
        f.target_size = 8;
        apply_core_fixup(&mut insns, 0, &f).unwrap();
        assert_eq!((insns[0].code, insns[0].off), (0x79, 16)); // now *(u64 *)(r1 + 16)
    }

    #[test]
    fn unsatisfiable_relocations_poison_both_slots_of_a_wide_load() {
        let mut insns = vec![RawInsn::new(0x18, 2, 0, 0, 1), RawInsn::new(0, 0, 0, 0, 0)];
        let mut f = fixup(CoreReloKind::EnumvalValue, 1, 0);
        f.poison = true;
        apply_core_fixup(&mut insns, 0, &f).unwrap();
        assert!(insns.iter().all(|i| i.code == 0x85 && i.imm == POISON_HELPER_ID));
    }

    #[test]
    fn instructions_that_do_not_hold_the_local_value_are_refused() {
        let mut insns = vec![RawInsn::new(0x07, 1, 0, 0, 12)];
        let err = apply_core_fixup(&mut insns, 0, &fixup(CoreReloKind::FieldByteOffset, 4, 8)).unwrap_err();
        assert_eq!(err.to_string(), "CO-RE byte_off at instruction 0: ALU immediate is 12, expected 4");
        let mut jump = vec![RawInsn::new(0x05, 0, 0, 1, 0)];
        assert!(apply_core_fixup(&mut jump, 0, &fixup(CoreReloKind::FieldByteOffset, 0, 8)).is_err());
    }
}
