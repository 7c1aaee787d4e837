use std::fmt;
use std::num::NonZeroU32;

/// A BTF type id. Id 0 is `void` and is represented by `Option<TypeId>::None` where it may occur.
pub type TypeId = NonZeroU32;

/// The kind of a BTF type, as encoded in bits 24..29 of `btf_type.info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum BtfKind {
    /// `BTF_KIND_INT`: an integer with size, bit offset and encoding.
    Int = 1,
    /// `BTF_KIND_PTR`.
    Ptr = 2,
    /// `BTF_KIND_ARRAY`.
    Array = 3,
    /// `BTF_KIND_STRUCT`.
    Struct = 4,
    /// `BTF_KIND_UNION`.
    Union = 5,
    /// `BTF_KIND_ENUM`: 32-bit enumerators.
    Enum = 6,
    /// `BTF_KIND_FWD`: a forward declaration of a struct or union.
    Fwd = 7,
    /// `BTF_KIND_TYPEDEF`.
    Typedef = 8,
    /// `BTF_KIND_VOLATILE`.
    Volatile = 9,
    /// `BTF_KIND_CONST`.
    Const = 10,
    /// `BTF_KIND_RESTRICT`.
    Restrict = 11,
    /// `BTF_KIND_FUNC`: a function; its linkage sits in `vlen`.
    Func = 12,
    /// `BTF_KIND_FUNC_PROTO`: a function signature.
    FuncProto = 13,
    /// `BTF_KIND_VAR`: a global variable.
    Var = 14,
    /// `BTF_KIND_DATASEC`: a data section listing its variables.
    Datasec = 15,
    /// `BTF_KIND_FLOAT`.
    Float = 16,
    /// `BTF_KIND_DECL_TAG`: `__attribute__((btf_decl_tag(...)))`.
    DeclTag = 17,
    /// `BTF_KIND_TYPE_TAG`: `__attribute__((btf_type_tag(...)))`.
    TypeTag = 18,
    /// `BTF_KIND_ENUM64`: 64-bit enumerators.
    Enum64 = 19,
}

impl BtfKind {
    /// Every kind, in kernel numbering order.
    pub const ALL: [BtfKind; 19] = [
        BtfKind::Int,
        BtfKind::Ptr,
        BtfKind::Array,
        BtfKind::Struct,
        BtfKind::Union,
        BtfKind::Enum,
        BtfKind::Fwd,
        BtfKind::Typedef,
        BtfKind::Volatile,
        BtfKind::Const,
        BtfKind::Restrict,
        BtfKind::Func,
        BtfKind::FuncProto,
        BtfKind::Var,
        BtfKind::Datasec,
        BtfKind::Float,
        BtfKind::DeclTag,
        BtfKind::TypeTag,
        BtfKind::Enum64,
    ];

    /// The kind for a raw kind number, if the number names one.
    pub fn from_raw(raw: u8) -> Option<BtfKind> {
        BtfKind::ALL.get(usize::from(raw).checked_sub(1)?).copied()
    }

    /// True for kinds whose `size`/`type` word is a type id (pointers, typedefs, qualifiers,
    /// functions, prototypes' return types, variables and tags), not a size.
    pub fn refers_by_type_word(self) -> bool {
        matches!(
            self,
            BtfKind::Ptr
                | BtfKind::Typedef
                | BtfKind::Volatile
                | BtfKind::Const
                | BtfKind::Restrict
                | BtfKind::Func
                | BtfKind::FuncProto
                | BtfKind::Var
                | BtfKind::DeclTag
                | BtfKind::TypeTag
        )
    }

    /// The kernel's name without the `BTF_KIND_` prefix, as `bpftool btf dump` prints it.
    pub fn name(self) -> &'static str {
        match self {
            BtfKind::Int => "INT",
            BtfKind::Ptr => "PTR",
            BtfKind::Array => "ARRAY",
            BtfKind::Struct => "STRUCT",
            BtfKind::Union => "UNION",
            BtfKind::Enum => "ENUM",
            BtfKind::Fwd => "FWD",
            BtfKind::Typedef => "TYPEDEF",
            BtfKind::Volatile => "VOLATILE",
            BtfKind::Const => "CONST",
            BtfKind::Restrict => "RESTRICT",
            BtfKind::Func => "FUNC",
            BtfKind::FuncProto => "FUNC_PROTO",
            BtfKind::Var => "VAR",
            BtfKind::Datasec => "DATASEC",
            BtfKind::Float => "FLOAT",
            BtfKind::DeclTag => "DECL_TAG",
            BtfKind::TypeTag => "TYPE_TAG",
            BtfKind::Enum64 => "ENUM64",
        }
    }
}

impl fmt::Display for BtfKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_numbers_round_trip_and_unknown_numbers_are_none() {
        for kind in BtfKind::ALL {
            assert_eq!(BtfKind::from_raw(kind as u8), Some(kind));
        }
        assert_eq!(BtfKind::from_raw(0), None);
        assert_eq!(BtfKind::from_raw(20), None);
    }
}
