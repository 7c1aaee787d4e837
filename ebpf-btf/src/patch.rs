//! In-place edits of a parsed blob that keep every type id and string offset: what a loader
//! needs to fill in what the compiler leaves open (data section sizes and variable offsets,
//! extern linkage) without re-encoding the whole blob.

use crate::btf::Btf;
use crate::kind::BtfKind;

/// Why an edit was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The id names no type of this blob (patches never touch a base blob).
    #[error("type {0} is not in this BTF")]
    NoSuchType(u32),
    /// The type is of another kind than the edit needs.
    #[error("type {id} is a {actual}, not a {expected}")]
    WrongKind {
        /// The type.
        id: u32,
        /// What it is.
        actual: &'static str,
        /// What the edit needs.
        expected: &'static str,
    },
    /// A variable index past the section's variables.
    #[error("data section {id} has {count} variables, no variable {index}")]
    NoSuchVariable {
        /// The section type.
        id: u32,
        /// Variables it has.
        count: usize,
        /// Index asked for.
        index: usize,
    },
}

/// A copy of a blob being edited; [`BtfPatch::finish`] returns the new bytes.
#[derive(Debug)]
pub struct BtfPatch<'a> {
    btf: &'a Btf,
    bytes: Vec<u8>,
}

impl<'a> BtfPatch<'a> {
    /// Starts editing a copy of `btf`'s blob.
    pub fn new(btf: &'a Btf) -> BtfPatch<'a> {
        BtfPatch { btf, bytes: btf.bytes().to_vec() }
    }

    fn record(&self, id: u32, expected: BtfKind) -> Result<usize, PatchError> {
        let at = self.btf.own_type_offset(id).ok_or(PatchError::NoSuchType(id))?;
        let ty = self.btf.type_by_id(id).ok_or(PatchError::NoSuchType(id))?;
        match ty.kind() {
            Some(kind) if kind == expected => Ok(at),
            other => Err(PatchError::WrongKind {
                id,
                actual: other.map_or("void", BtfKind::name),
                expected: expected.name(),
            }),
        }
    }

    fn put(&mut self, at: usize, value: u32) {
        let bytes = if self.btf.is_little_endian() { value.to_le_bytes() } else { value.to_be_bytes() };
        self.bytes[at..at + 4].copy_from_slice(&bytes);
    }

    /// Sets the byte size of data section `id`.
    pub fn set_datasec_size(&mut self, id: u32, size: u32) -> Result<(), PatchError> {
        let at = self.record(id, BtfKind::Datasec)?;
        self.put(at + 8, size);
        Ok(())
    }

    /// Sets where variable number `index` of data section `id` sits, and its size.
    pub fn set_datasec_var(&mut self, id: u32, index: usize, offset: u32, size: u32) -> Result<(), PatchError> {
        let at = self.record(id, BtfKind::Datasec)?;
        let count = self.btf.type_by_id(id).map_or(0, |t| t.vlen());
        if index >= count {
            return Err(PatchError::NoSuchVariable { id, count, index });
        }
        let entry = at + 12 + 12 * index;
        self.put(entry + 4, offset);
        self.put(entry + 8, size);
        Ok(())
    }

    /// Rewrites entry `index` of data section `id` whole: which variable, where, how big (a
    /// loader that lays variables out itself also reorders the entries by offset, as the
    /// kernel wants them).
    pub fn set_datasec_entry(
        &mut self,
        id: u32,
        index: usize,
        var: u32,
        offset: u32,
        size: u32,
    ) -> Result<(), PatchError> {
        self.set_datasec_var(id, index, offset, size)?;
        let at = self.record(id, BtfKind::Datasec)?;
        self.put(at + 12 + 12 * index, var);
        Ok(())
    }

    /// Sets the linkage word of variable `id` (0 static, 1 global, 2 extern).
    pub fn set_var_linkage(&mut self, id: u32, linkage: crate::Linkage) -> Result<(), PatchError> {
        let at = self.record(id, BtfKind::Var)?;
        self.put(at + 12, linkage.raw());
        Ok(())
    }

    /// Sets the linkage of function `id` (kept in its `vlen` bits).
    pub fn set_func_linkage(&mut self, id: u32, linkage: crate::Linkage) -> Result<(), PatchError> {
        let at = self.record(id, BtfKind::Func)?;
        let info = self.btf.word(at + 4);
        self.put(at + 4, (info & !0xffff) | linkage.raw());
        Ok(())
    }

    /// Gives every unnamed, typed parameter of prototype `id` the string at `name_offset`: the
    /// kernel refuses a function whose parameters lack names ("Invalid arg#N"), which is what
    /// clang emits for extern declarations from `vmlinux.h`. The string must be a valid C
    /// identifier of this blob (a function's own name serves); no string is added, so offsets
    /// stay.
    pub fn name_unnamed_params(&mut self, id: u32, name_offset: u32) -> Result<(), PatchError> {
        let at = self.record(id, BtfKind::FuncProto)?;
        let params = self.btf.type_by_id(id).ok_or(PatchError::NoSuchType(id))?.params();
        for (i, param) in params.enumerate() {
            if param.name.is_empty() && param.ty != 0 {
                self.put(at + 12 + 8 * i, name_offset);
            }
        }
        Ok(())
    }

    /// Sets the type a variable refers to.
    pub fn set_var_type(&mut self, id: u32, ty: u32) -> Result<(), PatchError> {
        let at = self.record(id, BtfKind::Var)?;
        self.put(at + 8, ty);
        Ok(())
    }

    /// Rewrites data section `id` in place as an anonymous struct whose members, one per
    /// variable, are all of type `member` (`member_size` bytes each). A loader does this to a
    /// section of externs the kernel would refuse (`.ksyms`): ids and record sizes stay.
    pub fn datasec_to_struct(&mut self, id: u32, member: u32, member_size: u32) -> Result<(), PatchError> {
        let at = self.record(id, BtfKind::Datasec)?;
        let vlen = self.btf.type_by_id(id).map_or(0, |t| t.vlen());
        let info = self.btf.word(at + 4);
        let struct_kind = 4u32;
        self.put(at, 0);
        self.put(at + 4, (info & !(0x1f << 24)) | (struct_kind << 24));
        self.put(at + 8, member_size.saturating_mul(vlen as u32));
        for i in 0..vlen {
            let entry = at + 12 + 12 * i;
            self.put(entry, 0);
            self.put(entry + 4, member);
            self.put(entry + 8, (i as u32).saturating_mul(member_size).saturating_mul(8));
        }
        Ok(())
    }

    /// The edited blob.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }

    /// The edited blob, parsed. Edits keep every record's length and every reference valid,
    /// so the original's index serves the new bytes without a second validating pass.
    pub fn finish_parsed(self) -> Btf {
        self.btf.with_bytes(self.bytes.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BtfBuilder, DatasecVar, IntEncoding, Linkage};

    #[test]
    fn unnamed_params_take_the_given_name_and_named_ones_stay() {
        let mut b = BtfBuilder::new();
        let int = b.add_int("int", 4, IntEncoding::Signed);
        let proto = b.add_func_proto(
            Some(int),
            &[crate::Param { name: "", ty: Some(int) }, crate::Param { name: "kept", ty: Some(int) }],
        );
        let func = b.add_func("kfunc_name", proto, Linkage::Extern);
        let btf = Btf::parse(b.encode()).unwrap();
        let name = btf.type_by_id(func.get()).unwrap().name_offset();
        let mut patch = BtfPatch::new(&btf);
        patch.name_unnamed_params(proto.get(), name).unwrap();
        let patched = patch.finish_parsed();
        let params: Vec<&str> = patched.type_by_id(proto.get()).unwrap().params().map(|p| p.name).collect();
        assert_eq!(params, ["kfunc_name", "kept"]);
        let mut patch = BtfPatch::new(&btf);
        assert!(matches!(patch.name_unnamed_params(int.get(), name), Err(PatchError::WrongKind { .. })));
    }

    #[test]
    fn data_section_layout_is_filled_in_and_ids_stay() {
        let mut b = BtfBuilder::new();
        let int = b.add_int("int", 4, IntEncoding::Signed);
        let var = b.add_var("x", int, Linkage::Extern);
        let sec = b.add_datasec(".data", 0, &[DatasecVar { var, offset: 0, size: 4 }]);
        let (int, var, sec) = (int.get(), var.get(), sec.get());
        let btf = Btf::parse(b.encode()).unwrap();
        let mut patch = BtfPatch::new(&btf);
        patch.set_datasec_size(sec, 16).unwrap();
        patch.set_datasec_var(sec, 0, 8, 4).unwrap();
        patch.set_var_linkage(var, Linkage::Global).unwrap();
        assert!(matches!(patch.set_datasec_size(int, 1), Err(PatchError::WrongKind { .. })));
        assert!(matches!(patch.set_datasec_var(sec, 1, 0, 0), Err(PatchError::NoSuchVariable { .. })));
        assert_eq!(patch.set_datasec_size(99, 1), Err(PatchError::NoSuchType(99)));
        let bytes = {
            let mut again = BtfPatch::new(&btf);
            again.set_datasec_size(sec, 16).unwrap();
            again.finish()
        };
        assert_eq!(BtfPatch::new(&btf).finish_parsed().bytes(), btf.bytes());
        assert_eq!(Btf::parse(bytes).unwrap().type_by_id(sec).unwrap().size(), Some(16));
        let fixed = patch.finish_parsed();
        let ty = fixed.type_by_id(sec).unwrap();
        assert_eq!(ty.size(), Some(16));
        let v = ty.datasec_vars().next().unwrap();
        assert_eq!((v.ty, v.offset, v.size), (var, 8, 4));
        assert_eq!(fixed.type_by_id(var).unwrap().linkage(), Some(crate::types::TypeLinkage::Global));
    }
}
