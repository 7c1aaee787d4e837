//! Queries over a type graph: resolving typedefs and qualifiers, sizes, alignments, members.

use crate::btf::Btf;
use crate::header::BtfError;
use crate::kind::BtfKind;
use crate::types::{StructMember, Type};

/// Deepest chain of typedefs, qualifiers and arrays followed before giving up (malformed BTF
/// can loop).
const MAX_DEPTH: usize = 64;

/// Type visits one recursive query may make. Anonymous members can be shared in malformed BTF,
/// which would make naive recursion exponential; real types need a tiny fraction of this.
pub(crate) const WORK_BUDGET: u32 = 100_000;

/// Takes one unit of `budget`; `false` when it is spent.
pub(crate) fn spend(budget: &mut u32) -> bool {
    match budget.checked_sub(1) {
        Some(left) => {
            *budget = left;
            true
        }
        None => false,
    }
}

/// A member found by name, with its offset from the outer aggregate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundMember<'a> {
    /// The member as declared (in the innermost aggregate).
    pub member: StructMember<'a>,
    /// Offset in bits from the start of the aggregate searched, through anonymous members.
    pub bit_offset: u32,
    /// Indices of the members walked: anonymous members first, the found member last.
    pub path: Vec<u32>,
}

fn loop_error(id: u32) -> BtfError {
    BtfError::BadTypeReference { id, target: id, last: 0 }
}

