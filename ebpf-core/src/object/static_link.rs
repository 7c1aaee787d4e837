//! [`Linker`]: several BPF objects linked into one, as `bpftool gen object` (libbpf's
//! linker) does. Sections of one name are concatenated (each input's part aligned as it asks);
//! global symbols are resolved across inputs (one strong definition, or the first weak one;
//! an extern takes the definition another input gives; kernel symbols and kconfig externs
//! stay extern); relocations follow their targets; `.BTF` is merged with each type once
//! (`ebpf_btf::merge`) and `.BTF.ext` records move with their sections.

use std::collections::HashMap;

use ebpf_btf::merge::{merge, DataLayout};
use ebpf_btf::{Btf, BtfExt, ExtSection};
use object::elf::{self, FileHeader64};
use object::read::elf::{FileHeader, Rel, SectionHeader, Sym};
use object::Endianness;

/// Why a link failed, naming the input and what in it.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// An input is not a BPF object this linker reads.
    #[error("{input}: {reason}")]
    Input {
        /// The input, as added.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// Two inputs define one global symbol, neither weakly.
    #[error("symbol {symbol} is defined in both {first} and {second}")]
    Duplicate {
        /// The symbol.
        symbol: String,
        /// The input defining it first.
        first: String,
        /// The other.
        second: String,
    },
    /// Inputs disagree where they must agree (license, a symbol's kind).
    #[error("{what}: {first} and {second} disagree")]
    Conflict {
        /// What they disagree on.
        what: String,
        /// The first input.
        first: String,
        /// The other.
        second: String,
    },
    /// The BTF of an input cannot be read.
    #[error("{input}: BTF: {reason}")]
    Btf {
        /// The input.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// The output could not be written.
    #[error("write the linked object: {0}")]
    Write(String),
}

/// A section of an input.
struct InSection {
    name: String,
    sh_type: u32,
    flags: u64,
    align: u64,
    data: Vec<u8>,
    size: u64,
    /// (offset, r_type, input symbol index).
    relocations: Vec<(u64, u32, usize)>,
}

/// A symbol, of an input or of the output.
#[derive(Clone)]
struct LinkSymbol {
    name: String,
    st_type: u8,
    bind: u8,
    other: u8,
    /// Defining section (an input's section index, or the output's section list index),
    /// `None` for undefined (and absolute) symbols.
    section: Option<usize>,
    value: u64,
    size: u64,
}

struct Input {
    name: String,
    sections: Vec<Option<InSection>>,
    symbols: Vec<LinkSymbol>,
    btf: Option<Btf>,
    ext: Option<Vec<u8>>,
}

/// Links BPF objects into one.
///
/// ```no_run
/// use ebpf_core::object::{CollectionSpec, Linker};
///
/// let mut linker = Linker::new();
/// linker.add("main.o", &std::fs::read("main.o")?)?;
/// linker.add("lib.o", &std::fs::read("lib.o")?)?;
/// let linked = linker.link()?;
/// let spec = CollectionSpec::from_elf(&linked)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
pub struct Linker {
    inputs: Vec<Input>,
}

impl std::fmt::Debug for Linker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linker").field("inputs", &self.inputs.iter().map(|i| &i.name).collect::<Vec<_>>()).finish()
    }
}

/// Sections the output rebuilds or leaves out rather than copies.
fn rebuilt(name: &str, sh_type: u32) -> bool {
    name.starts_with(".debug")
        || name.starts_with(".rel")
        || name.starts_with(".llvm")
        || matches!(sh_type, elf::SHT_SYMTAB | elf::SHT_STRTAB | elf::SHT_REL | elf::SHT_RELA | elf::SHT_NULL)
}

