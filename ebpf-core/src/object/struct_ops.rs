//! struct_ops values of an object (`.struct_ops`, `.struct_ops.link`): each variable becomes a
//! struct_ops map whose function pointers name the programs relocated into them.

use ebpf_btf::{Btf, BtfKind};
use object::SymbolKind;

use super::data::FixedBtf;
use super::elf::{Elf, Role, R_BPF_64_ABS64};
use super::error::ObjectError;
use super::section::classify;
use crate::map::{MapContents, MapFlags, MapSpec};
use crate::struct_ops::{StructOpsMember, StructOpsValue};
use crate::types::{MapType, ProgramType};

/// Reads every struct_ops variable of the object into a map spec.
pub(super) fn read_struct_ops(elf: &Elf<'_>, fixed: Option<&FixedBtf>) -> Result<Vec<MapSpec>, ObjectError> {
    let mut maps = Vec::new();
    for (index, section) in elf.sections.iter().enumerate() {
        let Role::StructOps { link } = section.role else { continue };
        let bad = |reason: String| ObjectError::Section { section: section.name.to_owned(), reason };
        let fixed =
            fixed.ok_or_else(|| bad("struct_ops values need the object's .BTF (compile with -g)".to_owned()))?;
        let datasec =
            fixed.datasec(section.name).ok_or_else(|| bad("the object's BTF does not describe it".to_owned()))?;
        let first = maps.len();
        for var in datasec.datasec_vars() {
            let name = fixed.btf.type_by_id(var.ty).map_or("", |t| t.name()).to_owned();
            let start = var.offset as usize;
            let data = section
                .data
                .get(start..start.saturating_add(var.size as usize))
                .ok_or_else(|| bad(format!("{name} runs past the section's {} bytes", section.data.len())))?;
            let mut value = read_value(&fixed.btf, var.ty, &name, data)?;
            bind_programs(elf, index, var.offset, var.size, &name, &mut value)?;
            let mut spec = MapSpec::new(&name, MapType::StructOps, 4, var.size, 1);
            if link {
                spec.flags = MapFlags::LINK;
            }
            spec.contents = MapContents::StructOps(value);
            maps.push(spec);
        }
        if maps.len() == first && section.size > 0 {
            return Err(bad("the BTF describes no variable in it".to_owned()));
        }
    }
    Ok(maps)
}

fn map_error(map: &str, reason: String) -> ObjectError {
    ObjectError::Map { map: map.to_owned(), reason }
}

/// The object's declaration of the struct behind variable `var`.
fn read_value(btf: &Btf, var: u32, name: &str, data: &[u8]) -> Result<StructOpsValue, ObjectError> {
    let ty = btf
        .type_by_id(var)
        .filter(|t| t.is(BtfKind::Var))
        .and_then(|v| btf.skip_mods_and_typedefs(v.size_or_type()))
        .filter(|t| t.is(BtfKind::Struct) && !t.name().is_empty())
        .ok_or_else(|| map_error(name, "a struct_ops value is a variable of a named struct type".to_owned()))?;
    let mut members = Vec::with_capacity(ty.vlen());
    for member in ty.members() {
        let bad = |reason: &str| map_error(name, format!("member {:?} of struct {}: {reason}", member.name, ty.name()));
        if member.name.is_empty() {
            return Err(bad("anonymous members cannot be matched with the kernel's by name"));
        }
        if member.bitfield_size != 0 || member.bit_offset % 8 != 0 {
            return Err(bad("bitfields cannot be matched with the kernel's"));
        }
        let size = btf.resolve_size(member.ty).map_err(|e| bad(&e.to_string()))?;
        let offset = member.bit_offset / 8;
        if offset as usize + size as usize > data.len() {
            return Err(bad("it lies past the end of the value"));
        }
        members.push(StructOpsMember { name: member.name.to_owned(), offset, size, program: None });
    }
    Ok(StructOpsValue { type_name: ty.name().to_owned(), data: data.to_vec(), members })
}

/// Points the function pointer members of the value at `offset..offset + size` of section
/// `index` at the programs its relocations name, and clears their slots in the data.
fn bind_programs(
    elf: &Elf<'_>,
    index: usize,
    offset: u32,
    size: u32,
    name: &str,
    value: &mut StructOpsValue,
) -> Result<(), ObjectError> {
    let section = &elf.sections[index];
    let end = u64::from(offset) + u64::from(size);
    for reloc in section.relocations.iter().filter(|r| r.offset >= u64::from(offset) && r.offset < end) {
        let at = (reloc.offset - u64::from(offset)) as u32;
        let bad =
            |reason: String| ObjectError::Relocation { section: section.name.to_owned(), offset: reloc.offset, reason };
        if reloc.r_type != R_BPF_64_ABS64 {
            return Err(bad(format!(
                "type {} in a struct_ops value (only 64-bit addresses of programs)",
                reloc.r_type
            )));
        }
        let member = value
            .members
            .iter_mut()
            .find(|m| m.offset == at && m.size == 8)
            .ok_or_else(|| bad(format!("it does not fall on a pointer member of {name}")))?;
        let symbol = &elf.symbols[reloc.symbol];
        let addend = section
            .data
            .get(reloc.offset as usize..reloc.offset as usize + 8)
            .map_or(0, |b| u64::from_ne_bytes(b.try_into().expect("8 bytes")));
        let (program, in_section) = match (symbol.kind, symbol.section) {
            (SymbolKind::Text, Some(s)) if !symbol.name.is_empty() => (symbol.name.to_owned(), s),
            // A static function referred to through its section: the address says which.
            (SymbolKind::Section, Some(s)) => {
                let function = elf
                    .symbols_in(s, SymbolKind::Text)
                    .into_iter()
                    .find(|f| f.value == addend)
                    .ok_or_else(|| bad(format!("no function at byte {addend} of {}", elf.sections[s].name)))?;
                (function.name.to_owned(), s)
            }
            _ => return Err(bad(format!("symbol {:?} is not a function of the object", symbol.name))),
        };
        let code = elf.sections[in_section].name;
        if classify(code).map(|k| k.program_type) != Some(ProgramType::StructOps) {
            return Err(bad(format!(
                "member {} points to {program} in section {code}, which is not a struct_ops/ section",
                member.name
            )));
        }
        member.program = Some(program);
        let start = at as usize;
        value.data[start..start + 8].fill(0);
    }
    Ok(())
}
