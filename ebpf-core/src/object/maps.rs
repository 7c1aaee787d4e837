//! Map definitions: BTF-defined (`.maps`, libbpf's `__uint`/`__type`/`__array` encoding) and
//! legacy (`struct bpf_map_def` or iproute2's `struct bpf_elf_map` in `maps`).

use ebpf_btf::{Btf, BtfKind, Type};
use object::SymbolKind;

use super::data::FixedBtf;
use super::elf::{Elf, Role};
use super::error::ObjectError;
use crate::map::{MapBtfTypes, MapContents, MapFlags, MapSpec, Pinning};
use crate::types::MapType;

/// A map found in a maps section, with where it sits there.
pub(super) struct DefinedMap {
    pub section: usize,
    pub offset: u64,
    pub spec: MapSpec,
}

/// Reads every map definition of the object.
pub(super) fn read_maps(elf: &Elf<'_>, fixed: Option<&FixedBtf>) -> Result<Vec<DefinedMap>, ObjectError> {
    let mut maps = Vec::new();
    for (index, section) in elf.sections.iter().enumerate() {
        match section.role {
            Role::Maps => {
                let fixed = fixed.ok_or_else(|| ObjectError::Section {
                    section: section.name.to_owned(),
                    reason: "BTF-defined maps need the object's .BTF section (compile with -g)".to_owned(),
                })?;
                read_btf_maps(elf, index, fixed, &mut maps)?;
            }
            Role::LegacyMaps => read_legacy_maps(elf, index, &mut maps)?,
            _ => {}
        }
    }
    Ok(maps)
}

fn read_btf_maps(elf: &Elf<'_>, index: usize, fixed: &FixedBtf, out: &mut Vec<DefinedMap>) -> Result<(), ObjectError> {
    let section = &elf.sections[index];
    let btf = &fixed.btf;
    let Some(datasec) = fixed.datasec(".maps") else { return Ok(()) };
    let first = out.len();
    for var in datasec.datasec_vars() {
        let Some(var_type) = btf.type_by_id(var.ty) else { continue };
        let name = var_type.name().to_owned();
        let bad = |reason: String| ObjectError::Map { map: name.clone(), reason };
        let Some(def) = btf.skip_mods_and_typedefs(var_type.size_or_type()).filter(|t| t.is(BtfKind::Struct)) else {
            return Err(bad("the definition is not a struct".to_owned()));
        };
        let offset = u64::from(var.offset);
        if offset + u64::from(var.size) > section.size {
            return Err(bad(format!("defined at bytes {offset}+{}, past the end of .maps", var.size)));
        }
        let start = offset as usize;
        let bytes = section.data.get(start..start + var.size as usize).unwrap_or_default();
        if let Some(at) = bytes.iter().position(|&b| b != 0) {
            return Err(bad(format!(
                "byte {at} of its {}-byte definition is not zero: a BTF map definition holds only types",
                var.size
            )));
        }
        let (mut spec, values_offset) = read_definition(btf, &name, &def)?;
        if let Some(values_offset) = values_offset {
            spec.contents = static_values(elf, index, &spec, offset + values_offset, offset + u64::from(var.size))?;
        }
        out.push(DefinedMap { section: index, offset, spec });
    }
    if out.len() == first && section.size > 0 {
        return Err(ObjectError::Section {
            section: section.name.to_owned(),
            reason: "no map definitions in the BTF data section .maps".to_owned(),
        });
    }
    Ok(())
}

/// `__uint(name, N)` is `int (*name)[N]`: N is the array length.
fn uint_member(btf: &Btf, ty: u32) -> Option<u32> {
    let ptr = btf.skip_mods_and_typedefs(ty).filter(|t| t.is(BtfKind::Ptr))?;
    let array = btf.skip_mods_and_typedefs(ptr.size_or_type())?.array()?;
    Some(array.nelems)
}

/// `__ulong(name, N)` is `enum { unique = N } name`: a value past 32 bits (libbpf 1.3+), as
/// `map_extra` of an arena needs. `__uint`'s form is read too.
fn ulong_member(btf: &Btf, ty: u32) -> Option<u64> {
    if let Some(n) = uint_member(btf, ty) {
        return Some(u64::from(n));
    }
    let ty = btf.skip_mods_and_typedefs(ty)?;
    if !matches!(ty.kind(), Some(BtfKind::Enum | BtfKind::Enum64)) {
        return None;
    }
    let mut values = ty.enumerators();
    match (values.next(), values.next()) {
        (Some(only), None) => Some(only.value as u64),
        _ => None,
    }
}