fn read_input(name: &str, bytes: &[u8]) -> Result<Input, LinkError> {
    let bad = |reason: String| LinkError::Input { input: name.to_owned(), reason };
    let header = FileHeader64::<Endianness>::parse(bytes).map_err(|e| bad(format!("not a 64-bit ELF file: {e}")))?;
    let endian = header.endian().map_err(|e| bad(e.to_string()))?;
    if header.e_machine(endian) != elf::EM_BPF || header.e_type(endian) != elf::ET_REL {
        return Err(bad("not a relocatable BPF object (EM_BPF, ET_REL)".to_owned()));
    }
    if header.is_little_endian() != cfg!(target_endian = "little") {
        return Err(bad("its byte order is not this machine's".to_owned()));
    }
    let table = header.sections(endian, bytes).map_err(|e| bad(e.to_string()))?;
    let mut sections: Vec<Option<InSection>> = Vec::with_capacity(table.len());
    let (mut btf_raw, mut ext) = (None, None);
    for section in table.iter() {
        let raw_name = table.section_name(endian, section).map_err(|e| bad(e.to_string()))?;
        let section_name = String::from_utf8_lossy(raw_name).into_owned();
        let sh_type = section.sh_type(endian);
        let data = if sh_type == elf::SHT_NOBITS {
            Vec::new()
        } else {
            section.data(endian, bytes).map_err(|e| bad(format!("section {section_name}: {e}")))?.to_vec()
        };
        match section_name.as_str() {
            ".BTF" => btf_raw = Some(data.clone()),
            ".BTF.ext" => ext = Some(data.clone()),
            _ => {}
        }
        let align = section.sh_addralign(endian).max(1);
        let kept = !rebuilt(&section_name, sh_type)
            && (section.sh_flags(endian) & u64::from(elf::SHF_ALLOC | elf::SHF_EXECINSTR) != 0)
            && matches!(sh_type, elf::SHT_PROGBITS | elf::SHT_NOBITS);
        if kept && (!align.is_power_of_two() || align > 4096 || section.sh_size(endian) > MAX_SECTION) {
            return Err(bad(format!(
                "section {section_name}: alignment {align} or size {} out of range",
                section.sh_size(endian)
            )));
        }
        sections.push(kept.then(|| InSection {
            name: section_name,
            sh_type,
            flags: section.sh_flags(endian),
            align,
            data,
            size: section.sh_size(endian),
            relocations: Vec::new(),
        }));
    }
    let symtab = table.symbols(endian, bytes, elf::SHT_SYMTAB).map_err(|e| bad(e.to_string()))?;
    let mut symbols = Vec::with_capacity(symtab.len());
    for symbol in symtab.iter() {
        let index = symbol.st_shndx(endian);
        let section = match index {
            elf::SHN_UNDEF | elf::SHN_ABS | elf::SHN_COMMON => None,
            i if (i as usize) < sections.len() => Some(i as usize),
            i => return Err(bad(format!("a symbol refers to section {i}, past the last"))),
        };
        symbols.push(LinkSymbol {
            name: String::from_utf8_lossy(symtab.symbol_name(endian, symbol).unwrap_or_default()).into_owned(),
            st_type: symbol.st_type(),
            bind: symbol.st_bind(),
            other: symbol.st_other(),
            section,
            value: symbol.st_value(endian),
            size: symbol.st_size(endian),
        });
    }
    for section in table.iter() {
        if section.sh_type(endian) != elf::SHT_REL {
            continue;
        }
        let target = section.sh_info(endian) as usize;
        let Some(Some(kept)) = sections.get_mut(target) else { continue };
        let Some((rels, _)) = section.rel(endian, bytes).map_err(|e| bad(e.to_string()))? else { continue };
        for rel in rels {
            let symbol = rel.r_sym(endian) as usize;
            if symbol == 0 || symbol >= symbols.len() {
                return Err(bad(format!("a relocation of {} names symbol {symbol}", kept.name)));
            }
            kept.relocations.push((rel.r_offset(endian), rel.r_type(endian), symbol));
        }
    }
    if sections.iter().flatten().any(|s| s.sh_type == elf::SHT_RELA) {
        return Err(bad("RELA relocations (clang writes REL for BPF)".to_owned()));
    }
    let btf = match btf_raw {
        Some(raw) => {
            Some(Btf::parse(raw).map_err(|e| LinkError::Btf { input: name.to_owned(), reason: e.to_string() })?)
        }
        None => None,
    };
    Ok(Input { name: name.to_owned(), sections, symbols, btf, ext })
}

/// An output section under construction.
struct OutSection {
    name: String,
    sh_type: u32,
    flags: u64,
    align: u64,
    data: Vec<u8>,
    size: u64,
    /// (offset, r_type, output symbol index).
    relocations: Vec<(u64, u32, u32)>,
}

