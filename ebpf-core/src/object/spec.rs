//! [`CollectionSpec`]: everything an object file defines, as plain data.

use std::ffi::CStr;
use std::sync::Arc;

use bytes::Bytes;
use ebpf_btf::BtfExt;

use super::data::{self, KconfigExtern, KCONFIG_MAP};
use super::elf::{Elf, Role};
use super::error::ObjectError;
use super::linker::{CallLinker, CodeSection, Linked, Resolver};
use super::maps::{read_maps, DefinedMap};
use super::section::{classify, SectionKind};
use super::struct_ops::read_struct_ops;
use super::variable::VariableSpec;
use crate::insn::{self, MapReference};
use crate::map::{MapContents, MapSpec};
use crate::program::{CoreRelocation, KsymReference, ProgramBtf, ProgramSpec};
use crate::types::ProgramType;
use crate::{SharedStr, SharedVec};

/// The programs, maps and global variables of an object, as plain data: inspect and edit
/// them, then load them all with [`Collection::load`](super::Collection::load).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CollectionSpec {
    /// Programs, in section order. Like the maps, variables and externs, shared with copies
    /// of the spec until one of them edits its own.
    pub programs: SharedVec<ProgramSpec>,
    /// Maps: those the object defines, then one per global data section.
    pub maps: SharedVec<MapSpec>,
    /// Global variables of the data sections. At load, each variable's value is written over
    /// its section's initial bytes.
    pub variables: SharedVec<VariableSpec>,
    /// `.kconfig` externs, filled from the running kernel's configuration at load.
    pub kconfig: SharedVec<KconfigExtern>,
    /// The object's BTF (data sections completed), loaded once and shared by every program
    /// and map.
    pub btf: Option<Bytes>,
}

struct ObjectResolver<'a> {
    maps: &'a [DefinedMap],
    /// (section index, map name) of each data section's map.
    data: Vec<(usize, &'a str)>,
    kconfig: &'a [KconfigExtern],
}

impl Resolver for ObjectResolver<'_> {
    fn map_at(&self, section: usize, offset: u64) -> Option<String> {
        self.maps.iter().find(|m| m.section == section && m.offset == offset).map(|m| m.spec.name.clone())
    }

    fn data_map(&self, section: usize) -> Option<String> {
        self.data.iter().find(|(s, _)| *s == section).map(|(_, name)| (*name).to_owned())
    }

    fn extern_var(&self, name: &str) -> Option<(String, u32)> {
        self.kconfig.iter().find(|k| k.name == name).map(|k| (KCONFIG_MAP.to_owned(), k.offset))
    }
}

impl CollectionSpec {
    /// Reads an ELF object as clang writes it for libbpf. Never panics: malformed input gives
    /// an [`ObjectError`] naming the section, symbol or relocation at fault.
    ///
    /// Every call parses: nothing is cached behind the caller's back. A program that loads one
    /// object many times keeps the spec and loads clones of it (a clone shares the bulky parts,
    /// see [`SharedVec`]).
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
        let data_sections: Vec<usize> = data_maps.iter().map(|(i, _)| *i).collect();
        let mut maps: Vec<MapSpec> = Vec::with_capacity(defined.len() + data_maps.len() + 1);
        maps.extend(defined.iter().map(|m| m.spec.clone()));
        maps.extend(data_maps.into_iter().map(|(_, m)| m));
        if let Some(map) = fixed.as_ref().and_then(data::kconfig_map) {
            maps.push(map);
        }
        maps.extend(read_struct_ops(&elf, fixed.as_ref())?);
        if let Some(dup) = first_duplicate(&maps) {
            return Err(ObjectError::Map { map: dup.to_owned(), reason: "defined twice".to_owned() });
        }
        let first_data = defined.len();
        let data_names =
            data_sections.iter().enumerate().map(|(i, &s)| (s, maps[first_data + i].name.as_str())).collect();

