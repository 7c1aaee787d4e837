//! The ELF layer: sections, symbols and relocations read once, with every offset and index
//! checked, so the rest of the loader works on plain data and cannot read out of bounds.

use std::ffi::CString;

use object::elf::{self, FileHeader64};
use object::read::elf::{FileHeader, Rel, Rela, SectionHeader, Sym, SymbolTable};
use object::{Endianness, SectionIndex, SymbolKind};

use super::error::ObjectError;

/// What a section holds, for the loader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// Instructions (`SHF_EXECINSTR`).
    Code,
    /// BTF-defined maps (`.maps`).
    Maps,
    /// Legacy `struct bpf_map_def` maps (`maps`, `maps/…`).
    LegacyMaps,
    /// Global data: `.data*`, `.rodata*` (read-only), `.bss*` (zero-filled).
    Data { read_only: bool, zeroed: bool },
    /// struct_ops values (`.struct_ops`, `.struct_ops.link`: registered through a link).
    StructOps { link: bool },
    /// The `license` string.
    License,
    /// The `version` word.
    Version,
    /// Anything else (BTF, debug info, string tables, relocation sections).
    Other,
}

pub(super) struct Section<'d> {
    pub name: &'d str,
    pub role: Role,
    /// Contents (empty for `.bss`, whose `size` still counts).
    pub data: &'d [u8],
    pub size: u64,
    /// Relocations against this section, sorted by offset.
    pub relocations: Vec<Reloc>,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Reloc {
    pub offset: u64,
    pub symbol: usize,
    pub r_type: u32,
}

/// Relocation types clang emits for BPF.
pub(super) const R_BPF_64_64: u32 = 1;
pub(super) const R_BPF_64_ABS64: u32 = 2;
pub(super) const R_BPF_64_32: u32 = 10;

#[derive(Clone, Debug)]
pub(super) struct Symbol<'d> {
    pub name: &'d str,
    /// Defining section, `None` for undefined (extern) and absolute symbols.
    pub section: Option<usize>,
    pub value: u64,
    pub size: u64,
    pub kind: SymbolKind,
    pub weak: bool,
    /// `STB_LOCAL`: a `static` function or variable.
    pub local: bool,
    pub undefined: bool,
}

pub(super) struct Elf<'d> {
    /// By ELF section index (index 0 is the null section).
    pub sections: Vec<Section<'d>>,
    /// By symbol index.
    pub symbols: Vec<Symbol<'d>>,
}

fn role(name: &[u8], sh_type: u32, flags: u64) -> Role {
    if flags & u64::from(elf::SHF_EXECINSTR) != 0 {
        return Role::Code;
    }
    let data = |prefix: &[u8]| name.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest[0] == b'.');
    match name {
        b".maps" => Role::Maps,
        b"license" => Role::License,
        b"version" => Role::Version,
        _ if name == b"maps" || name.starts_with(b"maps/") => Role::LegacyMaps,
        _ if data(b".struct_ops.link") => Role::StructOps { link: true },
        _ if data(b".struct_ops") => Role::StructOps { link: false },
        _ if data(b".rodata") => Role::Data { read_only: true, zeroed: false },
        _ if data(b".data") => Role::Data { read_only: false, zeroed: false },
        _ if data(b".bss") || sh_type == elf::SHT_NOBITS && !name.starts_with(b".debug") => {
            Role::Data { read_only: false, zeroed: true }
        }
        _ => Role::Other,
    }
}

/// The kind of an ELF symbol type, as the rest of the loader names it.
fn symbol_kind(st_type: u8) -> SymbolKind {
    match st_type {
        elf::STT_OBJECT | elf::STT_COMMON => SymbolKind::Data,
        elf::STT_FUNC | elf::STT_GNU_IFUNC => SymbolKind::Text,
        elf::STT_SECTION => SymbolKind::Section,
        elf::STT_FILE => SymbolKind::File,
        elf::STT_TLS => SymbolKind::Tls,
        _ => SymbolKind::Unknown,
    }
}

