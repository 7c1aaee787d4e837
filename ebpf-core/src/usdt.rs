//! USDT (user statically-defined tracing) probes: the `.note.stapsdt` notes `<sys/sdt.h>`
//! leaves in a binary — where each probe site is, its semaphore, and where each argument lives
//! at that site — read into plain data, and the per-site specs a BPF program reads arguments
//! by (`bpf-programs/include/usdt.h`; attaching: [`link::Usdt`](crate::link::Usdt)).
//!
//! Argument specs are x86-64's: `-4@%edi` (a register), `8@-16(%rbp)` (memory at a register
//! plus an offset), `4@$42` (a constant). Negative sizes are signed.

use object::elf::{self, FileHeader64};
use object::read::elf::{FileHeader, SectionHeader};
use object::Endianness;

/// A malformed note or argument spec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsdtError {
    /// The file is not a 64-bit ELF file this reader takes.
    #[error("USDT notes: {0}")]
    Elf(String),
    /// A note of `.note.stapsdt` is malformed.
    #[error("USDT note at byte {offset} of .note.stapsdt: {reason}")]
    Note {
        /// Where the note starts in the section.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// An argument spec is malformed or names what this reader does not know.
    #[error("USDT argument {spec:?}: {reason}")]
    Argument {
        /// The spec as the note wrote it.
        spec: String,
        /// What is wrong.
        reason: String,
    },
}

/// One probe site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsdtProbe {
    /// Provider (the first argument of `DTRACE_PROBE`).
    pub provider: String,
    /// Probe name.
    pub name: String,
    /// Virtual address of the site (already moved by the `.stapsdt.base` difference of a
    /// prelinked file).
    pub address: u64,
    /// Virtual address of the semaphore, 0 for none: a counter the kernel raises while a probe
    /// is attached, so `if (PROVIDER_NAME_ENABLED())` guards compute arguments only then.
    pub semaphore: u64,
    /// The arguments, in order.
    pub args: Vec<UsdtArg>,
}

/// One argument of a probe site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsdtArg {
    /// Size in bytes (1, 2, 4 or 8).
    pub size: u8,
    /// Sign-extended when read.
    pub signed: bool,
    /// Where it is.
    pub location: UsdtLocation,
}

/// Where an argument is at the probe site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsdtLocation {
    /// A constant.
    Constant(i64),
    /// In a register: its offset in the kernel's `struct pt_regs`.
    Register {
        /// Byte offset in `struct pt_regs`.
        pt_regs_offset: u16,
    },
    /// In memory at a register's value plus `offset`.
    Memory {
        /// Byte offset in `struct pt_regs` of the base register.
        pt_regs_offset: u16,
        /// Added to the register's value.
        offset: i64,
    },
}

/// x86-64 registers by every name a spec may use, with their offset in the kernel's
/// `struct pt_regs` (arch/x86/include/asm/ptrace.h).
const X86_64_REGISTERS: &[(&[&str], u16)] = &[
    (&["r15", "r15d", "r15w", "r15b"], 0),
    (&["r14", "r14d", "r14w", "r14b"], 8),
    (&["r13", "r13d", "r13w", "r13b"], 16),
    (&["r12", "r12d", "r12w", "r12b"], 24),
    (&["rbp", "ebp", "bp", "bpl"], 32),
    (&["rbx", "ebx", "bx", "bl"], 40),
    (&["r11", "r11d", "r11w", "r11b"], 48),
    (&["r10", "r10d", "r10w", "r10b"], 56),
    (&["r9", "r9d", "r9w", "r9b"], 64),
    (&["r8", "r8d", "r8w", "r8b"], 72),
    (&["rax", "eax", "ax", "al"], 80),
    (&["rcx", "ecx", "cx", "cl"], 88),
    (&["rdx", "edx", "dx", "dl"], 96),
    (&["rsi", "esi", "si", "sil"], 104),
    (&["rdi", "edi", "di", "dil"], 112),
    (&["rip", "eip"], 128),
    (&["rsp", "esp", "sp", "spl"], 152),
];

fn register(name: &str) -> Option<u16> {
    X86_64_REGISTERS.iter().find(|(names, _)| names.contains(&name)).map(|(_, offset)| *offset)
}

fn number(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let value = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        None if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => digits.parse().ok()?,
        None => return None,
    };
    Some(if negative { value.checked_neg()? } else { value })
}

