use std::ffi::CStr;
use std::os::fd::OwnedFd;

use super::{Cache, Support};
use crate::insn::{encode, Instruction, RawInsn, Reg};
use crate::sys::{self, Errno, ProgLoad, SysError};
use crate::types::{AttachType, ProgramType};

/// A probe program load: everything but the instructions.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ProbeLoad {
    pub expected_attach_type: Option<AttachType>,
    pub attach_btf_id: u32,
    pub flags: u32,
}

/// How a program type's probe recognises support when the load itself must fail (types that
/// need an attach target get a deliberately invalid one).
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// The load succeeds.
    Load,
    /// The load fails with EINVAL and this log text: the kernel got as far as the target.
    LogSays(&'static str),
    /// The load fails with the kernel's ENOTSUPP: the type is known but needs a target.
    NotSupp,
}

pub(super) const GPL: &CStr = c"GPL";

/// `r0 = 0; exit`.
pub(super) fn return_zero() -> Vec<RawInsn> {
    encode(&[
        Instruction::Alu {
            width: crate::insn::Width::W64,
            op: crate::insn::AluOp::Mov,
            dst: Reg::R0,
            src: crate::insn::Source::Imm(0),
        },
        Instruction::Exit,
    ])
}

/// Loads a probe program with a log; returns the fd or error and the log text.
pub(super) fn try_load(
    program_type: ProgramType,
    probe: ProbeLoad,
    insns: &[RawInsn],
) -> (Result<OwnedFd, SysError>, String) {
    let mut request = ProgLoad::new(program_type.raw(), insns, GPL);
    request.expected_attach_type = probe.expected_attach_type.map_or(0, |t| t.raw());
    request.attach_btf_id = probe.attach_btf_id;
    request.prog_flags = probe.flags;
    let mut log = vec![0u8; 64 * 1024];
    loop {
        let outcome = sys::prog_load(&request, Some((&mut log, 1)));
        match outcome.result {
            Err(SysError { errno: Errno::ENOSPC, .. }) if log.len() < (1 << 26) => {
                let needed = (outcome.log_true_size as usize).max(log.len() * 4);
                log = vec![0u8; needed];
            }
            result => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                return (result, String::from_utf8_lossy(&log[..end]).into_owned());
            }
        }
    }
}

/// Whether this process may use `bpf(2)` at all: a socket filter is the least any kernel
/// with BPF accepts.
pub(super) fn privilege() -> Result<(), String> {
    static ANSWER: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ANSWER
        .get_or_init(|| match try_load(ProgramType::SocketFilter, ProbeLoad::default(), &return_zero()).0 {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("cannot load even a socket filter ({}); run as root", e.errno)),
        })
        .clone()
}

fn setup(program_type: ProgramType) -> (ProbeLoad, Expect) {
    let with = |t| ProbeLoad { expected_attach_type: Some(t), ..ProbeLoad::default() };
    match program_type {
        ProgramType::CgroupSockAddr => (with(AttachType::CgroupInet4Connect), Expect::Load),
        ProgramType::CgroupSockopt => (with(AttachType::CgroupGetsockopt), Expect::Load),
        ProgramType::SkLookup => (with(AttachType::SkLookup), Expect::Load),
        ProgramType::LircMode2 => (with(AttachType::LircMode2), Expect::Load),
        ProgramType::Netfilter => (with(AttachType::Netfilter), Expect::Load),
        ProgramType::Syscall => (ProbeLoad { flags: 1 << 4, ..ProbeLoad::default() }, Expect::Load),
        // Types that attach to a BTF-described kernel function: id 1 is never a function, so
        // a kernel that knows the type stops there and says so.
        ProgramType::Tracing => (
            ProbeLoad { expected_attach_type: Some(AttachType::TraceFentry), attach_btf_id: 1, flags: 0 },
            Expect::LogSays("attach_btf_id 1 is not a function"),
        ),
        ProgramType::Lsm => (
            ProbeLoad { expected_attach_type: Some(AttachType::LsmMac), attach_btf_id: 1, flags: 0 },
            Expect::LogSays("attach_btf_id 1 is not a function"),
        ),
        ProgramType::Ext => {
            (ProbeLoad { attach_btf_id: 1, ..ProbeLoad::default() }, Expect::LogSays("Cannot replace kernel functions"))
        }
        ProgramType::StructOps => (ProbeLoad::default(), Expect::NotSupp),
        _ => (ProbeLoad::default(), Expect::Load),
    }
}

/// The probe setup a helper probe of `program_type` loads with, when its probe program loads.
pub(super) fn loadable_setup(program_type: ProgramType) -> Option<ProbeLoad> {
    match setup(program_type) {
        (probe, Expect::Load) => Some(probe),
        _ => None,
    }
}

static CACHE: Cache<ProgramType> = Cache::new();

/// Whether programs of `program_type` can be loaded.
pub fn program_type(program_type: ProgramType) -> Support {
    CACHE.get_or_probe(program_type, || probe(program_type))
}

fn probe(program_type: ProgramType) -> Support {
    if let Err(why) = privilege() {
        return Support::Unknown(why);
    }
    let (setup, expect) = setup(program_type);
    let (result, log) = try_load(program_type, setup, &return_zero());
    let last_line = log.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").to_owned();
    match (result, expect) {
        (Ok(_), _) => Support::Yes,
        (Err(e), Expect::LogSays(text)) if e.errno == Errno::EINVAL && log.contains(text) => Support::Yes,
        (Err(e), Expect::NotSupp) if e.errno == Errno::ENOTSUPP => Support::Yes,
        (Err(e), _) if e.errno == Errno::EPERM => {
            Support::No("the kernel refuses to load this type (EPERM) although other types load".to_owned())
        }
        (Err(e), _) if e.errno == Errno::EINVAL && log.is_empty() => {
            Support::No("EINVAL before verification: type unknown to or not built into this kernel".to_owned())
        }
        (Err(e), _) => Support::Unknown(format!("probe load failed with {}: {last_line}", e.errno)),
    }
}
