//! Rust types for an object's BTF types: `#[repr(C)]` structs with explicit padding and a
//! compile-time check of every offset, bitfields behind accessors, unions as bytes with typed
//! accessors, and enums as integer newtypes carrying their enumerators as constants (a field of
//! enum type can hold any value the C side writes, so it stays plain data).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;

use ebpf_btf::{Btf, BtfKind, Type};
use ebpf_core::object::layout::type_layout;

use crate::names::{ident, sanitize};
use crate::GenError;

/// A Rust type generated for a BTF type (or made up for an LPM trie's key data).
#[derive(Clone, Debug)]
enum Generated {
    /// A struct, union or enum of the BTF.
    Btf(u32),
    /// The data of an LPM trie key struct: its members after the 4-byte prefix length.
    LpmData(u32),
}

/// Collects the types a skeleton needs and writes them.
pub struct TypeGen<'b> {
    btf: &'b Btf,
    object: String,
    names: BTreeMap<u32, String>,
    lpm_names: BTreeMap<u32, String>,
    taken: HashSet<String>,
    order: Vec<Generated>,
}

const MAX_DEPTH: usize = 64;

impl<'b> TypeGen<'b> {
    /// A generator over `btf` of the object file `object` (named in doc comments).
    pub fn new(btf: &'b Btf, object: &str) -> TypeGen<'b> {
        TypeGen {
            btf,
            object: object.to_owned(),
            names: BTreeMap::new(),
            lpm_names: BTreeMap::new(),
            taken: HashSet::new(),
            order: Vec::new(),
        }
    }

    fn ty(&self, id: u32) -> Result<Type<'b>, GenError> {
        self.btf.type_by_id(id).ok_or(GenError::BadType { id, problem: "does not exist" })
    }

