//! What a generated skeleton knows of its object, and the check it runs when it opens one:
//! every map (kind, key and value sizes, the layout of their BTF types), program, variable and
//! generated type must be as they were when the skeleton was made. A skeleton generated from
//! one build of a C file and opened on another build is a clear error naming what changed,
//! never a silent misread of a struct whose fields moved.
//!
//! Layouts are read off BTF: a struct's or union's members with their bit offsets, bit sizes
//! and a canonical spelling of their types (`u32`, `i64`, `enum drop_reason`, `u8[16]`,
//! `struct ct_key`), typedefs and qualifiers looked through.

use ebpf_btf::{Btf, BtfKind};

use super::error::ObjectError;
use super::spec::CollectionSpec;
use crate::{MapType, ProgramType};

/// A type's layout as it is in an object's BTF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeLayout {
    /// The canonical spelling (`struct ct_key`, `u32`).
    pub name: String,
    /// Bytes.
    pub size: u32,
    /// Direct members of a struct or union, in order (empty for other kinds).
    pub members: Vec<MemberLayout>,
    /// An enum's enumerators and their values (empty for other kinds).
    pub enumerators: Vec<(String, i64)>,
}

/// One member of a [`TypeLayout`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberLayout {
    /// The member's name (empty for an anonymous one).
    pub name: String,
    /// Offset from the aggregate's start, in bits.
    pub bit_offset: u32,
    /// Bits: the bitfield width, or the member type's size in bits.
    pub bit_size: u32,
    /// The member type's canonical spelling.
    pub ty: String,
}

/// How deep arrays of arrays are spelt: malformed BTF can make an array its own element.
const MAX_ARRAY_DEPTH: u32 = 32;

/// The canonical spelling of type `id`: typedefs and qualifiers looked through, integers as
/// Rust spells them, aggregates and enums by kind and name, arrays as `elem[n]`.
pub fn type_spelling(btf: &Btf, id: u32) -> String {
    spelling_at(btf, id, 0)
}

fn spelling_at(btf: &Btf, id: u32, depth: u32) -> String {
    let Some(ty) = btf.skip_mods_and_typedefs(id) else { return "void".to_owned() };
    match ty.kind() {
        None => "void".to_owned(),
        Some(BtfKind::Int) => match ty.int() {
            Some(int) if int.bool => "bool".to_owned(),
            Some(int) => format!("{}{}", if int.signed { "i" } else { "u" }, ty.size().unwrap_or(0).saturating_mul(8)),
            None => "int?".to_owned(),
        },
        Some(BtfKind::Float) => format!("f{}", ty.size().unwrap_or(0).saturating_mul(8)),
        Some(BtfKind::Enum | BtfKind::Enum64) => format!("enum {}", ty.name()),
        Some(BtfKind::Struct) => format!("struct {}", ty.name()),
        Some(BtfKind::Union) => format!("union {}", ty.name()),
        Some(BtfKind::Array) => match ty.array() {
            Some(a) if depth < MAX_ARRAY_DEPTH => format!("{}[{}]", spelling_at(btf, a.elem, depth + 1), a.nelems),
            _ => "array?".to_owned(),
        },
        Some(BtfKind::Ptr) => "pointer".to_owned(),
        Some(BtfKind::Fwd) => format!("forward {}", ty.name()),
        Some(kind) => kind.name().to_ascii_lowercase(),
    }
}

/// The layout of type `id`, typedefs and qualifiers looked through.
pub fn type_layout(btf: &Btf, id: u32) -> TypeLayout {
    let size = btf.resolve_size(id).unwrap_or(0);
    let name = type_spelling(btf, id);
    let resolved = btf.skip_mods_and_typedefs(id);
    let enumerators = match resolved {
        Some(ty) if matches!(ty.kind(), Some(BtfKind::Enum | BtfKind::Enum64)) => {
            ty.enumerators().map(|e| (e.name.to_owned(), e.value)).collect()
        }
        _ => Vec::new(),
    };
    let members = match resolved {
        Some(ty) if matches!(ty.kind(), Some(BtfKind::Struct | BtfKind::Union)) => ty
            .members()
            .map(|m| MemberLayout {
                name: m.name.to_owned(),
                bit_offset: m.bit_offset,
                bit_size: if m.bitfield_size > 0 {
                    m.bitfield_size as u32
                } else {
                    btf.resolve_size(m.ty).unwrap_or(0).saturating_mul(8)
                },
                ty: type_spelling(btf, m.ty),
            })
            .collect(),
        _ => Vec::new(),
    };
    TypeLayout { name, size, members, enumerators }
}

