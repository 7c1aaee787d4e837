//! CO-RE ("compile once, run everywhere") relocation resolution, as a pure function:
//! local BTF + a relocation record + target BTF(s) → the value to patch in (or a poison).
//!
//! The rules are libbpf's (`relo_core.c`): candidates share the local type's kind and its
//! essential name (the name without a `___flavor` suffix); a field access is matched member
//! by member by name, through anonymous members, with compatible field types; every matching
//! candidate must agree on the result, or the relocation is ambiguous. A relocation no
//! candidate satisfies poisons its instruction, so the verifier reports it where it is used.

use crate::btf::Btf;
use crate::ext::{CoreRelo, CoreReloKind};
use crate::kind::BtfKind;
use crate::query::{spend, WORK_BUDGET};
use crate::types::Type;

/// Deepest accessor chain and type recursion followed.
const MAX_SPEC_LEN: usize = 64;
const MAX_RECURSION: u32 = 32;

/// The helper id a poisoned instruction calls (`0xbad2310`, "bad relo"), as libbpf does, so
/// the verifier says `invalid func unknown#195896080` at the use.
pub const POISON_HELPER_ID: i32 = 195_896_080;

/// Why a relocation could not be resolved (as opposed to poisoned).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// The access string is not `N(:N)*`.
    #[error("relocation {kind} on [{type_id}]: malformed access string {access:?}")]
    BadAccessString {
        /// Kind of relocation.
        kind: &'static str,
        /// Local root type.
        type_id: u32,
        /// The access string.
        access: String,
    },
    /// The access string does not fit the local type.
    #[error("relocation {kind} on [{type_id}] {name}: access {access:?} is invalid for the local type: {reason}")]
    BadSpec {
        /// Kind of relocation.
        kind: &'static str,
        /// Local root type.
        type_id: u32,
        /// Its name.
        name: String,
        /// The access string.
        access: String,
        /// Why.
        reason: String,
    },
    /// Candidates disagree on the result.
    #[error("relocation {kind} on [{type_id}] {name} ({access}): ambiguous, candidates [{first}] and [{second}] give different results")]
    Ambiguous {
        /// Kind of relocation.
        kind: &'static str,
        /// Local root type.
        type_id: u32,
        /// Its name.
        name: String,
        /// The access string.
        access: String,
        /// One candidate.
        first: u32,
        /// Another, disagreeing.
        second: u32,
    },
}

/// The accessor chain an access string denotes in one BTF.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoreSpec {
    /// Root type id.
    pub root_type_id: u32,
    /// Accessors: `(type id, index, name)`; unnamed ones are array indices.
    pub accessors: Vec<(u32, u32, Option<String>)>,
    /// The raw access string as indices in this BTF.
    pub raw: Vec<u32>,
    /// Bit offset of the accessed field from the root.
    pub bit_offset: u32,
}

/// The resolved relocation: what the instruction holds now, what it should hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreFixup {
    /// Byte offset of the instruction in its section.
    pub insn_off: u32,
    /// What was asked.
    pub kind: CoreReloKind,
    /// The value computed against the local BTF (the instruction should hold it).
    pub local_value: u64,
    /// The value against the target.
    pub target_value: u64,
    /// The instruction must be replaced by an invalid call (no candidate satisfies it).
    pub poison: bool,
    /// Check that the instruction holds `local_value` before patching.
    pub validate: bool,
    /// Field size locally (memory accesses), 0 when not a sized field.
    pub local_size: u32,
    /// Field size in the target.
    pub target_size: u32,
    /// The field's size changed in a way a load cannot absorb (signed or non-integer).
    pub fail_size_adjust: bool,
    /// The target type the relocation resolved to (0 when none).
    pub target_type_id: u32,
}

/// `name` without its `___flavor` suffix.
pub fn essential_name(name: &str) -> &str {
    // "___" is ASCII, so the byte length is a character boundary.
    &name[..crate::btf::essential_bytes(name.as_bytes()).len()]
}

fn names_match(local: &str, target: &str) -> bool {
    if target.is_empty() {
        return local.is_empty();
    }
    essential_name(local) == essential_name(target)
}

fn is_composite(ty: &Type<'_>) -> bool {
    matches!(ty.kind(), Some(BtfKind::Struct | BtfKind::Union))
}

