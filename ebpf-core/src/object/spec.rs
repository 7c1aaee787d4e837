//! [`CollectionSpec`]: everything an object file defines, as plain data.

use std::collections::HashMap;

use bytes::Bytes;
use ebpf_btf::BtfExt;

use super::data::{self, KconfigExtern, KCONFIG_MAP};
use super::elf::{Elf, Role};
use super::error::ObjectError;
use super::linker::{CodeSection, Linked, Linker, Resolver};
use super::maps::{read_maps, DefinedMap};
use super::section::classify;
use super::variable::VariableSpec;
use crate::insn::{self, MapReference};
use crate::map::MapSpec;
use crate::program::{CoreRelocation, KsymReference, ProgramBtf, ProgramSpec};

/// The programs, maps and global variables of an object, as plain data: inspect and edit
/// them, then load them all with [`Collection::load`](super::Collection::load).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CollectionSpec {
    /// Programs, in section order.
    pub programs: Vec<ProgramSpec>,
    /// Maps: those the object defines, then one per global data section.
    pub maps: Vec<MapSpec>,
    /// Global variables of the data sections. At load, each variable's value is written over
    /// its section's initial bytes.
    pub variables: Vec<VariableSpec>,
    /// `.kconfig` externs, filled from the running kernel's configuration at load.
    pub kconfig: Vec<KconfigExtern>,
    /// The object's BTF (data sections completed), loaded once and shared by every program
    /// and map.
    pub btf: Option<Bytes>,
}

struct ObjectResolver<'a> {
    maps: &'a [DefinedMap],
    data: HashMap<usize, String>,
    kconfig: &'a [KconfigExtern],
}

impl Resolver for ObjectResolver<'_> {
    fn map_at(&self, section: usize, offset: u64) -> Option<String> {
        self.maps.iter().find(|m| m.section == section && m.offset == offset).map(|m| m.spec.name.clone())
    }

    fn data_map(&self, section: usize) -> Option<String> {
        self.data.get(&section).cloned()
    }

    fn extern_var(&self, name: &str) -> Option<(String, u32)> {
        self.kconfig.iter().find(|k| k.name == name).map(|k| (KCONFIG_MAP.to_owned(), k.offset))
    }
}

