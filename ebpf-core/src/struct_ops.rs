//! struct_ops: kernel interfaces (a TCP congestion control, a scheduler, …) implemented by BPF
//! programs. An object declares one as a variable of the kernel's struct type in a
//! `.struct_ops` or `.struct_ops.link` section, its function pointers set to programs of
//! `struct_ops/…` sections; each such variable becomes a map of type
//! [`MapType::StructOps`](crate::MapType::StructOps) whose [`MapContents::StructOps`]
//! is a [`StructOpsValue`].
//!
//! The object's struct is its own declaration, which may name fewer members than the
//! kernel's and lay them out differently: members are matched with the kernel's by name
//! when the collection loads, as libbpf matches them.
//!
//! [`MapContents::StructOps`]: crate::MapContents::StructOps

use ebpf_btf::{Btf, BtfKind, Type};

use crate::error::{Error, Result};

/// The value of a struct_ops map as the object declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StructOpsValue {
    /// The kernel struct it implements (`tcp_congestion_ops`).
    pub type_name: String,
    /// The object's bytes of the struct (function pointer slots zero).
    pub data: Vec<u8>,
    /// The members the object's struct declares.
    pub members: Vec<StructOpsMember>,
}

/// One member of a struct_ops value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StructOpsMember {
    /// Its name, matched with the kernel struct's members.
    pub name: String,
    /// Byte offset in [`StructOpsValue::data`].
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
    /// The program a function pointer member points to.
    pub program: Option<String>,
}

impl StructOpsValue {
    /// The member called `name`.
    pub fn member(&self, name: &str) -> Option<&StructOpsMember> {
        self.members.iter().find(|m| m.name == name)
    }

    /// Sets the bytes of a data member (a congestion control's `name`, its `flags`); shorter
    /// input is zero-padded, as a C initialiser would be.
    pub fn set(&mut self, member: &str, bytes: &[u8]) -> Result<()> {
        let invalid = |reason: String| Error::InvalidSpec {
            object: format!("struct_ops member {}.{member}", self.type_name),
            reason,
        };
        let found = self.member(member).ok_or_else(|| invalid("the object's struct has no such member".to_owned()))?;
        if found.program.is_some() {
            return Err(invalid("it points to a program; programs are set in the object".to_owned()));
        }
        if bytes.len() > found.size as usize {
            return Err(invalid(format!("{} bytes given for a {}-byte member", bytes.len(), found.size)));
        }
        let range = found.offset as usize..(found.offset as usize + found.size as usize);
        let slot = self.data.get_mut(range).ok_or_else(|| invalid("it lies past the end of the data".to_owned()))?;
        slot.fill(0);
        slot[..bytes.len()].copy_from_slice(bytes);
        Ok(())
    }
}

/// Where a struct_ops value goes in the kernel: the map's value type and how the object's
/// members land in it.
#[derive(Clone, Debug)]
pub(crate) struct KernelLayout {
    /// vmlinux id of `bpf_struct_ops_<type>`, the map's value type.
    pub value_type_id: u32,
    /// Size of that value.
    pub value_size: u32,
    /// For each of the object's members: its offset in the kernel's value, or `None` for a
    /// member the kernel's struct lacks (allowed only while it is zero and unset).
    placements: Vec<Option<u32>>,
}

fn invalid(type_name: &str, reason: String) -> Error {
    Error::InvalidSpec { object: format!("struct_ops {type_name}"), reason }
}

/// The kernel's struct `name`.
fn kernel_struct<'k>(kernel: &'k Btf, name: &str) -> Result<Type<'k>> {
    kernel
        .find(name, BtfKind::Struct)
        .ok_or_else(|| invalid(name, "the running kernel's BTF has no struct of that name".to_owned()))
}

/// Resolves a struct_ops program's attach point, `TYPE:MEMBER` (see
/// [`ProgramSpec::attach_to`](crate::ProgramSpec::attach_to)): the kernel struct's BTF id and
/// the member's index, which the kernel takes as the expected attach type.
pub(crate) fn attach_point(kernel: &Btf, attach_to: &str) -> Result<(u32, u32)> {
    let (type_name, member) = attach_to.split_once(':').ok_or_else(|| {
        invalid(attach_to, "a struct_ops program attaches to TYPE:MEMBER (tcp_congestion_ops:cong_avoid)".to_owned())
    })?;
    let ty = kernel_struct(kernel, type_name)?;
    let index = ty
        .members()
        .position(|m| m.name == member)
        .ok_or_else(|| invalid(type_name, format!("the kernel's struct has no member {member}")))?;
    Ok((ty.id(), index as u32))
}