fn is_any_enum(ty: &Type<'_>) -> bool {
    matches!(ty.kind(), Some(BtfKind::Enum | BtfKind::Enum64))
}

/// Kinds that may stand for each other in CO-RE: the same kind, or enum and enum64.
fn kinds_compatible(a: &Type<'_>, b: &Type<'_>) -> bool {
    a.kind() == b.kind() || (is_any_enum(a) && is_any_enum(b))
}

fn skip(btf: &Btf, id: u32) -> Option<(u32, Type<'_>)> {
    btf.skip_mods_and_typedefs(id).map(|t| (t.id(), t))
}

fn parse_access(relo: &CoreRelo, local: &Btf) -> Result<Vec<u32>, CoreError> {
    let access = local.string(relo.access_str_off);
    let bad =
        || CoreError::BadAccessString { kind: relo.kind.name(), type_id: relo.type_id, access: access.to_owned() };
    if access.is_empty() {
        return Err(bad());
    }
    let raw: Vec<u32> = access.split(':').map(|p| p.parse::<u32>().map_err(|_| bad())).collect::<Result<_, _>>()?;
    if raw.len() > MAX_SPEC_LEN {
        return Err(bad());
    }
    Ok(raw)
}

/// Builds the local spec (`bpf_core_parse_spec`).
pub fn parse_spec(btf: &Btf, relo: &CoreRelo) -> Result<CoreSpec, CoreError> {
    let raw = parse_access(relo, btf)?;
    let access = btf.string(relo.access_str_off).to_owned();
    let root = btf.type_by_id(relo.type_id);
    let bad = |reason: &str| CoreError::BadSpec {
        kind: relo.kind.name(),
        type_id: relo.type_id,
        name: root.map_or(String::new(), |t| t.name().to_owned()),
        access: access.clone(),
        reason: reason.to_owned(),
    };
    let mut spec = CoreSpec { root_type_id: relo.type_id, raw: raw.clone(), ..CoreSpec::default() };
    if !relo.kind.is_field() && !relo.kind.is_enumval() {
        if raw != [0] {
            return Err(bad("type relocations take the access string \"0\""));
        }
        return Ok(spec);
    }
    let (mut id, ty) = skip(btf, relo.type_id).ok_or_else(|| bad("the root type does not exist"))?;
    let first = raw[0];
    if relo.kind.is_enumval() {
        if !is_any_enum(&ty) || raw.len() > 1 || first as usize >= ty.vlen() {
            return Err(bad("enumerator relocations need an enum and an enumerator index"));
        }
        let name = ty.enumerators().nth(first as usize).map(|e| e.name.to_owned());
        spec.accessors.push((id, first, name));
        return Ok(spec);
    }
    spec.accessors.push((id, first, None));
    let size = btf.resolve_size(id).map_err(|e| bad(&e.to_string()))?;
    spec.bit_offset = first.saturating_mul(size).saturating_mul(8);
    for &index in &raw[1..] {
        // A member's type may be a typedef (possible_net_t, atomic_t): the accessor records the
        // struct behind it, whose members the index counts.
        let (parent_id, ty) = skip(btf, id).ok_or_else(|| bad("a type on the access path does not exist"))?;
        if is_composite(&ty) {
            let member = ty.members().nth(index as usize).ok_or_else(|| bad("member index out of range"))?;
            spec.bit_offset = spec.bit_offset.saturating_add(member.bit_offset);
            if !member.name.is_empty() {
                spec.accessors.push((parent_id, index, Some(member.name.to_owned())));
            }
            id = member.ty;
        } else if let Some(array) = ty.array() {
            let (elem_id, _) = skip(btf, array.elem).ok_or_else(|| bad("array element type does not exist"))?;
            let flexible = is_flex_array(btf, spec.accessors.last(), array.nelems);
            if !flexible && index >= array.nelems {
                return Err(bad("array index out of range"));
            }
            spec.accessors.push((elem_id, index, None));
            let elem_size = btf.resolve_size(elem_id).map_err(|e| bad(&e.to_string()))?;
            spec.bit_offset = spec.bit_offset.saturating_add(index.saturating_mul(elem_size).saturating_mul(8));
            id = elem_id;
        } else {
            return Err(bad("the access path goes through a type that is neither aggregate nor array"));
        }
    }
    Ok(spec)
}