/// A member as a skeleton recorded it: (name, bit offset, bit size, type spelling).
pub type ExpectedMember = (&'static str, u32, u32, &'static str);

/// A type as a skeleton recorded it.
#[derive(Clone, Copy, Debug)]
pub struct ExpectedType {
    /// The canonical spelling (`struct ct_key`).
    pub name: &'static str,
    /// Bytes.
    pub size: u32,
    /// Members of a struct or union.
    pub members: &'static [ExpectedMember],
    /// Enumerators of an enum.
    pub enumerators: &'static [(&'static str, i64)],
}

/// A map as a skeleton recorded it.
#[derive(Clone, Copy, Debug)]
pub struct ExpectedMap {
    /// The map's name.
    pub name: &'static str,
    /// Its kind.
    pub map_type: MapType,
    /// Key bytes.
    pub key_size: u32,
    /// Value bytes.
    pub value_size: u32,
    /// The key's BTF type, when the object described it.
    pub key: Option<ExpectedType>,
    /// The value's BTF type.
    pub value: Option<ExpectedType>,
}

/// A global variable as a skeleton recorded it.
#[derive(Clone, Copy, Debug)]
pub struct ExpectedVariable {
    /// The variable's name.
    pub name: &'static str,
    /// Its section (`.rodata`, `.data`, `.bss`, …).
    pub section: &'static str,
    /// Byte offset in the section.
    pub offset: u32,
    /// Its type.
    pub ty: ExpectedType,
}

/// Everything a skeleton relies on in its object.
#[derive(Clone, Copy, Debug)]
pub struct ExpectedObject {
    /// The object's file name, for messages.
    pub object: &'static str,
    /// Maps.
    pub maps: &'static [ExpectedMap],
    /// Programs, with their types.
    pub programs: &'static [(&'static str, ProgramType)],
    /// Global variables.
    pub variables: &'static [ExpectedVariable],
    /// Every other struct, union and enum the skeleton generated a Rust type for, looked up by
    /// name (nested types whose change leaves the outer sizes alone).
    pub types: &'static [ExpectedType],
}