impl CollectionSpec {
    /// Reads an ELF object as clang writes it for libbpf. Never panics: malformed input gives
    /// an [`ObjectError`] naming the section, symbol or relocation at fault.
    pub fn from_elf(bytes: &[u8]) -> Result<CollectionSpec, ObjectError> {
        let elf = Elf::parse(bytes)?;
        let fixed = match elf.section_data(".BTF") {
            Some(raw) => Some(data::fix_btf(&elf, raw)?),
            None => None,
        };
        let btf = fixed.as_ref().map(|f| &f.btf);
        let ext = match (elf.section_data(".BTF.ext"), btf) {
            (Some(raw), Some(btf)) => {
                Some(BtfExt::parse(raw, btf).map_err(|error| ObjectError::Btf { section: ".BTF.ext", error })?)
            }
            _ => None,
        };
        let kconfig = fixed.as_ref().map_or_else(Vec::new, |f| f.kconfig.clone());

        let defined = read_maps(&elf, fixed.as_ref())?;
        let (data_maps, variables) = data::data_maps(&elf, fixed.as_ref());
        let mut maps: Vec<MapSpec> = defined.iter().map(|m| m.spec.clone()).collect();
        let data_names: HashMap<usize, String> = data_maps.iter().map(|(i, m)| (*i, m.name.clone())).collect();
        maps.extend(data_maps.into_iter().map(|(_, m)| m));
        if let Some(map) = fixed.as_ref().and_then(data::kconfig_map) {
            maps.push(map);
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = maps.iter().find(|m| !seen.insert(m.name.as_str())) {
            return Err(ObjectError::Map { map: dup.name.clone(), reason: "defined twice".to_owned() });
        }

        let resolver = ObjectResolver { maps: &defined, data: data_names, kconfig: &kconfig };
        let mut code: Vec<Option<CodeSection>> = Vec::with_capacity(elf.sections.len());
        for (index, section) in elf.sections.iter().enumerate() {
            code.push(if section.role == Role::Code { Some(CodeSection::read(&elf, index)?) } else { None });
        }
        let linker = Linker { elf: &elf, code: &code, ext: ext.as_ref(), resolver: &resolver };
        let license = elf.license();
        let kernel_version = elf.kernel_version();
        let mut programs = Vec::new();
        for section in code.iter().flatten().filter(|c| c.name != ".text") {
            let kind =
                classify(&section.name).ok_or_else(|| ObjectError::UnknownSection { section: section.name.clone() })?;
            for (f, function) in section.functions.iter().enumerate() {
                let linked = linker.link(section.index, f)?;
                let mut spec = program_spec(
                    &function.name,
                    &section.name,
                    linked,
                    fixed.as_ref().map(|f| &f.bytes),
                    ext.as_ref(),
                )?;
                spec.program_type = kind.program_type;
                spec.expected_attach_type = kind.attach_type;
                spec.flags = kind.flags;
                spec.attach_to = kind.attach_to.clone();
                spec.license = license.clone();
                spec.kernel_version = kernel_version;
                programs.push(spec);
            }
        }
        Ok(CollectionSpec { programs, maps, variables, kconfig, btf: fixed.map(|f| f.bytes) })
    }

    /// The program called `name`.
    pub fn program(&self, name: &str) -> Result<&ProgramSpec, ObjectError> {
        self.programs.iter().find(|p| p.name == name).ok_or_else(|| not_found("program", name))
    }

    /// The program called `name`, to edit.
    pub fn program_mut(&mut self, name: &str) -> Result<&mut ProgramSpec, ObjectError> {
        self.programs.iter_mut().find(|p| p.name == name).ok_or_else(|| not_found("program", name))
    }

    /// The map called `name`.
    pub fn map(&self, name: &str) -> Result<&MapSpec, ObjectError> {
        self.maps.iter().find(|m| m.name == name).ok_or_else(|| not_found("map", name))
    }

    /// The map called `name`, to edit.
    pub fn map_mut(&mut self, name: &str) -> Result<&mut MapSpec, ObjectError> {
        self.maps.iter_mut().find(|m| m.name == name).ok_or_else(|| not_found("map", name))
    }

    /// The global variable called `name`.
    pub fn variable(&self, name: &str) -> Result<&VariableSpec, ObjectError> {
        self.variables.iter().find(|v| v.name == name).ok_or_else(|| not_found("variable", name))
    }

    /// The global variable called `name`, to set before load.
    pub fn variable_mut(&mut self, name: &str) -> Result<&mut VariableSpec, ObjectError> {
        self.variables.iter_mut().find(|v| v.name == name).ok_or_else(|| not_found("variable", name))
    }
}

fn not_found(kind: &'static str, name: &str) -> ObjectError {
    ObjectError::NotFound { kind, name: name.to_owned() }
}

/// Decodes a linked program and turns slot positions into instruction indices.
fn program_spec(
    name: &str,
    section: &str,
    linked: Linked,
    btf: Option<&Bytes>,
    ext: Option<&BtfExt>,
) -> Result<ProgramSpec, ObjectError> {
    let instructions = insn::decode(&linked.insns)
        .map_err(|e| ObjectError::Section { section: section.to_owned(), reason: format!("program {name}: {e}") })?;
    let mut index_of_slot = vec![usize::MAX; linked.insns.len()];
    let mut slot = 0;
    for (i, insn) in instructions.iter().enumerate() {
        index_of_slot[slot] = i;
        slot += insn.slots();
    }
    let index = |slot: usize| -> Result<usize, ObjectError> {
        index_of_slot.get(slot).copied().filter(|&i| i != usize::MAX).ok_or_else(|| ObjectError::Relocation {
            section: section.to_owned(),
            offset: slot as u64 * 8,
            reason: format!("program {name}: the relocated slot is the second half of a 64-bit load"),
        })
    };
    let mut spec = ProgramSpec::new(name, crate::types::ProgramType::SocketFilter, instructions);
    spec.section = Some(section.to_owned());
    for (slot, map) in linked.maps {
        spec.map_references.push(MapReference { index: index(slot)?, name: map });
    }
    for (slot, symbol, is_call) in linked.ksyms {
        spec.ksym_references.push(KsymReference { index: index(slot)?, name: symbol, is_call });
    }
    for (slot, relo) in linked.core {
        spec.core_relocations.push(CoreRelocation { index: index(slot)?, relo });
    }
    if let (Some(blob), Some(_)) = (btf, ext) {
        let func_info: Vec<u8> =
            linked.func_info.iter().flat_map(|r| [r.insn_off, r.type_id]).flat_map(u32::to_ne_bytes).collect();
        let line_info: Vec<u8> = linked
            .line_info
            .iter()
            .flat_map(|r| [r.insn_off, r.file_name_off, r.line_off, r.line_col])
            .flat_map(u32::to_ne_bytes)
            .collect();
        spec.btf = Some(ProgramBtf {
            blob: blob.clone(),
            func_info,
            func_info_rec_size: 8,
            line_info,
            line_info_rec_size: 16,
        });
    }
    Ok(spec)
}
