//! What a spec still needs from the running kernel before it can load: CO-RE relocations
//! against the kernel's BTF, kernel symbols (kfuncs and ksyms) by name, and the BTF id of the
//! attach target of BTF-typed programs.

use std::sync::{Arc, Mutex};

use ebpf_btf::{Btf, BtfKind};

use super::spec::ProgramSpec;
use crate::error::{Error, Result};
use crate::insn::{self, apply_core_fixup, CallTarget, Instruction, LoadImm64, RawInsn};
use crate::types::{AttachType, ProgramType};

/// The process's copy of the running kernel's BTF, kept from the first load that needed it
/// until [`release_kernel_btf`].
static KERNEL: Mutex<Option<Arc<Btf>>> = Mutex::new(None);

/// Reads and indexes the running kernel's BTF (lazily: CO-RE touches a few types), without
/// keeping it: hand it to loads through [`LoadOptions::kernel_btf`](super::LoadOptions) to
/// control how long it lives.
pub fn read_kernel_btf() -> Result<Arc<Btf>> {
    let path = std::path::Path::new(ebpf_btf::kernel::SYS_BTF_DIR).join("vmlinux");
    let invalid = |reason: String| Error::InvalidSpec { object: "kernel BTF".to_owned(), reason };
    let bytes = std::fs::read(&path).map_err(|e| invalid(format!("read {}: {e}", path.display())))?;
    Btf::parse_lazy(bytes).map(Arc::new).map_err(|e| invalid(format!("parse {}: {e}", path.display())))
}

/// The running kernel's BTF, read on first use and kept for the process (about 6 MiB) until
/// [`release_kernel_btf`]; loads use it unless their options hand in their own.
pub fn kernel_btf() -> Result<Arc<Btf>> {
    let mut kept = KERNEL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(btf) = kept.as_ref() {
        return Ok(btf.clone());
    }
    let btf = read_kernel_btf()?;
    *kept = Some(btf.clone());
    Ok(btf)
}

/// Drops the process's copy of the kernel's BTF (loads holding it keep theirs until they
/// finish); the next load that needs it reads it again.
pub fn release_kernel_btf() {
    KERNEL.lock().unwrap_or_else(|e| e.into_inner()).take();
}

/// The kernel BTF a load uses: the one its options hand in, else the process's.
pub(crate) fn kernel_btf_for(given: Option<&Arc<Btf>>) -> Result<Arc<Btf>> {
    match given {
        Some(btf) => Ok(btf.clone()),
        None => kernel_btf(),
    }
}

fn needs_kernel(spec: &ProgramSpec) -> bool {
    !spec.core_relocations.is_empty()
        || !spec.ksym_references.is_empty()
        || (spec.attach_btf_id.is_none()
            && spec.attach_to.is_some()
            && (spec.program_type == ProgramType::StructOps || attach_btf_name(spec).is_some()))
}

/// The kernel BTF name a BTF-typed program attaches by.
fn attach_btf_name(spec: &ProgramSpec) -> Option<(String, BtfKind)> {
    let target = spec.attach_to.as_deref()?;
    let name = match (spec.program_type, spec.expected_attach_type?) {
        (ProgramType::Tracing, AttachType::TraceRawTp) => (format!("btf_trace_{target}"), BtfKind::Typedef),
        (ProgramType::Tracing, AttachType::TraceIter) => (format!("bpf_iter_{target}"), BtfKind::Func),
        (ProgramType::Tracing, _) => (target.to_owned(), BtfKind::Func),
        (ProgramType::Lsm, _) => (format!("bpf_lsm_{target}"), BtfKind::Func),
        _ => return None,
    };
    Some(name)
}

/// A program ready for the kernel: raw instructions, attach BTF id, and the CO-RE relocations
/// that matched nothing in this kernel (their instructions now call a helper that does not
/// exist, so the verifier rejects them if it reaches them).
pub(super) struct Prepared {
    /// Where its raw instructions sit in the buffer `prepare` appended them to; `None` when
    /// they are the spec's own encoding, unchanged.
    pub raw: Option<std::ops::Range<usize>>,
    pub attach_btf_id: Option<u32>,
    /// The raw expected attach type, when the kernel gave it (a struct_ops member's index);
    /// else the spec's.
    pub expected_attach_type: Option<u32>,
    /// (raw slot, what was asked for).
    pub poisoned: Vec<(usize, String)>,
}