/// Where a global symbol's winning definition comes from.
#[derive(Clone, Copy)]
struct Winner {
    input: usize,
    symbol: usize,
}

/// Sections larger than this are refused (a BPF program is at most a million instructions).
const MAX_SECTION: u64 = 1 << 30;

/// BPF relocation types whose implicit addend moves with the target section.
const R_BPF_64_64: u32 = 1;
const R_BPF_64_ABS64: u32 = 2;
const R_BPF_64_ABS32: u32 = 3;
const R_BPF_64_NODYLD32: u32 = 4;
const R_BPF_64_32: u32 = 10;

fn add_u32(data: &mut [u8], at: usize, delta: u32) -> Option<()> {
    let slot = data.get_mut(at..at.checked_add(4)?)?;
    let value = u32::from_ne_bytes(slot.try_into().ok()?).wrapping_add(delta);
    slot.copy_from_slice(&value.to_ne_bytes());
    Some(())
}

fn add_u64(data: &mut [u8], at: usize, delta: u64) -> Option<()> {
    let slot = data.get_mut(at..at.checked_add(8)?)?;
    let value = u64::from_ne_bytes(slot.try_into().ok()?).wrapping_add(delta);
    slot.copy_from_slice(&value.to_ne_bytes());
    Some(())
}

impl Linker {
    /// An empty linker.
    pub fn new() -> Linker {
        Linker::default()
    }

    /// Adds the object `bytes`, called `name` in errors. Inputs are linked in the order added.
    pub fn add(&mut self, name: &str, bytes: &[u8]) -> Result<&mut Linker, LinkError> {
        self.inputs.push(read_input(name, bytes)?);
        Ok(self)
    }

    /// Links the inputs into one relocatable BPF object.
    pub fn link(&self) -> Result<Vec<u8>, LinkError> {
        let inputs = &self.inputs;
        // Sections: concatenated by name, in first-appearance order.
        let mut out: Vec<OutSection> = Vec::new();
        let mut placed: HashMap<(usize, usize), (usize, u64)> = HashMap::new();
        for (i, input) in inputs.iter().enumerate() {
            for (index, section) in input.sections.iter().enumerate() {
                let Some(section) = section else { continue };
                let at = match out.iter().position(|o| o.name == section.name) {
                    Some(at) => at,
                    None => {
                        out.push(OutSection {
                            name: section.name.clone(),
                            sh_type: section.sh_type,
                            flags: section.flags,
                            align: 1,
                            data: Vec::new(),
                            size: 0,
                            relocations: Vec::new(),
                        });
                        out.len() - 1
                    }
                };
                let o = &mut out[at];
                if o.sh_type != section.sh_type {
                    let first = placed.iter().find(|(_, &(a, _))| a == at).map_or(0, |(&(input, _), _)| input);
                    return Err(LinkError::Conflict {
                        what: format!("section {} (data in one, zero-filled in the other)", section.name),
                        first: inputs[first].name.clone(),
                        second: input.name.clone(),
                    });
                }
                // license and version are one value, not a concatenation.
                if matches!(section.name.as_str(), "license" | "version") && o.size > 0 {
                    let nul = |d: &[u8]| d.split(|&b| b == 0).next().unwrap_or_default().to_vec();
                    if nul(&o.data) != nul(&section.data) {
                        let first = inputs
                            .iter()
                            .position(|x| x.sections.iter().flatten().any(|s| s.name == section.name))
                            .unwrap_or(0);
                        return Err(LinkError::Conflict {
                            what: format!("section {}", section.name),
                            first: inputs[first].name.clone(),
                            second: input.name.clone(),
                        });
                    }
                    placed.insert((i, index), (at, 0));
                    continue;
                }
                o.align = o.align.max(section.align);
                let offset = o.size.next_multiple_of(section.align);
                if offset + section.size > MAX_SECTION {
                    return Err(LinkError::Input {
                        input: input.name.clone(),
                        reason: format!("section {} grows past {MAX_SECTION} bytes", section.name),
                    });
                }
                if o.sh_type != elf::SHT_NOBITS {
                    o.data.resize(offset as usize, 0);
                    o.data.extend_from_slice(&section.data);
                }
                o.size = offset + section.size;
                placed.insert((i, index), (at, offset));
            }
        }

        // Global symbols: one definition each.
        let mut winners: HashMap<&str, Winner> = HashMap::new();
        let mut order: Vec<&str> = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            for (s, symbol) in input.symbols.iter().enumerate() {
                if symbol.bind == elf::STB_LOCAL || symbol.name.is_empty() {
                    continue;
                }
                let candidate = Winner { input: i, symbol: s };
                let Some(current) = winners.get(symbol.name.as_str()).copied() else {
                    winners.insert(&symbol.name, candidate);
                    order.push(&symbol.name);
                    continue;
                };
                let held = &inputs[current.input].symbols[current.symbol];
                let (held_defined, new_defined) = (held.section.is_some(), symbol.section.is_some());
                if held_defined && new_defined && held.st_type != symbol.st_type {
                    return Err(LinkError::Conflict {
                        what: format!("symbol {} (a function in one, data in the other)", symbol.name),
                        first: inputs[current.input].name.clone(),
                        second: input.name.clone(),
                    });
                }
                // license and version are one value (checked equal above): one symbol.
                let in_single = |w: Winner, sym: &LinkSymbol| {
                    sym.section
                        .and_then(|index| inputs[w.input].sections[index].as_ref())
                        .is_some_and(|s| matches!(s.name.as_str(), "license" | "version"))
                };
                if in_single(current, held) && in_single(candidate, symbol) {
                    continue;
                }
                let replace = match (held_defined, new_defined) {
                    (false, true) => true,
                    (true, true) => match (held.bind == elf::STB_WEAK, symbol.bind == elf::STB_WEAK) {
                        (true, false) => true,
                        (false, false) => {
                            return Err(LinkError::Duplicate {
                                symbol: symbol.name.clone(),
                                first: inputs[current.input].name.clone(),
                                second: input.name.clone(),
                            })
                        }
                        _ => false,
                    },
                    // An undefined reference stays weak only if every reference is.
                    (false, false) => held.bind == elf::STB_WEAK && symbol.bind != elf::STB_WEAK,
                    (true, false) => false,
                };
                if replace {
                    winners.insert(&symbol.name, candidate);
                }
            }
        }