/// `__type(name, T)` is `T *name`: the pointee.
fn type_member(btf: &Btf, ty: u32) -> Option<u32> {
    let ptr = btf.skip_mods_and_typedefs(ty).filter(|t| t.is(BtfKind::Ptr))?;
    Some(ptr.size_or_type())
}

/// How deep inner map definitions may nest (`values` of a map of maps naming another map of
/// maps): the kernel takes one level; a BTF whose `values` points back at its own struct would
/// otherwise recurse without end.
const MAX_INNER_DEPTH: usize = 4;

/// Reads one definition; returns the spec and the byte offset of its `values` member.
fn read_definition(btf: &Btf, name: &str, def: &Type<'_>) -> Result<(MapSpec, Option<u64>), ObjectError> {
    read_definition_at(btf, name, def, 0)
}

fn read_definition_at(
    btf: &Btf,
    name: &str,
    def: &Type<'_>,
    depth: usize,
) -> Result<(MapSpec, Option<u64>), ObjectError> {
    let bad = |reason: String| ObjectError::Map { map: name.to_owned(), reason };
    if depth > MAX_INNER_DEPTH {
        return Err(bad(format!("inner map definitions nest deeper than {MAX_INNER_DEPTH} levels")));
    }
    let mut raw_type = None;
    let mut spec = MapSpec::new(name, MapType::Hash, 0, 0, 0);
    let (mut key_type, mut value_type) = (None, None);
    let mut values = None;
    for member in def.members() {
        let ulong = || {
            ulong_member(btf, member.ty)
                .ok_or_else(|| bad(format!("member {} is neither __uint(...) nor __ulong(...)", member.name)))
        };
        let uint = || {
            ulong()
                .and_then(|v| u32::try_from(v).map_err(|_| bad(format!("member {} is {v}, past 32 bits", member.name))))
        };
        match member.name {
            "type" => raw_type = Some(uint()?),
            "max_entries" => spec.max_entries = uint()?,
            "map_flags" => spec.flags = MapFlags::from_bits_retain(uint()?),
            "numa_node" => spec.numa_node = uint()?,
            "key_size" => spec.key_size = uint()?,
            "value_size" => spec.value_size = uint()?,
            "map_extra" => spec.map_extra = ulong()?,
            "pinning" => {
                spec.pinning = match uint()? {
                    0 => Pinning::None,
                    1 => Pinning::ByName,
                    other => return Err(bad(format!("pinning {other} is not LIBBPF_PIN_NONE (0) or BY_NAME (1)"))),
                }
            }
            "key" | "value" => {
                let ty = type_member(btf, member.ty)
                    .ok_or_else(|| bad(format!("member {} is not __type(...)", member.name)))?;
                let size = btf.resolve_size(ty).map_err(|e| bad(format!("size of the {} type: {e}", member.name)))?;
                let (size_field, type_slot) = if member.name == "key" {
                    (&mut spec.key_size, &mut key_type)
                } else {
                    (&mut spec.value_size, &mut value_type)
                };
                if *size_field != 0 && *size_field != size {
                    return Err(bad(format!(
                        "{}_size {} disagrees with the {} type's size {size}",
                        member.name, size_field, member.name
                    )));
                }
                *size_field = size;
                *type_slot = Some(ty);
            }
            "values" => {
                let array = btf
                    .skip_mods_and_typedefs(member.ty)
                    .and_then(|t| t.array())
                    .ok_or_else(|| bad("member values is not __array(...)".to_owned()))?;
                let ptr = btf
                    .skip_mods_and_typedefs(array.elem)
                    .filter(|t| t.is(BtfKind::Ptr))
                    .ok_or_else(|| bad("values must be an array of pointers".to_owned()))?;
                let pointee = btf.skip_mods_and_typedefs(ptr.size_or_type());
                if let Some(inner) = pointee.filter(|t| t.is(BtfKind::Struct)) {
                    let (inner_spec, _) = read_definition_at(btf, &format!("{name}.inner"), &inner, depth + 1)?;
                    spec.inner = Some(Box::new(inner_spec));
                }
                values = Some(u64::from(member.bit_offset / 8));
            }
            _ => return Err(bad(format!("unknown member {}", member.name))),
        }
    }
    let raw_type = raw_type.ok_or_else(|| bad("no type given".to_owned()))?;
    spec.map_type =
        MapType::from_raw(raw_type).ok_or(ObjectError::UnknownMapType { map: name.to_owned(), raw: raw_type })?;
    apply_defaults(&mut spec);
    if matches!(spec.map_type, MapType::ArrayOfMaps | MapType::HashOfMaps) && spec.inner.is_none() {
        return Err(bad("a map of maps needs its inner map declared with __array(values, struct {...})".to_owned()));
    }
    if key_type.is_some() || value_type.is_some() {
        spec.btf_types = Some(MapBtfTypes { key: key_type.unwrap_or(0), value: value_type.unwrap_or(0) });
    }
    Ok((spec, values))
}