    fn resolved(&self, id: u32) -> Result<Type<'b>, GenError> {
        self.btf.skip_mods_and_typedefs(id).ok_or(GenError::BadType { id, problem: "does not resolve" })
    }

    /// Whether `id` is a type values are laid out by (not void, not a data section).
    pub fn describes_data(&self, id: u32) -> bool {
        id != 0 && self.resolved(id).is_ok_and(|t| !matches!(t.kind(), None | Some(BtfKind::Datasec)))
    }

    /// The Rust type for BTF type `id` as the skeleton names it (generated types under
    /// `types::`), registering every struct, union and enum it reaches.
    pub fn rust_type(&mut self, id: u32) -> Result<String, GenError> {
        self.rust_type_at(id, 0, "types::")
    }

    fn rust_type_at(&mut self, id: u32, depth: usize, prefix: &str) -> Result<String, GenError> {
        if depth > MAX_DEPTH {
            return Err(GenError::BadType { id, problem: "nests too deep" });
        }
        let ty = self.resolved(id)?;
        Ok(match ty.kind() {
            None => return Err(GenError::Unsupported(format!("type [{id}] is void"))),
            Some(BtfKind::Int) => int_type(&ty)?,
            Some(BtfKind::Float) => match ty.size() {
                Some(4) => "f32".into(),
                Some(8) => "f64".into(),
                other => return Err(GenError::Unsupported(format!("a float of {other:?} bytes"))),
            },
            // Pointers are addresses the kernel wrote; user space reads them as numbers.
            Some(BtfKind::Ptr) => "u64".into(),
            Some(BtfKind::Array) => {
                let a = ty.array().expect("array info");
                format!("[{}; {}]", self.rust_type_at(a.elem, depth + 1, prefix)?, a.nelems)
            }
            Some(BtfKind::Struct | BtfKind::Union | BtfKind::Enum | BtfKind::Enum64) => {
                format!("{prefix}{}", self.register(ty, depth)?)
            }
            Some(kind) => {
                return Err(GenError::Unsupported(format!("type [{id}] '{}' is a {}", ty.name(), kind.name())))
            }
        })
    }

    fn register(&mut self, ty: Type<'b>, depth: usize) -> Result<String, GenError> {
        if let Some(name) = self.names.get(&ty.id()) {
            return Ok(name.clone());
        }
        let name = self.unique(if ty.name().is_empty() { format!("__anon_{}", ty.id()) } else { sanitize(ty.name()) });
        self.names.insert(ty.id(), name.clone());
        self.order.push(Generated::Btf(ty.id()));
        for member in ty.members() {
            if member.bitfield_size == 0 {
                self.rust_type_at(member.ty, depth + 1, "")?;
            }
        }
        Ok(name)
    }

    fn unique(&mut self, base: String) -> String {
        let mut name = base.clone();
        let mut n = 1;
        while !self.taken.insert(name.clone()) {
            n += 1;
            name = format!("{base}_{n}");
        }
        name
    }

    /// The key data type of an LPM trie whose key is BTF type `key`: a generated struct of the
    /// members after the leading 4-byte prefix length when that can be laid out as C does,
    /// otherwise bytes.
    pub fn lpm_data(&mut self, key: u32, key_size: u32) -> Result<String, GenError> {
        let bytes = format!("[u8; {}]", key_size.saturating_sub(4));
        let ty = self.resolved(key)?;
        let members: Vec<_> = ty.members().collect();
        let leading_len = members.first().filter(|m| m.bit_offset == 0 && m.bitfield_size == 0);
        let fits = ty.is(BtfKind::Struct)
            && members.len() > 1
            && leading_len.is_some_and(|m| self.btf.resolve_size(m.ty).ok() == Some(4))
            && members[1..].iter().all(|m| {
                m.bitfield_size == 0 && m.bit_offset % 8 == 0 && m.bit_offset >= 32 && self.btf.alignment(m.ty) <= 4
            })
            && !self.btf.is_packed(&ty);
        if !fits {
            return Ok(bytes);
        }
        if let Some(name) = self.lpm_names.get(&key) {
            return Ok(format!("types::{name}"));
        }
        let base = self.rust_type_at(key, 0, "")?;
        let name = self.unique(format!("{base}_data"));
        self.lpm_names.insert(key, name.clone());
        self.order.push(Generated::LpmData(key));
        Ok(format!("types::{name}"))
    }

    /// Every generated struct, union and enum with its canonical BTF spelling, for the layout
    /// check.
    pub fn btf_types(&self) -> impl Iterator<Item = u32> + '_ {
        self.order.iter().filter_map(|g| match g {
            Generated::Btf(id) => Some(*id),
            Generated::LpmData(_) => None,
        })
    }

    /// Whether BTF type `id` has a name (anonymous types are checked as their parents'
    /// members, not by name).
    pub fn is_named(&self, id: u32) -> bool {
        self.btf.type_by_id(id).is_some_and(|t| !t.name().is_empty())
    }

    /// Writes every registered type.
    pub fn write(&self, out: &mut String) -> Result<(), GenError> {
        for generated in &self.order {
            match generated {
                Generated::Btf(id) => {
                    let ty = self.ty(*id)?;
                    match ty.kind() {
                        Some(BtfKind::Struct) => self.write_struct(out, &ty)?,
                        Some(BtfKind::Union) => self.write_union(out, &ty)?,
                        _ => self.write_enum(out, &ty)?,
                    }
                }
                Generated::LpmData(key) => self.write_lpm_data(out, *key)?,
            }
        }
        Ok(())
    }

    fn name_of(&self, id: u32) -> Result<String, GenError> {
        // Members were registered when their aggregate was.
        let ty = self.resolved(id)?;
        Ok(match ty.kind() {
            Some(BtfKind::Struct | BtfKind::Union | BtfKind::Enum | BtfKind::Enum64) => self.names[&ty.id()].clone(),
            Some(BtfKind::Array) => {
                let a = ty.array().expect("array info");
                format!("[{}; {}]", self.name_of(a.elem)?, a.nelems)
            }
            Some(BtfKind::Int) => int_type(&ty)?,
            Some(BtfKind::Float) => format!("f{}", ty.size().unwrap_or(0).saturating_mul(8)),
            _ => "u64".into(),
        })
    }

    /// `__be16 port`: how C spelled a member's type (typedefs kept), for doc comments.
    fn c_spelling(&self, id: u32) -> String {
        let Some(ty) = self.btf.skip_mods(id) else { return "?".into() };
        match ty.kind() {
            Some(BtfKind::Typedef) | Some(BtfKind::Int) | Some(BtfKind::Float) => ty.name().to_owned(),
            Some(BtfKind::Struct) => format!("struct {}", ty.name()),
            Some(BtfKind::Union) => format!("union {}", ty.name()),
            Some(BtfKind::Enum | BtfKind::Enum64) => format!("enum {}", ty.name()),
            Some(BtfKind::Ptr) => "pointer".into(),
            Some(BtfKind::Array) => {
                let a = ty.array().expect("array info");
                format!("{}[{}]", self.c_spelling(a.elem), a.nelems)
            }
            _ => "?".into(),
        }
    }

    /// Whether a float is anywhere inside `id` (such a struct cannot derive `Eq`). Each type is
    /// looked into once: a struct whose members all name one struct, nested a few levels, would
    /// otherwise be walked members^depth times.
    fn has_float(&self, id: u32) -> bool {
        self.float_inside(id, 0, &mut std::collections::HashSet::new())
    }

    fn float_inside(&self, id: u32, depth: usize, seen: &mut std::collections::HashSet<u32>) -> bool {
        let Some(ty) = self.btf.skip_mods_and_typedefs(id) else { return false };
        if depth >= MAX_DEPTH || !seen.insert(ty.id()) {
            return false;
        }
        match ty.kind() {
            Some(BtfKind::Float) => true,
            Some(BtfKind::Array) => self.float_inside(ty.array().expect("array info").elem, depth + 1, seen),
            Some(BtfKind::Struct | BtfKind::Union) => ty.members().any(|m| self.float_inside(m.ty, depth + 1, seen)),
            _ => false,
        }
    }

    fn write_struct(&self, out: &mut String, ty: &Type<'b>) -> Result<(), GenError> {
        let name = &self.names[&ty.id()];
        let size = ty.size().unwrap_or(0);
        let packed = self.btf.is_packed(ty);
        let c_name = if ty.name().is_empty() { "(anonymous)".to_owned() } else { ty.name().to_owned() };
        writeln!(out, "/// `struct {c_name}` of {}'s BTF: {size} bytes.", self.object).unwrap();
        writeln!(out, "#[repr(C{})]", if packed { ", packed" } else { "" }).unwrap();
        let eq = if self.has_float(ty.id()) { "" } else { ", Eq, Hash" };
        writeln!(out, "#[derive(Clone, Copy, Debug, PartialEq{eq}, ::bytemuck::Pod, ::bytemuck::Zeroable)]").unwrap();
        writeln!(out, "pub struct {name} {{").unwrap();
        let mut checks = Vec::new();
        let mut accessors = String::new();
        let mut cursor = 0u32;
        let members: Vec<_> = ty.members().collect();
        let mut i = 0;
        while i < members.len() {
            let m = members[i];
            if m.bitfield_size == 0 && m.bit_offset % 8 == 0 {
                let offset = m.bit_offset / 8;
                pad(out, &mut cursor, offset, name)?;
                let field = if m.name.is_empty() { format!("__anon_{i}") } else { ident(m.name) };
                let rust = self.name_of(m.ty)?;
                writeln!(out, "    /// `{} {}` at byte {offset}.", self.c_spelling(m.ty), m.name).unwrap();
                writeln!(out, "    pub {field}: {rust},").unwrap();
                checks.push((field, offset));
                cursor = offset
                    .checked_add(self.btf.resolve_size(m.ty)?)
                    .ok_or_else(|| GenError::Unsupported(format!("{name}: member {} ends past 4 GiB", m.name)))?;
                i += 1;
                continue;
            }
            // A run of bitfields sharing storage bytes.
            let first = m.bit_offset / 8;
            let bitfield_end = |b: &ebpf_btf::StructMember<'_>| -> Result<u32, GenError> {
                let bits = bits_of(self.btf, b);
                if bits == 0 || bits > 64 || b.bit_offset < first * 8 || b.bit_offset.checked_add(bits).is_none() {
                    return Err(GenError::Unsupported(format!(
                        "{name}: bitfield {} of {bits} bits at bit {}",
                        b.name, b.bit_offset
                    )));
                }
                Ok(b.bit_offset.saturating_add(bits).div_ceil(8))
            };
            let mut end = bitfield_end(&m)?;
            let mut j = i + 1;
            while j < members.len() && (members[j].bitfield_size > 0 || members[j].bit_offset % 8 != 0) {
                let start = members[j].bit_offset / 8;
                if start >= end {
                    break;
                }
                end = end.max(bitfield_end(&members[j])?);
                j += 1;
            }
            if end - first > 8 {
                return Err(GenError::Unsupported(format!("{name}: bitfields spanning {} bytes", end - first)));
            }
            pad(out, &mut cursor, first, name)?;
            let storage = format!("__bitfield_{first}");
            writeln!(out, "    /// The storage of bitfields {}.", describe_run(&members[i..j])).unwrap();
            writeln!(out, "    pub {storage}: [u8; {}],", end - first).unwrap();
            checks.push((storage.clone(), first));
            for b in &members[i..j] {
                self.write_bitfield(&mut accessors, &storage, first, end - first, b);
            }
            cursor = end;
            i = j;
        }
        pad(out, &mut cursor, size, name)?;
        writeln!(out, "}}\n").unwrap();
        write_default(out, name);
        if !accessors.is_empty() {
            writeln!(out, "impl {name} {{\n{accessors}}}\n").unwrap();
        }
        write_checks(out, name, size, &checks);
        Ok(())
    }

    fn write_bitfield(&self, out: &mut String, storage: &str, first: u32, len: u32, m: &ebpf_btf::StructMember<'_>) {
        if m.name.is_empty() {
            return;
        }
        let bits = bits_of(self.btf, m);
        let shift = m.bit_offset - first * 8;
        let mask = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
        let signed = self.btf.skip_mods_and_typedefs(m.ty).and_then(|t| t.int()).is_some_and(|i| i.signed);
        let field = ident(m.name);
        let setter = ident(&format!("set_{}", m.name));
        let c = self.c_spelling(m.ty);
        let shifted = |expr: String, op: &str| if shift == 0 { expr } else { format!("({expr} {op} {shift})") };
        let load = format!("let mut word = [0u8; 8];\n        word[..{len}].copy_from_slice(&self.{storage});");
        let raw = format!("{} & {mask:#x}", shifted("u64::from_le_bytes(word)".into(), ">>"));
        let span = format!("bits {}..{} of the struct", m.bit_offset, m.bit_offset + bits);
        if signed {
            writeln!(
                out,
                "    /// `{c} {} : {bits}` ({span}), sign-extended.\n    pub fn {field}(&self) -> i64 {{\n        \
                 {load}\n        let raw = {raw};\n        ((raw << {s}) as i64) >> {s}\n    }}\n",
                m.name,
                s = 64 - bits
            )
            .unwrap();
        } else {
            writeln!(
                out,
                "    /// `{c} {} : {bits}` ({span}).\n    pub fn {field}(&self) -> u64 {{\n        {load}\n        {raw}\n    }}\n",
                m.name
            )
            .unwrap();
        }
        let (value_type, value) = if signed { ("i64", "value as u64") } else { ("u64", "value") };
        writeln!(
            out,
            "    /// Sets `{}` to the low {bits} bits of `value`.\n    pub fn {setter}(&mut self, value: {value_type}) {{\n        \
             {load}\n        let old = u64::from_le_bytes(word) & !{};\n        let new = old | {};\n        \
             self.{storage}.copy_from_slice(&new.to_le_bytes()[..{len}]);\n    }}\n",
            m.name,
            shifted(format!("{mask:#x}u64"), "<<"),
            shifted(format!("({value} & {mask:#x})"), "<<"),
        )
        .unwrap();
    }

    fn write_union(&self, out: &mut String, ty: &Type<'b>) -> Result<(), GenError> {
        let name = &self.names[&ty.id()];
        let size = ty.size().unwrap_or(0);
        let c_name = if ty.name().is_empty() { "(anonymous)".to_owned() } else { ty.name().to_owned() };
        writeln!(
            out,
            "/// `union {c_name}` of {}'s BTF: {size} bytes, read and written through its members' \
             accessors.\n#[repr(C)]\n#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ::bytemuck::Pod, ::bytemuck::Zeroable)]\n\
             pub struct {name} {{\n    /// The union's bytes.\n    pub bytes: [u8; {size}],\n}}\n",
            self.object
        )
        .unwrap();
        write_default(out, name);
        writeln!(out, "impl {name} {{").unwrap();
        for (i, m) in ty.members().enumerate() {
            if m.bitfield_size > 0 {
                continue;
            }
            let field = if m.name.is_empty() { format!("anon_{i}") } else { m.name.to_owned() };
            let rust = self.name_of(m.ty)?;
            let c = self.c_spelling(m.ty);
            writeln!(
                out,
                "    /// Member `{c} {}`.\n    pub fn {}(&self) -> {rust} {{\n        \
                 ::bytemuck::pod_read_unaligned(&self.bytes[..::core::mem::size_of::<{rust}>()])\n    }}\n\n    \
                 /// Sets member `{}`.\n    pub fn {}(&mut self, value: {rust}) {{\n        \
                 self.bytes[..::core::mem::size_of::<{rust}>()].copy_from_slice(::bytemuck::bytes_of(&value));\n    }}\n",
                m.name,
                ident(&field),
                m.name,
                ident(&format!("set_{field}"))
            )
            .unwrap();
        }
        writeln!(out, "}}\n").unwrap();
        write_checks(out, name, size, &[]);
        Ok(())
    }

    fn write_enum(&self, out: &mut String, ty: &Type<'b>) -> Result<(), GenError> {
        let name = &self.names[&ty.id()];
        let size = ty.size().unwrap_or(4);
        let signed = ty.is_signed_enum();
        let repr = match (size, signed) {
            (1, false) => "u8",
            (1, true) => "i8",
            (2, false) => "u16",
            (2, true) => "i16",
            (4, false) => "u32",
            (4, true) => "i32",
            (8, false) => "u64",
            (8, true) => "i64",
            _ => return Err(GenError::Unsupported(format!("enum {name} of {size} bytes"))),
        };
        let c_name = if ty.name().is_empty() { "(anonymous)".to_owned() } else { ty.name().to_owned() };
        writeln!(
            out,
            "/// `enum {c_name}` of {}'s BTF, as its {size}-byte integer: a field of this type holds whatever \
             the C side wrote, named or not.\n#[repr(transparent)]\n\
             #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, ::bytemuck::Pod, ::bytemuck::Zeroable)]\n\
             pub struct {name}(pub {repr});\n",
            self.object
        )
        .unwrap();
        writeln!(out, "impl {name} {{").unwrap();
        let mut all = Vec::new();
        for e in ty.enumerators() {
            let constant = ident(e.name);
            // BTF holds values as i64; an unsigned 64-bit enum's large values read back as u64.
            let value = if signed { e.value.to_string() } else { (e.value as u64).to_string() };
            writeln!(out, "    /// `{}` = {value}.\n    pub const {constant}: {name} = {name}({value});", e.name)
                .unwrap();
            all.push((e.name.to_owned(), constant));
        }
        writeln!(
            out,
            "\n    /// Every enumerator, with its C name.\n    pub const ALL: &'static [(&'static str, {name})] = &["
        )
        .unwrap();
        for (c, constant) in &all {
            writeln!(out, "        (\"{c}\", {name}::{constant}),").unwrap();
        }
        writeln!(
            out,
            "    ];\n\n    /// The C name of this value, when an enumerator has it.\n    \
             pub fn name(self) -> Option<&'static str> {{\n        \
             {name}::ALL.iter().find(|(_, v)| *v == self).map(|(n, _)| *n)\n    }}\n}}\n\n\
             impl ::core::fmt::Debug for {name} {{\n    \
             fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {{\n        \
             match self.name() {{\n            Some(n) => f.write_str(n),\n            \
             None => write!(f, \"{name}({{}})\", self.0),\n        }}\n    }}\n}}\n"
        )
        .unwrap();
        write_checks(out, name, size, &[]);
        Ok(())
    }

    fn write_lpm_data(&self, out: &mut String, key: u32) -> Result<(), GenError> {
        let ty = self.resolved(key)?;
        let name = &self.lpm_names[&key];
        let key_name = &self.names[&ty.id()];
        let size = ty.size().unwrap_or(4).saturating_sub(4);
        writeln!(
            out,
            "/// The data of [`{key_name}`] after its prefix length: what an LPM trie's typed view takes.\n\
             #[repr(C)]\n#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ::bytemuck::Pod, ::bytemuck::Zeroable)]\n\
             pub struct {name} {{"
        )
        .unwrap();
        let mut cursor = 0;
        let mut checks = Vec::new();
        for m in ty.members().skip(1) {
            let offset = m.bit_offset / 8 - 4;
            pad(out, &mut cursor, offset, name)?;
            let field = ident(m.name);
            writeln!(out, "    /// `{} {}`.\n    pub {field}: {},", self.c_spelling(m.ty), m.name, self.name_of(m.ty)?)
                .unwrap();
            checks.push((field, offset));
            cursor = offset
                .checked_add(self.btf.resolve_size(m.ty)?)
                .ok_or_else(|| GenError::Unsupported(format!("{name}: member {} ends past 4 GiB", m.name)))?;
        }
        pad(out, &mut cursor, size, name)?;
        writeln!(out, "}}\n").unwrap();
        write_default(out, name);
        write_checks(out, name, size, &checks);
        Ok(())
    }

    /// The layout-check literal (`ExpectedType { … }`) of BTF type `id`.
    pub fn expected_type(&self, id: u32) -> String {
        let layout = type_layout(self.btf, id);
        let members: Vec<String> = layout
            .members
            .iter()
            .map(|m| format!("({:?}, {}, {}, {:?})", m.name, m.bit_offset, m.bit_size, m.ty))
            .collect();
        let enumerators: Vec<String> = layout.enumerators.iter().map(|(n, v)| format!("({n:?}, {v})")).collect();
        format!(
            "::ebpf_core::object::layout::ExpectedType {{ name: {:?}, size: {}, members: &[{}], enumerators: &[{}] }}",
            layout.name,
            layout.size,
            members.join(", "),
            enumerators.join(", ")
        )
    }
}