        // Output symbols: section symbols, locals, then globals.
        let mut symbols: Vec<LinkSymbol> = Vec::new();
        for at in 0..out.len() {
            symbols.push(LinkSymbol {
                name: String::new(),
                st_type: elf::STT_SECTION,
                bind: elf::STB_LOCAL,
                other: 0,
                section: Some(at),
                value: 0,
                size: 0,
            });
        }
        let section_symbol = |at: usize| at as u32 + 1;
        let mut local_index: HashMap<(usize, usize), u32> = HashMap::new();
        for (i, input) in inputs.iter().enumerate() {
            for (s, symbol) in input.symbols.iter().enumerate() {
                if symbol.bind != elf::STB_LOCAL || matches!(symbol.st_type, elf::STT_SECTION | elf::STT_FILE) || s == 0
                {
                    continue;
                }
                let Some(&(at, offset)) = symbol.section.and_then(|index| placed.get(&(i, index))) else { continue };
                symbols.push(LinkSymbol {
                    name: symbol.name.clone(),
                    st_type: symbol.st_type,
                    bind: elf::STB_LOCAL,
                    other: symbol.other,
                    section: Some(at),
                    value: symbol.value.wrapping_add(offset),
                    size: symbol.size,
                });
                local_index.insert((i, s), symbols.len() as u32);
            }
        }
        let num_local = symbols.len() as u32 + 1;
        let mut global_index: HashMap<&str, u32> = HashMap::new();
        for name in &order {
            let winner = winners[*name];
            let symbol = &inputs[winner.input].symbols[winner.symbol];
            let placement = symbol.section.and_then(|index| placed.get(&(winner.input, index))).copied();
            symbols.push(LinkSymbol {
                name: symbol.name.clone(),
                st_type: symbol.st_type,
                bind: symbol.bind,
                other: symbol.other,
                section: placement.map(|(at, _)| at),
                value: symbol.value.wrapping_add(placement.map_or(0, |(_, offset)| offset)),
                size: symbol.size,
            });
            global_index.insert(name, symbols.len() as u32);
        }

