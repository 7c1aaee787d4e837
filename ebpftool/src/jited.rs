//! `ebpftool prog dump jited`: a program's x86-64 machine code as the JIT wrote it, in AT&T
//! syntax (iced-x86's GAS formatter; Debian's bpftool is built without a disassembler), with
//! calls named from kallsyms and every tail call marked for what the JIT made of it:
//!
//! - a constant-index tail call whose slot is filled is a patched `jmp` straight into the
//!   target program (past its prologue);
//! - one whose slot is empty is a 5-byte NOP, patched into that `jmp` when the slot is filled;
//! - a dynamic tail call (index known only at run time) loads the target from the prog array
//!   and jumps through the retpoline thunk (or an indirect `jmp`).

use ebpf_core::info::JitedImage;
use ebpf_core::kallsyms::KernelSymbols;
use iced_x86::{Decoder, DecoderOptions, Formatter, GasFormatter, Instruction, Mnemonic, OpKind};
use serde_json::{json, Value};

/// What an instruction is, for the reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mark {
    /// A constant-index tail call, patched into a direct jump to `target`.
    DirectTailCall { target: String },
    /// A constant-index tail call whose slot is empty.
    EmptyTailCallSlot,
    /// A tail call through the prog array at run time.
    DynamicTailCall { through: String },
    /// A call of a kernel function.
    Call { name: String },
}

