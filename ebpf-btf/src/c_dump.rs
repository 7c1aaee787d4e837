//! C header output: every named type of a BTF as C declarations, in an order a compiler
//! accepts (`vmlinux.h` style, as `bpftool btf dump … format c` prints it).
//!
//! Types used by value are defined before their users; types used only through pointers get
//! forward declarations; anonymous structs, unions and enums are written inline; bitfields,
//! padding holes and packed layouts are reproduced so offsets and sizes match the BTF; types
//! that share a name get `___N` suffixes, as libbpf does.

use std::collections::HashMap;
use std::fmt::Write;

use crate::btf::Btf;
use crate::header::BtfError;
use crate::kind::BtfKind;
use crate::query::spend;
use crate::types::Type;

const MAX_DEPTH: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    New,
    Ordering,
    Ordered,
}

/// Writes C declarations for the types of a BTF.
pub struct CDumper<'a> {
    btf: &'a Btf,
    order: Vec<Order>,
    queue: Vec<u32>,
    emitted: Vec<bool>,
    declared: Vec<bool>,
    names: Vec<Option<String>>,
    /// Memoised natural alignment (bytes) and packedness per type id.
    layout: HashMap<u32, (u32, bool)>,
    tag_names: HashMap<String, usize>,
    ident_names: HashMap<String, usize>,
    /// Inline expansions of anonymous types left: C gives each anonymous type one user, but
    /// malformed BTF can share them and make inlining exponential.
    inline_budget: u32,
    /// Type visits left while collecting what a definition needs first (same reason).
    deps_budget: u32,
    out: String,
}

fn index(id: u32) -> usize {
    id as usize
}

impl<'a> CDumper<'a> {
    /// A dumper for `btf` (a split BTF dumps its own types, naming its base's as needed).
    pub fn new(btf: &'a Btf) -> CDumper<'a> {
        let n = btf.last_id() as usize + 1;
        CDumper {
            btf,
            order: vec![Order::New; n],
            queue: Vec::new(),
            emitted: vec![false; n],
            declared: vec![false; n],
            names: vec![None; n],
            layout: HashMap::new(),
            tag_names: HashMap::new(),
            ident_names: HashMap::new(),
            inline_budget: (4 * n + 1024).try_into().unwrap_or(u32::MAX),
            deps_budget: (64 * n + 65_536).try_into().unwrap_or(u32::MAX),
            out: String::new(),
        }
    }

    /// The whole header: guard, `preserve_access_index` pragma, every named type.
    pub fn header(mut self, guard: &str) -> Result<String, BtfError> {
        let _ = write!(
            self.out,
            "#ifndef {guard}\n#define {guard}\n\n#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n\
             #pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)\n#endif\n\n"
        );
        let (first, last) = (self.btf.first_id(), self.btf.last_id());
        for id in first..=last {
            self.order_type(id, false, 0)?;
        }
        let queue = std::mem::take(&mut self.queue);
        for id in queue {
            self.emit_top_level(id)?;
        }
        let _ = write!(
            self.out,
            "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute pop\n#endif\n\n#endif /* {guard} */\n"
        );
        Ok(self.out)
    }

    fn ty(&self, id: u32) -> Result<Type<'a>, BtfError> {
        self.btf.type_by_id(id).ok_or(BtfError::BadTypeReference { id, target: id, last: self.btf.last_id() })
    }

    fn too_deep(id: u32) -> BtfError {
        BtfError::BadExt(format!("type [{id}]: nesting too deep or cyclic for C output"))
    }

