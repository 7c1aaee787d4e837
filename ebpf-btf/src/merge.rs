//! Several objects' BTF merged into one, each type once (what a static linker does with the
//! `.BTF` of its inputs).
//!
//! Types are identified by a canonical key built from their contents. Named structs, unions,
//! enums and forward declarations are referred to in other keys by kind and name, which
//! breaks the cycles of self-referring types: two named composites are one type when their
//! names and layouts agree (C's one-definition rule, which the inputs of one link share).
//! Anonymous types are compared whole. Functions and variables with static linkage stay one
//! per input; global ones are one per name; an `extern` one becomes the definition another
//! input gives. Data sections (`DATASEC`) are merged by name, each variable placed where the
//! caller's layout of the merged section puts it.

use std::collections::HashMap;

use crate::builder::{BtfBuilder, DatasecVar};
use crate::types::TypeLinkage;
use crate::{Btf, BtfKind};

/// Where the caller put a data section's variable: `None` drops it (a weak definition
/// another input's strong one replaced).
pub trait DataLayout {
    /// The merged offset of variable `name` (at `offset` in input `input`'s section
    /// `section`).
    fn place(&self, input: usize, section: &str, name: &str, offset: u32) -> Option<u32>;
    /// The merged section's size.
    fn section_size(&self, section: &str) -> u32;
}

/// The merged BTF under construction: the types are in; strings can still be added (for
/// `.BTF.ext` records, which name files and source lines), then [`MergedBtf::finish`].
#[derive(Debug)]
pub struct MergedBtf {
    builder: BtfBuilder,
    /// Per input, its type id → the merged id (index 0 is void).
    ids: Vec<Vec<u32>>,
}

impl MergedBtf {
    /// The merged id of type `id` of input `input` (0 for void or an id out of range).
    pub fn id(&self, input: usize, id: u32) -> u32 {
        self.ids.get(input).and_then(|map| map.get(id as usize)).copied().unwrap_or(0)
    }

    /// The merged string offset of `text`.
    pub fn string(&mut self, text: &str) -> u32 {
        self.builder.add_string(text)
    }

    /// Number of types in the merged BTF.
    pub fn type_count(&self) -> u32 {
        self.builder.type_count()
    }

    /// The merged blob.
    pub fn finish(self) -> Vec<u8> {
        self.builder.encode()
    }
}

/// Kinds other types refer to by name in their keys.
fn named_composite(kind: BtfKind) -> bool {
    matches!(kind, BtfKind::Struct | BtfKind::Union | BtfKind::Enum | BtfKind::Enum64 | BtfKind::Fwd)
}

/// Deep enough for any real chain of anonymous types; past it a type is kept as it is.
const MAX_DEPTH: usize = 64;

struct Keys<'b> {
    input: usize,
    btf: &'b Btf,
    keys: Vec<Option<String>>,
    in_progress: Vec<bool>,
}