        // Relocations, their implicit addends moved with section-relative targets.
        for (i, input) in inputs.iter().enumerate() {
            for (index, section) in input.sections.iter().enumerate() {
                let Some(section) = section else { continue };
                let Some(&(at, base)) = placed.get(&(i, index)) else { continue };
                for &(offset, r_type, s) in &section.relocations {
                    let symbol = &input.symbols[s];
                    let bad = |reason: &str| LinkError::Input {
                        input: input.name.clone(),
                        reason: format!("relocation at {}+{offset}: {reason}", section.name),
                    };
                    let target = if symbol.st_type == elf::STT_SECTION {
                        let Some(&(target_at, target_base)) = symbol.section.and_then(|t| placed.get(&(i, t))) else {
                            return Err(bad("against a section that is not kept"));
                        };
                        let data = &mut out[at].data;
                        let spot = base
                            .checked_add(offset)
                            .and_then(|s| usize::try_from(s).ok())
                            .ok_or_else(|| bad("past the end of its section"))?;
                        let imm = spot.checked_add(4).ok_or_else(|| bad("past the end of its section"))?;
                        let moved = match r_type {
                            R_BPF_64_64 => add_u32(data, imm, target_base as u32),
                            R_BPF_64_32 => add_u32(data, imm, (target_base / 8) as u32),
                            R_BPF_64_ABS64 => add_u64(data, spot, target_base),
                            R_BPF_64_ABS32 | R_BPF_64_NODYLD32 => add_u32(data, spot, target_base as u32),
                            _ => return Err(bad(&format!("type {r_type} against a section"))),
                        };
                        moved.ok_or_else(|| bad("past the end of its section"))?;
                        section_symbol(target_at)
                    } else if symbol.bind == elf::STB_LOCAL {
                        *local_index.get(&(i, s)).ok_or_else(|| bad("against a local symbol that is not kept"))?
                    } else {
                        *global_index
                            .get(symbol.name.as_str())
                            .ok_or_else(|| bad("against an unnamed global symbol"))?
                    };
                    out[at].relocations.push((base.wrapping_add(offset), r_type, target));
                }
            }
        }

        // BTF and .BTF.ext.
        let with_btf: Vec<usize> = (0..inputs.len()).filter(|&i| inputs[i].btf.is_some()).collect();
        let (btf, ext) = if with_btf.is_empty() {
            (None, None)
        } else {
            let layout = Layout { inputs, out: &out, placed: &placed, winners: &winners, with_btf: &with_btf };
            let btfs: Vec<&Btf> = with_btf.iter().map(|&i| inputs[i].btf.as_ref().expect("filtered")).collect();
            let mut merged = merge(&btfs, &layout);
            let ext = merge_ext(inputs, &with_btf, &placed, &mut merged)?;
            (Some(merged.finish()), ext)
        };
        write(&out, &symbols, num_local, btf.as_deref(), ext.as_deref())
    }
}

/// Where the merged data sections' variables go: the input part's base plus the variable's
/// symbol value (clang leaves offsets to the loader); a global defined weakly where another
/// input defines it strongly is left out.
struct Layout<'a> {
    inputs: &'a [Input],
    out: &'a [OutSection],
    placed: &'a HashMap<(usize, usize), (usize, u64)>,
    winners: &'a HashMap<&'a str, Winner>,
    with_btf: &'a [usize],
}

impl DataLayout for Layout<'_> {
    fn place(&self, input: usize, section: &str, name: &str, offset: u32) -> Option<u32> {
        let i = self.with_btf[input];
        let object = &self.inputs[i];
        let Some(index) = object.sections.iter().position(|s| s.as_ref().is_some_and(|s| s.name == section)) else {
            return Some(offset); // .kconfig, .ksyms: no ELF section, laid out at load
        };
        let (_, base) = self.placed.get(&(i, index)).copied()?;
        let symbol = object.symbols.iter().position(|s| s.section == Some(index) && s.name == name);
        if let Some(s) = symbol {
            let global = object.symbols[s].bind != elf::STB_LOCAL;
            if global && self.winners.get(name).is_some_and(|w| w.input != i) {
                return None;
            }
            return Some(base.wrapping_add(object.symbols[s].value) as u32);
        }
        Some((base as u32).wrapping_add(offset))
    }

    fn section_size(&self, section: &str) -> u32 {
        self.out.iter().find(|s| s.name == section).map_or(0, |s| s.size as u32)
    }
}

