//! ELF objects as clang and libbpf write them. So far: the BTF an object carries (the
//! collection loader builds on this).

mod btf;

pub use btf::{read_btf, ObjectBtf};
