//! BPF Type Format (BTF): the type information the kernel uses to understand maps and programs.
//!
//! This crate is pure data: it never makes a system call. It knows the BTF wire format
//! ([`BtfHeader`], [`BtfKind`]) and builds blobs the kernel accepts ([`BtfBuilder`]).
//!
//! ```
//! use ebpf_btf::{BtfBuilder, BtfHeader, IntEncoding};
//!
//! let mut btf = BtfBuilder::new();
//! let int = btf.add_int("int", 4, IntEncoding::Signed);
//! let ptr = btf.add_ptr(int);
//! assert_eq!((int.get(), ptr.get()), (1, 2));
//! let bytes = btf.encode();
//! let header = BtfHeader::parse(&bytes).unwrap();
//! assert_eq!(header.type_len, 2 * 12 + 4);
//! ```

mod builder;
mod header;
mod kind;

pub use builder::{BtfBuilder, DatasecVar, EnumValue, IntEncoding, Linkage, Member, Param};
pub use header::{BtfError, BtfHeader, BTF_MAGIC};
pub use kind::{BtfKind, TypeId};
