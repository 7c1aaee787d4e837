//! Turns code sections into self-contained programs: each entry function, followed by every
//! subprogram it reaches (bpf-to-bpf calls and function pointers, transitively), with
//! relocations resolved to symbolic references (maps by name, kernel symbols by name) and the
//! function, line and CO-RE records of each copied function moved to its new place.

use ebpf_btf::{BtfExt, CoreRelo, FuncInfo, LineInfo};
use object::SymbolKind;

use super::elf::{Elf, Reloc, Role, R_BPF_64_32, R_BPF_64_64};
use super::error::ObjectError;
use crate::insn::RawInsn;

const LD_IMM64: u8 = 0x18;
const CALL: u8 = 0x85;
const PSEUDO_MAP_FD: u8 = 1;
const PSEUDO_MAP_VALUE: u8 = 2;
const PSEUDO_CALL: u8 = 1;
const PSEUDO_FUNC: u8 = 4;

/// One function of a code section, in instruction slots.
#[derive(Clone, Debug)]
pub(super) struct Function<'d> {
    pub name: std::borrow::Cow<'d, str>,
    pub start: usize,
    pub len: usize,
    /// A `static` function: callable only from its own object.
    pub local: bool,
}

/// A code section split into functions.
pub(super) struct CodeSection<'d> {
    pub index: usize,
    pub name: &'d str,
    pub insns: Vec<RawInsn>,
    pub functions: Vec<Function<'d>>,
}

impl<'d> CodeSection<'d> {
    pub fn read(elf: &Elf<'d>, index: usize) -> Result<CodeSection<'d>, ObjectError> {
        let section = &elf.sections[index];
        let bad = |reason: String| ObjectError::Section { section: section.name.to_owned(), reason };
        if section.data.len() % 8 != 0 {
            return Err(bad(format!("{} bytes is not a whole number of 8-byte instructions", section.data.len())));
        }
        let insns: Vec<RawInsn> =
            section.data.chunks_exact(8).map(|c| RawInsn::from_bytes(c.try_into().expect("8 bytes"))).collect();
        let mut functions = Vec::new();
        for symbol in elf.symbols_in(index, SymbolKind::Text) {
            let (start, size) = (symbol.value, symbol.size);
            if start % 8 != 0 || size % 8 != 0 || start.saturating_add(size) > insns.len() as u64 * 8 {
                return Err(ObjectError::Symbol {
                    symbol: symbol.name.to_owned(),
                    reason: format!(
                        "function at byte {start}, {size} bytes, does not fit section {} ({} bytes) in whole instructions",
                        section.name,
                        section.data.len()
                    ),
                });
            }
            functions.push(Function {
                name: symbol.name.into(),
                start: (start / 8) as usize,
                len: (size / 8) as usize,
                local: symbol.local,
            });
        }
        // Hand-written assembly may carry no function symbols: the section is one program.
        if functions.is_empty() && !insns.is_empty() && section.name != ".text" {
            functions.push(Function {
                name: section.name.replace(['/', '.'], "_").into(),
                start: 0,
                len: insns.len(),
                local: false,
            });
        }
        functions.retain(|f| f.len > 0);
        let code = CodeSection { index, name: section.name, insns, functions };
        code.check_relocations(&section.relocations)?;
        Ok(code)
    }

    /// Every relocation must sit at the start of an instruction inside a function: one
    /// anywhere else would be dropped silently by the linker, leaving a wrong program.
    fn check_relocations(&self, relocations: &[Reloc]) -> Result<(), ObjectError> {
        if relocations.is_empty() {
            return Ok(());
        }
        let mut second_halves = vec![false; self.insns.len()];
        let mut slot = 0;
        while slot < self.insns.len() {
            if self.insns[slot].code == LD_IMM64 {
                if let Some(half) = second_halves.get_mut(slot + 1) {
                    *half = true;
                }
                slot += 2;
            } else {
                slot += 1;
            }
        }
        for reloc in relocations {
            let bad = |reason: &str| ObjectError::Relocation {
                section: self.name.to_owned(),
                offset: reloc.offset,
                reason: reason.to_owned(),
            };
            if reloc.offset % 8 != 0 {
                return Err(bad("not at the start of an instruction"));
            }
            let slot = usize::try_from(reloc.offset / 8).unwrap_or(usize::MAX);
            if slot >= self.insns.len() {
                return Err(bad(&format!("past the end of the code ({} instructions)", self.insns.len())));
            }
            if second_halves[slot] {
                return Err(bad("inside a 64-bit load"));
            }
            if self.function_at(slot).is_none() && self.name != ".text" {
                return Err(bad("in no function"));
            }
        }
        Ok(())
    }

    /// Whether every function of the section is `static` (and it has some).
    pub fn only_static_functions(&self) -> bool {
        !self.functions.is_empty() && self.functions.iter().all(|f| f.local)
    }

    fn function_at(&self, slot: usize) -> Option<usize> {
        self.functions.iter().position(|f| slot >= f.start && slot < f.start + f.len)
    }
}

/// Where a non-code symbol a relocation names leads.
pub(super) trait Resolver {
    /// The map defined at `offset` of maps section `section`.
    fn map_at(&self, section: usize, offset: u64) -> Option<String>;
    /// The map holding data section `section`.
    fn data_map(&self, section: usize) -> Option<String>;
    /// An extern variable: the map and offset where the loader will put its value, or `None`
    /// when it is a kernel symbol.
    fn extern_var(&self, name: &str) -> Option<(String, u32)>;
}

/// A linked program before decoding: raw slots and references by slot.
/// A use of a kernel symbol (a kfunc call or a ksym address load) at instruction slot `slot`.
#[derive(Debug)]
pub(super) struct KsymUse {
    pub slot: usize,
    pub name: String,
    pub is_call: bool,
    /// Declared `__weak`: a kernel without it gives 0 instead of failing the load.
    pub weak: bool,
}

#[derive(Debug, Default)]
pub(super) struct Linked {
    pub insns: Vec<RawInsn>,
    /// (slot, map name).
    pub maps: Vec<(usize, String)>,
    /// Kernel symbols the program uses.
    pub ksyms: Vec<KsymUse>,
    pub func_info: Vec<FuncInfo>,
    pub line_info: Vec<LineInfo>,
    pub core: Vec<(usize, CoreRelo)>,
}

pub(super) struct CallLinker<'a, 'd> {
    pub elf: &'a Elf<'d>,
    /// Code sections by ELF section index (`None` for other sections).
    pub code: &'a [Option<CodeSection<'d>>],
    pub ext: Option<&'a BtfExt>,
    pub resolver: &'a dyn Resolver,
}

