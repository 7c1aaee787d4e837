//! BPF Type Format (BTF): the type information the kernel uses to understand maps and programs.
//!
//! This crate is pure data: it never makes a system call (it does read files for the kernel's
//! BTF in [`kernel`]).
//!
//! - [`Btf`] parses a `.BTF` blob in one validating pass and decodes types on demand:
//!   [`Btf::type_by_id`] returns a [`Type`] view whose names borrow the string section.
//! - [`BtfBuilder`] writes blobs the kernel accepts, type by type or from a parsed [`Btf`].
//! - [`raw_dump`] prints the listing `bpftool btf dump … format raw` prints.
//!
//! ```
//! use ebpf_btf::{Btf, BtfBuilder, BtfKind, IntEncoding, Member};
//!
//! let mut builder = BtfBuilder::new();
//! let int = builder.add_int("int", 4, IntEncoding::Signed);
//! builder.add_struct("pair", 8, &[
//!     Member { name: "a", ty: int, bit_offset: 0, bitfield_size: 0 },
//!     Member { name: "b", ty: int, bit_offset: 32, bitfield_size: 0 },
//! ]);
//! let btf = Btf::parse(builder.encode()).unwrap();
//! let pair = btf.find("pair", BtfKind::Struct).unwrap();
//! assert_eq!(pair.size(), Some(8));
//! assert_eq!(pair.members().map(|m| m.name).collect::<Vec<_>>(), ["a", "b"]);
//! ```

mod btf;
mod builder;
mod c_dump;
pub mod core;
mod ext;
mod header;
pub mod kernel;
mod kind;
pub mod merge;
mod patch;
mod query;
mod raw_dump;
mod sanitize;
mod types;

pub use btf::Btf;
pub use builder::{BtfBuilder, DatasecVar, EnumValue, IntEncoding, Linkage, Member, Param};
pub use c_dump::{c_dump, CDumper};
pub use ext::{BtfExt, CoreRelo, CoreReloKind, ExtSection, FuncInfo, LineInfo};
pub use header::{BtfError, BtfHeader, BTF_MAGIC};
pub use kind::{BtfKind, TypeId};
pub use patch::{BtfPatch, PatchError};
pub use query::FoundMember;
pub use raw_dump::{raw_dump, raw_type};
pub use sanitize::{sanitize, BtfSupport};
pub use types::{ArrayInfo, Enumerator, IntInfo, ProtoParam, SecVar, StructMember, Type, TypeLinkage};
