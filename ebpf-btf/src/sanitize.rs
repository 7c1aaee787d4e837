//! Rewriting BTF for kernels that lack newer kinds, keeping every type id and size, so an
//! object built by a new clang still loads its BTF on an older kernel (as libbpf does).

use crate::btf::Btf;
use crate::builder::{BtfBuilder, IntEncoding};
use crate::kind::BtfKind;
use crate::types::TypeLinkage;

/// What the target kernel's BTF loader accepts (see `ebpf_core::features::MiscFeature`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BtfSupport {
    /// `FUNC` and `FUNC_PROTO` (4.20).
    pub func: bool,
    /// Global linkage on `FUNC` (5.6).
    pub func_global: bool,
    /// `VAR` and `DATASEC` (5.2).
    pub datasec: bool,
    /// `FLOAT` (5.13).
    pub float: bool,
    /// `DECL_TAG` (5.16).
    pub decl_tag: bool,
    /// `TYPE_TAG` (5.17).
    pub type_tag: bool,
    /// `ENUM64` and signed enums (6.0).
    pub enum64: bool,
}

impl BtfSupport {
    /// A kernel that accepts every kind.
    pub const ALL: BtfSupport = BtfSupport {
        func: true,
        func_global: true,
        datasec: true,
        float: true,
        decl_tag: true,
        type_tag: true,
        enum64: true,
    };

    /// A kernel that accepts none of the kinds above (BTF of Linux 4.18).
    pub const NONE: BtfSupport = BtfSupport {
        func: false,
        func_global: false,
        datasec: false,
        float: false,
        decl_tag: false,
        type_tag: false,
        enum64: false,
    };

    /// True when nothing needs rewriting.
    pub fn is_complete(&self) -> bool {
        *self == BtfSupport::ALL
    }
}

/// `btf` rewritten so a kernel with `support` accepts it. Type ids stay the same (a new
/// integer type may be appended); sizes stay the same.
///
/// - `DATASEC` → `STRUCT` of its variables, `VAR` → `INT` of the variable's size;
/// - `FUNC_PROTO` → `ENUM` with one enumerator per parameter, `FUNC` → `TYPEDEF`;
/// - global `FUNC` → static; `FLOAT` → an anonymous empty `STRUCT` of the same size;
/// - `DECL_TAG` → a one-byte `INT`; `TYPE_TAG` → `CONST`;
/// - `ENUM64` → a `UNION` of the same size whose members are named after the enumerators;
///   signed `ENUM` → unsigned.
pub fn sanitize(btf: &Btf, support: BtfSupport) -> Vec<u8> {
    let mut out = BtfBuilder::new();
    let placeholder_int = btf.last_id() + 1;
    let mut need_placeholder = false;
    for ty in btf.types() {
        let kind = ty.kind().expect("parsed types have a kind");
        let name = ty.name();
        match kind {
            BtfKind::Datasec if !support.datasec => {
                // Variables become members of their own (sanitised) type, at their offsets.
                let members: Vec<(String, u32, u32)> = ty
                    .datasec_vars()
                    .map(|v| {
                        (
                            btf.type_by_id(v.ty).map_or(String::new(), |t| t.name().to_owned()),
                            v.ty,
                            v.offset.saturating_mul(8),
                        )
                    })
                    .collect();
                out.push_record(
                    sanitized_name(name),
                    BtfKind::Struct,
                    members.len() as u32,
                    false,
                    ty.size_or_type(),
                    |b| {
                        for (member_name, member_ty, bit_offset) in &members {
                            let name_off = b.add_string(member_name);
                            b.push_words(&[name_off, *member_ty, *bit_offset]);
                        }
                    },
                );
            }
            BtfKind::Var if !support.datasec => {
                let size = btf.resolve_size(ty.size_or_type()).unwrap_or(1).max(1);
                out.push_record(name, BtfKind::Int, 0, false, size, |b| {
                    b.push_words(&[size.saturating_mul(8).min(128)])
                });
            }
            BtfKind::FuncProto if !support.func => {
                let params: Vec<String> = ty.params().map(|p| p.name.to_owned()).collect();
                out.push_record("", BtfKind::Enum, params.len() as u32, false, 4, |b| {
                    for (i, param) in params.iter().enumerate() {
                        let name_off = b.add_string(param);
                        b.push_words(&[name_off, i as u32]);
                    }
                });
            }
            BtfKind::Func if !support.func => {
                out.push_record(name, BtfKind::Typedef, 0, false, ty.size_or_type(), |_| {});
            }
            BtfKind::Func if !support.func_global && ty.linkage() == Some(TypeLinkage::Global) => {
                out.push_record(name, BtfKind::Func, 0, false, ty.size_or_type(), |_| {});
            }
            BtfKind::Float if !support.float => {
                out.push_record("", BtfKind::Struct, 0, false, ty.size_or_type(), |_| {});
            }
            BtfKind::DeclTag if !support.decl_tag => {
                out.push_record("", BtfKind::Int, 0, false, 1, |b| b.push_words(&[8]));
            }
            BtfKind::TypeTag if !support.type_tag => {
                out.push_record("", BtfKind::Const, 0, false, ty.size_or_type(), |_| {});
            }
            BtfKind::Enum64 if !support.enum64 => {
                need_placeholder = true;
                let names: Vec<String> = ty.enumerators().map(|e| e.name.to_owned()).collect();
                out.push_record(name, BtfKind::Union, names.len() as u32, false, ty.size_or_type(), |b| {
                    for enumerator in &names {
                        let name_off = b.add_string(enumerator);
                        b.push_words(&[name_off, placeholder_int, 0]);
                    }
                });
            }
            BtfKind::Enum if !support.enum64 && ty.kind_flag() => {
                let values: Vec<(String, u32)> =
                    ty.enumerators().map(|e| (e.name.to_owned(), e.value as u32)).collect();
                out.push_record(name, BtfKind::Enum, values.len() as u32, false, ty.size_or_type(), |b| {
                    for (enumerator, value) in &values {
                        let name_off = b.add_string(enumerator);
                        b.push_words(&[name_off, *value]);
                    }
                });
            }
            _ => {
                out.push_raw(&ty);
            }
        }
    }
    if need_placeholder {
        // Enum64 members: an unsigned 32-bit int (unions only need the members to fit).
        out.add_int("", 4, IntEncoding::Unsigned);
    }
    out.encode()
}