struct Placement {
    section: usize,
    function: usize,
    base: usize,
}

impl<'d> CallLinker<'_, 'd> {
    /// A code section a placement or a checked target refers to (only code sections are
    /// ever placed, and every code section was read before linking starts).
    fn section(&self, index: usize) -> &CodeSection<'d> {
        self.code[index].as_ref().expect("placements refer to code sections, all read before linking")
    }

    /// Links the program whose entry is function `function` of section `section`.
    pub fn link(&self, section: usize, function: usize) -> Result<Linked, ObjectError> {
        let mut out =
            Linked { insns: Vec::with_capacity(self.section(section).functions[function].len), ..Linked::default() };
        let mut placed: Vec<Placement> = Vec::with_capacity(4);
        self.place(&mut out, &mut placed, section, function);
        let mut next = 0;
        while next < placed.len() {
            let (sec_index, func_index, base) = (placed[next].section, placed[next].function, placed[next].base);
            next += 1;
            let code = self.section(sec_index);
            let func = &code.functions[func_index];
            let relocations = &self.elf.sections[sec_index].relocations;
            let mut local = 0;
            while local < func.len {
                let slot = func.start + local;
                let at = base + local;
                let insn = out.insns[at];
                let wide = insn.code == LD_IMM64;
                if wide && local + 1 >= func.len {
                    return Err(ObjectError::Section {
                        section: code.name.to_owned(),
                        reason: format!("64-bit load at instruction {slot} is cut off by the end of {}", func.name),
                    });
                }
                let reloc = find_reloc(relocations, slot as u64 * 8);
                let target = match reloc {
                    Some(reloc) => self.relocate(&mut out, code, at, slot, reloc)?,
                    None if insn.code == CALL && insn.src() == PSEUDO_CALL => {
                        let target = slot as i64 + i64::from(insn.imm) + 1;
                        Some((sec_index, self.check_target(code, slot, target)?))
                    }
                    None => None,
                };
                if let Some((target_section, target_slot)) = target {
                    let target_code = self.section(target_section);
                    let Some(target_func) = target_code.function_at(target_slot) else {
                        return Err(ObjectError::Relocation {
                            section: code.name.to_owned(),
                            offset: slot as u64 * 8,
                            reason: format!(
                                "target instruction {target_slot} of {} is in no function",
                                target_code.name
                            ),
                        });
                    };
                    let already = placed.iter().find(|p| p.section == target_section && p.function == target_func);
                    let target_base = match already {
                        Some(p) => p.base,
                        None => self.place(&mut out, &mut placed, target_section, target_func),
                    };
                    let target_at = target_base + (target_slot - target_code.functions[target_func].start);
                    out.insns[at].imm = (target_at as i64 - at as i64 - 1) as i32;
                }
                local += if wide { 2 } else { 1 };
            }
        }
        Ok(out)
    }

    fn check_target(&self, code: &CodeSection<'_>, slot: usize, target: i64) -> Result<usize, ObjectError> {
        if target < 0 || target as usize >= code.insns.len() {
            return Err(ObjectError::Relocation {
                section: code.name.to_owned(),
                offset: slot as u64 * 8,
                reason: format!("call target {target} is outside the section ({} instructions)", code.insns.len()),
            });
        }
        Ok(target as usize)
    }

    /// Appends a function and its BTF.ext records; returns where it starts.
    fn place(&self, out: &mut Linked, placed: &mut Vec<Placement>, section: usize, function: usize) -> usize {
        let code = self.section(section);
        let func = &code.functions[function];
        let base = out.insns.len();
        out.insns.extend_from_slice(&code.insns[func.start..func.start + func.len]);
        placed.push(Placement { section, function, base });
        if let Some(ext) = self.ext {
            let moved = |insn_off: u32| -> Option<u32> {
                let slot = (insn_off / 8) as usize;
                (insn_off % 8 == 0 && slot >= func.start && slot < func.start + func.len)
                    .then(|| (base + slot - func.start) as u32)
            };
            for sec in ext.func_info.iter().filter(|s| s.name == code.name) {
                for rec in &sec.records {
                    if let Some(insn_off) = moved(rec.insn_off) {
                        out.func_info.push(FuncInfo { insn_off, ..*rec });
                    }
                }
            }
            for sec in ext.line_info.iter().filter(|s| s.name == code.name) {
                for rec in &sec.records {
                    if let Some(insn_off) = moved(rec.insn_off) {
                        out.line_info.push(LineInfo { insn_off, ..*rec });
                    }
                }
            }
            for sec in ext.core_relos.iter().filter(|s| s.name == code.name) {
                for rec in &sec.records {
                    if let Some(slot) = moved(rec.insn_off) {
                        out.core.push((slot as usize, *rec));
                    }
                }
            }
        }
        base
    }

    /// Applies the relocation of slot `slot` (copied to `at`); returns a code target to link.
    fn relocate(
        &self,
        out: &mut Linked,
        code: &CodeSection<'_>,
        at: usize,
        slot: usize,
        reloc: &Reloc,
    ) -> Result<Option<(usize, usize)>, ObjectError> {
        let symbol = &self.elf.symbols[reloc.symbol];
        let bad = |reason: String| ObjectError::Relocation {
            section: code.name.to_owned(),
            offset: reloc.offset,
            reason: format!("{reason} (symbol \"{}\")", symbol.name),
        };
        let insn = out.insns[at];
        match insn.code {
            LD_IMM64 => {
                if reloc.r_type != R_BPF_64_64 {
                    return Err(bad(format!("relocation type {} on a 64-bit load", reloc.r_type)));
                }
                let Some(section) = symbol.section else {
                    if let Some((map, offset)) = self.resolver.extern_var(symbol.name) {
                        set_src(&mut out.insns[at], PSEUDO_MAP_VALUE);
                        out.insns[at].imm = 0;
                        out.insns[at + 1].imm = offset as i32;
                        out.maps.push((at, map));
                    } else {
                        let (name, weak) = (symbol.name.to_owned(), symbol.weak);
                        out.ksyms.push(KsymUse { slot: at, name, is_call: false, weak });
                    }
                    return Ok(None);
                };
                let offset = symbol.value.wrapping_add(insn.imm as i64 as u64);
                match self.elf.sections[section].role {
                    Role::Maps | Role::LegacyMaps => {
                        // Section + offset (what a `static` map gives) names a place, not a map:
                        // refused rather than guessed at, as cilium/ebpf does.
                        if symbol.kind == SymbolKind::Section || insn.imm != 0 {
                            return Err(bad(format!(
                                "a map referenced as byte {offset} of section {} rather than by its own symbol \
                                 (a static map?): declare maps global",
                                self.elf.sections[section].name
                            )));
                        }
                        let map = self
                            .resolver
                            .map_at(section, offset)
                            .ok_or_else(|| bad(format!("no map defined at byte {offset}")))?;
                        set_src(&mut out.insns[at], PSEUDO_MAP_FD);
                        out.insns[at].imm = 0;
                        out.maps.push((at, map));
                        Ok(None)
                    }
                    Role::Data { .. } => {
                        let map = self.resolver.data_map(section).ok_or_else(|| bad("no such data section".into()))?;
                        let size = self.elf.sections[section].size;
                        if offset >= size.max(1) {
                            return Err(bad(format!("offset {offset} is past the section's {size} bytes")));
                        }
                        set_src(&mut out.insns[at], PSEUDO_MAP_VALUE);
                        out.insns[at].imm = 0;
                        out.insns[at + 1].imm = offset as i32;
                        out.maps.push((at, map));
                        Ok(None)
                    }
                    Role::Code => {
                        if offset % 8 != 0 {
                            return Err(bad(format!("function address {offset} is not on an instruction")));
                        }
                        set_src(&mut out.insns[at], PSEUDO_FUNC);
                        out.insns[at + 1].imm = 0;
                        let target_code = self
                            .code
                            .get(section)
                            .and_then(Option::as_ref)
                            .ok_or_else(|| bad("target code section not read".into()))?;
                        let target = self.check_target(target_code, slot, (offset / 8) as i64)?;
                        Ok(Some((section, target)))
                    }
                    _ => Err(bad(format!("a 64-bit load of section {}", self.elf.sections[section].name))),
                }
            }
            CALL => {
                if reloc.r_type != R_BPF_64_32 {
                    return Err(bad(format!("relocation type {} on a call", reloc.r_type)));
                }
                match symbol.section {
                    None => {
                        let (name, weak) = (symbol.name.to_owned(), symbol.weak);
                        out.ksyms.push(KsymUse { slot: at, name, is_call: true, weak });
                        Ok(None)
                    }
                    Some(section) if self.elf.sections[section].role == Role::Code => {
                        let target_code = self
                            .code
                            .get(section)
                            .and_then(Option::as_ref)
                            .ok_or_else(|| bad("target code section not read".into()))?;
                        if symbol.value % 8 != 0 {
                            return Err(bad(format!("function at byte {} is not on an instruction", symbol.value)));
                        }
                        set_src(&mut out.insns[at], PSEUDO_CALL);
                        let target = (symbol.value / 8) as i64 + i64::from(insn.imm) + 1;
                        Ok(Some((section, self.check_target(target_code, slot, target)?)))
                    }
                    Some(section) => Err(bad(format!("a call into section {}", self.elf.sections[section].name))),
                }
            }
            code => Err(bad(format!("relocation on an instruction (opcode {code:#04x}) that takes none"))),
        }
    }
}

fn set_src(insn: &mut RawInsn, src: u8) {
    insn.regs = (insn.regs & 0x0f) | (src << 4);
}

fn find_reloc(relocations: &[Reloc], offset: u64) -> Option<&Reloc> {
    let at = relocations.partition_point(|r| r.offset < offset);
    relocations.get(at).filter(|r| r.offset == offset)
}