fn utf8<'d>(bytes: &'d [u8], what: &str) -> Result<&'d str, ObjectError> {
    std::str::from_utf8(bytes).map_err(|_| ObjectError::Elf(format!("{what}: not UTF-8")))
}

fn elf_error(what: &'static str) -> impl Fn(object::read::Error) -> ObjectError {
    move |e| ObjectError::Elf(format!("{what}: {e}"))
}

impl<'d> Elf<'d> {
    /// Reads the section and symbol tables through the `object` crate's raw ELF structures:
    /// only what the loader uses is decoded (names of debug sections and of their symbols are
    /// never read), which keeps a small object's read to a few microseconds.
    pub fn parse(bytes: &'d [u8]) -> Result<Elf<'d>, ObjectError> {
        let header = FileHeader64::<Endianness>::parse(bytes).map_err(elf_error("not a 64-bit ELF file"))?;
        let endian = header.endian().map_err(elf_error("byte order"))?;
        let machine = header.e_machine(endian);
        if machine != elf::EM_BPF {
            return Err(ObjectError::NotBpf(format!("machine is {machine:#x}, not BPF ({:#x})", elf::EM_BPF)));
        }
        if header.is_little_endian() != cfg!(target_endian = "little") {
            return Err(ObjectError::NotBpf("the object's byte order is not this machine's".to_owned()));
        }
        let table = header.sections(endian, bytes).map_err(elf_error("section table"))?;
        let mut sections: Vec<Section<'d>> = Vec::with_capacity(table.len().max(1));
        let mut symtab = None;
        for (index, section) in table.iter().enumerate() {
            let sh_type = section.sh_type(endian);
            if sh_type == elf::SHT_SYMTAB && symtab.is_none() {
                symtab = Some(index);
            }
            let raw_name = table.section_name(endian, section).map_err(elf_error("section name"))?;
            let flags = section.sh_flags(endian);
            let role = role(raw_name, sh_type, flags);
            let needed = role != Role::Other || raw_name == b".BTF" || raw_name == b".BTF.ext";
            let name = if needed || !(raw_name.starts_with(b".debug") || raw_name.starts_with(b".rel")) {
                utf8(raw_name, "section name")?
            } else {
                ""
            };
            let data = if !needed || sh_type == elf::SHT_NOBITS {
                &[][..]
            } else {
                section
                    .data(endian, bytes)
                    .map_err(|e| ObjectError::Section { section: name.to_owned(), reason: e.to_string() })?
            };
            sections.push(Section { name, role, data, size: section.sh_size(endian), relocations: Vec::new() });
        }

        let mut symbols = Vec::new();
        if let Some(symtab) = symtab {
            let table_section = table.section(SectionIndex(symtab)).map_err(elf_error("symbol table"))?;
            let symbol_table = SymbolTable::parse(endian, bytes, &table, SectionIndex(symtab), table_section)
                .map_err(elf_error("symbol table"))?;
            symbols.reserve_exact(symbol_table.len());
            for (index, symbol) in symbol_table.enumerate() {
                let section = symbol_table.symbol_section(endian, symbol, index).map_err(elf_error("symbol"))?;
                let kind = symbol_kind(symbol.st_type());
                let section = match section {
                    Some(s) if s.0 < sections.len() => Some(s.0),
                    Some(s) => {
                        let name = symbol_table.symbol_name(endian, symbol).unwrap_or(b"?");
                        return Err(ObjectError::Symbol {
                            symbol: String::from_utf8_lossy(name).into_owned(),
                            reason: format!("refers to section {}, past the last ({})", s.0, sections.len() - 1),
                        });
                    }
                    None => None,
                };
                // Symbols of debug and relocation sections (left unnamed above) keep no name:
                // reading (and validating) every name costs more than the rest of the table.
                // Other sections' symbols are named: BTF may describe variables there.
                let name = match section {
                    Some(s) if kind == SymbolKind::Section => sections[s].name,
                    Some(s) if sections[s].role == Role::Other && sections[s].name.is_empty() => "",
                    _ if kind == SymbolKind::File => "",
                    _ => utf8(
                        symbol_table.symbol_name(endian, symbol).map_err(elf_error("symbol name"))?,
                        "symbol name",
                    )?,
                };
                symbols.push(Symbol {
                    name,
                    section,
                    value: symbol.st_value(endian),
                    size: symbol.st_size(endian),
                    kind,
                    weak: symbol.st_bind() == elf::STB_WEAK,
                    local: symbol.st_bind() == elf::STB_LOCAL,
                    undefined: symbol.st_shndx(endian) == elf::SHN_UNDEF,
                });
            }
        }

        for section in table.iter() {
            let sh_type = section.sh_type(endian);
            if sh_type != elf::SHT_REL && sh_type != elf::SHT_RELA {
                continue;
            }
            if symtab != Some(section.sh_link(endian) as usize) {
                continue;
            }
            let target = section.sh_info(endian) as usize;
            // Only code, map definitions and struct_ops values are relocated; debug sections
            // carry hundreds of relocations nobody here reads.
            let Some(relocated) = sections
                .get(target)
                .filter(|t| matches!(t.role, Role::Code | Role::Maps | Role::LegacyMaps | Role::StructOps { .. }))
            else {
                continue;
            };
            let name = relocated.name;
            let mut relocations = Vec::new();
            let mut push = |offset: u64, symbol: u32, r_type: u32| {
                if symbol == 0 {
                    return Err(ObjectError::Relocation {
                        section: name.to_owned(),
                        offset,
                        reason: "target is not a symbol".to_owned(),
                    });
                }
                relocations.push(Reloc { offset, symbol: symbol as usize, r_type });
                Ok(())
            };
            let bad = |e: object::read::Error| ObjectError::Section { section: name.to_owned(), reason: e.to_string() };
            if let Some((rels, _)) = section.rel(endian, bytes).map_err(bad)? {
                for rel in rels {
                    push(rel.r_offset(endian), rel.r_sym(endian), rel.r_type(endian))?;
                }
            } else if let Some((relas, _)) = section.rela(endian, bytes).map_err(bad)? {
                for rela in relas {
                    push(rela.r_offset(endian), rela.r_sym(endian, false), rela.r_type(endian, false))?;
                }
            }
            relocations.sort_by_key(|r| r.offset);
            let slot = &mut sections[target].relocations;
            if slot.is_empty() {
                *slot = relocations;
            } else {
                slot.extend(relocations);
                slot.sort_by_key(|r| r.offset);
            }
        }
        for section in &sections {
            if let Some(bad) = section.relocations.iter().find(|r| r.symbol >= symbols.len()) {
                return Err(ObjectError::Relocation {
                    section: section.name.to_owned(),
                    offset: bad.offset,
                    reason: format!("symbol index {} is past the symbol table ({} symbols)", bad.symbol, symbols.len()),
                });
            }
        }
        Ok(Elf { sections, symbols })
    }

    /// The contents of the section named `name`, if there is one.
    pub fn section_data(&self, name: &str) -> Option<&'d [u8]> {
        self.sections.iter().find(|s| s.name == name).map(|s| s.data)
    }

    /// Symbols defined in section `index` of the given kind, sorted by value.
    pub fn symbols_in(&self, index: usize, kind: SymbolKind) -> Vec<&Symbol<'d>> {
        let mut found: Vec<&Symbol<'d>> =
            self.symbols.iter().filter(|s| s.section == Some(index) && s.kind == kind && !s.name.is_empty()).collect();
        found.sort_by_key(|s| s.value);
        found
    }

    /// The license string, up to its first NUL (empty when the object has none: the kernel then
    /// allows no GPL-only helper).
    pub fn license(&self) -> CString {
        let data = self.section_data("license").unwrap_or_default();
        let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
        CString::new(&data[..end]).expect("cut at the first NUL")
    }

    /// The `version` word, 0 when absent.
    pub fn kernel_version(&self) -> u32 {
        self.section_data("version")
            .and_then(|d| d.get(..4))
            .map_or(0, |b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
    }
}