/// Sizes libbpf fills in when the definition leaves them out.
fn apply_defaults(spec: &mut MapSpec) {
    match spec.map_type {
        MapType::PerfEventArray => {
            spec.key_size = spec.key_size.max(4);
            spec.value_size = spec.value_size.max(4);
            if spec.max_entries == 0 {
                spec.max_entries = crate::sys::possible_cpus().unwrap_or(1) as u32;
            }
        }
        MapType::ProgArray | MapType::ArrayOfMaps | MapType::HashOfMaps => {
            if spec.key_size == 0 {
                spec.key_size = 4;
            }
            spec.value_size = spec.value_size.max(4);
        }
        _ => {}
    }
}

/// The static `values = { [2] = &prog, … }` of a prog array or map of maps.
fn static_values(
    elf: &Elf<'_>,
    index: usize,
    spec: &MapSpec,
    values_start: u64,
    end: u64,
) -> Result<MapContents, ObjectError> {
    let section = &elf.sections[index];
    let mut slots = Vec::new();
    for reloc in section.relocations.iter().filter(|r| r.offset >= values_start && r.offset < end) {
        let bad = |reason: String| ObjectError::Relocation {
            section: section.name.to_owned(),
            offset: reloc.offset,
            reason: format!("initial value of map \"{}\": {reason}", spec.name),
        };
        if (reloc.offset - values_start) % 8 != 0 {
            return Err(bad("not on a pointer slot".to_owned()));
        }
        let slot = ((reloc.offset - values_start) / 8) as u32;
        if slot >= spec.max_entries {
            return Err(bad(format!("slot {slot} is past max_entries {}", spec.max_entries)));
        }
        let symbol = &elf.symbols[reloc.symbol];
        slots.push((slot, symbol.name.to_owned(), symbol.kind));
    }
    if slots.is_empty() {
        return Ok(MapContents::Empty);
    }
    match spec.map_type {
        MapType::ProgArray => {
            if let Some((slot, name, _)) = slots.iter().find(|(_, _, kind)| *kind != SymbolKind::Text) {
                return Err(ObjectError::Map {
                    map: spec.name.clone(),
                    reason: format!("slot {slot} points at {name}, which is not a program"),
                });
            }
            Ok(MapContents::Programs(slots.into_iter().map(|(s, n, _)| (s, n.to_owned())).collect()))
        }
        MapType::ArrayOfMaps | MapType::HashOfMaps => {
            Ok(MapContents::Maps(slots.into_iter().map(|(s, n, _)| (s, n.to_owned())).collect()))
        }
        other => Err(ObjectError::Map {
            map: spec.name.clone(),
            reason: format!("only prog arrays and maps of maps take static values, not a {other} map"),
        }),
    }
}

/// Size of iproute2's `struct bpf_elf_map` (`include/bpf_elf.h`): type, size_key, size_value,
/// max_elem, flags, id, pinning, inner_id, inner_idx.
const BPF_ELF_MAP_SIZE: usize = 36;
/// iproute2's pinning values.
const PIN_NONE: u32 = 0;
const PIN_OBJECT_NS: u32 = 1;
const PIN_GLOBAL_NS: u32 = 2;

