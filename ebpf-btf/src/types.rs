use crate::btf::Btf;
use crate::header::BtfError;
use crate::kind::BtfKind;

/// A view of one type: decoded from the raw bytes on demand, names borrowed from the blob.
#[derive(Clone, Copy)]
pub struct Type<'a> {
    btf: &'a Btf,
    id: u32,
    /// `None` for `void` (id 0).
    kind: Option<BtfKind>,
    name_off: u32,
    info: u32,
    size_or_type: u32,
    /// Byte offset of the kind-specific data in the blob.
    extra: usize,
}

impl std::fmt::Debug for Type<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {} '{}'", self.id, self.kind.map_or("VOID", BtfKind::name), self.name())
    }
}

/// Integer encoding and layout (`BTF_KIND_INT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntInfo {
    /// `BTF_INT_SIGNED`.
    pub signed: bool,
    /// `BTF_INT_CHAR`.
    pub char: bool,
    /// `BTF_INT_BOOL`.
    pub bool: bool,
    /// Bit offset of the value within the storage.
    pub offset: u8,
    /// Width in bits.
    pub bits: u8,
}

/// Array element type, index type and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrayInfo {
    /// Element type id.
    pub elem: u32,
    /// Index type id.
    pub index: u32,
    /// Number of elements.
    pub nelems: u32,
}

/// A struct or union member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StructMember<'a> {
    /// Name; empty for an anonymous member.
    pub name: &'a str,
    /// Type id.
    pub ty: u32,
    /// Offset from the aggregate's start, in bits.
    pub bit_offset: u32,
    /// Bitfield width, 0 for a plain member.
    pub bitfield_size: u8,
}

/// A function-prototype parameter (`ty` 0 with an empty name is a trailing `...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtoParam<'a> {
    /// Name; may be empty.
    pub name: &'a str,
    /// Type id.
    pub ty: u32,
}

/// An enumerator of an enum or enum64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enumerator<'a> {
    /// Name.
    pub name: &'a str,
    /// Value, sign-extended for signed enums.
    pub value: i64,
}

/// A variable in a data section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecVar {
    /// The `VAR` (or `FUNC`, for ksym sections) type id.
    pub ty: u32,
    /// Byte offset in the section.
    pub offset: u32,
    /// Byte size.
    pub size: u32,
}

/// Linkage of a function or variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeLinkage {
    /// `static`.
    Static,
    /// Global.
    Global,
    /// `extern`.
    Extern,
    /// A value the kernel does not define.
    Other(u32),
}

impl TypeLinkage {
    fn from_raw(raw: u32) -> TypeLinkage {
        match raw {
            0 => TypeLinkage::Static,
            1 => TypeLinkage::Global,
            2 => TypeLinkage::Extern,
            other => TypeLinkage::Other(other),
        }
    }

    /// As `bpftool btf dump` prints it.
    pub fn name(self) -> &'static str {
        match self {
            TypeLinkage::Static => "static",
            TypeLinkage::Global => "global",
            TypeLinkage::Extern => "extern",
            TypeLinkage::Other(_) => "(unknown)",
        }
    }
}

impl<'a> Type<'a> {
    pub(crate) fn void(btf: &'a Btf) -> Type<'a> {
        Type { btf, id: 0, kind: None, name_off: 0, info: 0, size_or_type: 0, extra: 0 }
    }

    pub(crate) fn decode(btf: &'a Btf, id: u32, at: usize) -> Type<'a> {
        let info = btf.word(at + 4);
        Type {
            btf,
            id,
            kind: BtfKind::from_raw(((info >> 24) & 0x1f) as u8),
            name_off: btf.word(at),
            info,
            size_or_type: btf.word(at + 8),
            extra: at + 12,
        }
    }

    /// The BTF this type belongs to.
    pub fn btf(&self) -> &'a Btf {
        self.btf
    }

    /// Type id (0 for `void`).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Kind; `None` for `void`.
    pub fn kind(&self) -> Option<BtfKind> {
        self.kind
    }

    /// True for `void` (id 0).
    pub fn is_void(&self) -> bool {
        self.kind.is_none()
    }

    /// True when `kind()` is `kind`.
    pub fn is(&self, kind: BtfKind) -> bool {
        self.kind == Some(kind)
    }

    /// Name, borrowed from the string section; empty for anonymous types.
    pub fn name(&self) -> &'a str {
        self.btf.string(self.name_off)
    }

    /// Offset of the name in the string section.
    pub fn name_offset(&self) -> u32 {
        self.name_off
    }

    /// Number of members, parameters, enumerators or variables (the `vlen` field).
    pub fn vlen(&self) -> usize {
        (self.info & 0xffff) as usize
    }

    /// The kind flag (bitfield encoding, signed enum, union forward, …).
    pub fn kind_flag(&self) -> bool {
        self.info >> 31 == 1
    }

    /// Size in bytes, for kinds that carry one (int, struct, union, enum, enum64, datasec, float).
    pub fn size(&self) -> Option<u32> {
        match self.kind? {
            BtfKind::Int
            | BtfKind::Struct
            | BtfKind::Union
            | BtfKind::Enum
            | BtfKind::Enum64
            | BtfKind::Datasec
            | BtfKind::Float => Some(self.size_or_type),
            _ => None,
        }
    }