impl Btf {
    /// Follows typedefs, `const`/`volatile`/`restrict` and type tags to the underlying type.
    pub fn skip_mods_and_typedefs(&self, id: u32) -> Option<Type<'_>> {
        let mut ty = self.type_by_id(id)?;
        for _ in 0..MAX_DEPTH {
            match ty.kind() {
                Some(BtfKind::Typedef | BtfKind::Const | BtfKind::Volatile | BtfKind::Restrict | BtfKind::TypeTag) => {
                    ty = self.type_by_id(ty.size_or_type())?;
                }
                _ => return Some(ty),
            }
        }
        None
    }

    /// Follows qualifiers and type tags, but not typedefs.
    pub fn skip_mods(&self, id: u32) -> Option<Type<'_>> {
        let mut ty = self.type_by_id(id)?;
        for _ in 0..MAX_DEPTH {
            match ty.kind() {
                Some(BtfKind::Const | BtfKind::Volatile | BtfKind::Restrict | BtfKind::TypeTag) => {
                    ty = self.type_by_id(ty.size_or_type())?;
                }
                _ => return Some(ty),
            }
        }
        None
    }

    /// Size in bytes of type `id`, through typedefs, qualifiers and arrays (pointers are 8
    /// bytes, as on every 64-bit BPF target).
    pub fn resolve_size(&self, id: u32) -> Result<u32, BtfError> {
        let mut id = id;
        let mut multiplier: u64 = 1;
        for _ in 0..MAX_DEPTH {
            let ty = self.type_by_id(id).ok_or(loop_error(id))?;
            let size = match ty.kind() {
                Some(BtfKind::Ptr) => 8,
                Some(BtfKind::Array) => {
                    let a = ty.array().expect("array");
                    multiplier = multiplier.saturating_mul(u64::from(a.nelems));
                    id = a.elem;
                    continue;
                }
                Some(
                    BtfKind::Typedef
                    | BtfKind::Const
                    | BtfKind::Volatile
                    | BtfKind::Restrict
                    | BtfKind::TypeTag
                    | BtfKind::Var,
                ) => {
                    id = ty.size_or_type();
                    continue;
                }
                _ => match ty.size() {
                    Some(size) => size,
                    None => {
                        return Err(BtfError::BadExt(format!(
                            "type [{id}] ({}) has no size",
                            ty.kind().map_or("void", BtfKind::name)
                        )))
                    }
                },
            };
            return u32::try_from(u64::from(size).saturating_mul(multiplier))
                .map_err(|_| BtfError::BadExt(format!("type [{id}] is larger than 4 GiB")));
        }
        Err(loop_error(id))
    }

    /// Natural alignment in bytes of type `id` (1 for types without one).
    pub fn alignment(&self, id: u32) -> u32 {
        self.layout(id, &mut std::collections::HashMap::new()).0
    }

    /// True when a struct or union can only have been declared `__attribute__((packed))`:
    /// a member sits off its natural alignment, or the size is not a multiple of it.
    pub fn is_packed(&self, ty: &Type<'_>) -> bool {
        matches!(ty.kind(), Some(BtfKind::Struct | BtfKind::Union))
            && self.layout(ty.id(), &mut std::collections::HashMap::new()).1
    }

    /// `(alignment, packed)` of `id`, memoised per call so shared and cyclic graphs (possible
    /// in malformed BTF) cost linear time. A type met again while being computed counts as
    /// alignment 1.
    pub(crate) fn layout(&self, id: u32, memo: &mut std::collections::HashMap<u32, (u32, bool)>) -> (u32, bool) {
        if let Some(known) = memo.get(&id) {
            return *known;
        }
        memo.insert(id, (1, false));
        let result = match self.skip_mods_and_typedefs(id) {
            None => (1, false),
            Some(ty) => match ty.kind() {
                Some(BtfKind::Int | BtfKind::Enum | BtfKind::Enum64 | BtfKind::Float) => {
                    (ty.size().unwrap_or(1).clamp(1, 8), false)
                }
                Some(BtfKind::Ptr) => (8, false),
                Some(BtfKind::Array) => (self.layout(ty.array().expect("array").elem, memo).0, false),
                Some(BtfKind::Struct | BtfKind::Union) => {
                    let mut natural = 1;
                    let mut packed = false;
                    for m in ty.members() {
                        let align = self.layout(m.ty, memo).0;
                        natural = natural.max(align);
                        if m.bitfield_size == 0 && m.bit_offset % (align * 8) != 0 {
                            packed = true;
                        }
                    }
                    packed |= ty.size().is_some_and(|size| size % natural != 0);
                    (if packed { 1 } else { natural }, packed)
                }
                _ => (1, false),
            },
        };
        memo.insert(id, result);
        result
    }

    /// Finds member `name` of struct/union `id`, looking through anonymous members.
    pub fn find_member(&self, id: u32, name: &str) -> Option<FoundMember<'_>> {
        self.find_member_at(id, name, 0, &mut WORK_BUDGET.clone())
    }

    fn find_member_at(&self, id: u32, name: &str, depth: usize, budget: &mut u32) -> Option<FoundMember<'_>> {
        if depth > MAX_DEPTH || !spend(budget) {
            return None;
        }
        let ty = self.skip_mods_and_typedefs(id)?;
        for (index, member) in ty.members().enumerate() {
            if member.name == name {
                return Some(FoundMember { member, bit_offset: member.bit_offset, path: vec![index as u32] });
            }
            if member.name.is_empty() {
                if let Some(mut inner) = self.find_member_at(member.ty, name, depth + 1, budget) {
                    inner.bit_offset = inner.bit_offset.saturating_add(member.bit_offset);
                    inner.path.insert(0, index as u32);
                    return Some(inner);
                }
            }
        }
        None
    }

    /// Calls `visit` for `id` and every type reachable from it, each once, depth first.
    pub fn walk(&self, id: u32, mut visit: impl FnMut(Type<'_>)) {
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![id];
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let Some(ty) = self.type_by_id(id) else { continue };
            visit(ty);
            let mut refs = Vec::new();
            let _ = ty.for_each_reference(&mut |r| refs.push(r));
            stack.extend(refs.into_iter().rev());
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Btf, BtfBuilder, BtfKind, IntEncoding, Member};

    fn sample() -> Btf {
        let mut b = BtfBuilder::new();
        let int = b.add_int("int", 4, IntEncoding::Signed); // 1
        let long = b.add_int("long", 8, IntEncoding::Signed); // 2
        let inner = b.add_struct("", 8, &[Member { name: "deep", ty: long, bit_offset: 0, bitfield_size: 0 }]); // 3
        let arr = b.add_array(int, int, 3); // 4
        b.add_struct(
            "outer",
            32,
            &[
                Member { name: "a", ty: int, bit_offset: 0, bitfield_size: 0 },
                Member { name: "", ty: inner, bit_offset: 64, bitfield_size: 0 },
                Member { name: "xs", ty: arr, bit_offset: 128, bitfield_size: 0 },
            ],
        ); // 5
        let td = b.add_typedef("outer_t", crate::TypeId::new(5).unwrap()); // 6
        b.add_const(td); // 7
        b.add_struct(
            "tight",
            5,
            &[
                Member { name: "c", ty: int, bit_offset: 0, bitfield_size: 0 },
                Member { name: "d", ty: long, bit_offset: 8, bitfield_size: 0 },
            ],
        ); // 8
        Btf::parse(b.encode()).unwrap()
    }

    #[test]
    fn sizes_resolve_through_typedefs_qualifiers_and_arrays() {
        let btf = sample();
        assert_eq!(btf.resolve_size(4).unwrap(), 12);
        assert_eq!(btf.resolve_size(7).unwrap(), 32);
        assert_eq!(btf.skip_mods_and_typedefs(7).unwrap().name(), "outer");
        assert_eq!(btf.skip_mods(7).unwrap().kind(), Some(BtfKind::Typedef));
    }

    #[test]
    fn members_are_found_through_anonymous_aggregates() {
        let btf = sample();
        let found = btf.find_member(7, "deep").unwrap();
        assert_eq!((found.bit_offset, found.path), (64, vec![1, 0]));
        assert!(btf.find_member(5, "missing").is_none());
    }

    #[test]
    fn alignment_and_packing() {
        let btf = sample();
        assert_eq!(btf.alignment(5), 8);
        let tight = btf.find("tight", BtfKind::Struct).unwrap();
        assert!(btf.is_packed(&tight));
        assert!(!btf.is_packed(&btf.find("outer", BtfKind::Struct).unwrap()));
        let mut seen = Vec::new();
        btf.walk(7, |t| seen.push(t.id()));
        assert_eq!(seen, [7, 6, 5, 1, 3, 2, 4]);
    }
}
