use std::ffi::CStr;
use std::os::fd::{BorrowedFd, OwnedFd};

use super::attr::{
    IterCreateAttr, LinkCreateAttr, LinkIterExtra, LinkMprogExtra, LinkNetfilterExtra, LinkNoExtra, LinkPerfEventExtra,
    LinkTracingExtra, LinkUpdateAttr, LinkUprobeMultiExtra, RawTracepointAttr, SingleFdAttr,
};
use super::{bpf_fd, fd_u32, ptr, raw_bpf, Cmd, SysResult};

/// The attach-kind specific part of `BPF_LINK_CREATE`.
#[derive(Clone, Copy, Debug)]
pub enum LinkTarget<'a> {
    /// Kinds that need nothing beyond target and attach type (XDP, cgroup, netns, sockmap,
    /// struct_ops); `target_btf_id` for BTF-typed tracing.
    Plain {
        /// BTF id of the target function, or 0.
        target_btf_id: u32,
    },
    /// TCX, netkit and cgroup mprog hooks: where in the chain to go.
    Mprog {
        /// `relative_fd` or `relative_id`, chosen by the `BPF_F_ID` flag.
        relative: u32,
        /// Fail with `ESTALE` unless the hook is at this revision (0: don't check).
        expected_revision: u64,
    },
    /// Iterators: `union bpf_iter_link_info` bytes.
    Iter {
        /// The link info (for example a map fd for `iter/bpf_map_elem`).
        info: &'a [u8],
    },
    /// Perf-event links.
    PerfEvent {
        /// Cookie readable with `bpf_get_attach_cookie`.
        cookie: u64,
    },
    /// fentry/fexit/fmod_ret/lsm links with a cookie.
    Tracing {
        /// BTF id of the target.
        target_btf_id: u32,
        /// Cookie readable with `bpf_get_attach_cookie`.
        cookie: u64,
    },
    /// `uprobe_multi`: one link for several places in one binary.
    UprobeMulti {
        /// The binary.
        path: &'a CStr,
        /// File offsets of the probed instructions.
        offsets: &'a [u64],
        /// Per offset, the file offset of a reference counter (USDT semaphore) to bump while
        /// attached, or empty for none.
        ref_ctr_offsets: &'a [u64],
        /// Per offset, the cookie `bpf_get_attach_cookie` returns, or empty for none.
        cookies: &'a [u64],
        /// `BPF_F_UPROBE_MULTI_RETURN` for return probes.
        flags: u32,
        /// Only this process (0: every process).
        pid: u32,
    },
    /// Netfilter hooks.
    Netfilter {
        /// Protocol family (`NFPROTO_IPV4`, …).
        pf: u32,
        /// Hook number (`NF_INET_LOCAL_IN`, …).
        hooknum: u32,
        /// Priority among the hook's functions.
        priority: i32,
        /// `BPF_F_NETFILTER_*` flags.
        flags: u32,
    },
}

