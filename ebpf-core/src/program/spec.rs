use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

use bytes::Bytes;
use ebpf_btf::CoreRelo;

use crate::error::{Error, Result};
use crate::insn::{Assembled, Instruction, LoadImm64, MapReference, RawInsn};
use crate::map::Map;
use crate::types::{AttachType, ProgramType};
use crate::SharedStr;

bitflags::bitflags! {
    /// `BPF_F_*` flags of a program load.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct ProgramFlags: u32 {
        /// Verify with strict alignment checks.
        const STRICT_ALIGNMENT = 1 << 0;
        /// Allow any alignment (tests only).
        const ANY_ALIGNMENT = 1 << 1;
        /// Randomise the upper 32 bits after 32-bit operations (tests only).
        const TEST_RND_HI32 = 1 << 2;
        /// Sleepable program (may call sleeping helpers).
        const SLEEPABLE = 1 << 4;
        /// XDP program that handles multi-buffer frames.
        const XDP_HAS_FRAGS = 1 << 5;
        /// XDP program bound to one device's metadata kfuncs.
        const XDP_DEV_BOUND_ONLY = 1 << 6;
    }
}

/// BTF that describes a program: the blob and its `bpf_func_info`/`bpf_line_info` records,
/// so verifier logs and dumps show C functions and source lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgramBtf {
    /// The `.BTF` blob to load (shared: every program of an object carries the same one).
    pub blob: Bytes,
    /// `bpf_func_info` records (shared, like the blob: copies of a spec copy no records).
    pub func_info: Bytes,
    /// Size of one func info record.
    pub func_info_rec_size: u32,
    /// `bpf_line_info` records.
    pub line_info: Bytes,
    /// Size of one line info record.
    pub line_info_rec_size: u32,
}

/// A program as plain data: name, type, instructions and what the loader needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramSpec {
    /// Name (the kernel keeps the first 15 characters; shared with the programs loaded from
    /// the spec).
    pub name: SharedStr,
    /// ELF section it came from, if any (named in errors; shared by the section's programs).
    pub section: Option<SharedStr>,
    /// Kind of program.
    pub program_type: ProgramType,
    /// Attach type the verifier checks against, where the program type needs one.
    pub expected_attach_type: Option<AttachType>,
    /// Instructions (shared with copies of the spec until one of them edits its own).
    pub instructions: Instructions,
    /// Map loads still waiting for a map (see [`ProgramSpec::bind_map`]).
    pub map_references: Vec<MapReference>,
    /// License, as the kernel reads it (a C string); GPL-only helpers need a GPL-compatible
    /// one. Shared by an object's programs.
    pub license: Arc<CStr>,
    /// Kernel version word (only old kprobe loaders check it).
    pub kernel_version: u32,
    /// Load flags.
    pub flags: ProgramFlags,
    /// BTF id of the attach target, for BTF-typed program types.
    pub attach_btf_id: Option<u32>,
    /// Function and line info.
    pub btf: Option<ProgramBtf>,
    /// What to attach to, from the section name (`tp/net/netif_rx` → `net/netif_rx`,
    /// `iter/bpf_map` → `bpf_map`); BTF-typed programs find their attach id by it at load.
    /// A struct_ops program names the kernel struct and the member it implements,
    /// `TYPE:MEMBER` (`tcp_congestion_ops:cong_avoid`), from the struct_ops value pointing to it.
    pub attach_to: Option<String>,
    /// CO-RE relocations, applied against the running kernel's BTF at load.
    pub core_relocations: Vec<CoreRelocation>,
    /// Kernel symbols (kfuncs, ksyms) referred to by name, resolved at load.
    pub ksym_references: Vec<KsymReference>,
    /// Whether [`Collection::load`](crate::object::Collection::load) loads it (default true).
    /// A program left out is never resolved (attach target, kfuncs, CO-RE) nor loaded, so a
    /// tool can carry variants for several kernels and load only the one that fits (libbpf's
    /// `autoload`). Prog-array slots naming it stay empty.
    pub autoload: bool,
}