impl Keys<'_> {
    fn new(input: usize, btf: &Btf) -> Keys<'_> {
        let n = btf.last_id() as usize + 1;
        Keys { input, btf, keys: vec![None; n], in_progress: vec![false; n] }
    }

    /// A key that matches nothing else: for what is not compared (statics, cycles, depth).
    fn unique(&self, id: u32) -> String {
        format!("#{}:{id}", self.input)
    }

    /// How another type's key names type `id`.
    fn reference(&mut self, id: u32, depth: usize) -> String {
        match self.btf.type_by_id(id) {
            Some(ty) if !ty.is_void() && ty.kind().is_some_and(named_composite) && !ty.name().is_empty() => {
                let union = u8::from(ty.is(BtfKind::Union) || ty.is_union_fwd());
                format!("{}:{union}:{}", if ty.is(BtfKind::Fwd) { "fwd" } else { "tag" }, ty.name())
            }
            _ => self.key(id, depth + 1),
        }
    }

    fn key(&mut self, id: u32, depth: usize) -> String {
        if id == 0 {
            return "void".to_owned();
        }
        let index = id as usize;
        if let Some(Some(key)) = self.keys.get(index) {
            return key.clone();
        }
        let Some(ty) = self.btf.type_by_id(id).filter(|_| index < self.keys.len()) else {
            return self.unique(id);
        };
        if depth > MAX_DEPTH || self.in_progress[index] {
            return self.unique(id);
        }
        self.in_progress[index] = true;
        let kind = ty.kind().expect("parsed types have a kind");
        let name = ty.name();
        let key = match kind {
            BtfKind::Int => {
                let i = ty.int().expect("int");
                format!("int {name} {} {} {} {} {} {}", ty.size_or_type(), i.signed, i.char, i.bool, i.offset, i.bits)
            }
            BtfKind::Float => format!("float {name} {}", ty.size_or_type()),
            BtfKind::Ptr
            | BtfKind::Const
            | BtfKind::Volatile
            | BtfKind::Restrict
            | BtfKind::Typedef
            | BtfKind::TypeTag => {
                format!("{} {name} -> {}", kind.name(), self.reference(ty.size_or_type(), depth))
            }
            BtfKind::Array => {
                let a = ty.array().expect("array");
                format!("array {} {} {}", self.reference(a.elem, depth), self.reference(a.index, depth), a.nelems)
            }
            BtfKind::Struct | BtfKind::Union => {
                let mut key = format!("{} {name} {} {}", kind.name(), ty.size_or_type(), ty.kind_flag());
                for m in ty.members() {
                    let target = self.reference(m.ty, depth);
                    key.push_str(&format!(" [{} {} {} {target}]", m.name, m.bit_offset, m.bitfield_size));
                }
                key
            }
            BtfKind::Enum | BtfKind::Enum64 => {
                let mut key = format!("{} {name} {} {}", kind.name(), ty.size_or_type(), ty.kind_flag());
                for e in ty.enumerators() {
                    key.push_str(&format!(" [{}={}]", e.name, e.value));
                }
                key
            }
            BtfKind::Fwd => format!("fwd {name} {}", ty.is_union_fwd()),
            BtfKind::FuncProto => {
                let mut key = format!("proto -> {}", self.reference(ty.size_or_type(), depth));
                for p in ty.params() {
                    key.push_str(&format!(" [{} {}]", p.name, self.reference(p.ty, depth)));
                }
                key
            }
            // One per input when static; one per name otherwise (externs are resolved apart).
            BtfKind::Func | BtfKind::Var => match ty.linkage() {
                Some(TypeLinkage::Static) | None => self.unique(id),
                _ => format!("{} {name} {:?} {}", kind.name(), ty.linkage(), self.reference(ty.size_or_type(), depth)),
            },
            BtfKind::DeclTag => format!(
                "decl_tag {name} {} {}",
                ty.decl_tag_component().unwrap_or(-1),
                self.reference(ty.size_or_type(), depth)
            ),
            BtfKind::Datasec => self.unique(id),
        };
        self.in_progress[index] = false;
        self.keys[index] = Some(key.clone());
        key
    }
}

