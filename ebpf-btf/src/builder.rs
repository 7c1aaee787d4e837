use crate::btf::Btf;
use crate::header::{BtfHeader, BTF_MAGIC};
use crate::kind::{BtfKind, TypeId};
use crate::types::Type;

/// How an integer type is interpreted (`BTF_INT_ENCODING`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntEncoding {
    /// Plain unsigned integer.
    Unsigned,
    /// `BTF_INT_SIGNED`.
    Signed,
    /// `BTF_INT_CHAR`.
    Char,
    /// `BTF_INT_BOOL`.
    Bool,
}

impl IntEncoding {
    fn bits(self) -> u32 {
        match self {
            IntEncoding::Unsigned => 0,
            IntEncoding::Signed => 1,
            IntEncoding::Char => 2,
            IntEncoding::Bool => 4,
        }
    }
}

/// Linkage of a function or variable (`btf_func_linkage` / `btf_var` linkage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Linkage {
    /// `static`: visible to this object only.
    Static,
    /// Global: visible to the loader and verified on its own.
    Global,
    /// `extern`: resolved at load time.
    Extern,
}

impl Linkage {
    pub(crate) fn raw(self) -> u32 {
        match self {
            Linkage::Static => 0,
            Linkage::Global => 1,
            Linkage::Extern => 2,
        }
    }
}

/// A struct or union member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member<'a> {
    /// Member name; empty for an anonymous member.
    pub name: &'a str,
    /// Member type.
    pub ty: TypeId,
    /// Offset from the start of the aggregate, in bits.
    pub bit_offset: u32,
    /// Width in bits for a bitfield member, 0 for an ordinary one.
    pub bitfield_size: u8,
}

/// A function-prototype parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param<'a> {
    /// Parameter name; may be empty.
    pub name: &'a str,
    /// Parameter type; `None` only for a trailing `...`.
    pub ty: Option<TypeId>,
}

/// An enumerator of an enum or enum64.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnumValue<'a> {
    /// Enumerator name.
    pub name: &'a str,
    /// Enumerator value (an enum keeps the low 32 bits).
    pub value: i64,
}

/// A variable placed in a data section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasecVar {
    /// The `VAR` type describing the variable.
    pub var: TypeId,
    /// Byte offset in the section.
    pub offset: u32,
    /// Byte size.
    pub size: u32,
}

/// Builds a `.BTF` blob type by type, in the machine's byte order.
///
/// Ids are handed out in order from 1 (id 0 is `void`); every `add_*` returns the new id so
/// later types can refer to it. [`BtfBuilder::encode`] yields bytes `BPF_BTF_LOAD` accepts.
#[derive(Clone, Debug)]
pub struct BtfBuilder {
    types: Vec<u8>,
    strings: Vec<u8>,
    string_offsets: std::collections::HashMap<Box<str>, u32>,
    count: u32,
    /// For split BTF: the base's last type id and string section length.
    id_base: u32,
    string_base: u32,
}

impl Default for BtfBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn raw_id(ty: Option<TypeId>) -> u32 {
    ty.map_or(0, TypeId::get)
}

impl BtfBuilder {
    /// An empty builder; its string table starts with the mandatory empty string.
    pub fn new() -> Self {
        BtfBuilder {
            types: Vec::new(),
            strings: vec![0],
            string_offsets: std::collections::HashMap::new(),
            count: 0,
            id_base: 0,
            string_base: 0,
        }
    }

    /// A builder for split BTF on top of `base` (a kernel module's BTF on vmlinux): ids
    /// continue after the base's, and names may refer to the base's strings by offset.
    pub fn new_split(base: &Btf) -> Self {
        BtfBuilder { id_base: base.last_id(), string_base: base.string_space(), ..BtfBuilder::new() }
    }

    /// Number of types added so far.
    pub fn type_count(&self) -> u32 {
        self.count
    }

    /// Adds `name` to the string table (reusing an identical earlier entry) and returns its offset.
    pub fn add_string(&mut self, name: &str) -> u32 {
        if name.is_empty() {
            return 0;
        }
        if let Some(&offset) = self.string_offsets.get(name) {
            return offset;
        }
        let offset = self.string_base + self.strings.len() as u32;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        self.string_offsets.insert(name.into(), offset);
        offset
    }

    fn push_word(&mut self, word: u32) {
        self.types.extend_from_slice(&word.to_ne_bytes());
    }

    fn push_type(&mut self, name: &str, kind: BtfKind, vlen: u32, kind_flag: bool, size_or_type: u32) -> TypeId {
        let name_off = self.add_string(name);
        let info = (vlen & 0xffff) | (u32::from(kind as u8) << 24) | (u32::from(kind_flag) << 31);
        self.push_word(name_off);
        self.push_word(info);
        self.push_word(size_or_type);
        self.count += 1;
        TypeId::new(self.id_base + self.count).expect("type ids count up from 1")
    }