    /// Orders `id` and what it needs; returns whether a user of `id` by value depends on its
    /// definition ("strong").
    fn order_type(&mut self, id: u32, through_ptr: bool, depth: usize) -> Result<bool, BtfError> {
        if depth > MAX_DEPTH {
            return Err(Self::too_deep(id));
        }
        let ty = self.ty(id)?;
        match self.order[index(id)] {
            Order::Ordered => return Ok(true),
            Order::Ordering => {
                // A cycle is fine through a pointer to a named aggregate or typedef.
                if matches!(ty.kind(), Some(BtfKind::Struct | BtfKind::Union | BtfKind::Typedef))
                    && through_ptr
                    && !ty.name().is_empty()
                {
                    return Ok(false);
                }
                return Err(BtfError::BadExt(format!("type [{id}] '{}' contains itself by value", ty.name())));
            }
            Order::New => {}
        }
        let Some(kind) = ty.kind() else { return Ok(true) };
        match kind {
            BtfKind::Int | BtfKind::Float => {
                self.order[index(id)] = Order::Ordered;
                Ok(true)
            }
            BtfKind::Ptr => {
                let strong = self.order_type(ty.size_or_type(), true, depth + 1)?;
                self.order[index(id)] = Order::Ordered;
                Ok(strong)
            }
            BtfKind::Array => self.order_type(ty.array().expect("array").elem, through_ptr, depth + 1),
            BtfKind::Const | BtfKind::Volatile | BtfKind::Restrict | BtfKind::TypeTag => {
                self.order_type(ty.size_or_type(), through_ptr, depth + 1)
            }
            BtfKind::Struct | BtfKind::Union => {
                let named = !ty.name().is_empty();
                if through_ptr && named {
                    return Ok(false);
                }
                self.order[index(id)] = Order::Ordering;
                for m in ty.members() {
                    self.order_type(m.ty, false, depth + 1)?;
                }
                if named {
                    self.queue.push(id);
                }
                self.order[index(id)] = Order::Ordered;
                Ok(true)
            }
            BtfKind::Enum | BtfKind::Enum64 | BtfKind::Fwd => {
                if !ty.name().is_empty() || depth == 0 {
                    self.queue.push(id);
                }
                self.order[index(id)] = Order::Ordered;
                Ok(true)
            }
            BtfKind::Typedef => {
                self.order[index(id)] = Order::Ordering;
                let strong = self.order_type(ty.size_or_type(), through_ptr, depth + 1)?;
                if through_ptr && !strong {
                    self.order[index(id)] = Order::New;
                    return Ok(false);
                }
                self.queue.push(id);
                self.order[index(id)] = Order::Ordered;
                Ok(true)
            }
            BtfKind::FuncProto => {
                self.order_type(ty.size_or_type(), through_ptr, depth + 1)?;
                for p in ty.params() {
                    self.order_type(p.ty, through_ptr, depth + 1)?;
                }
                self.order[index(id)] = Order::Ordered;
                Ok(false)
            }
            BtfKind::Func | BtfKind::Var | BtfKind::Datasec | BtfKind::DeclTag => {
                self.order[index(id)] = Order::Ordered;
                Ok(false)
            }
        }
    }

    /// The C name of a named type, with a `___N` suffix for the Nth distinct type of a name.
    fn name_of(&mut self, id: u32) -> Result<String, BtfError> {
        if let Some(name) = &self.names[index(id)] {
            return Ok(name.clone());
        }
        let ty = self.ty(id)?;
        let mut base = ty.name().to_owned();
        if base == "__builtin_va_list" {
            // The compiler predefines this name (as `void *` for BPF); the kernel's va_list
            // is its own type, so it gets a name of its own to keep its size.
            base.push_str("___btf");
        }
        if ty.is(BtfKind::Fwd) {
            // A forward declaration names the same type as a definition of that name.
            self.names[index(id)] = Some(base.clone());
            return Ok(base);
        }
        let namespace = if ty.is(BtfKind::Typedef) { &mut self.ident_names } else { &mut self.tag_names };
        let count = namespace.entry(base.clone()).or_insert(0);
        *count += 1;
        let name = if *count == 1 { base } else { format!("{base}___{count}") };
        self.names[index(id)] = Some(name.clone());
        Ok(name)
    }

    fn enumerator_name(&mut self, name: &str) -> String {
        let count = self.ident_names.entry(name.to_owned()).or_insert(0);
        *count += 1;
        if *count == 1 {
            name.to_owned()
        } else {
            format!("{name}___{count}")
        }
    }