    /// The referred type, for kinds that refer to one (ptr, typedef, qualifiers, func, var,
    /// decl_tag, type_tag, func_proto's return type).
    pub fn target(&self) -> Option<u32> {
        self.kind?.refers_by_type_word().then_some(self.size_or_type)
    }

    /// The raw `size`/`type` word of the record.
    pub fn size_or_type(&self) -> u32 {
        self.size_or_type
    }

    fn extra_word(&self, index: usize) -> u32 {
        self.btf.word(self.extra + 4 * index)
    }

    /// Encoding, offset and width of an int.
    pub fn int(&self) -> Option<IntInfo> {
        self.is(BtfKind::Int).then(|| {
            let raw = self.extra_word(0);
            let encoding = (raw >> 24) & 0xf;
            IntInfo {
                signed: encoding & 1 != 0,
                char: encoding & 2 != 0,
                bool: encoding & 4 != 0,
                offset: ((raw >> 16) & 0xff) as u8,
                bits: (raw & 0xff) as u8,
            }
        })
    }

    /// Element, index and length of an array.
    pub fn array(&self) -> Option<ArrayInfo> {
        self.is(BtfKind::Array).then(|| ArrayInfo {
            elem: self.extra_word(0),
            index: self.extra_word(1),
            nelems: self.extra_word(2),
        })
    }

    /// Members of a struct or union (empty for other kinds).
    pub fn members(&self) -> impl ExactSizeIterator<Item = StructMember<'a>> + 'a {
        let this = *self;
        let n = if matches!(self.kind, Some(BtfKind::Struct | BtfKind::Union)) { self.vlen() } else { 0 };
        let bitfields = self.kind_flag();
        (0..n).map(move |i| {
            let raw_offset = this.extra_word(3 * i + 2);
            let (bit_offset, bitfield_size) =
                if bitfields { (raw_offset & 0x00ff_ffff, (raw_offset >> 24) as u8) } else { (raw_offset, 0) };
            StructMember {
                name: this.btf.string(this.extra_word(3 * i)),
                ty: this.extra_word(3 * i + 1),
                bit_offset,
                bitfield_size,
            }
        })
    }

    /// Parameters of a function prototype (empty for other kinds).
    pub fn params(&self) -> impl ExactSizeIterator<Item = ProtoParam<'a>> + 'a {
        let this = *self;
        let n = if self.is(BtfKind::FuncProto) { self.vlen() } else { 0 };
        (0..n)
            .map(move |i| ProtoParam { name: this.btf.string(this.extra_word(2 * i)), ty: this.extra_word(2 * i + 1) })
    }

    /// True for an enum or enum64 whose values are signed.
    pub fn is_signed_enum(&self) -> bool {
        matches!(self.kind, Some(BtfKind::Enum | BtfKind::Enum64)) && self.kind_flag()
    }

    /// Enumerators of an enum or enum64 (empty for other kinds).
    pub fn enumerators(&self) -> impl ExactSizeIterator<Item = Enumerator<'a>> + 'a {
        let this = *self;
        let signed = self.kind_flag();
        let (n, stride) = match self.kind {
            Some(BtfKind::Enum) => (self.vlen(), 2),
            Some(BtfKind::Enum64) => (self.vlen(), 3),
            _ => (0, 2),
        };
        (0..n).map(move |i| {
            let name = this.btf.string(this.extra_word(stride * i));
            let lo = this.extra_word(stride * i + 1);
            let value = if stride == 3 {
                let hi = this.extra_word(stride * i + 2);
                ((u64::from(hi) << 32) | u64::from(lo)) as i64
            } else if signed {
                i64::from(lo as i32)
            } else {
                i64::from(lo)
            };
            Enumerator { name, value }
        })
    }

    /// Variables of a data section (empty for other kinds).
    pub fn datasec_vars(&self) -> impl ExactSizeIterator<Item = SecVar> + 'a {
        let this = *self;
        let n = if self.is(BtfKind::Datasec) { self.vlen() } else { 0 };
        (0..n).map(move |i| SecVar {
            ty: this.extra_word(3 * i),
            offset: this.extra_word(3 * i + 1),
            size: this.extra_word(3 * i + 2),
        })
    }

    /// Linkage of a func (from `vlen`) or var.
    pub fn linkage(&self) -> Option<TypeLinkage> {
        match self.kind? {
            BtfKind::Func => Some(TypeLinkage::from_raw(self.vlen() as u32)),
            BtfKind::Var => Some(TypeLinkage::from_raw(self.extra_word(0))),
            _ => None,
        }
    }

    /// For a decl tag: the member or parameter index it applies to, or -1 for the whole type.
    pub fn decl_tag_component(&self) -> Option<i32> {
        self.is(BtfKind::DeclTag).then(|| self.extra_word(0) as i32)
    }

    /// For a forward declaration: true when it declares a union.
    pub fn is_union_fwd(&self) -> bool {
        self.is(BtfKind::Fwd) && self.kind_flag()
    }

    /// Calls `f` with every type id this type refers to.
    pub(crate) fn for_each_reference(&self, f: &mut impl FnMut(u32)) -> Result<(), BtfError> {
        if let Some(target) = self.target() {
            f(target);
        }
        if let Some(array) = self.array() {
            f(array.elem);
            f(array.index);
        }
        self.members().for_each(|m| f(m.ty));
        self.params().for_each(|p| f(p.ty));
        self.datasec_vars().for_each(|v| f(v.ty));
        Ok(())
    }
}