/// A zero-length array that is the last member of its struct (`int data[];`).
fn is_flex_array(btf: &Btf, parent: Option<&(u32, u32, Option<String>)>, nelems: u32) -> bool {
    if nelems != 0 {
        return false;
    }
    let Some(&(parent_id, index, Some(_))) = parent else { return false };
    btf.type_by_id(parent_id).is_some_and(|t| is_composite(&t) && index as usize + 1 == t.vlen())
}

/// Field types compatible for CO-RE (`bpf_core_fields_are_compat`).
fn fields_compatible(local: &Btf, local_id: u32, target: &Btf, target_id: u32, depth: u32) -> bool {
    if depth > MAX_RECURSION {
        return false;
    }
    let (Some((_, l)), Some((_, t))) = (skip(local, local_id), skip(target, target_id)) else { return false };
    if is_composite(&l) && is_composite(&t) {
        return true;
    }
    if !kinds_compatible(&l, &t) {
        return false;
    }
    match l.kind() {
        Some(BtfKind::Ptr | BtfKind::Float) => true,
        Some(BtfKind::Fwd | BtfKind::Enum | BtfKind::Enum64) => names_match(l.name(), t.name()),
        Some(BtfKind::Int) => l.int().is_some_and(|i| i.offset == 0) && t.int().is_some_and(|i| i.offset == 0),
        Some(BtfKind::Array) => {
            fields_compatible(local, l.array().expect("array").elem, target, t.array().expect("array").elem, depth + 1)
        }
        _ => false,
    }
}

/// Types compatible for CO-RE existence/size/id relocations (`bpf_core_types_are_compat`).
pub fn types_are_compatible(local: &Btf, local_id: u32, target: &Btf, target_id: u32) -> bool {
    types_compat_at(local, local_id, target, target_id, MAX_RECURSION, &mut WORK_BUDGET.clone())
}

fn types_compat_at(local: &Btf, local_id: u32, target: &Btf, target_id: u32, depth: u32, budget: &mut u32) -> bool {
    if depth == 0 || !spend(budget) {
        return false;
    }
    let (Some((_, l)), Some((_, t))) = (skip(local, local_id), skip(target, target_id)) else { return false };
    if !kinds_compatible(&l, &t) {
        return false;
    }
    match l.kind() {
        None | Some(BtfKind::Struct | BtfKind::Union | BtfKind::Enum | BtfKind::Enum64 | BtfKind::Fwd) => true,
        Some(BtfKind::Int) => l.int().is_some_and(|i| i.offset == 0) && t.int().is_some_and(|i| i.offset == 0),
        Some(BtfKind::Ptr) => types_compat_at(local, l.size_or_type(), target, t.size_or_type(), depth - 1, budget),
        Some(BtfKind::Array) => types_compat_at(
            local,
            l.array().expect("array").elem,
            target,
            t.array().expect("array").elem,
            depth - 1,
            budget,
        ),
        Some(BtfKind::FuncProto) => {
            l.vlen() == t.vlen()
                && l.params()
                    .zip(t.params())
                    .all(|(lp, tp)| types_compat_at(local, lp.ty, target, tp.ty, depth - 1, budget))
                && types_compat_at(local, l.size_or_type(), target, t.size_or_type(), depth - 1, budget)
        }
        _ => false,
    }
}

/// Types that match for `bpf_core_type_matches` (`bpf_core_types_match`): names, kinds,
/// sizes, signedness, members by name and enumerators by name must all line up.
pub fn types_match(local: &Btf, local_id: u32, target: &Btf, target_id: u32) -> bool {
    types_match_at(local, local_id, target, target_id, false, MAX_RECURSION, &mut WORK_BUDGET.clone())
}