/// Legacy definitions in a `maps` section, one per map symbol, all of the size the section
/// divided by the symbols gives (the layout is not in the object; `bpftool gen object` merges
/// sections, so that size is all there is to go on):
/// - 36 bytes: iproute2's `struct bpf_elf_map`, whose `PIN_GLOBAL_NS` pins by name under the
///   load's pin directory;
/// - otherwise `struct bpf_map_def` — type, key_size, value_size, max_entries, map_flags, then
///   samples/bpf's inner_map_idx and numa_node — where every byte past the fields we read must be
///   zero, so a field we do not know can never be dropped silently.
fn read_legacy_maps(elf: &Elf<'_>, index: usize, out: &mut Vec<DefinedMap>) -> Result<(), ObjectError> {
    let section = &elf.sections[index];
    let mut symbols = elf.symbols_in(index, SymbolKind::Data);
    if symbols.is_empty() {
        symbols = elf.symbols_in(index, SymbolKind::Unknown);
    }
    if symbols.is_empty() {
        return Ok(());
    }
    let def_size = section.data.len() / symbols.len();
    if def_size < 20 || section.data.len() % symbols.len() != 0 {
        return Err(ObjectError::Section {
            section: section.name.to_owned(),
            reason: format!(
                "{} bytes for {} map definitions is not a whole number of bpf_map_def records",
                section.data.len(),
                symbols.len()
            ),
        });
    }
    for symbol in symbols {
        let start = symbol.value as usize;
        let Some(def) = start.checked_add(def_size).and_then(|end| section.data.get(start..end)) else {
            return Err(ObjectError::Map {
                map: symbol.name.to_owned(),
                reason: format!("definition at byte {start} runs past the section"),
            });
        };
        let spec = if def_size == BPF_ELF_MAP_SIZE {
            read_bpf_elf_map(symbol.name, def)?
        } else {
            read_bpf_map_def(symbol.name, def)?
        };
        out.push(DefinedMap { section: index, offset: symbol.value, spec });
    }
    Ok(())
}

/// The `i`th 32-bit word of a legacy definition (0 past its end).
fn legacy_word(def: &[u8], i: usize) -> u32 {
    def.get(i * 4..i * 4 + 4).map_or(0, |b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
}

/// The five words every legacy layout starts with.
fn legacy_spec(name: &str, def: &[u8]) -> Result<MapSpec, ObjectError> {
    let raw_type = legacy_word(def, 0);
    let map_type =
        MapType::from_raw(raw_type).ok_or(ObjectError::UnknownMapType { map: name.to_owned(), raw: raw_type })?;
    let mut spec = MapSpec::new(name, map_type, legacy_word(def, 1), legacy_word(def, 2), legacy_word(def, 3));
    spec.flags = MapFlags::from_bits_retain(legacy_word(def, 4));
    Ok(spec)
}

fn read_bpf_map_def(name: &str, def: &[u8]) -> Result<MapSpec, ObjectError> {
    let bad = |reason: String| ObjectError::Map { map: name.to_owned(), reason };
    let mut spec = legacy_spec(name, def)?;
    if legacy_word(def, 5) != 0 {
        return Err(bad(format!(
            "inner_map_idx {} (samples/bpf map-in-map): not supported; define the map with BTF (__array(values, ...))",
            legacy_word(def, 5)
        )));
    }
    spec.numa_node = legacy_word(def, 6);
    if let Some(at) = def.iter().skip(28).position(|&b| b != 0) {
        return Err(bad(format!(
            "byte {} of its {}-byte definition is not zero: a field past map_flags, inner_map_idx and numa_node that \
             this loader does not know",
            28 + at,
            def.len()
        )));
    }
    apply_defaults(&mut spec);
    Ok(spec)
}

fn read_bpf_elf_map(name: &str, def: &[u8]) -> Result<MapSpec, ObjectError> {
    let bad = |reason: String| ObjectError::Map { map: name.to_owned(), reason };
    let mut spec = legacy_spec(name, def)?;
    let (pinning, inner_id, inner_idx) = (legacy_word(def, 6), legacy_word(def, 7), legacy_word(def, 8));
    spec.pinning = match pinning {
        PIN_NONE => Pinning::None,
        PIN_GLOBAL_NS => Pinning::ByName,
        PIN_OBJECT_NS => {
            return Err(bad("iproute2 pinning PIN_OBJECT_NS (a directory per object) is not supported; use \
                 PIN_GLOBAL_NS with a pin directory"
                .to_owned()))
        }
        other => {
            return Err(bad(format!(
                "iproute2 pinning {other} (a custom subdirectory from /etc/iproute2/bpf_pinning) is not supported"
            )))
        }
    };
    if inner_id != 0 || inner_idx != 0 {
        return Err(bad(format!(
            "iproute2 map-in-map (inner_id {inner_id}, inner_idx {inner_idx}) is not supported; define the map with BTF"
        )));
    }
    apply_defaults(&mut spec);
    Ok(spec)
}