fn int_type(ty: &Type<'_>) -> Result<String, GenError> {
    let info = ty.int().expect("int info");
    // `_Bool` is a byte: a bool field would make some bytes invalid, so it stays u8.
    let signed = info.signed && !info.bool;
    Ok(match (ty.size(), signed) {
        (Some(1), false) => "u8",
        (Some(1), true) => "i8",
        (Some(2), false) => "u16",
        (Some(2), true) => "i16",
        (Some(4), false) => "u32",
        (Some(4), true) => "i32",
        (Some(8), false) => "u64",
        (Some(8), true) => "i64",
        (Some(16), false) => "u128",
        (Some(16), true) => "i128",
        (size, _) => return Err(GenError::Unsupported(format!("an integer of {size:?} bytes"))),
    }
    .to_owned())
}

fn bits_of(btf: &Btf, m: &ebpf_btf::StructMember<'_>) -> u32 {
    if m.bitfield_size > 0 {
        m.bitfield_size as u32
    } else {
        btf.resolve_size(m.ty).unwrap_or(0).saturating_mul(8)
    }
}

fn describe_run(members: &[ebpf_btf::StructMember<'_>]) -> String {
    let names: Vec<String> = members.iter().map(|m| format!("`{}`", m.name)).collect();
    names.join(", ")
}

/// Explicit padding up to `offset`, so the struct has no implicit padding (Pod needs none)
/// and every member sits where C put it.
fn pad(out: &mut String, cursor: &mut u32, offset: u32, name: &str) -> Result<(), GenError> {
    if offset < *cursor {
        return Err(GenError::Unsupported(format!("{name}: overlapping members at byte {offset}")));
    }
    if offset > *cursor {
        writeln!(out, "    /// Padding.\n    pub __pad_{}: [u8; {}],", *cursor, offset - *cursor).unwrap();
        *cursor = offset;
    }
    Ok(())
}

fn write_default(out: &mut String, name: &str) {
    writeln!(
        out,
        "impl Default for {name} {{\n    fn default() -> Self {{\n        ::bytemuck::Zeroable::zeroed()\n    }}\n}}\n"
    )
    .unwrap();
}

/// Compile-time checks that the Rust layout is the C one.
fn write_checks(out: &mut String, name: &str, size: u32, fields: &[(String, u32)]) {
    writeln!(out, "const _: () = {{\n    assert!(::core::mem::size_of::<{name}>() == {size});").unwrap();
    for (field, offset) in fields {
        writeln!(out, "    assert!(::core::mem::offset_of!({name}, {field}) == {offset});").unwrap();
    }
    writeln!(out, "}};\n").unwrap();
}