/// Parses one argument spec (`-4@%edi`, `8@-16(%rbp)`, `4@$42`).
pub fn parse_arg(spec: &str) -> Result<UsdtArg, UsdtError> {
    let bad = |reason: &str| UsdtError::Argument { spec: spec.to_owned(), reason: reason.to_owned() };
    let (size, location) = spec.split_once('@').ok_or_else(|| bad("no SIZE@ before the location"))?;
    let size = number(size).ok_or_else(|| bad("the size is not a number"))?;
    if ![1, 2, 4, 8].contains(&size.unsigned_abs()) {
        return Err(bad("the size is not 1, 2, 4 or 8 bytes"));
    }
    let location = if let Some(constant) = location.strip_prefix('$') {
        UsdtLocation::Constant(number(constant).ok_or_else(|| bad("the constant is not a number"))?)
    } else if let Some(name) = location.strip_prefix('%') {
        let pt_regs_offset = register(name).ok_or_else(|| bad("not an x86-64 register this reader knows"))?;
        UsdtLocation::Register { pt_regs_offset }
    } else if let Some((offset, rest)) = location.split_once("(%") {
        let name = rest.strip_suffix(')').ok_or_else(|| bad("no closing parenthesis"))?;
        let offset = if offset.is_empty() {
            0
        } else {
            number(offset).ok_or_else(|| bad("the offset is not a number (a symbol's address is not supported)"))?
        };
        let pt_regs_offset = register(name).ok_or_else(|| bad("not an x86-64 register this reader knows"))?;
        if pt_regs_offset == 128 {
            return Err(bad("addresses relative to %rip are not supported"));
        }
        UsdtLocation::Memory { pt_regs_offset, offset }
    } else {
        return Err(bad("neither $CONSTANT, %REGISTER nor OFFSET(%REGISTER)"));
    };
    Ok(UsdtArg { size: size.unsigned_abs() as u8, signed: size < 0, location })
}

/// Parses a note's argument string: specs separated by spaces.
pub fn parse_args(text: &str) -> Result<Vec<UsdtArg>, UsdtError> {
    text.split_ascii_whitespace().map(parse_arg).collect()
}

/// The `stapsdt` note type.
const NT_STAPSDT: u32 = 3;