/// Appends `sections`' records, each moved by `map(record, base of its section)`, to the
/// merged section of the same name in `list` (records of sections not kept are dropped).
fn move_records<T>(
    list: &mut Vec<ExtSection<T>>,
    sections: Vec<ExtSection<T>>,
    base: &dyn Fn(&str) -> Option<u32>,
    mut map: impl FnMut(&T, u32) -> T,
) {
    for section in sections {
        let Some(b) = base(&section.name) else { continue };
        let records: Vec<T> = section.records.iter().map(|r| map(r, b)).collect();
        match list.iter_mut().find(|s| s.name == section.name) {
            Some(merged) => merged.records.extend(records),
            None => list.push(ExtSection { name: section.name, records }),
        }
    }
}

/// Moves every input's `.BTF.ext` records to the merged sections, ids and strings merged.
fn merge_ext(
    inputs: &[Input],
    with_btf: &[usize],
    placed: &HashMap<(usize, usize), (usize, u64)>,
    merged: &mut ebpf_btf::merge::MergedBtf,
) -> Result<Option<Vec<u8>>, LinkError> {
    let mut out = BtfExt { func_info_rec_size: 8, line_info_rec_size: 16, ..BtfExt::default() };
    let mut any = false;
    for (n, &i) in with_btf.iter().enumerate() {
        let input = &inputs[i];
        let (Some(raw), Some(btf)) = (&input.ext, &input.btf) else { continue };
        any = true;
        let ext =
            BtfExt::parse(raw, btf).map_err(|e| LinkError::Btf { input: input.name.clone(), reason: e.to_string() })?;
        let base = |name: &str| -> Option<u32> {
            let index = input.sections.iter().position(|s| s.as_ref().is_some_and(|s| s.name == name))?;
            placed.get(&(i, index)).map(|&(_, offset)| offset as u32)
        };
        move_records(&mut out.func_info, ext.func_info, &base, |r, b| ebpf_btf::FuncInfo {
            insn_off: r.insn_off.wrapping_add(b),
            type_id: merged.id(n, r.type_id),
        });
        move_records(&mut out.line_info, ext.line_info, &base, |r, b| ebpf_btf::LineInfo {
            insn_off: r.insn_off.wrapping_add(b),
            file_name_off: merged.string(btf.string(r.file_name_off)),
            line_off: merged.string(btf.string(r.line_off)),
            line_col: r.line_col,
        });
        move_records(&mut out.core_relos, ext.core_relos, &base, |r, b| ebpf_btf::CoreRelo {
            insn_off: r.insn_off.wrapping_add(b),
            type_id: merged.id(n, r.type_id),
            access_str_off: merged.string(btf.string(r.access_str_off)),
            kind: r.kind,
        });
    }
    Ok(any.then(|| out.encode(&mut |name| merged.string(name))))
}