/// Section names such as `.data` are not valid struct names for an old kernel.
fn sanitized_name(name: &str) -> &str {
    if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        name
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DatasecVar, EnumValue, Linkage, Param};

    fn modern() -> Btf {
        let mut b = BtfBuilder::new();
        let int = b.add_int("int", 4, IntEncoding::Signed); // 1
        let proto = b.add_func_proto(Some(int), &[Param { name: "x", ty: Some(int) }]); // 2
        let func = b.add_func("f", proto, Linkage::Global); // 3
        let var = b.add_var("v", int, Linkage::Global); // 4
        b.add_datasec(".data", 4, &[DatasecVar { var, offset: 0, size: 4 }]); // 5
        b.add_float("double", 8); // 6
        b.add_decl_tag("tag", func, -1); // 7
        let tagged = b.add_type_tag("user", int); // 8
        b.add_ptr(tagged); // 9
        b.add_enum64("wide", 8, false, &[EnumValue { name: "BIG", value: 1 << 40 }]); // 10
        b.add_enum("neg", 4, true, &[EnumValue { name: "MINUS", value: -1 }]); // 11
        Btf::parse(b.encode()).unwrap()
    }

    #[test]
    fn an_old_kernel_gets_only_old_kinds_with_ids_and_sizes_kept() {
        let btf = modern();
        let old = Btf::parse(sanitize(&btf, BtfSupport::NONE)).unwrap();
        assert_eq!(old.len(), btf.len() + 1, "one placeholder int appended");
        for ty in old.types() {
            let kind = ty.kind().unwrap();
            assert!(
                matches!(
                    kind,
                    BtfKind::Int
                        | BtfKind::Ptr
                        | BtfKind::Struct
                        | BtfKind::Union
                        | BtfKind::Enum
                        | BtfKind::Typedef
                        | BtfKind::Const
                ),
                "{ty:?} survived"
            );
            assert!(!ty.kind_flag() || kind == BtfKind::Struct, "{ty:?} keeps a kind flag");
        }
        for id in [1, 5, 6, 10] {
            assert_eq!(old.resolve_size(id).unwrap(), btf.resolve_size(id).unwrap(), "size of [{id}]");
        }
        assert_eq!(old.type_by_id(3).unwrap().kind(), Some(BtfKind::Typedef));
        assert_eq!(old.type_by_id(10).unwrap().members().map(|m| m.name).collect::<Vec<_>>(), ["BIG"]);
    }

    #[test]
    fn a_current_kernel_gets_the_blob_unchanged_in_meaning() {
        let btf = modern();
        let same = Btf::parse(sanitize(&btf, BtfSupport::ALL)).unwrap();
        let dump = |b: &Btf| b.types().map(|t| crate::raw_type(&t)).collect::<Vec<_>>();
        assert_eq!(dump(&same), dump(&btf));
        let partial = BtfSupport { func_global: false, ..BtfSupport::ALL };
        let statics = Btf::parse(sanitize(&btf, partial)).unwrap();
        assert_eq!(statics.type_by_id(3).unwrap().linkage(), Some(TypeLinkage::Static));
    }
}