fn word(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(data.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn quad(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(data.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// Reads every USDT probe site of the ELF file `bytes` (none when it has no
/// `.note.stapsdt`). Never panics: malformed input is a [`UsdtError`].
pub fn read_probes(bytes: &[u8]) -> Result<Vec<UsdtProbe>, UsdtError> {
    let elf_error = |e: object::read::Error| UsdtError::Elf(e.to_string());
    let header = FileHeader64::<Endianness>::parse(bytes).map_err(elf_error)?;
    let endian = header.endian().map_err(elf_error)?;
    if header.is_little_endian() != cfg!(target_endian = "little") {
        return Err(UsdtError::Elf("the file's byte order is not this machine's".to_owned()));
    }
    let sections = header.sections(endian, bytes).map_err(elf_error)?;
    let named =
        |wanted: &[u8]| sections.iter().find(|s| sections.section_name(endian, s).is_ok_and(|name| name == wanted));
    let Some(notes) = named(b".note.stapsdt").filter(|s| s.sh_type(endian) == elf::SHT_NOTE) else {
        return Ok(Vec::new());
    };
    let data = notes.data(endian, bytes).map_err(elf_error)?;
    let base = named(b".stapsdt.base").map(|s| s.sh_addr(endian));
    read_notes(data, base)
}

/// Reads the notes of a `.note.stapsdt` section; `base` is the address of `.stapsdt.base`.
pub fn read_notes(data: &[u8], base: Option<u64>) -> Result<Vec<UsdtProbe>, UsdtError> {
    let mut probes = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let bad = |reason: &str| UsdtError::Note { offset: at, reason: reason.to_owned() };
        let (Some(name_size), Some(desc_size), Some(kind)) = (word(data, at), word(data, at + 4), word(data, at + 8))
        else {
            return Err(bad("truncated header"));
        };
        let name_start = at + 12;
        let desc_start = name_start
            .checked_add((name_size as usize).next_multiple_of(4))
            .ok_or_else(|| bad("name size overflows"))?;
        let next = desc_start
            .checked_add((desc_size as usize).next_multiple_of(4))
            .ok_or_else(|| bad("description size overflows"))?;
        let name = data.get(name_start..name_start + name_size as usize).ok_or_else(|| bad("name past the end"))?;
        let desc =
            data.get(desc_start..desc_start + desc_size as usize).ok_or_else(|| bad("description past the end"))?;
        if name == b"stapsdt\0" && kind == NT_STAPSDT {
            probes.push(read_probe(desc, base).map_err(|reason| match reason {
                UsdtError::Note { reason, .. } => UsdtError::Note { offset: at, reason },
                other => other,
            })?);
        }
        at = next;
    }
    Ok(probes)
}

fn read_probe(desc: &[u8], base: Option<u64>) -> Result<UsdtProbe, UsdtError> {
    let bad = |reason: &str| UsdtError::Note { offset: 0, reason: reason.to_owned() };
    let (Some(pc), Some(note_base), Some(semaphore)) = (quad(desc, 0), quad(desc, 8), quad(desc, 16)) else {
        return Err(bad("description shorter than its three addresses"));
    };
    let mut strings = desc[24..].split(|&b| b == 0);
    let mut text = |what: &str| -> Result<String, UsdtError> {
        let bytes = strings.next().ok_or_else(|| bad(&format!("no {what}")))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| bad(&format!("the {what} is not UTF-8")))
    };
    let provider = text("provider")?;
    let name = text("probe name")?;
    let args = parse_args(&text("argument string")?)?;
    if provider.is_empty() || name.is_empty() {
        return Err(bad("empty provider or probe name"));
    }
    // A prelinked file moved its code: the note says where .stapsdt.base was when written.
    let address = match base {
        Some(actual) if note_base != 0 => pc.wrapping_add(actual).wrapping_sub(note_base),
        _ => pc,
    };
    Ok(UsdtProbe { provider, name, address, semaphore, args })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn argument_specs_as_gcc_writes_them() {
        assert_eq!(
            parse_arg("-4@%edi").unwrap(),
            UsdtArg { size: 4, signed: true, location: UsdtLocation::Register { pt_regs_offset: 112 } }
        );
        assert_eq!(
            parse_arg("8@-16(%rbp)").unwrap(),
            UsdtArg { size: 8, signed: false, location: UsdtLocation::Memory { pt_regs_offset: 32, offset: -16 } }
        );
        assert_eq!(parse_arg("1@(%rax)").unwrap().location, UsdtLocation::Memory { pt_regs_offset: 80, offset: 0 });
        assert_eq!(parse_arg("-8@$-42").unwrap().location, UsdtLocation::Constant(-42));
        assert_eq!(parse_arg("2@%r12w").unwrap().location, UsdtLocation::Register { pt_regs_offset: 24 });
        assert_eq!(parse_args("-4@%esi 8@%rax").unwrap().len(), 2);
        assert!(parse_args("").unwrap().is_empty());
    }

    #[test]
    fn what_this_reader_cannot_place_is_refused_by_name() {
        for (spec, reason) in [
            ("3@%eax", "not 1, 2, 4 or 8"),
            ("4@%xmm0", "register"),
            ("8@counter(%rip)", "symbol"),
            ("8@8(%rip)", "%rip"),
            ("4@eax", "neither"),
            ("%eax", "no SIZE@"),
            ("4@-16(%rbp", "parenthesis"),
        ] {
            let err = parse_arg(spec).unwrap_err().to_string();
            assert!(err.contains(reason), "{spec}: {err}");
        }
    }

    fn note(provider: &str, name: &str, args: &str, addresses: [u64; 3]) -> Vec<u8> {
        let mut desc = Vec::new();
        for a in addresses {
            desc.extend_from_slice(&a.to_ne_bytes());
        }
        for s in [provider, name, args] {
            desc.extend_from_slice(s.as_bytes());
            desc.push(0);
        }
        let mut out = Vec::new();
        out.extend_from_slice(&8u32.to_ne_bytes());
        out.extend_from_slice(&(desc.len() as u32).to_ne_bytes());
        out.extend_from_slice(&NT_STAPSDT.to_ne_bytes());
        out.extend_from_slice(b"stapsdt\0");
        out.extend_from_slice(&desc);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    #[test]
    fn notes_give_sites_semaphores_and_arguments() {
        let mut data = note("app", "tick", "-4@%edi 8@%rsi", [0x1130, 0x2000, 0x4010]);
        data.extend(note("app", "tock", "", [0x1200, 0x2000, 0]));
        let probes = read_notes(&data, Some(0x2100)).unwrap();
        assert_eq!(probes.len(), 2);
        assert_eq!((probes[0].provider.as_str(), probes[0].name.as_str()), ("app", "tick"));
        assert_eq!(probes[0].address, 0x1230, "moved by the .stapsdt.base difference");
        assert_eq!(probes[0].semaphore, 0x4010);
        assert_eq!(probes[0].args.len(), 2);
        assert_eq!(probes[1].args, vec![]);
        let truncated = read_notes(&data[..data.len() - 3], None).unwrap_err();
        assert!(matches!(truncated, UsdtError::Note { .. }), "{truncated}");
    }

    proptest! {
        #[test]
        fn notes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = read_notes(&data, Some(0x1000));
        }

        #[test]
        fn argument_specs_never_panic(spec in "[-0-9$%@()a-z]{0,16}") {
            let _ = parse_arg(&spec);
        }
    }
}
