//! Global data: the BTF data sections filled in from the ELF (clang leaves their sizes and
//! some offsets to the loader), one array map per data section, one variable per global,
//! and the `.kconfig` externs laid out in a map of their own.

use bytes::Bytes;
use ebpf_btf::{Btf, BtfKind, BtfPatch, Linkage, TypeLinkage};
use object::SymbolKind;

use super::elf::{Elf, Role};
use super::error::ObjectError;
use super::variable::{VariableSpec, VariableType};
use crate::map::{MapBtfTypes, MapContents, MapFlags, MapSpec};
use crate::types::MapType;

/// The map that holds `.kconfig` extern values.
pub const KCONFIG_MAP: &str = ".kconfig";

/// The BTF data section clang puts `__ksym` externs in.
const KSYMS_SECTION: &str = ".ksyms";

/// An `extern ... __kconfig` variable: the loader writes its value from the kernel's
/// configuration into the `.kconfig` map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KconfigExtern {
    /// `LINUX_KERNEL_VERSION` or a `CONFIG_*` name.
    pub name: String,
    /// Offset in the `.kconfig` map's value.
    pub offset: u32,
    /// Its type.
    pub ty: VariableType,
    /// Declared `__weak`: a missing option reads as zero instead of failing the load.
    pub weak: bool,
}

/// The object's BTF with data sections completed, and the externs found on the way.
pub(super) struct FixedBtf {
    pub bytes: Bytes,
    pub btf: Btf,
    pub kconfig: Vec<KconfigExtern>,
    /// Ids of the data sections: found in the one pass over the types, so nothing needs the
    /// name index (whose construction costs more than the rest of a small object's read).
    pub datasecs: Vec<u32>,
}

impl FixedBtf {
    /// The data section type called `name`.
    pub fn datasec(&self, name: &str) -> Option<ebpf_btf::Type<'_>> {
        self.datasecs.iter().filter_map(|&id| self.btf.type_by_id(id)).find(|t| t.name() == name)
    }
}

fn btf_error(section: &'static str) -> impl Fn(ebpf_btf::BtfError) -> ObjectError {
    move |error| ObjectError::Btf { section, error }
}

fn patch_error(e: ebpf_btf::PatchError) -> ObjectError {
    ObjectError::Btf { section: ".BTF", error: ebpf_btf::BtfError::BadExt(e.to_string()) }
}

fn align_up(value: u32, align: u32) -> Option<u32> {
    value.div_ceil(align.max(1)).checked_mul(align.max(1))
}

