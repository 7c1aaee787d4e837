//! ELF objects as clang writes them for libbpf: [`CollectionSpec::from_elf`] reads programs
//! (subprograms linked in), maps (BTF-defined and legacy), global data and its variables,
//! relocations and CO-RE records into plain data; [`Collection::load`] turns a spec into live
//! maps and programs, all or nothing.
//!
//! ```no_run
//! use ebpf_core::object::{Collection, CollectionSpec};
//! use ebpf_core::LoadOptions;
//!
//! let object = std::fs::read("bpf-programs/out/tests/xdp_count.o")?;
//! let mut spec = CollectionSpec::from_elf(&object)?;
//! spec.variable_mut("DROP_PORT")?.set(8080u16)?;
//! let collection = Collection::load(spec, &LoadOptions::default())?;
//! let program = collection.program("xdp_count")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod btf;
mod collection;
mod data;
mod elf;
mod error;
mod kconfig;
pub mod layout;
mod linker;
mod maps;
mod section;
mod spec;
mod static_link;
mod struct_ops;
mod tail_calls;
mod variable;

pub use btf::{read_btf, ObjectBtf};
pub use collection::{pin_name, Collection, Variable};
pub use data::{KconfigExtern, KCONFIG_MAP};
pub use error::ObjectError;
pub use kconfig::kernel_config;
pub use section::{classify, SectionKind};
pub use spec::CollectionSpec;
pub use static_link::{LinkError, Linker};
pub use tail_calls::{tail_call_sites, TailCallIndex, TailCallSite};
pub use variable::{ValueKind, VariableSpec, VariableType, VariableValue};
