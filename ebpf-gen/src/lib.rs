//! Typed Rust skeletons generated from a BPF object's BTF — what `bpf2go` is for cilium/ebpf and
//! the skeleton is for libbpf-cargo.
//!
//! From a compiled object, [`skeleton`] writes Rust source holding:
//! - a `#[repr(C)]`, [`bytemuck::Pod`](https://docs.rs/bytemuck) type for every struct, union and
//!   enum its maps and global variables reach, C names kept, padding explicit, bitfields and
//!   union members behind accessors, a compile-time assertion of every size and offset;
//! - C enums as integer newtypes with their enumerators as constants, so constants shared with
//!   user space are written once, in C;
//! - `Open<Name>` (the parsed object: typed get/set of every global before load) and `<Name>`
//!   (the loaded object: typed map views from `ebpf-maps`, programs, live `.data`/`.bss`), both
//!   checked against the object when it is opened — a skeleton generated from another build is a
//!   clear error naming the map, variable or type and the member that moved
//!   ([`ebpf_core::object::layout`]).
//!
//! The generated code needs `ebpf-core`, `ebpf-maps` and `bytemuck` (features `derive` and
//! `min_const_generics`). Reach it with `ebpftool gen skeleton OBJ [--name NAME]`, or from a
//! build script:
//!
//! ```no_run
//! // build.rs
//! ebpf_gen::build::skeleton("../bpf-programs/out/netstack/endpoint.o", "endpoint").unwrap();
//! ```
//! ```ignore
//! // src/lib.rs
//! mod endpoint { include!(concat!(env!("OUT_DIR"), "/endpoint.skel.rs")); }
//! ```

mod format;
mod names;
mod skeleton;
mod types;

pub mod build;

pub use format::rustfmt;

/// Why a skeleton could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// The object does not parse.
    #[error("object {object}: {source}")]
    Object {
        /// The object's file name.
        object: String,
        /// The parser's error.
        #[source]
        source: Box<ebpf_core::object::ObjectError>,
    },
    /// The object's BTF does not read, or a size in it does not resolve.
    #[error("BTF: {0}")]
    Btf(#[from] ebpf_btf::BtfError),
    /// A type id the BTF refers to is missing, does not resolve or nests too deep.
    #[error("BTF type [{id}] {problem}")]
    BadType {
        /// The type id.
        id: u32,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A type the generator cannot express in Rust.
    #[error("cannot generate: {0}")]
    Unsupported(String),
    /// Reading the object or writing the skeleton failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// How to generate a skeleton.
#[derive(Clone, Debug)]
pub struct SkeletonOptions {
    /// The skeleton's name (`endpoint` gives `OpenEndpoint` and `Endpoint`).
    pub name: String,
    /// The object's file name, for doc comments and errors (`endpoint.o`).
    pub object_name: String,
    /// The path `include_bytes!` embeds the object from, as the generated file will see it
    /// (absolute, or relative to the generated file).
    pub include_path: String,
}

/// Rust source of the skeleton of `object` (the ELF bytes).
pub fn skeleton(object: &[u8], options: &SkeletonOptions) -> Result<String, GenError> {
    skeleton::generate(object, options)
}
