//! A pure-Rust `bpf(2)` library: no libbpf, no C at run time.
//!
//! - `sys` (private): the only code that calls `bpf(2)`; one checked, safe function per
//!   command. What other crates need of it is public as small types: [`Errno`], [`SysError`],
//!   [`info`] (what the kernel reports about objects), [`mem`] (mapped kernel memory),
//!   [`perf`] (the events perf buffers read), [`btf`] (BTF blobs loaded into the kernel).
//! - [`insn`]: instruction encoding, an assembler and a disassembler in the kernel's syntax.
//! - [`map`]: [`MapSpec`] (plain data) and [`Map`] (a live map with a byte-level API; typed
//!   views live in the `ebpf-maps` crate).
//! - [`program`]: [`ProgramSpec`] and [`Program`]: load with the whole verifier log on
//!   rejection, test runs, info, pinning, enumeration by id.
//! - [`object`]: ELF objects as clang writes them for libbpf: [`CollectionSpec`] (programs with
//!   their subprograms, maps, global variables to template) and [`Collection`] (all loaded, all
//!   or nothing), CO-RE, externs, constant-index tail calls.
//! - [`link`]: attaching programs (XDP, TCX, cgroup hooks, tracing, struct_ops), detached on
//!   drop unless pinned.
//! - [`struct_ops`]: kernel interfaces implemented by BPF programs, as objects declare them.
//! - [`uprobe`], [`usdt`]: where user-space probes go (function offsets in executables and
//!   libraries; USDT notes and argument specs).
//! - [`features`]: what the running kernel supports, probed and cached.
//! - [`SharedVec`], [`SharedStr`]: how specs hold their bulky parts, so that a copy of a spec
//!   (an object opened again, one load per configuration) is a few reference counts and a
//!   program's instructions are encoded for the kernel once, not once per load.
//!
//! Loading an object, compiled once and configured at load:
//!
//! ```no_run
//! use ebpf_core::{Collection, CollectionSpec, LoadOptions, TestRun};
//!
//! let object = std::fs::read("bpf-programs/out/tests/template.o")?;
//! let mut spec = CollectionSpec::from_elf(&object)?;
//! spec.variable_mut("MODE")?.set(1u32)?; // checked against the variable's BTF type
//! let collection = Collection::load(spec, &LoadOptions::default())?;
//! let verdict = collection.program("templated")?.test_run(&TestRun::with_data(&[0u8; 64]))?;
//! assert_eq!(verdict.retval, 1); // XDP_DROP: the verifier pruned the other branches
//! collection.variable("bias")?.set(7u32)?; // a .data variable, written through mmap
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Programs by hand:
//!
//! ```no_run
//! use ebpf_core::insn::{Assembler, Reg};
//! use ebpf_core::{Program, ProgramSpec, ProgramType, TestRun};
//!
//! let mut asm = Assembler::new();
//! asm.mov64_imm(Reg::R0, 2).exit(); // XDP_PASS
//! let spec = ProgramSpec::from_assembled("pass", ProgramType::Xdp, asm.finish()?);
//! let program = Program::load(&spec)?;
//! let result = program.test_run(&TestRun::with_data(&[0u8; 64]))?;
//! assert_eq!(result.retval, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod error;
pub mod features;
pub mod insn;
pub mod kallsyms;
pub mod link;
pub mod map;
pub mod object;
pub mod program;
#[cfg(test)]
mod rootless_tests;
mod shared_str;
mod shared_vec;
pub mod struct_ops;
mod sys;
mod types;
pub mod uprobe;
pub mod usdt;

pub use error::{Error, Result, VerifierError};
pub use sys::{bpf_calls_on_this_thread, possible_cpus, Cmd, Errno, SysError};

/// What the kernel reports about its objects (`BPF_OBJ_GET_INFO_BY_FD`).
pub mod info {
    pub use crate::sys::{BtfInfo, JitedImage, LinkInfo, MapInfo, ProgInfo, ProgQuery};
}

/// Kernel memory mapped into this process: mmapable arrays, ring buffers, perf buffers.
pub mod mem {
    pub use crate::sys::{page_size, MmapRegion, RingData};
}

/// Network namespaces as BPF programs see them.
pub mod netns {
    /// The cookie of the network namespace `socket` lives in (`SO_NETNS_COOKIE`, Linux 5.14):
    /// what `bpf_get_netns_cookie()` returns in BPF for that namespace's sockets, so user space
    /// can fill a map BPF programs key by namespace.
    ///
    /// ```no_run
    /// let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    /// let cookie = ebpf_core::netns::cookie(&socket)?;
    /// assert_ne!(cookie, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cookie(socket: &impl std::os::fd::AsFd) -> Result<u64, crate::Errno> {
        crate::sys::netns_cookie(socket.as_fd())
    }
}

/// The perf events BPF programs write to (`bpf_perf_event_output`).
pub mod perf {
    pub use crate::sys::perf_event_open_bpf_output as open_bpf_output_event;
}

pub mod btf;
pub use map::{BatchCursor, Map, MapBtfTypes, MapContents, MapFlags, MapSpec, Pinning, UpdateFlags};
pub use object::{Collection, CollectionSpec};
pub use program::{BtfPolicy, LoadOptions, LogLevel, Program, ProgramFlags, ProgramSpec, TestRun, TestRunResult};
pub use shared_str::SharedStr;
pub use shared_vec::SharedVec;
pub use types::{AttachType, LinkType, MapType, ProgramType};