/// The bytes of `member` in `value`'s data.
fn member_bytes<'v>(value: &'v StructOpsValue, member: &StructOpsMember) -> Result<&'v [u8]> {
    let start = member.offset as usize;
    value
        .data
        .get(start..start.saturating_add(member.size as usize))
        .ok_or_else(|| invalid(&value.type_name, format!("member {} lies past the end of the data", member.name)))
}

/// Is `id` a pointer to a function?
fn is_function_pointer(btf: &Btf, id: u32) -> bool {
    btf.skip_mods_and_typedefs(id)
        .filter(|t| t.is(BtfKind::Ptr))
        .and_then(|p| btf.skip_mods_and_typedefs(p.size_or_type()))
        .is_some_and(|t| t.is(BtfKind::FuncProto))
}

impl KernelLayout {
    /// Matches `value`'s members with the running kernel's struct.
    pub(crate) fn resolve(value: &StructOpsValue, kernel: &Btf) -> Result<KernelLayout> {
        let name = &value.type_name;
        let ty = kernel_struct(kernel, name)?;
        let wrapper_name = format!("bpf_struct_ops_{name}");
        let wrapper = kernel.find(&wrapper_name, BtfKind::Struct).ok_or_else(|| {
            invalid(name, format!("the running kernel has no {wrapper_name}: it cannot take this struct from BPF"))
        })?;
        let data = wrapper
            .members()
            .find(|m| m.name == "data")
            .ok_or_else(|| invalid(name, format!("{wrapper_name} has no data member")))?;
        let data_offset = data.bit_offset / 8;
        let value_size = wrapper.size().unwrap_or(0);
        let mut placements = Vec::with_capacity(value.members.len());
        for member in &value.members {
            let bad = |reason: String| invalid(name, format!("member {}: {reason}", member.name));
            let Some(theirs) = ty.members().find(|m| m.name == member.name) else {
                let local = member_bytes(value, member)?;
                if member.program.is_some() || local.iter().any(|&b| b != 0) {
                    return Err(bad("the running kernel's struct has no such member".to_owned()));
                }
                placements.push(None);
                continue;
            };
            if theirs.bitfield_size != 0 || theirs.bit_offset % 8 != 0 {
                return Err(bad("the kernel's member is a bitfield".to_owned()));
            }
            let size = kernel.resolve_size(theirs.ty).map_err(|e| bad(format!("kernel type: {e}")))?;
            if member.program.is_some() {
                if !is_function_pointer(kernel, theirs.ty) {
                    return Err(bad("set to a program, but the kernel's member is not a function pointer".to_owned()));
                }
            } else if size != member.size {
                return Err(bad(format!("{} bytes in the object, {size} in the running kernel", member.size)));
            }
            let offset = data_offset + theirs.bit_offset / 8;
            if offset + size > value_size {
                return Err(bad(format!("past the end of {wrapper_name}")));
            }
            placements.push(Some(offset));
        }
        Ok(KernelLayout { value_type_id: wrapper.id(), value_size, placements })
    }

    /// The map value the kernel takes: each member at the kernel's offset, function pointers
    /// holding the fd of their program (from `program_fd`).
    pub(crate) fn image(&self, value: &StructOpsValue, program_fd: &dyn Fn(&str) -> Option<i32>) -> Result<Vec<u8>> {
        let mut image = vec![0u8; self.value_size as usize];
        for (member, placement) in value.members.iter().zip(&self.placements) {
            let Some(at) = placement.map(|o| o as usize) else { continue };
            match &member.program {
                Some(program) => {
                    let fd = program_fd(program).ok_or_else(|| {
                        invalid(
                            &value.type_name,
                            format!("member {} points to program {program}, which was not loaded", member.name),
                        )
                    })?;
                    image[at..at + 8].copy_from_slice(&u64::from(fd as u32).to_ne_bytes());
                }
                None => image[at..at + member.size as usize].copy_from_slice(member_bytes(value, member)?),
            }
        }
        Ok(image)
    }
}