    /// `INT`: an integer of `size` bytes.
    pub fn add_int(&mut self, name: &str, size: u32, encoding: IntEncoding) -> TypeId {
        let id = self.push_type(name, BtfKind::Int, 0, false, size);
        self.push_word((encoding.bits() << 24) | size.saturating_mul(8).min(128));
        id
    }

    /// `PTR` to `target` (`None` is `void *`).
    pub fn add_ptr(&mut self, target: impl Into<Option<TypeId>>) -> TypeId {
        let target = raw_id(target.into());
        self.push_type("", BtfKind::Ptr, 0, false, target)
    }

    /// `ARRAY` of `nelems` elements indexed by `index`.
    pub fn add_array(&mut self, elem: TypeId, index: TypeId, nelems: u32) -> TypeId {
        let id = self.push_type("", BtfKind::Array, 0, false, 0);
        self.push_word(elem.get());
        self.push_word(index.get());
        self.push_word(nelems);
        id
    }

    fn add_aggregate(&mut self, kind: BtfKind, name: &str, size: u32, members: &[Member<'_>]) -> TypeId {
        // With the kind flag set, each offset carries the bitfield width in its top byte.
        let bitfields = members.iter().any(|m| m.bitfield_size != 0);
        let id = self.push_type(name, kind, members.len() as u32, bitfields, size);
        for member in members {
            let name_off = self.add_string(member.name);
            let offset = if bitfields {
                (u32::from(member.bitfield_size) << 24) | (member.bit_offset & 0x00ff_ffff)
            } else {
                member.bit_offset
            };
            self.push_word(name_off);
            self.push_word(member.ty.get());
            self.push_word(offset);
        }
        id
    }

    /// `STRUCT` of `size` bytes.
    pub fn add_struct(&mut self, name: &str, size: u32, members: &[Member<'_>]) -> TypeId {
        self.add_aggregate(BtfKind::Struct, name, size, members)
    }

    /// `UNION` of `size` bytes.
    pub fn add_union(&mut self, name: &str, size: u32, members: &[Member<'_>]) -> TypeId {
        self.add_aggregate(BtfKind::Union, name, size, members)
    }

    /// `ENUM` of `size` bytes with 32-bit enumerators.
    pub fn add_enum(&mut self, name: &str, size: u32, signed: bool, values: &[EnumValue<'_>]) -> TypeId {
        let id = self.push_type(name, BtfKind::Enum, values.len() as u32, signed, size);
        for value in values {
            let name_off = self.add_string(value.name);
            self.push_word(name_off);
            self.push_word(value.value as u32);
        }
        id
    }

    /// `ENUM64` of `size` bytes with 64-bit enumerators.
    pub fn add_enum64(&mut self, name: &str, size: u32, signed: bool, values: &[EnumValue<'_>]) -> TypeId {
        let id = self.push_type(name, BtfKind::Enum64, values.len() as u32, signed, size);
        for value in values {
            let name_off = self.add_string(value.name);
            self.push_word(name_off);
            self.push_word(value.value as u64 as u32);
            self.push_word((value.value as u64 >> 32) as u32);
        }
        id
    }

    /// `FWD` declaration of a struct (or a union when `union` is set).
    pub fn add_fwd(&mut self, name: &str, union: bool) -> TypeId {
        self.push_type(name, BtfKind::Fwd, 0, union, 0)
    }

    /// `TYPEDEF` naming `target`.
    pub fn add_typedef(&mut self, name: &str, target: TypeId) -> TypeId {
        self.push_type(name, BtfKind::Typedef, 0, false, target.get())
    }

    /// `VOLATILE` qualifier of `target`.
    pub fn add_volatile(&mut self, target: TypeId) -> TypeId {
        self.push_type("", BtfKind::Volatile, 0, false, target.get())
    }

    /// `CONST` qualifier of `target`.
    pub fn add_const(&mut self, target: TypeId) -> TypeId {
        self.push_type("", BtfKind::Const, 0, false, target.get())
    }

    /// `RESTRICT` qualifier of `target`.
    pub fn add_restrict(&mut self, target: TypeId) -> TypeId {
        self.push_type("", BtfKind::Restrict, 0, false, target.get())
    }

    /// `FUNC_PROTO` returning `ret` (`None` is `void`).
    pub fn add_func_proto(&mut self, ret: Option<TypeId>, params: &[Param<'_>]) -> TypeId {
        let id = self.push_type("", BtfKind::FuncProto, params.len() as u32, false, raw_id(ret));
        for param in params {
            let name_off = self.add_string(param.name);
            self.push_word(name_off);
            self.push_word(raw_id(param.ty));
        }
        id
    }

    /// `FUNC` named `name` with signature `proto`.
    pub fn add_func(&mut self, name: &str, proto: TypeId, linkage: Linkage) -> TypeId {
        self.push_type(name, BtfKind::Func, linkage.raw(), false, proto.get())
    }

    /// `VAR`: a global variable of type `ty`.
    pub fn add_var(&mut self, name: &str, ty: TypeId, linkage: Linkage) -> TypeId {
        let id = self.push_type(name, BtfKind::Var, 0, false, ty.get());
        self.push_word(linkage.raw());
        id
    }

    /// `DATASEC` named `name` (for example `.data`) of `size` bytes.
    pub fn add_datasec(&mut self, name: &str, size: u32, vars: &[DatasecVar]) -> TypeId {
        let id = self.push_type(name, BtfKind::Datasec, vars.len() as u32, false, size);
        for var in vars {
            self.push_word(var.var.get());
            self.push_word(var.offset);
            self.push_word(var.size);
        }
        id
    }

    /// `FLOAT` of `size` bytes.
    pub fn add_float(&mut self, name: &str, size: u32) -> TypeId {
        self.push_type(name, BtfKind::Float, 0, false, size)
    }

    /// `DECL_TAG` on `target`, or on its member/parameter `component` (`-1` for the whole).
    pub fn add_decl_tag(&mut self, value: &str, target: TypeId, component: i32) -> TypeId {
        let id = self.push_type(value, BtfKind::DeclTag, 0, false, target.get());
        self.push_word(component as u32);
        id
    }

    /// `TYPE_TAG` on `target`.
    pub fn add_type_tag(&mut self, value: &str, target: TypeId) -> TypeId {
        self.push_type(value, BtfKind::TypeTag, 0, false, target.get())
    }

    /// Appends a record of `kind` whose kind-specific words `extra` writes (it may add
    /// strings). For rewriting types; the caller keeps the record consistent with `vlen`.
    pub(crate) fn push_record(
        &mut self,
        name: &str,
        kind: BtfKind,
        vlen: u32,
        kind_flag: bool,
        size_or_type: u32,
        extra: impl FnOnce(&mut ExtraWriter),
    ) -> TypeId {
        let id = self.push_type(name, kind, vlen, kind_flag, size_or_type);
        let mut writer = ExtraWriter { words: Vec::new(), strings: std::mem::take(self) };
        extra(&mut writer);
        *self = writer.strings;
        for word in writer.words {
            self.push_word(word);
        }
        id
    }

    /// A builder holding every type of `btf` (not its base), ready to encode again or to
    /// extend. Strings are re-interned, so the output drops unused and duplicate strings.
    pub fn from_btf(btf: &Btf) -> BtfBuilder {
        let mut builder = BtfBuilder::new();
        for ty in btf.types() {
            builder.push_raw(&ty);
        }
        builder
    }

    /// Appends a copy of `ty` as it is encoded, re-interning its strings.
    pub fn push_raw(&mut self, ty: &Type<'_>) -> TypeId {
        self.push_mapped(ty, &mut |id| id)
    }

    /// Appends a copy of `ty` with every type id it refers to passed through `map` (to move
    /// types of one blob into another), re-interning its strings.
    pub fn push_mapped(&mut self, ty: &Type<'_>, map: &mut dyn FnMut(u32) -> u32) -> TypeId {
        let kind = ty.kind().expect("parsed types have a kind");
        let size_or_type = if kind.refers_by_type_word() { map(ty.size_or_type()) } else { ty.size_or_type() };
        let id = self.push_type(ty.name(), kind, ty.vlen() as u32, ty.kind_flag(), size_or_type);
        match kind {
            BtfKind::Int => {
                let info = ty.int().expect("int");
                let encoding = u32::from(info.signed) | (u32::from(info.char) << 1) | (u32::from(info.bool) << 2);
                self.push_word((encoding << 24) | (u32::from(info.offset) << 16) | u32::from(info.bits));
            }
            BtfKind::Array => {
                let a = ty.array().expect("array");
                self.push_word(map(a.elem));
                self.push_word(map(a.index));
                self.push_word(a.nelems);
            }
            BtfKind::Struct | BtfKind::Union => {
                let bitfields = ty.kind_flag();
                for m in ty.members() {
                    let name = self.add_string(m.name);
                    self.push_word(name);
                    self.push_word(map(m.ty));
                    self.push_word(if bitfields {
                        (u32::from(m.bitfield_size) << 24) | m.bit_offset
                    } else {
                        m.bit_offset
                    });
                }
            }
            BtfKind::Enum => {
                for e in ty.enumerators() {
                    let name = self.add_string(e.name);
                    self.push_word(name);
                    self.push_word(e.value as u32);
                }
            }
            BtfKind::Enum64 => {
                for e in ty.enumerators() {
                    let name = self.add_string(e.name);
                    self.push_word(name);
                    self.push_word(e.value as u64 as u32);
                    self.push_word((e.value as u64 >> 32) as u32);
                }
            }
            BtfKind::FuncProto => {
                for p in ty.params() {
                    let name = self.add_string(p.name);
                    self.push_word(name);
                    self.push_word(map(p.ty));
                }
            }
            BtfKind::Var => {
                let raw = match ty.linkage() {
                    Some(crate::types::TypeLinkage::Static) => 0,
                    Some(crate::types::TypeLinkage::Global) => 1,
                    Some(crate::types::TypeLinkage::Extern) => 2,
                    Some(crate::types::TypeLinkage::Other(raw)) => raw,
                    None => 0,
                };
                self.push_word(raw);
            }
            BtfKind::Datasec => {
                for v in ty.datasec_vars() {
                    self.push_word(map(v.ty));
                    self.push_word(v.offset);
                    self.push_word(v.size);
                }
            }
            BtfKind::DeclTag => self.push_word(ty.decl_tag_component().expect("decl tag") as u32),
            _ => {}
        }
        id
    }

    /// The blob: header, type section, string section.
    pub fn encode(&self) -> Vec<u8> {
        let mut blob = Vec::with_capacity(BtfHeader::SIZE + self.types.len() + self.strings.len());
        blob.extend_from_slice(&BTF_MAGIC.to_ne_bytes());
        blob.extend_from_slice(&[1, 0]);
        for word in
            [BtfHeader::SIZE as u32, 0, self.types.len() as u32, self.types.len() as u32, self.strings.len() as u32]
        {
            blob.extend_from_slice(&word.to_ne_bytes());
        }
        blob.extend_from_slice(&self.types);
        blob.extend_from_slice(&self.strings);
        blob
    }
}

/// Collects the kind-specific words of a record being rewritten, interning strings as it goes.
pub(crate) struct ExtraWriter {
    words: Vec<u32>,
    strings: BtfBuilder,
}

impl ExtraWriter {
    /// Interns `name` and returns its offset.
    pub(crate) fn add_string(&mut self, name: &str) -> u32 {
        self.strings.add_string(name)
    }

    /// Appends words to the record.
    pub(crate) fn push_words(&mut self, words: &[u32]) {
        self.words.extend_from_slice(words);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_shared_and_the_empty_name_is_offset_zero() {
        let mut btf = BtfBuilder::new();
        assert_eq!(btf.add_string(""), 0);
        let a = btf.add_string("counter");
        assert_eq!(btf.add_string("counter"), a);
        assert_ne!(btf.add_string("count"), a);
    }

    #[test]
    fn encoded_sections_match_the_header() {
        let mut btf = BtfBuilder::new();
        let int = btf.add_int("int", 4, IntEncoding::Signed);
        let proto = btf.add_func_proto(Some(int), &[Param { name: "ctx", ty: Some(int) }]);
        btf.add_func("prog", proto, Linkage::Global);
        let blob = btf.encode();
        let header = BtfHeader::parse(&blob).unwrap();
        // int: 12 + 4, proto: 12 + 8, func: 12
        assert_eq!(header.type_len, 16 + 20 + 12);
        assert_eq!(header.str_len as usize, 1 + "int\0ctx\0prog\0".len());
        assert_eq!(btf.type_count(), 3);
        let info = u32::from_ne_bytes(blob[24 + 36 + 4..24 + 36 + 8].try_into().unwrap());
        assert_eq!(info >> 24, BtfKind::Func as u32);
        assert_eq!(info & 0xffff, 1, "global linkage sits in vlen");
    }

    #[test]
    fn bitfield_members_set_the_kind_flag() {
        let mut btf = BtfBuilder::new();
        let int = btf.add_int("unsigned int", 4, IntEncoding::Unsigned);
        btf.add_struct(
            "flags",
            4,
            &[
                Member { name: "a", ty: int, bit_offset: 0, bitfield_size: 3 },
                Member { name: "b", ty: int, bit_offset: 3, bitfield_size: 5 },
            ],
        );
        let blob = btf.encode();
        let word = |at: usize| u32::from_ne_bytes(blob[24 + at..24 + at + 4].try_into().unwrap());
        let info = word(16 + 4);
        assert_eq!(info >> 31, 1);
        assert_eq!(info & 0xffff, 2);
        assert_eq!(word(16 + 12 + 12 + 8), (5 << 24) | 3, "second member: width 5 at bit 3");
    }
}