/// Merges `inputs` (each an object's `.BTF`), placing data section variables as `layout` says.
pub fn merge(inputs: &[&Btf], layout: &dyn DataLayout) -> MergedBtf {
    // Global functions and variables defined somewhere, by (kind, name): what externs become.
    let mut definitions: HashMap<(bool, &str), (usize, u32)> = HashMap::new();
    for (input, btf) in inputs.iter().enumerate() {
        for ty in btf.types() {
            let defined = matches!(ty.linkage(), Some(TypeLinkage::Global));
            if defined && (ty.is(BtfKind::Func) || ty.is(BtfKind::Var)) {
                definitions.entry((ty.is(BtfKind::Func), ty.name())).or_insert((input, ty.id()));
            }
        }
    }

    // Phase 1: a merged id for every type, in order of first appearance; data sections last.
    let mut ids: Vec<Vec<u32>> = inputs.iter().map(|b| vec![0; b.last_id() as usize + 1]).collect();
    let mut first: Vec<(usize, u32)> = Vec::new(); // merged id - 1 → (input, id) emitted
    let mut by_key: HashMap<String, u32> = HashMap::new();
    let mut externs: Vec<(usize, u32, (usize, u32))> = Vec::new();
    let mut sections: Vec<String> = Vec::new();
    for (input, btf) in inputs.iter().enumerate() {
        let mut keys = Keys::new(input, btf);
        for ty in btf.types() {
            if ty.is(BtfKind::Datasec) {
                if !sections.iter().any(|s| s == ty.name()) {
                    sections.push(ty.name().to_owned());
                }
                continue;
            }
            if matches!(ty.linkage(), Some(TypeLinkage::Extern)) {
                if let Some(&definition) = definitions.get(&(ty.is(BtfKind::Func), ty.name())) {
                    externs.push((input, ty.id(), definition));
                    continue;
                }
            }
            let key = keys.key(ty.id(), 0);
            let merged = *by_key.entry(key).or_insert_with(|| {
                first.push((input, ty.id()));
                first.len() as u32
            });
            ids[input][ty.id() as usize] = merged;
        }
    }
    for (input, id, (def_input, def_id)) in externs {
        ids[input][id as usize] = ids[def_input][def_id as usize];
    }

    // Phase 2: emit each type once, its references mapped through its own input's ids.
    let mut builder = BtfBuilder::new();
    for &(input, id) in &first {
        let ty = inputs[input].type_by_id(id).expect("listed above");
        let map = &ids[input];
        builder.push_mapped(&ty, &mut |old| map.get(old as usize).copied().unwrap_or(0));
    }
    for section in &sections {
        let mut vars = Vec::new();
        for (input, btf) in inputs.iter().enumerate() {
            let Some(datasec) = btf.types().find(|t| t.is(BtfKind::Datasec) && t.name() == section.as_str()) else {
                continue;
            };
            for var in datasec.datasec_vars() {
                let name = btf.type_by_id(var.ty).map_or("", |t| t.name());
                let Some(offset) = layout.place(input, section, name, var.offset) else { continue };
                let merged = ids[input].get(var.ty as usize).copied().unwrap_or(0);
                if merged != 0 && !vars.iter().any(|v: &DatasecVar| v.var.get() == merged) {
                    vars.push(DatasecVar {
                        var: crate::TypeId::new(merged).expect("non-zero"),
                        offset,
                        size: var.size,
                    });
                }
            }
        }
        vars.sort_by_key(|v| v.offset);
        builder.add_datasec(section, layout.section_size(section), &vars);
    }
    // Data sections got the ids after every other type, in this order.
    let first_section = first.len() as u32 + 1;
    for (input, btf) in inputs.iter().enumerate() {
        for ty in btf.types().filter(|t| t.is(BtfKind::Datasec)) {
            let at = sections.iter().position(|s| s == ty.name()).expect("listed above") as u32;
            ids[input][ty.id() as usize] = first_section + at;
        }
    }
    MergedBtf { builder, ids }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IntEncoding, Linkage, Member};

    struct Concatenated;

    impl DataLayout for Concatenated {
        fn place(&self, input: usize, _: &str, _: &str, offset: u32) -> Option<u32> {
            Some(offset + 16 * input as u32)
        }
        fn section_size(&self, _: &str) -> u32 {
            32
        }
    }

    /// An object's BTF: int, a self-referring `struct node`, a static and a global variable in
    /// `.data`, a global function, and maybe an extern one.
    fn object(static_name: &str, extern_func: bool) -> Btf {
        let mut b = BtfBuilder::new();
        let int = b.add_int("int", 4, IntEncoding::Signed);
        let node = crate::TypeId::new(b.type_count() + 2).unwrap();
        let ptr = b.add_ptr(node);
        b.add_struct(
            "node",
            16,
            &[
                Member { name: "value", ty: int, bit_offset: 0, bitfield_size: 0 },
                Member { name: "next", ty: ptr, bit_offset: 64, bitfield_size: 0 },
            ],
        );
        let proto = b.add_func_proto(Some(int), &[]);
        if extern_func {
            b.add_func("shared", proto, Linkage::Extern);
        } else {
            b.add_func("shared", proto, Linkage::Global);
        }
        let local = b.add_var(static_name, int, Linkage::Static);
        let global = b.add_var("counter", int, Linkage::Global);
        b.add_datasec(
            ".data",
            8,
            &[DatasecVar { var: local, offset: 0, size: 4 }, DatasecVar { var: global, offset: 4, size: 4 }],
        );
        Btf::parse(b.encode()).unwrap()
    }

    #[test]
    fn types_are_kept_once_statics_per_input_and_externs_resolve() {
        let (a, b) = (object("a_only", false), object("b_only", true));
        let merged = merge(&[&a, &b], &Concatenated);
        let count = merged.type_count();
        // int, ptr, node, proto, shared, a_only, counter (7) + b_only (1) + .data (1).
        assert_eq!(count, 9);
        assert_eq!(merged.id(0, 1), merged.id(1, 1), "int once");
        assert_eq!(merged.id(0, 3), merged.id(1, 3), "struct node once, cycle and all");
        assert_eq!(merged.id(1, 5), merged.id(0, 5), "the extern shared() is the definition");
        assert_ne!(merged.id(0, 6), merged.id(1, 6), "each input's static variable stays its own");
        let btf = Btf::parse(merged.finish()).unwrap();
        let data = btf.find(".data", BtfKind::Datasec).unwrap();
        let placed: Vec<(String, u32)> =
            data.datasec_vars().map(|v| (btf.type_by_id(v.ty).unwrap().name().to_owned(), v.offset)).collect();
        assert_eq!(
            placed,
            vec![("a_only".into(), 0), ("counter".into(), 4), ("b_only".into(), 16)],
            "the global counter once, where its first definition lies"
        );
        assert_eq!(data.size(), Some(32));
        let node = btf.find("node", BtfKind::Struct).unwrap();
        let next = node.members().nth(1).unwrap();
        assert_eq!(btf.type_by_id(next.ty).unwrap().size_or_type(), node.id(), "next still points at node");
    }

    #[test]
    fn differing_layouts_of_one_name_stay_apart() {
        let make = |size: u32| {
            let mut b = BtfBuilder::new();
            let int = b.add_int("int", 4, IntEncoding::Signed);
            b.add_struct("config", size, &[Member { name: "x", ty: int, bit_offset: 0, bitfield_size: 0 }]);
            Btf::parse(b.encode()).unwrap()
        };
        let (a, b) = (make(4), make(8));
        let merged = merge(&[&a, &b], &Concatenated);
        assert_eq!(merged.type_count(), 3);
        assert_ne!(merged.id(0, 2), merged.id(1, 2));
    }
}