pub(super) fn fix_btf(elf: &Elf<'_>, raw: &[u8]) -> Result<FixedBtf, ObjectError> {
    let btf = Btf::parse(raw.to_vec()).map_err(btf_error(".BTF"))?;
    let mut patch = BtfPatch::new(&btf);
    // The kernel takes no extern functions in BTF — kfunc declarations in .ksyms, or calls into
    // another object of an object meant for linking — nor functions with unnamed parameters
    // (what clang emits for declarations): each becomes a static declaration whose unnamed
    // parameters take the function's own name, as libbpf sanitises them.
    for func in btf.types().filter(|t| t.is(BtfKind::Func) && t.linkage() == Some(TypeLinkage::Extern)) {
        patch.set_func_linkage(func.id(), Linkage::Static).map_err(patch_error)?;
        let proto = func.size_or_type();
        if btf.type_by_id(proto).is_some_and(|p| p.is(BtfKind::FuncProto)) {
            patch.name_unnamed_params(proto, func.name_offset()).map_err(patch_error)?;
        }
    }
    let mut kconfig = Vec::new();
    let mut datasecs = Vec::new();
    for ty in btf.types().filter(|t| t.is(BtfKind::Datasec)) {
        let name = ty.name();
        datasecs.push(ty.id());
        let vars: Vec<_> = ty.datasec_vars().collect();
        if let Some(index) = elf.sections.iter().position(|s| s.name == name) {
            let section = &elf.sections[index];
            // A linker's output (bpftool gen object) has its sections laid out already, and may
            // hold two statics of one name: its offsets stand, as libbpf leaves them.
            if ty.size().unwrap_or(0) != 0 {
                if let Some(var) = vars.iter().find(|v| u64::from(v.offset) + u64::from(v.size) > section.size) {
                    let var_name = btf.type_by_id(var.ty).map_or("", |t| t.name());
                    return Err(ObjectError::Symbol {
                        symbol: var_name.to_owned(),
                        reason: format!(
                            "BTF places it at {}+{}, past {name} ({} bytes)",
                            var.offset, var.size, section.size
                        ),
                    });
                }
                continue;
            }
            patch.set_datasec_size(ty.id(), section.size as u32).map_err(patch_error)?;
            for (i, var) in vars.iter().enumerate() {
                let var_name = btf.type_by_id(var.ty).map_or("", |t| t.name());
                let symbol = elf
                    .symbols
                    .iter()
                    .find(|s| s.section == Some(index) && s.name == var_name && s.kind != SymbolKind::Section)
                    .ok_or_else(|| ObjectError::Symbol {
                        symbol: var_name.to_owned(),
                        reason: format!("BTF places it in {name}, but the ELF symbol table has no such symbol there"),
                    })?;
                let size = if var.size != 0 { var.size } else { btf.resolve_size(var.ty).unwrap_or(0) };
                if symbol.value.saturating_add(u64::from(size)) > section.size {
                    return Err(ObjectError::Symbol {
                        symbol: var_name.to_owned(),
                        reason: format!("{size} bytes at {} run past {name} ({} bytes)", symbol.value, section.size),
                    });
                }
                patch.set_datasec_var(ty.id(), i, symbol.value as u32, size).map_err(patch_error)?;
            }
        } else if name == KSYMS_SECTION {
            // The kernel accepts no extern variables: the section becomes an anonymous struct
            // of ints and the variables plain globals, as libbpf does (functions: see above).
            let int = btf
                .types()
                .find(|t| t.is(BtfKind::Int) && t.size() == Some(4))
                .ok_or_else(|| ObjectError::Extern {
                    name: KSYMS_SECTION.to_owned(),
                    reason: "the object's BTF has no 4-byte integer to stand in for kernel symbols".to_owned(),
                })?
                .id();
            for var in &vars {
                if btf.type_by_id(var.ty).is_some_and(|t| t.is(BtfKind::Var)) {
                    patch.set_var_type(var.ty, int).map_err(patch_error)?;
                    patch.set_var_linkage(var.ty, Linkage::Global).map_err(patch_error)?;
                }
            }
            patch.datasec_to_struct(ty.id(), int, 4).map_err(patch_error)?;
        } else if name == KCONFIG_MAP {
            // libbpf's layout, so maps match theirs: by alignment (largest first), then size,
            // then name; no padding after the last.
            let mut laid: Vec<(u32, u32, u32, &str, u32)> = Vec::new(); // (align, size, var, name, inner type)
            for var in &vars {
                let Some(var_type) = btf.type_by_id(var.ty) else { continue };
                let inner = var_type.size_or_type();
                let size = btf.resolve_size(inner).map_err(btf_error(".BTF"))?;
                laid.push((btf.alignment(inner).clamp(1, 8), size, var.ty, var_type.name(), inner));
            }
            laid.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.3.cmp(b.3)));
            let mut offset = 0u32;
            for (i, &(align, size, var, name, inner)) in laid.iter().enumerate() {
                let too_big = || ObjectError::Extern {
                    name: name.to_owned(),
                    reason: format!("{size} bytes do not fit a .kconfig map"),
                };
                offset = align_up(offset, align).ok_or_else(too_big)?;
                let end = offset.checked_add(size).ok_or_else(too_big)?;
                patch.set_datasec_entry(ty.id(), i, var, offset, size).map_err(patch_error)?;
                patch.set_var_linkage(var, Linkage::Global).map_err(patch_error)?;
                let weak = elf.symbols.iter().any(|s| s.name == name && s.undefined && s.weak);
                kconfig.push(KconfigExtern {
                    name: name.to_owned(),
                    offset,
                    ty: VariableType::from_btf(&btf, inner),
                    weak,
                });
                offset = end;
            }
            patch.set_datasec_size(ty.id(), offset.max(1)).map_err(patch_error)?;
        }
    }
    let btf = patch.finish_parsed();
    let bytes = btf.shared_bytes();
    Ok(FixedBtf { bytes, btf, kconfig, datasecs })
}

