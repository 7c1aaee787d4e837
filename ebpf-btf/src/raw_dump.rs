//! The raw listing `bpftool btf dump file … format raw` prints, line for line.

use std::fmt::Write;

use crate::btf::Btf;
use crate::kind::BtfKind;
use crate::types::Type;

fn quoted(name: &str) -> &str {
    if name.is_empty() {
        "(anon)"
    } else {
        name
    }
}

/// One type in bpftool's raw format (several lines for types with members).
pub fn raw_type(ty: &Type<'_>) -> String {
    let mut out = String::new();
    let Some(kind) = ty.kind() else { return "[0] VOID".to_owned() };
    let _ = write!(out, "[{}] {} '{}'", ty.id(), kind.name(), quoted(ty.name()));
    let target = ty.size_or_type();
    match kind {
        BtfKind::Int => {
            let info = ty.int().expect("int");
            let encoding = match (info.signed, info.char, info.bool) {
                (false, false, false) => "(none)",
                (true, false, false) => "SIGNED",
                (false, true, false) => "CHAR",
                (false, false, true) => "BOOL",
                _ => "UNKN",
            };
            let _ =
                write!(out, " size={} bits_offset={} nr_bits={} encoding={encoding}", target, info.offset, info.bits);
        }
        BtfKind::Ptr | BtfKind::Const | BtfKind::Volatile | BtfKind::Restrict | BtfKind::Typedef | BtfKind::TypeTag => {
            let _ = write!(out, " type_id={target}");
        }
        BtfKind::Array => {
            let a = ty.array().expect("array");
            let _ = write!(out, " type_id={} index_type_id={} nr_elems={}", a.elem, a.index, a.nelems);
        }
        BtfKind::Struct | BtfKind::Union => {
            let _ = write!(out, " size={} vlen={}", target, ty.vlen());
            for m in ty.members() {
                let _ = write!(out, "\n\t'{}' type_id={} bits_offset={}", quoted(m.name), m.ty, m.bit_offset);
                if m.bitfield_size != 0 {
                    let _ = write!(out, " bitfield_size={}", m.bitfield_size);
                }
            }
        }
        BtfKind::Enum | BtfKind::Enum64 => {
            let signed = ty.is_signed_enum();
            let encoding = if signed { "SIGNED" } else { "UNSIGNED" };
            let _ = write!(out, " encoding={encoding} size={} vlen={}", target, ty.vlen());
            for e in ty.enumerators() {
                let _ = match (kind, signed) {
                    (BtfKind::Enum, true) => write!(out, "\n\t'{}' val={}", quoted(e.name), e.value as i32),
                    (BtfKind::Enum, false) => write!(out, "\n\t'{}' val={}", quoted(e.name), e.value as u32),
                    (_, true) => write!(out, "\n\t'{}' val={}LL", quoted(e.name), e.value),
                    (_, false) => write!(out, "\n\t'{}' val={}ULL", quoted(e.name), e.value as u64),
                };
            }
        }
        BtfKind::Fwd => {
            let _ = write!(out, " fwd_kind={}", if ty.is_union_fwd() { "union" } else { "struct" });
        }
        BtfKind::Func => {
            let linkage = ty.linkage().expect("func linkage");
            let _ = write!(out, " type_id={target} linkage={}", linkage.name());
        }
        BtfKind::FuncProto => {
            let _ = write!(out, " ret_type_id={target} vlen={}", ty.vlen());
            for p in ty.params() {
                let _ = write!(out, "\n\t'{}' type_id={}", quoted(p.name), p.ty);
            }
        }
        BtfKind::Var => {
            let linkage = ty.linkage().expect("var linkage");
            let _ = write!(out, " type_id={target}, linkage={}", linkage.name());
        }
        BtfKind::Datasec => {
            let _ = write!(out, " size={target} vlen={}", ty.vlen());
            for v in ty.datasec_vars() {
                let var = ty.btf().type_by_id(v.ty);
                let (var_kind, var_name) =
                    var.map_or(("VOID", ""), |t| (t.kind().map_or("VOID", BtfKind::name), t.name()));
                let _ = write!(
                    out,
                    "\n\ttype_id={} offset={} size={} ({var_kind} '{}')",
                    v.ty,
                    v.offset,
                    v.size,
                    quoted(var_name)
                );
            }
        }
        BtfKind::Float => {
            let _ = write!(out, " size={target}");
        }
        BtfKind::DeclTag => {
            let component = ty.decl_tag_component().expect("decl tag");
            let _ = write!(out, " type_id={target} component_idx={component}");
        }
    }
    out
}

/// Every type of `btf` (not its base) in bpftool's raw format, one type per line group.
pub fn raw_dump(btf: &Btf, out: &mut impl std::io::Write) -> std::io::Result<()> {
    for ty in btf.types() {
        writeln!(out, "{}", raw_type(&ty))?;
    }
    Ok(())
}
