use std::ffi::CString;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use super::attr::{ObjPinAttr, ProgAttachAttr, ProgQueryAttr};
use super::{bpf_fd, fd_u32, mut_ptr, raw_bpf, Cmd, Errno, SysError, SysResult};

fn c_path(cmd: Cmd, path: &Path) -> SysResult<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| SysError { cmd, errno: Errno::EINVAL })
}

/// `BPF_OBJ_PIN`: pins a map, program, link or BTF object at `path` on a bpffs mount.
pub fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> SysResult<()> {
    let path = c_path(Cmd::ObjPin, path)?;
    let mut attr = ObjPinAttr { pathname: path.as_ptr() as u64, bpf_fd: fd_u32(fd), ..Default::default() };
    raw_bpf(Cmd::ObjPin, &mut attr).map(drop)
}

/// `BPF_OBJ_GET`: opens the object pinned at `path` (`file_flags`: `BPF_F_RDONLY`/`BPF_F_WRONLY`).
pub fn obj_get(path: &Path, file_flags: u32) -> SysResult<OwnedFd> {
    let path = c_path(Cmd::ObjGet, path)?;
    let mut attr = ObjPinAttr { pathname: path.as_ptr() as u64, file_flags, ..Default::default() };
    bpf_fd(Cmd::ObjGet, &mut attr)
}

/// What kind of BPF object an fd refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// A program.
    Program,
    /// A map.
    Map,
    /// A link.
    Link,
    /// A BTF object, or not a BPF fd at all.
    Other,
}

/// The kind of BPF object behind `fd`, from `/proc/self/fdinfo` (info-by-fd cannot tell: it
/// fills whatever info struct matches the fd into the caller's buffer).
pub fn object_kind(fd: BorrowedFd<'_>) -> ObjectKind {
    use std::os::fd::AsRawFd;
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap_or_default();
    let has = |key: &str| text.lines().any(|l| l.starts_with(key));
    if has("prog_type:") {
        ObjectKind::Program
    } else if has("map_type:") {
        ObjectKind::Map
    } else if has("link_type:") {
        ObjectKind::Link
    } else {
        ObjectKind::Other
    }
}

/// `BPF_PROG_ATTACH` of `prog` to `target` (a cgroup, netns, sockmap fd, or an ifindex for
/// TCX), with optional program to replace and mprog ordering.
pub fn prog_attach(
    target: u32,
    prog: BorrowedFd<'_>,
    attach_type: u32,
    attach_flags: u32,
    replace_or_relative: u32,
    expected_revision: u64,
) -> SysResult<()> {
    let mut attr = ProgAttachAttr {
        target,
        attach_bpf_fd: fd_u32(prog),
        attach_type,
        attach_flags,
        replace_bpf_fd: replace_or_relative,
        relative: 0,
        expected_revision,
    };
    raw_bpf(Cmd::ProgAttach, &mut attr).map(drop)
}

/// `BPF_PROG_DETACH` of `prog` (or of whatever is attached, for single-program hooks).
pub fn prog_detach(target: u32, prog: Option<BorrowedFd<'_>>, attach_type: u32) -> SysResult<()> {
    let mut attr = ProgAttachAttr { target, attach_bpf_fd: prog.map_or(0, fd_u32), attach_type, ..Default::default() };
    raw_bpf(Cmd::ProgDetach, &mut attr).map(drop)
}

/// What `BPF_PROG_QUERY` reports about one hook.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgQuery {
    /// Flags the hook was attached with.
    pub attach_flags: u32,
    /// Attached program ids, in run order.
    pub prog_ids: Vec<u32>,
    /// Link ids beside them (0 where a program is attached without a link).
    pub link_ids: Vec<u32>,
    /// The hook's revision counter (mprog hooks; 0 elsewhere).
    pub revision: u64,
}

/// `BPF_PROG_QUERY`: the programs attached to `target` at `attach_type`.
pub fn prog_query(target: u32, attach_type: u32, query_flags: u32) -> SysResult<ProgQuery> {
    let mut attr = ProgQueryAttr { target, attach_type, query_flags, ..Default::default() };
    raw_bpf(Cmd::ProgQuery, &mut attr)?;
    loop {
        let capacity = attr.count;
        let mut prog_ids = vec![0u32; capacity as usize];
        let mut link_ids = vec![0u32; capacity as usize];
        attr = ProgQueryAttr {
            target,
            attach_type,
            query_flags,
            prog_ids: mut_ptr(&mut prog_ids),
            link_ids: mut_ptr(&mut link_ids),
            count: capacity,
            ..Default::default()
        };
        match raw_bpf(Cmd::ProgQuery, &mut attr) {
            // The hook gained programs between the two calls: ask again with more room.
            Err(SysError { errno: Errno::ENOSPC, .. }) => continue,
            Err(SysError { errno: Errno::EINVAL, .. }) if capacity > 0 => {
                // Hooks that predate link ids refuse the link_ids pointer.
                attr = ProgQueryAttr {
                    target,
                    attach_type,
                    query_flags,
                    prog_ids: mut_ptr(&mut prog_ids),
                    count: capacity,
                    ..Default::default()
                };
                raw_bpf(Cmd::ProgQuery, &mut attr)?;
                link_ids.iter_mut().for_each(|id| *id = 0);
            }
            other => {
                other?;
            }
        }
        let n = (attr.count as usize).min(prog_ids.len());
        prog_ids.truncate(n);
        link_ids.truncate(n);
        return Ok(ProgQuery { attach_flags: attr.attach_flags, prog_ids, link_ids, revision: attr.revision });
    }
}