    fn keyword(ty: &Type<'_>) -> &'static str {
        match ty.kind() {
            Some(BtfKind::Union) => "union",
            Some(BtfKind::Enum | BtfKind::Enum64) => "enum",
            Some(BtfKind::Fwd) if ty.is_union_fwd() => "union",
            _ => "struct",
        }
    }

    /// Emits what the definition of something referring to `id` needs first: forward
    /// declarations for aggregates behind pointers, typedefs and enums not yet written.
    fn emit_deps(&mut self, id: u32, depth: usize) -> Result<(), BtfError> {
        if depth > MAX_DEPTH {
            return Err(Self::too_deep(id));
        }
        if !spend(&mut self.deps_budget) {
            return Err(Self::explodes(id));
        }
        let ty = self.ty(id)?;
        let Some(kind) = ty.kind() else { return Ok(()) };
        match kind {
            BtfKind::Ptr => self.emit_deps(ty.size_or_type(), depth + 1),
            BtfKind::Const | BtfKind::Volatile | BtfKind::Restrict | BtfKind::TypeTag => {
                self.emit_deps(ty.size_or_type(), depth + 1)
            }
            BtfKind::Array => self.emit_deps(ty.array().expect("array").elem, depth + 1),
            BtfKind::FuncProto => {
                self.emit_deps(ty.size_or_type(), depth + 1)?;
                let params: Vec<u32> = ty.params().map(|p| p.ty).collect();
                for p in params {
                    self.emit_deps(p, depth + 1)?;
                }
                Ok(())
            }
            BtfKind::Struct | BtfKind::Union if ty.name().is_empty() => {
                let members: Vec<u32> = ty.members().map(|m| m.ty).collect();
                for m in members {
                    self.emit_deps(m, depth + 1)?;
                }
                Ok(())
            }
            BtfKind::Struct | BtfKind::Union | BtfKind::Fwd => {
                if !self.emitted[index(id)] && !self.declared[index(id)] {
                    let name = self.name_of(id)?;
                    let _ = write!(self.out, "{} {name};\n\n", Self::keyword(&ty));
                    self.declared[index(id)] = true;
                }
                Ok(())
            }
            BtfKind::Enum | BtfKind::Enum64 if ty.name().is_empty() => Ok(()),
            BtfKind::Enum | BtfKind::Enum64 | BtfKind::Typedef => {
                if !self.emitted[index(id)] {
                    self.emit_top_level(id)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn emit_top_level(&mut self, id: u32) -> Result<(), BtfError> {
        if self.emitted[index(id)] {
            return Ok(());
        }
        let ty = self.ty(id)?;
        match ty.kind() {
            Some(BtfKind::Struct | BtfKind::Union) => {
                let members: Vec<u32> = ty.members().map(|m| m.ty).collect();
                for m in members {
                    self.emit_deps(m, 1)?;
                }
                self.emitted[index(id)] = true;
                let body = self.aggregate(&ty, 0, 1)?;
                let _ = write!(self.out, "{body};\n\n");
            }
            Some(BtfKind::Enum | BtfKind::Enum64) => {
                self.emitted[index(id)] = true;
                let body = self.enumeration(&ty, 0)?;
                let _ = write!(self.out, "{body};\n\n");
            }
            Some(BtfKind::Fwd) => {
                self.emitted[index(id)] = true;
                if !self.declared[index(id)] {
                    let name = self.name_of(id)?;
                    let _ = write!(self.out, "{} {name};\n\n", Self::keyword(&ty));
                    self.declared[index(id)] = true;
                }
            }
            Some(BtfKind::Typedef) => {
                // Mark first: a typedef that refers to itself through a pointer is fine.
                self.emitted[index(id)] = true;
                let target = ty.size_or_type();
                self.emit_deps(target, 1)?;
                let name = self.name_of(id)?;
                let decl = self.declaration(target, &name, 0, 1)?;
                let _ = write!(self.out, "typedef {decl};\n\n");
            }
            _ => {}
        }
        Ok(())
    }

    fn enumeration(&mut self, ty: &Type<'a>, indent: usize) -> Result<String, BtfError> {
        let mut out = String::from("enum");
        if !ty.name().is_empty() {
            let name = self.name_of(ty.id())?;
            let _ = write!(out, " {name}");
        }
        if ty.vlen() == 0 {
            return Ok(out);
        }
        let signed = ty.is_signed_enum();
        // Enums of other than int size keep their size through a fixed underlying type.
        let underlying = match (ty.size(), signed) {
            (Some(1), false) => Some("unsigned char"),
            (Some(1), true) => Some("signed char"),
            (Some(2), false) => Some("unsigned short"),
            (Some(2), true) => Some("short"),
            (Some(8), false) => Some("unsigned long long"),
            (Some(8), true) => Some("long long"),
            _ => None,
        };
        if let Some(underlying) = underlying {
            let _ = write!(out, " : {underlying}");
        }
        out.push_str(" {\n");
        let wide = ty.is(BtfKind::Enum64);
        for e in ty.enumerators() {
            let name = self.enumerator_name(e.name);
            let value = match (wide, signed) {
                (true, true) => format!("{}LL", e.value),
                (true, false) => format!("{}ULL", e.value as u64),
                (false, true) => (e.value as i32).to_string(),
                (false, false) => (e.value as u32).to_string(),
            };
            let _ = writeln!(out, "{}{name} = {value},", "\t".repeat(indent + 1));
        }
        let _ = write!(out, "{}}}", "\t".repeat(indent));
        Ok(out)
    }

    fn aggregate(&mut self, ty: &Type<'a>, indent: usize, depth: usize) -> Result<String, BtfError> {
        if depth > MAX_DEPTH {
            return Err(Self::too_deep(ty.id()));
        }
        let keyword = Self::keyword(ty);
        let mut out = String::from(keyword);
        if !ty.name().is_empty() {
            let name = self.name_of(ty.id())?;
            let _ = write!(out, " {name}");
        }
        out.push_str(" {\n");
        let packed = self.layout(ty.id()).1;
        let is_union = ty.is(BtfKind::Union);
        let tabs = "\t".repeat(indent + 1);
        let mut cursor = 0u32; // bits
        let members: Vec<_> = ty.members().collect();
        let size_bits = u64::from(ty.size().unwrap_or(0)) * 8;
        for m in &members {
            if u64::from(m.bit_offset) + u64::from(m.bitfield_size) > size_bits {
                return Err(BtfError::BadExt(format!(
                    "type [{}] '{}': member '{}' at bit {} lies past the end ({} bytes)",
                    ty.id(),
                    ty.name(),
                    m.name,
                    m.bit_offset,
                    size_bits / 8
                )));
            }
            if !is_union {
                // Where the compiler would put the member; pad any hole up to where it is.
                let placed = if packed || m.bitfield_size > 0 { cursor } else { self.natural_offset(cursor, m.ty) };
                if placed < m.bit_offset {
                    pad(&mut out, &tabs, cursor, m.bit_offset)?;
                }
            }
            let member_name = m.name.to_owned();
            let decl = self.declaration(m.ty, &member_name, indent + 1, depth + 1)?;
            if m.bitfield_size > 0 {
                let _ = writeln!(out, "{tabs}{decl}: {};", m.bitfield_size);
                cursor = m.bit_offset.saturating_add(u32::from(m.bitfield_size));
            } else {
                let _ = writeln!(out, "{tabs}{decl};");
                let size = self.btf.resolve_size(m.ty).unwrap_or(0);
                let bits = size.saturating_mul(8);
                cursor = if is_union { cursor.max(bits) } else { m.bit_offset.saturating_add(bits) };
            }
        }
        if !is_union {
            let size_bits = ty.size().unwrap_or(0).saturating_mul(8);
            let align_bits = if packed { 8 } else { self.layout(ty.id()).0 * 8 };
            if cursor.checked_next_multiple_of(align_bits.max(8)).unwrap_or(u32::MAX) < size_bits {
                pad(&mut out, &tabs, cursor, size_bits)?;
            }
        }
        let _ = write!(out, "{}}}", "\t".repeat(indent));
        if packed {
            out.push_str(" __attribute__((packed))");
        }
        Ok(out)
    }

    fn spend_inline(&mut self, id: u32) -> Result<(), BtfError> {
        if spend(&mut self.inline_budget) {
            Ok(())
        } else {
            Err(Self::explodes(id))
        }
    }

    fn explodes(id: u32) -> BtfError {
        BtfError::BadExt(format!("type [{id}]: anonymous types are shared so often that C output would explode"))
    }

    /// Where a compiler would put a member of type `id` after `cursor` bits.
    fn natural_offset(&mut self, cursor: u32, id: u32) -> u32 {
        let align = self.layout(id).0.max(1) * 8;
        cursor.checked_next_multiple_of(align).unwrap_or(u32::MAX)
    }

    /// Alignment in bytes as the emitted C gives it, and whether an aggregate must be
    /// declared packed, memoised across the whole dump.
    fn layout(&mut self, id: u32) -> (u32, bool) {
        self.btf.layout(id, &mut self.layout)
    }

    /// `id` declared with declarator `inner` (a name, or the pointer/array/function wrapping
    /// around one).
    fn declaration(&mut self, id: u32, inner: &str, indent: usize, depth: usize) -> Result<String, BtfError> {
        if depth > MAX_DEPTH {
            return Err(Self::too_deep(id));
        }
        let join = |base: String, inner: &str| if inner.is_empty() { base } else { format!("{base} {inner}") };
        let ty = self.ty(id)?;
        let Some(kind) = ty.kind() else { return Ok(join("void".to_owned(), inner)) };
        Ok(match kind {
            BtfKind::Int | BtfKind::Float => join(ty.name().to_owned(), inner),
            BtfKind::Typedef => {
                let name = self.name_of(id)?;
                join(name, inner)
            }
            BtfKind::Struct | BtfKind::Union | BtfKind::Enum | BtfKind::Enum64 | BtfKind::Fwd
                if !ty.name().is_empty() =>
            {
                let name = self.name_of(id)?;
                join(format!("{} {name}", Self::keyword(&ty)), inner)
            }
            BtfKind::Struct | BtfKind::Union | BtfKind::Fwd => {
                self.spend_inline(id)?;
                let body = self.aggregate(&ty, indent, depth + 1)?;
                join(body, inner)
            }
            BtfKind::Enum | BtfKind::Enum64 => {
                self.spend_inline(id)?;
                let body = self.enumeration(&ty, indent)?;
                join(body, inner)
            }
            BtfKind::Ptr => {
                let target = ty.size_or_type();
                let wrap = self.btf.skip_mods(target).is_some_and(|t| t.is(BtfKind::Array) || t.is(BtfKind::FuncProto));
                let pointer = format!("*{inner}");
                let pointer = if wrap { format!("({pointer})") } else { pointer };
                self.declaration(target, &pointer, indent, depth + 1)?
            }
            BtfKind::Const | BtfKind::Volatile | BtfKind::Restrict => {
                let qualifier = match kind {
                    BtfKind::Const => "const",
                    BtfKind::Volatile => "volatile",
                    _ => "restrict",
                };
                let target = ty.size_or_type();
                if self.btf.type_by_id(target).is_some_and(|t| t.is(BtfKind::Ptr)) {
                    let qualified =
                        if inner.is_empty() { qualifier.to_owned() } else { format!("{qualifier} {inner}") };
                    self.declaration(target, &qualified, indent, depth + 1)?
                } else {
                    let rest = self.declaration(target, inner, indent, depth + 1)?;
                    // A qualified array of qualified elements (`const` twice in BTF) is one
                    // qualifier in C.
                    if rest.starts_with(qualifier) && rest[qualifier.len()..].starts_with(' ') {
                        rest
                    } else {
                        format!("{qualifier} {rest}")
                    }
                }
            }
            BtfKind::TypeTag => self.declaration(ty.size_or_type(), inner, indent, depth + 1)?,
            BtfKind::Array => {
                let a = ty.array().expect("array");
                self.declaration(a.elem, &format!("{inner}[{}]", a.nelems), indent, depth + 1)?
            }
            BtfKind::FuncProto => {
                let mut params = Vec::new();
                let list: Vec<_> = ty.params().map(|p| (p.ty, p.name.to_owned())).collect();
                for (i, (pty, pname)) in list.iter().enumerate() {
                    if *pty == 0 && i + 1 == list.len() {
                        params.push("...".to_owned());
                    } else {
                        params.push(self.declaration(*pty, pname, indent, depth + 1)?);
                    }
                }
                let params = if params.is_empty() { "void".to_owned() } else { params.join(", ") };
                self.declaration(ty.size_or_type(), &format!("{inner}({params})"), indent, depth + 1)?
            }
            BtfKind::Func | BtfKind::Var | BtfKind::Datasec | BtfKind::DeclTag => join(ty.name().to_owned(), inner),
        })
    }
}

/// Holes larger than this are not real layouts; writing them out would only bloat the header.
const MAX_PADDING_BITS: u32 = 8 << 20;

/// Anonymous bitfields that move the cursor from `from` to `to` bits, in the largest
/// naturally aligned chunks.
fn pad(out: &mut String, tabs: &str, from: u32, to: u32) -> Result<(), BtfError> {
    if to.saturating_sub(from) > MAX_PADDING_BITS {
        return Err(BtfError::BadExt(format!("a {}-byte hole is too large to write as padding", (to - from) / 8)));
    }
    let mut cursor = from;
    while cursor < to {
        let gap = to - cursor;
        let (name, bits) = if cursor % 8 != 0 {
            ("unsigned char", gap.min(8 - cursor % 8))
        } else {
            [("long", 64), ("int", 32), ("short", 16), ("char", 8)]
                .into_iter()
                .find(|&(_, bits)| cursor % bits == 0 && gap >= bits)
                .unwrap_or(("unsigned char", gap))
        };
        let _ = writeln!(out, "{tabs}{name}: {bits};");
        cursor += bits;
    }
    Ok(())
}

/// Every named type of `btf` as a C header guarded by `guard` (`vmlinux.h` style).
pub fn c_dump(btf: &Btf, guard: &str) -> Result<String, BtfError> {
    CDumper::new(btf).header(guard)
}

#[cfg(test)]
mod tests {
    use crate::{Btf, BtfBuilder, EnumValue, IntEncoding, Member, Param, TypeId};

    fn member(name: &str, ty: TypeId, bit_offset: u32) -> Member<'_> {
        Member { name, ty, bit_offset, bitfield_size: 0 }
    }

    #[test]
    fn declarators_bitfields_padding_and_forward_declarations() {
        let mut b = BtfBuilder::new();
        let int = b.add_int("int", 4, IntEncoding::Signed); // 1
        let uint = b.add_int("unsigned int", 4, IntEncoding::Unsigned); // 2
        let chr = b.add_int("char", 1, IntEncoding::Signed); // 3
        let node_fwd = b.add_fwd("node", false); // 4
        let node_ptr = b.add_ptr(node_fwd); // 5
        let const_chr = b.add_const(chr); // 6
        let str_ptr = b.add_ptr(const_chr); // 7
        let names = b.add_array(str_ptr, int, 4); // 8
        let proto = b.add_func_proto(Some(int), &[Param { name: "", ty: Some(node_ptr) }]); // 9
        let fn_ptr = b.add_ptr(proto); // 10
        let anon = b.add_union("", 4, &[member("as_int", int, 0), member("as_uint", uint, 0)]); // 11
        let mode =
            b.add_enum("mode", 1, false, &[EnumValue { name: "OFF", value: 0 }, EnumValue { name: "ON", value: 1 }]); // 12
        b.add_struct(
            "node",
            40,
            &[
                member("next", node_ptr, 0),
                Member { name: "flag", ty: uint, bit_offset: 64, bitfield_size: 3 },
                member("cb", fn_ptr, 128),
                member("", anon, 192),
                member("mode", mode, 224),
                member("names", names, 256),
            ],
        ); // 13
        let header = super::c_dump(&Btf::parse(b.encode()).unwrap(), "T_H").unwrap();
        let body = header.split("#endif\n\n").nth(1).unwrap();
        let expected = "\
struct node;

enum mode : unsigned char {
\tOFF = 0,
\tON = 1,
};

struct node {
\tstruct node *next;
\tunsigned int flag: 3;
\tint (*cb)(struct node *);
\tunion {
\t\tint as_int;
\t\tunsigned int as_uint;
\t};
\tenum mode mode;
\tconst char *names[4];
};

";
        assert!(body.starts_with(expected), "{body}");
    }

    #[test]
    fn duplicate_names_get_suffixes_and_holes_get_padding() {
        let mut b = BtfBuilder::new();
        let long = b.add_int("long", 8, IntEncoding::Signed);
        let int = b.add_int("int", 4, IntEncoding::Signed);
        b.add_struct("dup", 4, &[member("a", int, 0)]);
        b.add_struct("dup", 24, &[member("a", int, 0), member("b", long, 128)]);
        let header = super::c_dump(&Btf::parse(b.encode()).unwrap(), "T_H").unwrap();
        assert!(header.contains("struct dup {\n\tint a;\n};"), "{header}");
        assert!(header.contains("struct dup___2 {\n\tint a;\n\tint: 32;\n\tlong: 64;\n\tlong b;\n};"), "{header}");
    }

    #[test]
    fn self_containing_types_are_an_error_not_a_hang() {
        let mut b = BtfBuilder::new();
        let int = b.add_int("int", 4, IntEncoding::Signed);
        b.add_struct("loop", 8, &[member("a", int, 0), member("me", TypeId::new(2).unwrap(), 32)]);
        let err = super::c_dump(&Btf::parse(b.encode()).unwrap(), "T_H").unwrap_err();
        assert!(err.to_string().contains("contains itself"), "{err}");
    }
}