fn types_match_at(
    local: &Btf,
    local_id: u32,
    target: &Btf,
    target_id: u32,
    behind_ptr: bool,
    depth: u32,
    budget: &mut u32,
) -> bool {
    if depth == 0 || !spend(budget) {
        return false;
    }
    let (Some((_, l)), Some((_, t))) = (skip(local, local_id), skip(target, target_id)) else { return false };
    if !names_match(l.name(), t.name()) {
        return false;
    }
    match l.kind() {
        None => t.is_void(),
        Some(BtfKind::Fwd) => {
            let local_union = l.kind_flag();
            if t.is(BtfKind::Fwd) {
                local_union == t.kind_flag()
            } else if behind_ptr {
                (t.is(BtfKind::Struct) && !local_union) || (t.is(BtfKind::Union) && local_union)
            } else {
                false
            }
        }
        Some(BtfKind::Enum | BtfKind::Enum64) => {
            is_any_enum(&t)
                && l.size() == t.size()
                && l.enumerators().all(|le| t.enumerators().any(|te| names_match(le.name, te.name)))
        }
        Some(kind @ (BtfKind::Struct | BtfKind::Union)) => {
            if behind_ptr {
                t.kind() == Some(kind) || (t.is(BtfKind::Fwd) && (kind == BtfKind::Union) == t.kind_flag())
            } else {
                t.kind() == Some(kind)
                    && l.members().all(|lm| {
                        t.members().any(|tm| {
                            names_match(lm.name, tm.name)
                                && types_match_at(local, lm.ty, target, tm.ty, behind_ptr, depth - 1, budget)
                        })
                    })
            }
        }
        Some(BtfKind::Int) => {
            let (Some(li), Some(ti)) = (l.int(), t.int()) else { return false };
            l.size() == t.size() && li.signed == ti.signed
        }
        Some(BtfKind::Ptr) => {
            t.is(BtfKind::Ptr)
                && types_match_at(local, l.size_or_type(), target, t.size_or_type(), true, depth - 1, budget)
        }
        Some(BtfKind::Array) => {
            let (Some(la), Some(ta)) = (l.array(), t.array()) else { return false };
            la.nelems == ta.nelems && types_match_at(local, la.elem, target, ta.elem, behind_ptr, depth - 1, budget)
        }
        Some(BtfKind::FuncProto) => {
            t.is(BtfKind::FuncProto)
                && l.vlen() == t.vlen()
                && l.params()
                    .zip(t.params())
                    .all(|(lp, tp)| types_match_at(local, lp.ty, target, tp.ty, behind_ptr, depth - 1, budget))
                && types_match_at(local, l.size_or_type(), target, t.size_or_type(), behind_ptr, depth - 1, budget)
        }
        _ => false,
    }
}

/// Matches named member `name` (declared with type `local_member_ty` locally) in target
/// aggregate `target_id`, through anonymous members (`bpf_core_match_member`).
#[allow(clippy::too_many_arguments)]
fn match_member(
    local: &Btf,
    local_member_ty: u32,
    name: &str,
    target: &Btf,
    target_id: u32,
    spec: &mut CoreSpec,
    depth: u32,
    budget: &mut u32,
) -> Option<u32> {
    if depth > MAX_RECURSION || spec.raw.len() >= MAX_SPEC_LEN || !spend(budget) {
        return None;
    }
    let (target_id, ty) = skip(target, target_id)?;
    if !is_composite(&ty) {
        return None;
    }
    for (index, member) in ty.members().enumerate() {
        // Speculative: undone below when the member is not the one (wrapping keeps the pair exact).
        spec.bit_offset = spec.bit_offset.wrapping_add(member.bit_offset);
        spec.raw.push(index as u32);
        if member.name.is_empty() {
            if let Some(found) = match_member(local, local_member_ty, name, target, member.ty, spec, depth + 1, budget)
            {
                return Some(found);
            }
        } else if member.name == name {
            if fields_compatible(local, local_member_ty, target, member.ty, 0) {
                spec.accessors.push((target_id, index as u32, Some(member.name.to_owned())));
                return Some(member.ty);
            }
            spec.bit_offset = spec.bit_offset.wrapping_sub(member.bit_offset);
            spec.raw.pop();
            return None;
        }
        spec.bit_offset = spec.bit_offset.wrapping_sub(member.bit_offset);
        spec.raw.pop();
    }
    None
}