/// Writes the relocatable ELF object.
fn write(
    sections: &[OutSection],
    symbols: &[LinkSymbol],
    num_local: u32,
    btf: Option<&[u8]>,
    ext: Option<&[u8]>,
) -> Result<Vec<u8>, LinkError> {
    use object::write::elf::{
        FileHeader as OutHeader, Rel as OutRel, SectionHeader as OutSectionHeader, Sym as OutSym, Writer,
    };
    let mut buffer = Vec::new();
    let mut w = Writer::new(Endianness::Little, true, &mut buffer);
    let rel_names: Vec<Vec<u8>> = sections.iter().map(|s| format!(".rel{}", s.name).into_bytes()).collect();

    // Reserve: header, section indices and names, data, relocations, tables.
    w.reserve_file_header();
    w.reserve_null_section_index();
    let mut indices = Vec::with_capacity(sections.len());
    for section in sections {
        indices.push((w.reserve_section_index(), w.add_section_name(section.name.as_bytes())));
    }
    // Their indices follow the copied sections' in reservation order; only the names are kept.
    let btf_name = btf.map(|_| {
        w.reserve_section_index();
        w.add_section_name(b".BTF")
    });
    let ext_name = ext.map(|_| {
        w.reserve_section_index();
        w.add_section_name(b".BTF.ext")
    });
    let mut rel_indices = Vec::new();
    for (at, section) in sections.iter().enumerate() {
        if !section.relocations.is_empty() {
            rel_indices.push((at, w.reserve_section_index(), w.add_section_name(&rel_names[at])));
        }
    }
    let symtab = w.reserve_symtab_section_index();
    w.reserve_strtab_section_index();
    w.reserve_shstrtab_section_index();

    let mut offsets = Vec::with_capacity(sections.len());
    for section in sections {
        let len = if section.sh_type == elf::SHT_NOBITS { 0 } else { section.data.len() };
        offsets.push(w.reserve(len, section.align as usize));
    }
    let btf_offset = btf.map(|b| w.reserve(b.len(), 8));
    let ext_offset = ext.map(|e| w.reserve(e.len(), 8));
    let names: Vec<_> = symbols.iter().map(|s| (!s.name.is_empty()).then(|| w.add_string(s.name.as_bytes()))).collect();
    w.reserve_null_symbol_index();
    for symbol in symbols {
        w.reserve_symbol_index(symbol.section.map(|at| indices[at].0));
    }
    let mut rel_offsets = Vec::new();
    for (at, _, _) in &rel_indices {
        rel_offsets.push(w.reserve_relocations(sections[*at].relocations.len(), false));
    }
    w.reserve_symtab();
    w.reserve_strtab();
    w.reserve_shstrtab();
    w.reserve_section_headers();

    // Write, in the same order.
    let error = |e: object::write::Error| LinkError::Write(e.to_string());
    w.write_file_header(&OutHeader {
        os_abi: elf::ELFOSABI_NONE,
        abi_version: 0,
        e_type: elf::ET_REL,
        e_machine: elf::EM_BPF,
        e_entry: 0,
        e_flags: 0,
    })
    .map_err(error)?;
    // As reserved: every part aligned, a zero-filled (NOBITS) or empty one included.
    for section in sections {
        w.write_align(section.align as usize);
        if section.sh_type != elf::SHT_NOBITS {
            w.write(&section.data);
        }
    }
    for blob in [btf, ext].into_iter().flatten() {
        w.write_align(8);
        w.write(blob);
    }
    for (at, _, _) in &rel_indices {
        w.write_align_relocation();
        for &(offset, r_type, symbol) in &sections[*at].relocations {
            w.write_relocation(false, &OutRel { r_offset: offset, r_sym: symbol, r_type, r_addend: 0 });
        }
    }
    w.write_null_symbol();
    for (symbol, name) in symbols.iter().zip(&names) {
        w.write_symbol(&OutSym {
            name: *name,
            section: symbol.section.map(|at| indices[at].0),
            st_info: (symbol.bind << 4) | symbol.st_type,
            st_other: symbol.other,
            st_shndx: 0,
            st_value: symbol.value,
            st_size: symbol.size,
        });
    }
    w.write_strtab();
    w.write_shstrtab();

    w.write_null_section_header();
    for (at, section) in sections.iter().enumerate() {
        w.write_section_header(&OutSectionHeader {
            name: Some(indices[at].1),
            sh_type: section.sh_type,
            sh_flags: section.flags,
            sh_addr: 0,
            sh_offset: offsets[at] as u64,
            sh_size: section.size,
            sh_link: 0,
            sh_info: 0,
            sh_addralign: section.align,
            sh_entsize: 0,
        });
    }
    let blobs = [(btf_name, btf_offset, btf.map(<[u8]>::len)), (ext_name, ext_offset, ext.map(<[u8]>::len))];
    for (name, offset, len) in blobs {
        let (Some(name), Some(offset), Some(len)) = (name, offset, len) else { continue };
        w.write_section_header(&OutSectionHeader {
            name: Some(name),
            sh_type: elf::SHT_PROGBITS,
            sh_flags: 0,
            sh_addr: 0,
            sh_offset: offset as u64,
            sh_size: len as u64,
            sh_link: 0,
            sh_info: 0,
            sh_addralign: 8,
            sh_entsize: 0,
        });
    }
    for ((at, _, name), offset) in rel_indices.iter().zip(&rel_offsets) {
        w.write_relocation_section_header(
            *name,
            indices[*at].0,
            symtab,
            *offset,
            sections[*at].relocations.len(),
            false,
        );
    }
    w.write_symtab_section_header(num_local);
    w.write_strtab_section_header();
    w.write_shstrtab_section_header();
    Ok(buffer)
}