/// Resolves everything kernel-specific in `spec`, and points its unbound map references at
/// the fds `map_fd` gives by name (a reference it does not know is an [`Error::UnboundMap`]).
/// Instructions that change (map fds, kernel fixups) are appended, encoded, to `out` (a
/// collection's programs share one buffer); the others load from the spec's own encoding.
pub(super) fn prepare(
    spec: &ProgramSpec,
    map_fd: &dyn Fn(&str) -> Option<i32>,
    out: &mut Vec<RawInsn>,
    kernel: Option<&Arc<Btf>>,
) -> Result<Prepared> {
    if spec.program_type == ProgramType::Unspec {
        return Err(unspecified_type(spec));
    }
    if spec.program_type == ProgramType::StructOps && spec.attach_to.is_none() && spec.attach_btf_id.is_none() {
        return Err(Error::InvalidSpec {
            object: format!("program \"{}\"", spec.name),
            reason: "no struct_ops value points to it, so it implements nothing: set attach_to to TYPE:MEMBER"
                .to_owned(),
        });
    }
    // Every reference resolved before any kernel work, so an unbound one fails first.
    let fds = spec
        .map_references
        .iter()
        .map(|reference| {
            map_fd(&reference.name).ok_or_else(|| Error::UnboundMap {
                program: spec.name.to_string(),
                map: reference.name.clone(),
                index: reference.index,
            })
        })
        .collect::<Result<Vec<i32>>>()?;
    let for_kernel = needs_kernel(spec);
    if fds.is_empty() && !for_kernel {
        return Ok(Prepared {
            raw: None,
            attach_btf_id: spec.attach_btf_id,
            expected_attach_type: None,
            poisoned: Vec::new(),
        });
    }
    let start = out.len();
    let (attach, poisoned) = if for_kernel {
        let (raw, attach, poisoned) = prepare_for_kernel(spec, kernel)?;
        out.extend_from_slice(&raw);
        (attach, poisoned)
    } else {
        out.extend_from_slice(spec.instructions.encoded());
        ((spec.attach_btf_id, None), Vec::new())
    };
    if !fds.is_empty() {
        bind_maps(spec, &mut out[start..], &fds)?;
    }
    Ok(Prepared { raw: Some(start..out.len()), attach_btf_id: attach.0, expected_attach_type: attach.1, poisoned })
}

/// A call to a weak kfunc the kernel lacks becomes a call of this helper id, which no kernel
/// has: the verifier only objects if the call can be reached (libbpf poisons such calls alike).
const POISONED_KFUNC_CALL: i32 = 2_002_000_000;

/// Kept out of line: the check above is on every load's path.
#[cold]
#[inline(never)]
fn unspecified_type(spec: &ProgramSpec) -> Error {
    let from = spec
        .section
        .as_ref()
        .map_or("its type is unspec".to_owned(), |s| format!("section \"{s}\" says no program type"));
    Error::InvalidSpec {
        object: format!("program \"{}\"", spec.name),
        reason: format!(
            "{from} (libbpf names such as xdp, tc, tcx/ingress, cgroup/connect4, socket, tp/<category>/<name>); \
             set its program_type before loading"
        ),
    }
}

const PSEUDO_MAP_FD: u8 = 1;

/// Writes the map fds (one per reference, in order) into the encoded 64-bit loads the
/// references name — the source kind and value offset are already there — as
/// [`ProgramSpec::bind_map`] does on the instructions, without copying them.
fn bind_maps(spec: &ProgramSpec, raw: &mut [RawInsn], fds: &[i32]) -> Result<()> {
    let slot_of = insn::slot_offsets(&spec.instructions);
    for (reference, &fd) in spec.map_references.iter().zip(fds) {
        match (spec.instructions.get(reference.index), slot_of.get(reference.index)) {
            (Some(Instruction::LoadImm64 { value: LoadImm64::MapValue { .. }, .. }), Some(&slot)) => raw[slot].imm = fd,
            (Some(Instruction::LoadImm64 { .. }), Some(&slot)) => {
                raw[slot].regs = (raw[slot].regs & 0x0f) | (PSEUDO_MAP_FD << 4);
                raw[slot].imm = fd;
                raw[slot + 1].imm = 0;
            }
            _ => return Err(super::spec::map_reference_not_a_load(&spec.name, reference)),
        }
    }
    Ok(())
}

/// (raw instructions, (attach BTF id, raw expected attach type), poisoned slots).
type ForKernel = (Vec<RawInsn>, (Option<u32>, Option<u32>), Vec<(usize, String)>);