/// Matches the local spec against candidate `target_id` (`bpf_core_spec_match`).
fn match_spec(
    local: &Btf,
    local_spec: &CoreSpec,
    kind: CoreReloKind,
    target: &Btf,
    target_id: u32,
) -> Option<CoreSpec> {
    let mut spec = CoreSpec { root_type_id: target_id, ..CoreSpec::default() };
    if !kind.is_field() && !kind.is_enumval() {
        let matched = if kind == CoreReloKind::TypeMatches {
            types_match(local, local_spec.root_type_id, target, target_id)
        } else {
            types_are_compatible(local, local_spec.root_type_id, target, target_id)
        };
        return matched.then_some(spec);
    }
    if kind.is_enumval() {
        let (target_id, ty) = skip(target, target_id)?;
        if !is_any_enum(&ty) {
            return None;
        }
        let local_name = local_spec.accessors.first()?.2.as_deref()?;
        let (index, e) =
            ty.enumerators().enumerate().find(|(_, e)| essential_name(e.name) == essential_name(local_name))?;
        spec.accessors.push((target_id, index as u32, Some(e.name.to_owned())));
        spec.raw.push(index as u32);
        return Some(spec);
    }
    let mut target_id = target_id;
    for (i, (local_type, local_index, local_name)) in local_spec.accessors.iter().enumerate() {
        let (_, ty) = skip(target, target_id)?;
        if let Some(name) = local_name {
            let local_parent = local.type_by_id(*local_type)?;
            let local_member = local_parent.members().nth(*local_index as usize)?;
            target_id =
                match_member(local, local_member.ty, name, target, target_id, &mut spec, 0, &mut WORK_BUDGET.clone())?;
        } else {
            if i > 0 {
                let array = ty.array()?;
                let flexible = is_flex_array(target, spec.accessors.last(), array.nelems);
                if !flexible && *local_index >= array.nelems {
                    return None;
                }
                target_id = skip(target, array.elem)?.0;
            } else {
                target_id = skip(target, target_id)?.0;
            }
            if spec.raw.len() >= MAX_SPEC_LEN {
                return None;
            }
            spec.accessors.push((target_id, *local_index, None));
            spec.raw.push(*local_index);
            let size = target.resolve_size(target_id).ok()?;
            spec.bit_offset = spec.bit_offset.saturating_add(local_index.saturating_mul(size).saturating_mul(8));
        }
    }
    Some(spec)
}

/// A relocated value: the value, the field's size and type (for memory accesses), and
/// whether the instruction's current value should be checked.
struct Calc {
    value: u64,
    size: u32,
    type_id: u32,
    validate: bool,
}

/// Computes a field relocation's value in `spec` (`bpf_core_calc_field_relo`); `None` means
/// "poison": the field is absent and the relocation needs it.
fn calc_field(btf: &Btf, kind: CoreReloKind, spec: Option<&CoreSpec>) -> Result<Option<Calc>, String> {
    if kind == CoreReloKind::FieldExists {
        return Ok(Some(Calc { value: u64::from(spec.is_some()), size: 0, type_id: 0, validate: true }));
    }
    let Some(spec) = spec else { return Ok(None) };
    let (acc_type, acc_index, acc_name) = spec.accessors.last().ok_or("empty access path")?;
    if acc_name.is_none() {
        let size = btf.resolve_size(*acc_type).map_err(|e| e.to_string())?;
        return match kind {
            CoreReloKind::FieldByteOffset => {
                Ok(Some(Calc { value: u64::from(spec.bit_offset / 8), size, type_id: *acc_type, validate: true }))
            }
            CoreReloKind::FieldByteSize => {
                Ok(Some(Calc { value: u64::from(size), size: 0, type_id: 0, validate: true }))
            }
            _ => Err(format!("{} cannot be applied to an array element", kind.name())),
        };
    }
    let parent = btf.type_by_id(*acc_type).ok_or("accessor type vanished")?;
    let member = parent.members().nth(*acc_index as usize).ok_or("accessor member vanished")?;
    let (field_type_id, field_type) = skip(btf, member.ty).ok_or("field type vanished")?;
    // Widened: offsets from malformed BTF must not overflow the arithmetic below.
    let bit_off = u64::from(spec.bit_offset);
    let bitfield = member.bitfield_size > 0;
    let (byte_off, byte_sz, bit_sz) = if bitfield {
        let bit_sz = u64::from(member.bitfield_size);
        let mut byte_sz = u64::from(field_type.size().unwrap_or(0).max(1));
        let mut byte_off = bit_off / 8 / byte_sz * byte_sz;
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8 {
            if byte_sz >= 8 {
                return Err("bitfield cannot be read with a 64-bit load".to_owned());
            }
            byte_sz *= 2;
            byte_off = bit_off / 8 / byte_sz * byte_sz;
        }
        (byte_off, byte_sz, bit_sz)
    } else {
        let byte_sz = u64::from(btf.resolve_size(field_type_id).map_err(|e| e.to_string())?);
        (bit_off / 8, byte_sz, byte_sz * 8)
    };
    let mut calc = Calc { value: 0, size: 0, type_id: 0, validate: !bitfield };
    calc.value = match kind {
        CoreReloKind::FieldByteOffset => {
            if !bitfield {
                calc.size = u32::try_from(byte_sz).unwrap_or(u32::MAX);
                calc.type_id = field_type_id;
            }
            byte_off
        }
        CoreReloKind::FieldByteSize => byte_sz,
        CoreReloKind::FieldSigned => {
            calc.validate = true;
            let signed =
                (is_any_enum(&field_type) && field_type.kind_flag()) || field_type.int().is_some_and(|i| i.signed);
            u64::from(signed)
        }
        CoreReloKind::FieldLshiftU64 => 64u64.wrapping_sub(bit_off + bit_sz - byte_off * 8),
        CoreReloKind::FieldRshiftU64 => {
            calc.validate = true;
            64u64.wrapping_sub(bit_sz)
        }
        _ => return Err(format!("{} is not a field relocation", kind.name())),
    };
    Ok(Some(calc))
}