/// One array map per non-empty data section, and the variables in them.
pub(super) fn data_maps(elf: &Elf<'_>, fixed: Option<&FixedBtf>) -> (Vec<(usize, MapSpec)>, Vec<VariableSpec>) {
    let btf = fixed.map(|f| &f.btf);
    let mut maps = Vec::new();
    let mut variables = Vec::new();
    for (index, section) in elf.sections.iter().enumerate() {
        let Role::Data { read_only, zeroed } = section.role else { continue };
        if section.size == 0 || section.size > u64::from(u32::MAX) {
            continue;
        }
        let size = section.size as u32;
        let mut flags = MapFlags::MMAPABLE;
        if read_only {
            flags |= MapFlags::RDONLY_PROG;
        }
        let mut spec = MapSpec::new(section.name, MapType::Array, 4, size, 1).with_flags(flags);
        if !zeroed {
            spec.contents = MapContents::Data(section.data.to_vec());
        }
        let image = |offset: u32, len: u32| -> Vec<u8> {
            let (start, end) = (offset as usize, offset as usize + len as usize);
            if zeroed {
                vec![0; len as usize]
            } else {
                section.data.get(start..end).map_or_else(|| vec![0; len as usize], <[u8]>::to_vec)
            }
        };
        let datasec = fixed.and_then(|f| f.datasec(section.name));
        match (btf, datasec) {
            (Some(btf), Some(datasec)) => {
                spec.btf_types = Some(MapBtfTypes { key: 0, value: datasec.id() });
                for var in datasec.datasec_vars() {
                    let Some(var_type) = btf.type_by_id(var.ty) else { continue };
                    variables.push(VariableSpec {
                        name: var_type.name().to_owned(),
                        section: section.name.to_owned(),
                        offset: var.offset,
                        ty: VariableType::from_btf(btf, var_type.size_or_type()),
                        constant: read_only,
                        value: image(var.offset, var.size),
                    });
                }
            }
            _ => {
                for symbol in elf.symbols_in(index, SymbolKind::Data) {
                    if symbol.size == 0 || symbol.value.saturating_add(symbol.size) > section.size {
                        continue;
                    }
                    let (offset, len) = (symbol.value as u32, symbol.size as u32);
                    variables.push(VariableSpec {
                        name: symbol.name.to_owned(),
                        section: section.name.to_owned(),
                        offset,
                        ty: VariableType::Unknown { size: len },
                        constant: read_only,
                        value: image(offset, len),
                    });
                }
            }
        }
        maps.push((index, spec));
    }
    (maps, variables)
}

/// The `.kconfig` map for the externs (its value is written at load).
pub(super) fn kconfig_map(fixed: &FixedBtf) -> Option<MapSpec> {
    if fixed.kconfig.is_empty() {
        return None;
    }
    let datasec = fixed.datasec(KCONFIG_MAP)?;
    let size = datasec.size().unwrap_or(8);
    let mut spec =
        MapSpec::new(KCONFIG_MAP, MapType::Array, 4, size, 1).with_flags(MapFlags::MMAPABLE | MapFlags::RDONLY_PROG);
    spec.btf_types = Some(MapBtfTypes { key: 0, value: datasec.id() });
    Some(spec)
}