fn create<E: Copy>(prog: BorrowedFd<'_>, target: u32, attach_type: u32, flags: u32, extra: E) -> SysResult<OwnedFd>
where
    LinkCreateAttr<E>: super::attr::Attr,
{
    let mut attr = LinkCreateAttr { prog_fd: fd_u32(prog), target, attach_type, flags, extra };
    bpf_fd(Cmd::LinkCreate, &mut attr)
}

/// `BPF_LINK_CREATE`: attaches `prog` (or a struct_ops map) to `target` (an ifindex, a cgroup,
/// netns or perf-event fd) and returns the link fd.
pub fn link_create(
    prog: BorrowedFd<'_>,
    target: u32,
    attach_type: u32,
    flags: u32,
    extra: LinkTarget<'_>,
) -> SysResult<OwnedFd> {
    match extra {
        LinkTarget::Plain { target_btf_id } => {
            create(prog, target, attach_type, flags, LinkNoExtra { target_btf_id, _pad: 0 })
        }
        LinkTarget::Mprog { relative, expected_revision } => {
            create(prog, target, attach_type, flags, LinkMprogExtra { relative, _pad: 0, expected_revision })
        }
        LinkTarget::Iter { info } => create(
            prog,
            target,
            attach_type,
            flags,
            LinkIterExtra { iter_info: ptr(info), iter_info_len: info.len() as u32, _pad: 0 },
        ),
        LinkTarget::PerfEvent { cookie } => {
            create(prog, target, attach_type, flags, LinkPerfEventExtra { bpf_cookie: cookie })
        }
        LinkTarget::Tracing { target_btf_id, cookie } => {
            create(prog, target, attach_type, flags, LinkTracingExtra { target_btf_id, _pad: 0, cookie })
        }
        LinkTarget::UprobeMulti { path, offsets, ref_ctr_offsets, cookies, flags: multi_flags, pid } => {
            // The kernel reads `cnt` entries from each array it is given: each must hold that many.
            let per_offset = |list: &[u64]| list.is_empty() || list.len() == offsets.len();
            if offsets.is_empty() || !per_offset(ref_ctr_offsets) || !per_offset(cookies) {
                return Err(super::SysError { cmd: Cmd::LinkCreate, errno: super::Errno::EINVAL });
            }
            let optional = |list: &[u64]| if list.is_empty() { 0 } else { ptr(list) };
            let extra = LinkUprobeMultiExtra {
                path: path.as_ptr() as u64,
                offsets: ptr(offsets),
                ref_ctr_offsets: optional(ref_ctr_offsets),
                cookies: optional(cookies),
                cnt: offsets.len() as u32,
                flags: multi_flags,
                pid,
                _pad: 0,
            };
            create(prog, target, attach_type, flags, extra)
        }
        LinkTarget::Netfilter { pf, hooknum, priority, flags: nf_flags } => {
            create(prog, target, attach_type, flags, LinkNetfilterExtra { pf, hooknum, priority, flags: nf_flags })
        }
    }
}

/// `BPF_LINK_UPDATE`: swaps the link's program atomically; with `old` set (and
/// `BPF_F_REPLACE` in `flags`), only if `old` is the one attached.
pub fn link_update(
    link: BorrowedFd<'_>,
    new_prog: BorrowedFd<'_>,
    old: Option<BorrowedFd<'_>>,
    flags: u32,
) -> SysResult<()> {
    let mut attr = LinkUpdateAttr {
        link_fd: fd_u32(link),
        new_prog_fd: fd_u32(new_prog),
        flags,
        old_prog_fd: old.map_or(0, fd_u32),
    };
    raw_bpf(Cmd::LinkUpdate, &mut attr).map(drop)
}

/// `BPF_LINK_DETACH`: detaches the link while its fd (and pins) stay valid.
pub fn link_detach(link: BorrowedFd<'_>) -> SysResult<()> {
    let mut attr = SingleFdAttr { value: fd_u32(link), _pad: 0 };
    raw_bpf(Cmd::LinkDetach, &mut attr).map(drop)
}

/// `BPF_RAW_TRACEPOINT_OPEN`: attaches a raw tracepoint program to `name` (or a BTF-typed
/// tracing program to its target when `name` is `None`).
pub fn raw_tracepoint_open(prog: BorrowedFd<'_>, name: Option<&CStr>, cookie: u64) -> SysResult<OwnedFd> {
    let mut attr =
        RawTracepointAttr { name: name.map_or(0, |n| n.as_ptr() as u64), prog_fd: fd_u32(prog), _pad: 0, cookie };
    bpf_fd(Cmd::RawTracepointOpen, &mut attr)
}

/// `BPF_ITER_CREATE`: a readable fd that runs the iterator link's program as it is read.
pub fn iter_create(link: BorrowedFd<'_>) -> SysResult<OwnedFd> {
    let mut attr = IterCreateAttr { link_fd: fd_u32(link), flags: 0 };
    bpf_fd(Cmd::IterCreate, &mut attr)
}
