//! The ELF layer: sections, symbols and relocations read once, with every offset and index
//! checked, so the rest of the loader works on plain data and cannot read out of bounds.

use object::elf;
use object::read::elf::ElfFile64;
use object::{
    Architecture, Endianness, Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget, SectionKind,
    SymbolKind, SymbolSection,
};

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
    pub undefined: bool,
}

pub(super) struct Elf<'d> {
    /// By ELF section index (index 0 is the null section).
    pub sections: Vec<Section<'d>>,
    /// By symbol index.
    pub symbols: Vec<Symbol<'d>>,
}

fn role(name: &str, kind: SectionKind, flags: u64) -> Role {
    if flags & u64::from(elf::SHF_EXECINSTR) != 0 {
        return Role::Code;
    }
    let data = |prefix: &str| name.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'));
    match name {
        ".maps" => Role::Maps,
        "license" => Role::License,
        "version" => Role::Version,
        _ if name == "maps" || name.starts_with("maps/") => Role::LegacyMaps,
        _ if data(".rodata") => Role::Data { read_only: true, zeroed: false },
        _ if data(".data") => Role::Data { read_only: false, zeroed: false },
        _ if data(".bss") || kind == SectionKind::UninitializedData && !name.starts_with(".debug") => {
            Role::Data { read_only: false, zeroed: true }
        }
        _ => Role::Other,
    }
}

impl<'d> Elf<'d> {
    pub fn parse(bytes: &'d [u8]) -> Result<Elf<'d>, ObjectError> {
        let file = ElfFile64::<Endianness>::parse(bytes).map_err(|e| ObjectError::Elf(e.to_string()))?;
        if file.architecture() != Architecture::Bpf {
            return Err(ObjectError::NotBpf(format!("machine is {:?}, not BPF", file.architecture())));
        }
        if file.is_little_endian() != cfg!(target_endian = "little") {
            return Err(ObjectError::NotBpf("the object's byte order is not this machine's".to_owned()));
        }
        let section_count = file.sections().map(|s| s.index().0 + 1).max().unwrap_or(1);
        let mut sections: Vec<Section<'d>> = (0..section_count)
            .map(|_| Section { name: "", role: Role::Other, data: &[], size: 0, relocations: Vec::new() })
            .collect();
        for section in file.sections() {
            let name = section.name().map_err(|e| ObjectError::Elf(format!("section name: {e}")))?;
            let flags = match section.flags() {
                object::SectionFlags::Elf { sh_flags } => sh_flags,
                _ => 0,
            };
            let role = role(name, section.kind(), flags);
            let needed = role != Role::Other || name == ".BTF" || name == ".BTF.ext";
            let data = if !needed || section.kind() == SectionKind::UninitializedData {
                &[][..]
            } else {
                section.data().map_err(|e| ObjectError::Section { section: name.to_owned(), reason: e.to_string() })?
            };
            let size = section.size();
            let mut relocations = Vec::new();
            // Only code and map definitions are relocated; debug sections carry hundreds of
            // relocations nobody here reads.
            let relocated = matches!(role, Role::Code | Role::Maps | Role::LegacyMaps);
            for (offset, relocation) in section.relocations().take_while(|_| relocated) {
                let RelocationTarget::Symbol(symbol) = relocation.target() else {
                    return Err(ObjectError::Relocation {
                        section: name.to_owned(),
                        offset,
                        reason: "target is not a symbol".to_owned(),
                    });
                };
                let r_type = match relocation.flags() {
                    RelocationFlags::Elf { r_type } => r_type,
                    _ => 0,
                };
                relocations.push(Reloc { offset, symbol: symbol.0, r_type });
            }
            relocations.sort_by_key(|r| r.offset);
            sections[section.index().0] = Section { name, role, data, size, relocations };
        }

        let mut symbols = Vec::new();
        for symbol in file.symbols() {
            let index = symbol.index().0;
            if symbols.len() <= index {
                symbols.resize(
                    index + 1,
                    Symbol {
                        name: "",
                        section: None,
                        value: 0,
                        size: 0,
                        kind: SymbolKind::Unknown,
                        weak: false,
                        undefined: true,
                    },
                );
            }
            let section = match symbol.section() {
                SymbolSection::Section(s) if s.0 < sections.len() => Some(s.0),
                SymbolSection::Section(s) => {
                    return Err(ObjectError::Symbol {
                        symbol: symbol.name().unwrap_or("?").to_owned(),
                        reason: format!("refers to section {}, past the last ({})", s.0, sections.len() - 1),
                    })
                }
                _ => None,
            };
            // Symbols of debug and other unread sections keep no name: reading (and validating)
            // every name costs more than the rest of the table.
            let name = match section {
                Some(s) if symbol.kind() == SymbolKind::Section => sections[s].name,
                Some(s) if sections[s].role == Role::Other => "",
                _ if symbol.kind() == SymbolKind::File => "",
                _ => symbol.name().map_err(|e| ObjectError::Elf(format!("symbol name: {e}")))?,
            };
            symbols[index] = Symbol {
                name,
                section,
                value: symbol.address(),
                size: symbol.size(),
                kind: symbol.kind(),
                weak: symbol.is_weak(),
                undefined: symbol.is_undefined(),
            };
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

    /// The license string (`GPL` when the object has none, as the kernel then needs nothing).
    pub fn license(&self) -> String {
        let Some(data) = self.section_data("license") else { return String::new() };
        let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
        String::from_utf8_lossy(&data[..end]).into_owned()
    }

    /// The `version` word, 0 when absent.
    pub fn kernel_version(&self) -> u32 {
        self.section_data("version")
            .and_then(|d| d.get(..4))
            .map_or(0, |b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
    }
}