fn calc_type(btf: &Btf, kind: CoreReloKind, spec: Option<&CoreSpec>) -> Result<Calc, String> {
    let Some(spec) = spec else { return Ok(Calc { value: 0, size: 0, type_id: 0, validate: true }) };
    let value = match kind {
        CoreReloKind::TypeIdTarget | CoreReloKind::TypeIdLocal => u64::from(spec.root_type_id),
        CoreReloKind::TypeExists | CoreReloKind::TypeMatches => 1,
        CoreReloKind::TypeSize => u64::from(btf.resolve_size(spec.root_type_id).map_err(|e| e.to_string())?),
        _ => return Err(format!("{} is not a type relocation", kind.name())),
    };
    Ok(Calc { value, size: 0, type_id: 0, validate: kind != CoreReloKind::TypeIdTarget })
}

fn calc_enumval(btf: &Btf, kind: CoreReloKind, spec: Option<&CoreSpec>) -> Result<Option<Calc>, String> {
    let value = match (kind, spec) {
        (CoreReloKind::EnumvalExists, spec) => u64::from(spec.is_some()),
        (CoreReloKind::EnumvalValue, None) => return Ok(None),
        (CoreReloKind::EnumvalValue, Some(spec)) => {
            let (id, index, _) = spec.accessors.first().ok_or("empty enumerator spec")?;
            let ty = btf.type_by_id(*id).ok_or("enum vanished")?;
            ty.enumerators().nth(*index as usize).ok_or("enumerator vanished")?.value as u64
        }
        _ => return Err(format!("{} is not an enumerator relocation", kind.name())),
    };
    Ok(Some(Calc { value, size: 0, type_id: 0, validate: true }))
}

/// Candidate types for `local_id` in `target`: same kind (enum and enum64 interchangeable),
/// same essential name (`bpf_core_add_cands`).
pub fn candidates(local: &Btf, local_id: u32, target: &Btf) -> Vec<u32> {
    let Some(local_type) = local.type_by_id(local_id) else { return Vec::new() };
    let essential = essential_name(local_type.name());
    if essential.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<u32> = target
        .ids_by_essential_name(essential)
        .into_iter()
        .filter(|&id| target.type_by_id(id).is_some_and(|t| kinds_compatible(&t, &local_type)))
        .collect();
    out.sort_unstable();
    out
}