impl ExpectedObject {
    /// Checks `spec` against what the skeleton was generated from; the error names the map,
    /// program, variable or type and the member that differs.
    pub fn check(&self, spec: &CollectionSpec) -> Result<(), ObjectError> {
        let stale = |what: String| ObjectError::StaleSkeleton { object: self.object.to_owned(), what };
        let btf = match &spec.btf {
            Some(bytes) => Some(Btf::parse(bytes.clone()).map_err(|e| stale(format!("its BTF does not parse: {e}")))?),
            None => None,
        };
        for expected in self.maps {
            let map = spec.map(expected.name).map_err(|_| stale(format!("map \"{}\" is gone", expected.name)))?;
            let place = format!("map \"{}\"", expected.name);
            if map.map_type != expected.map_type {
                return Err(stale(format!("{place} is {} here, {} in the skeleton", map.map_type, expected.map_type)));
            }
            for (what, size, expected_size) in
                [("key", map.key_size, expected.key_size), ("value", map.value_size, expected.value_size)]
            {
                if size != expected_size {
                    return Err(stale(format!("{place} {what}: {size} bytes here, {expected_size} in the skeleton")));
                }
            }
            let ids = map.btf_types.map_or((0, 0), |t| (t.key, t.value));
            for (what, id, expected_type) in [("key", ids.0, &expected.key), ("value", ids.1, &expected.value)] {
                if let (Some(expected_type), Some(btf)) = (expected_type, &btf) {
                    if id == 0 {
                        return Err(stale(format!(
                            "{place} {what}: no BTF type here, {} in the skeleton",
                            expected_type.name
                        )));
                    }
                    compare(&type_layout(btf, id), expected_type).map_err(|d| stale(format!("{place} {what}: {d}")))?;
                }
            }
        }
        for (name, program_type) in self.programs {
            let program = spec.program(name).map_err(|_| stale(format!("program \"{name}\" is gone")))?;
            if program.program_type != *program_type {
                return Err(stale(format!(
                    "program \"{name}\" is {} here, {program_type} in the skeleton",
                    program.program_type
                )));
            }
        }
        for expected in self.variables {
            let name = expected.name;
            let variable = spec.variable(name).map_err(|_| stale(format!("variable \"{name}\" is gone")))?;
            if variable.section != expected.section || variable.offset != expected.offset {
                return Err(stale(format!(
                    "variable \"{name}\" is at {}+{} here, {}+{} in the skeleton",
                    variable.section, variable.offset, expected.section, expected.offset
                )));
            }
            if variable.size() != expected.ty.size {
                return Err(stale(format!(
                    "variable \"{name}\": {} bytes here, {} ({}) in the skeleton",
                    variable.size(),
                    expected.ty.size,
                    expected.ty.name
                )));
            }
        }
        if let Some(btf) = &btf {
            for expected in self.types {
                let (kind, name) = match expected.name.split_once(' ') {
                    Some(("struct", n)) => (BtfKind::Struct, n),
                    Some(("union", n)) => (BtfKind::Union, n),
                    Some(("enum", n)) => (BtfKind::Enum, n),
                    _ => continue,
                };
                // Anonymous types are checked as their parents' members.
                if name.is_empty() {
                    continue;
                }
                let found = btf
                    .find(name, kind)
                    .or_else(|| (kind == BtfKind::Enum).then(|| btf.find(name, BtfKind::Enum64)).flatten());
                let ty = found.ok_or_else(|| stale(format!("{} is gone", expected.name)))?;
                compare(&type_layout(btf, ty.id()), expected).map_err(&stale)?;
            }
        }
        Ok(())
    }
}

/// What differs between a type as found and as expected, in words.
fn compare(found: &TypeLayout, expected: &ExpectedType) -> Result<(), String> {
    let name = expected.name;
    if found.name != name {
        return Err(format!("{} here, {name} in the skeleton", found.name));
    }
    if found.size != expected.size {
        return Err(format!("{name}: {} bytes here, {} in the skeleton", found.size, expected.size));
    }
    for (i, (e_name, e_offset, e_bits, e_ty)) in expected.members.iter().enumerate() {
        let Some(m) = found.members.get(i) else {
            return Err(format!("{name}: member {e_name} is gone"));
        };
        if m.name != *e_name {
            return Err(format!("{name}: member {i} is {} here, {e_name} in the skeleton", m.name));
        }
        if (m.bit_offset, m.bit_size, m.ty.as_str()) != (*e_offset, *e_bits, *e_ty) {
            return Err(format!(
                "{name}: member {e_name} is {} at bit {} ({} bits) here, {e_ty} at bit {e_offset} ({e_bits} bits) in the skeleton",
                m.ty, m.bit_offset, m.bit_size
            ));
        }
    }
    if found.members.len() > expected.members.len() {
        return Err(format!("{name}: member {} is new", found.members[expected.members.len()].name));
    }
    for (e_name, e_value) in expected.enumerators {
        match found.enumerators.iter().find(|(n, _)| n == e_name) {
            None => return Err(format!("{name}: {e_name} is gone")),
            Some((_, value)) if value != e_value => {
                return Err(format!("{name}: {e_name} is {value} here, {e_value} in the skeleton"))
            }
            Some(_) => {}
        }
    }
    Ok(())
}
