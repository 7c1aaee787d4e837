use std::os::fd::{AsFd, AsRawFd};

use super::Link;
use crate::error::{Error, Result};
use crate::program::Program;
use crate::sys::{self, LinkTarget};
use crate::types::AttachType;

// mprog ordering flags (include/uapi/linux/bpf.h).
const BPF_F_REPLACE: u32 = 1 << 2;
const BPF_F_BEFORE: u32 = 1 << 3;
const BPF_F_AFTER: u32 = 1 << 4;
const BPF_F_ID: u32 = 1 << 5;
const BPF_F_LINK: u32 = 1 << 13;

/// Where a TCX program goes: the hook and its place among the programs already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcxAttach {
    attach_type: AttachType,
    flags: u32,
    relative: u32,
}

impl TcxAttach {
    /// Traffic arriving on the interface.
    pub fn ingress() -> TcxAttach {
        TcxAttach { attach_type: AttachType::TcxIngress, flags: 0, relative: 0 }
    }

    /// Traffic leaving the interface.
    pub fn egress() -> TcxAttach {
        TcxAttach { attach_type: AttachType::TcxEgress, flags: 0, relative: 0 }
    }

    /// Run before every program already attached.
    pub fn first(self) -> TcxAttach {
        TcxAttach { flags: BPF_F_BEFORE, relative: 0, ..self }
    }

    /// Run after every program already attached (the default).
    pub fn last(self) -> TcxAttach {
        TcxAttach { flags: BPF_F_AFTER, relative: 0, ..self }
    }

    /// Run just before the program with id `program_id`.
    pub fn before_program(self, program_id: u32) -> TcxAttach {
        TcxAttach { flags: BPF_F_BEFORE | BPF_F_ID, relative: program_id, ..self }
    }

    /// Run just after the program with id `program_id`.
    pub fn after_program(self, program_id: u32) -> TcxAttach {
        TcxAttach { flags: BPF_F_AFTER | BPF_F_ID, relative: program_id, ..self }
    }

    /// Run just before the program of `link`.
    pub fn before_link(self, link: &Link) -> TcxAttach {
        TcxAttach { flags: BPF_F_BEFORE | BPF_F_LINK, relative: link.as_fd().as_raw_fd() as u32, ..self }
    }

    /// Run just after the program of `link`.
    pub fn after_link(self, link: &Link) -> TcxAttach {
        TcxAttach { flags: BPF_F_AFTER | BPF_F_LINK, relative: link.as_fd().as_raw_fd() as u32, ..self }
    }
}

/// A tc program attached through TCX (kernel 6.6+): a `bpf_link` on an interface's ingress or
/// egress, ordered among the others there.
#[derive(Debug)]
pub struct Tcx {
    link: Link,
}

impl Tcx {
    /// Attaches `program` (sched_cls) to interface `ifindex` of the calling thread's namespace.
    pub fn attach(program: &Program, ifindex: u32, at: TcxAttach) -> Result<Tcx> {
        let hook = if at.attach_type == AttachType::TcxIngress { "ingress" } else { "egress" };
        let what = format!("TCX {hook} link of program \"{}\" on ifindex {ifindex}", program.name());
        let extra = LinkTarget::Mprog { relative: at.relative, expected_revision: 0 };
        let fd = sys::link_create(program.as_fd(), ifindex, at.attach_type.raw(), at.flags & !BPF_F_REPLACE, extra)
            .map_err(|e| Error::syscall(format!("attach {what}"), e))?;
        Ok(Tcx { link: Link::new(fd, what) })
    }

    /// Ids of the programs on `ifindex`'s hook, in the order they run.
    pub fn query(ifindex: u32, at: TcxAttach) -> Result<Vec<u32>> {
        sys::prog_query(ifindex, at.attach_type.raw(), 0)
            .map(|q| q.prog_ids)
            .map_err(|e| Error::syscall(format!("query TCX programs on ifindex {ifindex}"), e))
    }
}

link_wrapper!(Tcx);