impl Mark {
    fn text(&self) -> String {
        match self {
            Mark::DirectTailCall { target } => format!("constant-index tail call: direct jump into {target}"),
            Mark::EmptyTailCallSlot => {
                "constant-index tail call, slot empty: a 5-byte NOP, patched to a direct jmp when filled".to_owned()
            }
            Mark::DynamicTailCall { through } => format!("dynamic tail call through {through}"),
            Mark::Call { name } => name.clone(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Mark::DirectTailCall { .. } => "direct_tail_call",
            Mark::EmptyTailCallSlot => "empty_tail_call_slot",
            Mark::DynamicTailCall { .. } => "dynamic_tail_call",
            Mark::Call { .. } => "call",
        }
    }
}

/// One decoded instruction.
#[derive(Clone, Debug)]
pub struct Line {
    /// Offset in its function.
    pub offset: u64,
    /// Its bytes, as hex.
    pub bytes: String,
    /// AT&T syntax.
    pub text: String,
    /// What it is, when it is worth saying.
    pub mark: Option<Mark>,
}

/// The 5-byte NOP the x86 JIT emits (`nopl 0x0(%rax,%rax,1)`).
const NOP5: [u8; 5] = [0x0f, 0x1f, 0x44, 0x00, 0x00];

/// The prologue's own 5-byte NOP (the fentry patch site) sits within the first bytes.
const PROLOGUE_BYTES: u64 = 16;

fn mark(
    insn: &Instruction,
    bytes: &[u8],
    offset: u64,
    range: std::ops::Range<u64>,
    symbols: &KernelSymbols,
) -> Option<Mark> {
    if bytes == NOP5 && offset >= PROLOGUE_BYTES {
        return Some(Mark::EmptyTailCallSlot);
    }
    let branch_target = matches!(insn.op0_kind(), OpKind::NearBranch64).then(|| insn.near_branch64());
    match insn.mnemonic() {
        Mnemonic::Jmp => {
            if let Some(target) = branch_target {
                if range.contains(&target) {
                    return None;
                }
                let (name, _) = symbols.containing(target)?;
                if name.contains("x86_indirect") {
                    return Some(Mark::DynamicTailCall { through: format!("the retpoline thunk {name}") });
                }
                return name.starts_with("bpf_prog_").then(|| Mark::DirectTailCall { target: name.to_owned() });
            }
            // An indirect jmp: the target comes from the prog array.
            Some(Mark::DynamicTailCall { through: "an indirect jmp".to_owned() })
        }
        Mnemonic::Call => {
            let (name, delta) = symbols.containing(branch_target?)?;
            if name.contains("x86_indirect") {
                return Some(Mark::DynamicTailCall { through: format!("the retpoline thunk {name}") });
            }
            (delta == 0).then(|| Mark::Call { name: name.to_owned() })
        }
        _ => None,
    }
}

/// Disassembles every function of `image`.
pub fn disassemble(image: &JitedImage, symbols: &KernelSymbols) -> Vec<(u64, Vec<Line>)> {
    let mut out = Vec::new();
    let mut start = 0usize;
    // An image without per-function records is one function.
    let lengths: Vec<usize> = if image.function_lengths.is_empty() {
        vec![image.code.len()]
    } else {
        image.function_lengths.iter().map(|&l| l as usize).collect()
    };
    let mut formatter = GasFormatter::new();
    for (i, length) in lengths.into_iter().enumerate() {
        let Some(code) = image.code.get(start..start + length) else { break };
        let address = image.function_addresses.get(i).copied().unwrap_or(0);
        let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
        let mut lines = Vec::new();
        let mut instruction = Instruction::default();
        while decoder.can_decode() {
            decoder.decode_out(&mut instruction);
            let offset = instruction.ip() - address;
            let bytes = &code[offset as usize..offset as usize + instruction.len()];
            let mut text = String::new();
            formatter.format(&instruction, &mut text);
            let range = address..address + length as u64;
            let mark = if address == 0 { None } else { mark(&instruction, bytes, offset, range, symbols) };
            let mark = mark.or_else(|| (bytes == NOP5 && offset >= PROLOGUE_BYTES).then_some(Mark::EmptyTailCallSlot));
            let hex = bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
            lines.push(Line { offset, bytes: hex, text, mark });
        }
        out.push((address, lines));
        start += length;
    }
    out
}

/// The listing as text: one block per function.
pub fn listing(functions: &[(u64, Vec<Line>)], names: &[String]) -> String {
    let mut out = String::new();
    for (i, (address, lines)) in functions.iter().enumerate() {
        let name = names.get(i).map_or("", String::as_str);
        out.push_str(&format!("{name} @ {address:#x}:\n"));
        for line in lines {
            out.push_str(&format!("  {:>4x}:  {:<32} {}", line.offset, line.bytes, line.text));
            if let Some(mark) = &line.mark {
                out.push_str(&format!("    # {}", mark.text()));
            }
            out.push('\n');
        }
    }
    out
}

/// The listing as JSON.
pub fn to_json(functions: &[(u64, Vec<Line>)], names: &[String]) -> Value {
    let functions: Vec<Value> = functions
        .iter()
        .enumerate()
        .map(|(i, (address, lines))| {
            let lines: Vec<Value> = lines
                .iter()
                .map(|l| {
                    json!({"offset": l.offset, "bytes": l.bytes, "insn": l.text,
                           "mark": l.mark.as_ref().map(Mark::kind), "note": l.mark.as_ref().map(Mark::text)})
                })
                .collect();
            json!({"name": names.get(i), "address": format!("{address:#x}"), "insns": lines})
        })
        .collect();
    Value::Array(functions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_what_the_jit_made_of_tail_calls() {
        let symbols = KernelSymbols::parse(
            "ffffffffa0000000 t bpf_prog_0123456789abcdef_target\nffffffff81e00000 T __x86_indirect_thunk_rax\n",
        );
        // push %rbp; 5-byte NOP; jmp rel32 into the target; call the thunk.
        let base = 0xffffffffa0100000u64;
        let mut code = vec![0x55];
        code.extend([0x90; 15]);
        code.extend(NOP5);
        let jmp_at = base + code.len() as u64;
        let rel = (0xffffffffa000000bu64.wrapping_sub(jmp_at + 5)) as i32;
        code.push(0xe9);
        code.extend(rel.to_le_bytes());
        let call_at = base + code.len() as u64;
        let rel = (0xffffffff81e00000u64.wrapping_sub(call_at + 5)) as i32;
        code.push(0xe8);
        code.extend(rel.to_le_bytes());
        let image = JitedImage { function_lengths: vec![code.len() as u32], code, function_addresses: vec![base] };
        let functions = disassemble(&image, &symbols);
        let marks: Vec<&Mark> = functions[0].1.iter().filter_map(|l| l.mark.as_ref()).collect();
        assert_eq!(
            marks,
            vec![
                &Mark::EmptyTailCallSlot,
                &Mark::DirectTailCall { target: "bpf_prog_0123456789abcdef_target".to_owned() },
                &Mark::DynamicTailCall { through: "the retpoline thunk __x86_indirect_thunk_rax".to_owned() },
            ]
        );
        let text = listing(&functions, &["entry".to_owned()]);
        assert!(text.contains("jmp ") && text.contains("direct jump into bpf_prog_0123456789abcdef_target"), "{text}");
    }
}
