use std::os::fd::OwnedFd;

use super::attr::GetIdAttr;
use super::{bpf_fd, raw_bpf, Cmd, Errno, SysError, SysResult};

/// The kinds of kernel BPF object that have global ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdKind {
    /// Programs.
    Prog,
    /// Maps.
    Map,
    /// BTF objects.
    Btf,
    /// Links.
    Link,
}

impl IdKind {
    fn next_cmd(self) -> Cmd {
        match self {
            IdKind::Prog => Cmd::ProgGetNextId,
            IdKind::Map => Cmd::MapGetNextId,
            IdKind::Btf => Cmd::BtfGetNextId,
            IdKind::Link => Cmd::LinkGetNextId,
        }
    }
}

/// The `*_GET_NEXT_ID` family: the first id above `start`, or `None` past the last.
pub fn next_id(kind: IdKind, start: u32) -> SysResult<Option<u32>> {
    let mut attr = GetIdAttr { id: start, ..Default::default() };
    match raw_bpf(kind.next_cmd(), &mut attr) {
        Ok(_) => Ok(Some(attr.next_id)),
        Err(SysError { errno: Errno::ENOENT, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn fd_by_id(cmd: Cmd, id: u32, open_flags: u32) -> SysResult<OwnedFd> {
    let mut attr = GetIdAttr { id, open_flags, ..Default::default() };
    bpf_fd(cmd, &mut attr)
}

/// `BPF_PROG_GET_FD_BY_ID`.
pub fn prog_fd_by_id(id: u32) -> SysResult<OwnedFd> {
    fd_by_id(Cmd::ProgGetFdById, id, 0)
}

/// `BPF_MAP_GET_FD_BY_ID` (`open_flags`: `BPF_F_RDONLY`/`BPF_F_WRONLY` or 0).
pub fn map_fd_by_id(id: u32, open_flags: u32) -> SysResult<OwnedFd> {
    fd_by_id(Cmd::MapGetFdById, id, open_flags)
}

/// `BPF_BTF_GET_FD_BY_ID`.
pub fn btf_fd_by_id(id: u32) -> SysResult<OwnedFd> {
    fd_by_id(Cmd::BtfGetFdById, id, 0)
}

/// `BPF_LINK_GET_FD_BY_ID`.
pub fn link_fd_by_id(id: u32) -> SysResult<OwnedFd> {
    fd_by_id(Cmd::LinkGetFdById, id, 0)
}