        let resolver = ObjectResolver { maps: &defined, data: data_names, kconfig: &kconfig };
        let mut code: Vec<Option<CodeSection>> = Vec::with_capacity(elf.sections.len());
        for (index, section) in elf.sections.iter().enumerate() {
            code.push(if section.role == Role::Code { Some(CodeSection::read(&elf, index)?) } else { None });
        }
        let linker = CallLinker { elf: &elf, code: &code, ext: ext.as_ref(), resolver: &resolver };
        let license: Arc<CStr> = elf.license().into();
        let kernel_version = elf.kernel_version();
        // Each code section with what its name says. `.text`, and a section whose name says no
        // program type and whose functions are all static (`__section("static")` on a helper),
        // hold subprograms only (cilium/ebpf's rule; libbpf refuses the latter). Another name
        // that says no type gives programs of unspecified type, which the caller sets before
        // load (cilium/ebpf's behaviour); loading one unset is refused.
        let entries: Vec<(&CodeSection, SectionKind)> = code
            .iter()
            .flatten()
            .filter(|c| c.name != ".text")
            .filter_map(|c| match classify(c.name) {
                Some(kind) => Some((c, kind)),
                None if c.only_static_functions() => None,
                None => Some((c, SectionKind::unspecified())),
            })
            .collect();
        let mut programs = Vec::with_capacity(entries.iter().map(|(c, _)| c.functions.len()).sum());
        for (section, kind) in &entries {
            let section_name = SharedStr::from(section.name);
            for (f, function) in section.functions.iter().enumerate() {
                let linked = linker.link(section.index, f)?;
                let mut spec = program_spec(
                    &function.name,
                    &section_name,
                    linked,
                    fixed.as_ref().map(|f| &f.bytes),
                    ext.as_ref(),
                    license.clone(),
                )?;
                spec.program_type = kind.program_type;
                spec.expected_attach_type = kind.attach_type;
                spec.flags = kind.flags;
                spec.attach_to = kind.attach_to.clone();
                spec.kernel_version = kernel_version;
                programs.push(spec);
            }
        }
        attach_struct_ops_programs(&maps, &mut programs)?;
        Ok(CollectionSpec {
            programs: programs.into(),
            maps: maps.into(),
            variables: variables.into(),
            kconfig: kconfig.into(),
            btf: fixed.map(|f| f.bytes),
        })
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

/// Gives each struct_ops program the `TYPE:MEMBER` its maps point it at. One no map refers
/// to is left out of loads (it has nothing to attach to; libbpf leaves it out too).
fn attach_struct_ops_programs(maps: &[MapSpec], programs: &mut [ProgramSpec]) -> Result<(), ObjectError> {
    // What follows `struct_ops/` in a section name is only a label.
    for program in programs.iter_mut().filter(|p| p.program_type == ProgramType::StructOps) {
        program.attach_to = None;
    }
    for map in maps {
        let MapContents::StructOps(value) = &map.contents else { continue };
        for member in &value.members {
            let Some(name) = &member.program else { continue };
            let target = format!("{}:{}", value.type_name, member.name);
            let program = programs.iter_mut().find(|p| p.name == name.as_str()).ok_or_else(|| ObjectError::Map {
                map: map.name.clone(),
                reason: format!("member {} points to {name}, which is not a program of the object", member.name),
            })?;
            match &program.attach_to {
                Some(other) if *other != target => {
                    return Err(ObjectError::Map {
                        map: map.name.clone(),
                        reason: format!(
                            "program {name} implements {target} here and {other} elsewhere; a struct_ops program \
                             implements one member"
                        ),
                    })
                }
                _ => program.attach_to = Some(target),
            }
        }
    }
    for program in programs.iter_mut().filter(|p| p.program_type == ProgramType::StructOps) {
        if program.attach_to.is_none() {
            program.autoload = false;
        }
    }
    Ok(())
}

/// The first name two maps share. Objects define a handful of maps: pairwise comparison
/// beats hashing until there are many.
fn first_duplicate(maps: &[MapSpec]) -> Option<&str> {
    if maps.len() > 64 {
        let mut seen = std::collections::HashSet::with_capacity(maps.len());
        return maps.iter().map(|m| m.name.as_str()).find(|name| !seen.insert(*name));
    }
    maps.iter()
        .enumerate()
        .find(|(i, m)| maps[..*i].iter().any(|earlier| earlier.name == m.name))
        .map(|(_, m)| m.name.as_str())
}

fn not_found(kind: &'static str, name: &str) -> ObjectError {
    ObjectError::NotFound { kind, name: name.to_owned() }
}

/// Decodes a linked program and turns slot positions into instruction indices.
fn program_spec(
    name: &str,
    section: &SharedStr,
    linked: Linked,
    btf: Option<&Bytes>,
    ext: Option<&BtfExt>,
    license: Arc<CStr>,
) -> Result<ProgramSpec, ObjectError> {
    let instructions = insn::decode(&linked.insns)
        .map_err(|e| ObjectError::Section { section: section.to_string(), reason: format!("program {name}: {e}") })?;
    let has_references = !linked.maps.is_empty() || !linked.ksyms.is_empty() || !linked.core.is_empty();
    let slot_of = if has_references { insn::slot_offsets(&instructions) } else { Vec::new() };
    let index = |slot: usize| -> Result<usize, ObjectError> {
        slot_of.binary_search(&slot).map_err(|_| ObjectError::Relocation {
            section: section.to_string(),
            offset: slot as u64 * 8,
            reason: format!("program {name}: the relocated slot is the second half of a 64-bit load"),
        })
    };
    let map_references = linked
        .maps
        .into_iter()
        .map(|(slot, map)| Ok(MapReference { index: index(slot)?, name: map }))
        .collect::<Result<_, _>>()?;
    let ksym_references = linked
        .ksyms
        .into_iter()
        .map(|k| Ok(KsymReference { index: index(k.slot)?, name: k.name, is_call: k.is_call, weak: k.weak }))
        .collect::<Result<_, _>>()?;
    let core_relocations = linked
        .core
        .into_iter()
        .map(|(slot, relo)| Ok(CoreRelocation { index: index(slot)?, relo }))
        .collect::<Result<_, _>>()?;
    let program_btf = match (btf, ext) {
        (Some(blob), Some(_)) => {
            let mut func_info = Vec::with_capacity(linked.func_info.len() * 8);
            for r in &linked.func_info {
                func_info.extend_from_slice(&r.insn_off.to_ne_bytes());
                func_info.extend_from_slice(&r.type_id.to_ne_bytes());
            }
            let mut line_info = Vec::with_capacity(linked.line_info.len() * 16);
            for r in &linked.line_info {
                for word in [r.insn_off, r.file_name_off, r.line_off, r.line_col] {
                    line_info.extend_from_slice(&word.to_ne_bytes());
                }
            }
            Some(ProgramBtf {
                blob: blob.clone(),
                func_info: func_info.into(),
                func_info_rec_size: 8,
                line_info: line_info.into(),
                line_info_rec_size: 16,
            })
        }
        _ => None,
    };
    Ok(ProgramSpec {
        name: name.into(),
        section: Some(section.clone()),
        program_type: crate::types::ProgramType::SocketFilter,
        expected_attach_type: None,
        instructions: instructions.into(),
        map_references,
        license,
        kernel_version: 0,
        flags: crate::program::ProgramFlags::empty(),
        attach_btf_id: None,
        btf: program_btf,
        attach_to: None,
        core_relocations,
        ksym_references,
        autoload: true,
    })
}