/// Resolves one relocation of the program whose BTF is `local` against `targets` (vmlinux
/// first, then modules: the first BTF with any candidate is used, as libbpf does).
pub fn resolve(local: &Btf, relo: &CoreRelo, targets: &[&Btf]) -> Result<CoreFixup, CoreError> {
    let local_spec = parse_spec(local, relo)?;
    let root_name = local.type_by_id(relo.type_id).map_or(String::new(), |t| t.name().to_owned());
    let access = local.string(relo.access_str_off).to_owned();
    let bad = |reason: String| CoreError::BadSpec {
        kind: relo.kind.name(),
        type_id: relo.type_id,
        name: root_name.clone(),
        access: access.clone(),
        reason,
    };
    let mut fixup = CoreFixup {
        insn_off: relo.insn_off,
        kind: relo.kind,
        local_value: 0,
        target_value: 0,
        poison: false,
        validate: true,
        local_size: 0,
        target_size: 0,
        fail_size_adjust: false,
        target_type_id: 0,
    };
    if relo.kind == CoreReloKind::TypeIdLocal {
        fixup.local_value = u64::from(relo.type_id);
        fixup.target_value = u64::from(relo.type_id);
        return Ok(fixup);
    }
    if root_name.is_empty() {
        return Err(bad("anonymous root types cannot be relocated".to_owned()));
    }
    let (target, cands) = targets
        .iter()
        .map(|t| (*t, candidates(local, relo.type_id, t)))
        .find(|(_, c)| !c.is_empty())
        .unwrap_or((targets.first().copied().unwrap_or(local), Vec::new()));

    // (candidate id, its spec, the fixup it gives)
    let mut chosen: Option<(u32, CoreSpec, CoreFixup)> = None;
    for cand in cands {
        let Some(spec) = match_spec(local, &local_spec, relo.kind, target, cand) else { continue };
        let result = compute(local, &local_spec, target, Some(&spec), relo, fixup.clone()).map_err(bad)?;
        match &chosen {
            None => chosen = Some((cand, spec, result)),
            Some((first, first_spec, first_result)) => {
                let disagree = (relo.kind.is_field() && spec.bit_offset != first_spec.bit_offset)
                    || result.poison != first_result.poison
                    || (!result.poison
                        && (result.local_value != first_result.local_value
                            || result.target_value != first_result.target_value));
                if disagree {
                    return Err(CoreError::Ambiguous {
                        kind: relo.kind.name(),
                        type_id: relo.type_id,
                        name: root_name,
                        access,
                        first: *first,
                        second: cand,
                    });
                }
            }
        }
    }
    match chosen {
        Some((_, _, result)) => Ok(result),
        None => compute(local, &local_spec, target, None, relo, fixup).map_err(bad),
    }
}

fn compute(
    local: &Btf,
    local_spec: &CoreSpec,
    target: &Btf,
    target_spec: Option<&CoreSpec>,
    relo: &CoreRelo,
    mut fixup: CoreFixup,
) -> Result<CoreFixup, String> {
    fixup.target_type_id = target_spec.map_or(0, |s| s.root_type_id);
    if relo.kind.is_field() {
        let local_calc = calc_field(local, relo.kind, Some(local_spec))?.ok_or("the local field is missing")?;
        fixup.local_value = local_calc.value;
        fixup.local_size = local_calc.size;
        fixup.validate = local_calc.validate;
        match calc_field(target, relo.kind, target_spec)? {
            None => fixup.poison = true,
            Some(target_calc) => {
                fixup.target_value = target_calc.value;
                fixup.target_size = target_calc.size;
                if local_calc.size != target_calc.size {
                    let plain = |btf: &Btf, id: u32| {
                        btf.type_by_id(id).is_some_and(|t| t.is(BtfKind::Ptr) || t.int().is_some_and(|i| !i.signed))
                    };
                    let both_ptrs = local.type_by_id(local_calc.type_id).is_some_and(|t| t.is(BtfKind::Ptr))
                        && target.type_by_id(target_calc.type_id).is_some_and(|t| t.is(BtfKind::Ptr));
                    fixup.fail_size_adjust =
                        !(both_ptrs || (plain(local, local_calc.type_id) && plain(target, target_calc.type_id)));
                }
            }
        }
    } else if relo.kind.is_enumval() {
        let local_calc = calc_enumval(local, relo.kind, Some(local_spec))?.ok_or("the local enumerator is missing")?;
        fixup.local_value = local_calc.value;
        match calc_enumval(target, relo.kind, target_spec)? {
            None => fixup.poison = true,
            Some(c) => fixup.target_value = c.value,
        }
    } else {
        let local_calc = calc_type(local, relo.kind, Some(local_spec))?;
        fixup.local_value = local_calc.value;
        fixup.validate = local_calc.validate;
        fixup.target_value = calc_type(target, relo.kind, target_spec)?.value;
    }
    Ok(fixup)
}