/// A program's instructions, shared between copies of a spec until one of them is edited:
/// templating clones a spec per load, and the clone copies no instructions. Their encoding
/// for the kernel (`encoded`) is made once per
/// version and shared too.
///
/// ```
/// use ebpf_core::insn::Instruction;
/// use ebpf_core::program::Instructions;
///
/// let original = Instructions::from(vec![Instruction::Exit]);
/// let mut copy = original.clone();
/// copy.insert(0, Instruction::Exit); // the copy gets its own vector here
/// assert_eq!((original.len(), copy.len()), (1, 2));
/// assert_eq!(copy.encoded().len(), 2);
/// ```
pub type Instructions = crate::SharedVec<Instruction, Box<[RawInsn]>>;

impl Instructions {
    /// The instructions as the kernel reads them (unbound map references still unbound), encoded
    /// on the first call for this version of the instructions and kept with it.
    pub fn encoded(&self) -> &[RawInsn] {
        self.derived(|list| crate::insn::encode(list).into_boxed_slice())
    }
}

/// A CO-RE relocation of the instruction at `index` (an index into
/// [`ProgramSpec::instructions`], not a raw slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreRelocation {
    /// Instruction index.
    pub index: usize,
    /// The record from `.BTF.ext`, type ids and strings in [`ProgramBtf::blob`].
    pub relo: CoreRelo,
}

/// A reference to a kernel symbol by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KsymReference {
    /// Instruction index.
    pub index: usize,
    /// Symbol name.
    pub name: String,
    /// A call (a kfunc) or an address load (a ksym variable).
    pub is_call: bool,
    /// Declared `__weak`: when the kernel lacks the symbol, an address load gives 0 and a call
    /// is poisoned (an invalid helper the verifier rejects only if it can be reached), so
    /// `if (bpf_ksym_exists(sym))` guards work — libbpf's rule. A strong one fails the load.
    pub weak: bool,
}

impl ProgramSpec {
    /// A spec for `instructions` with license `GPL` and nothing else set.
    pub fn new(name: &str, program_type: ProgramType, instructions: Vec<Instruction>) -> ProgramSpec {
        ProgramSpec {
            name: name.into(),
            section: None,
            program_type,
            expected_attach_type: None,
            instructions: instructions.into(),
            map_references: Vec::new(),
            license: c"GPL".into(),
            kernel_version: 0,
            flags: ProgramFlags::empty(),
            attach_btf_id: None,
            btf: None,
            attach_to: None,
            core_relocations: Vec::new(),
            ksym_references: Vec::new(),
            autoload: true,
        }
    }

    /// A spec from assembler output, keeping its map references to bind.
    pub fn from_assembled(name: &str, program_type: ProgramType, assembled: Assembled) -> ProgramSpec {
        let mut spec = ProgramSpec::new(name, program_type, assembled.instructions);
        spec.map_references = assembled.map_references;
        spec
    }

    /// The same spec with an expected attach type.
    pub fn with_attach_type(mut self, attach_type: AttachType) -> ProgramSpec {
        self.expected_attach_type = Some(attach_type);
        self
    }

    /// Points every reference to the map called `name` at `map`. The map must stay open until
    /// the program is loaded (the kernel then holds its own reference). Returns how many
    /// instructions were bound.
    pub fn bind_map(&mut self, name: &str, map: &Map) -> Result<usize> {
        let fd = map.as_fd().as_raw_fd();
        let mut bound = 0;
        let mut remaining = Vec::with_capacity(self.map_references.len());
        for reference in std::mem::take(&mut self.map_references) {
            if reference.name != name {
                remaining.push(reference);
                continue;
            }
            let insn = self.instructions.get_mut(reference.index);
            match insn {
                Some(Instruction::LoadImm64 { value, .. }) => {
                    *value = match *value {
                        LoadImm64::MapValue { offset, .. } => LoadImm64::MapValue { fd, offset },
                        _ => LoadImm64::MapFd(fd),
                    };
                    bound += 1;
                }
                _ => return Err(map_reference_not_a_load(&self.name, &reference)),
            }
        }
        self.map_references = remaining;
        Ok(bound)
    }
}

/// The error for a map reference whose instruction is not a 64-bit immediate load.
pub(crate) fn map_reference_not_a_load(program: &str, reference: &MapReference) -> Error {
    Error::InvalidSpec {
        object: format!("program \"{program}\""),
        reason: format!(
            "map reference \"{}\" at instruction {} is not a 64-bit immediate load",
            reference.name, reference.index
        ),
    }
}