// Kept out of line: most programs need none of it, and the common path stays small.
#[inline(never)]
fn prepare_for_kernel(spec: &ProgramSpec, kernel: Option<&Arc<Btf>>) -> Result<ForKernel> {
    let kernel = kernel_btf_for(kernel)?;
    let object = |reason: String| Error::InvalidSpec { object: format!("program \"{}\"", spec.name), reason };

    let mut attach_btf_id = spec.attach_btf_id;
    let mut expected_attach_type = None;
    if attach_btf_id.is_none() && spec.program_type == ProgramType::StructOps {
        if let Some(target) = &spec.attach_to {
            let (id, member) = crate::struct_ops::attach_point(&kernel, target)?;
            (attach_btf_id, expected_attach_type) = (Some(id), Some(member));
        }
    } else if attach_btf_id.is_none() {
        if let Some((name, kind)) = attach_btf_name(spec) {
            let found = kernel
                .find(&name, kind)
                .ok_or_else(|| object(format!("attach target {name} ({}) is not in the kernel's BTF", kind.name())))?;
            attach_btf_id = Some(found.id());
        }
    }

    let mut instructions = spec.instructions.clone();
    let mut symbols = None;
    for reference in &spec.ksym_references {
        let insn = instructions.get_mut(reference.index).ok_or_else(|| {
            object(format!("kernel symbol {} at instruction {} past the end", reference.name, reference.index))
        })?;
        if reference.is_call {
            *insn = match kernel.find(&reference.name, BtfKind::Func) {
                Some(func) => Instruction::Call(CallTarget::Kfunc { btf_id: func.id() as i32, btf_fd_index: 0 }),
                None if reference.weak => Instruction::Call(CallTarget::Helper(POISONED_KFUNC_CALL)),
                None => return Err(object(format!("kfunc {} is not in the kernel's BTF", reference.name))),
            };
            continue;
        }
        let Instruction::LoadImm64 { dst, .. } = *insn else {
            return Err(object(format!("kernel symbol {} is used by a non-load instruction", reference.name)));
        };
        let value = match kernel.find(&reference.name, BtfKind::Var) {
            Some(var) => LoadImm64::BtfId { btf_id: var.id() as i32, btf_fd: 0 },
            None => {
                let symbols = match &mut symbols {
                    Some(s) => s,
                    None => symbols.insert(crate::kallsyms::KernelSymbols::load().map_err(|e| Error::Io {
                        operation: "read",
                        path: "/proc/kallsyms".into(),
                        source: e,
                    })?),
                };
                match symbols.address_of(&reference.name) {
                    Some(address) => LoadImm64::Imm(address),
                    None if reference.weak => LoadImm64::Imm(0),
                    None => {
                        return Err(object(format!("kernel symbol {} is in neither BTF nor kallsyms", reference.name)))
                    }
                }
            }
        };
        *insn = Instruction::LoadImm64 { dst, value };
    }

    let mut raw = insn::encode(&instructions);
    let mut poisoned = Vec::new();
    if !spec.core_relocations.is_empty() {
        let blob = spec.btf.as_ref().ok_or_else(|| object("CO-RE relocations without the program's BTF".to_owned()))?;
        let local = Btf::parse(blob.blob.clone()).map_err(|e| object(format!("program BTF: {e}")))?;
        let slot_of = insn::slot_offsets(&instructions);
        for relocation in &spec.core_relocations {
            let slot = *slot_of
                .get(relocation.index)
                .ok_or_else(|| object(format!("CO-RE relocation at instruction {} past the end", relocation.index)))?;
            let fixup = ebpf_btf::core::resolve(&local, &relocation.relo, &[&kernel])
                .map_err(|e| object(format!("CO-RE: {e}")))?;
            apply_core_fixup(&mut raw, slot, &fixup).map_err(|e| object(e.to_string()))?;
            if fixup.poison {
                let relo = &relocation.relo;
                let root = local.type_by_id(relo.type_id).map_or("?", |t| t.name());
                poisoned.push((
                    slot,
                    format!(
                        "{} of {root} (access {}) has no match in the running kernel's types",
                        relo.kind.name(),
                        local.string(relo.access_str_off)
                    ),
                ));
            }
        }
    }
    Ok((raw, (attach_btf_id, expected_attach_type), poisoned))
}

/// The verifier's line for a call of the poison helper: `28: (85) call unknown#195896080`.
pub(super) fn poisoned_slot_in_log(log: &str) -> Option<usize> {
    let marker = format!("call unknown#{}", ebpf_btf::core::POISON_HELPER_ID);
    let line = log.lines().find(|l| l.contains(&marker))?;
    line.split(':').next()?.trim().parse().ok()
}
