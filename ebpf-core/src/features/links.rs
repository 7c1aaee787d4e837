use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use super::netns::in_throwaway_netns;
use super::programs::{privilege, program_type, return_zero, try_load, ProbeLoad};
use super::{Cache, Support};
use crate::sys::{self, Errno, LinkTarget, MapCreate, SysError};
use crate::types::{AttachType, LinkType, MapType, ProgramType};

static CACHE: Cache<LinkType> = Cache::new();

/// Whether links of `link_type` can be created.
pub fn link_type(link_type: LinkType) -> Support {
    CACHE.get_or_probe(link_type, || probe(link_type))
}

fn load(program_type: ProgramType, attach: Option<AttachType>) -> Result<OwnedFd, Support> {
    match program_type_support(program_type) {
        Support::Yes => {}
        other => return Err(other),
    }
    let setup = ProbeLoad { expected_attach_type: attach, ..ProbeLoad::default() };
    try_load(program_type, setup, &return_zero())
        .0
        .map_err(|e| Support::Unknown(format!("probe program did not load: {}", e.errno)))
}

fn program_type_support(t: ProgramType) -> Support {
    match program_type(t) {
        Support::Yes => Support::Yes,
        Support::No(why) => Support::No(format!("{t} programs unavailable: {why}")),
        Support::Unknown(why) => Support::Unknown(format!("{t} programs: {why}")),
    }
}

/// `EBADF` for an invalid target fd means the kernel understood the attach type and went
/// looking for the target; `EINVAL` means it did not know the attach type.
fn bad_target_answer(result: Result<OwnedFd, SysError>) -> Support {
    match result {
        Err(e) if e.errno == Errno::EBADF => Support::Yes,
        Err(e) if e.errno == Errno::EINVAL => Support::No("EINVAL: the kernel does not know this link kind".to_owned()),
        Err(e) => Support::Unknown(format!("probe link failed with {}", e.errno)),
        Ok(_) => Support::Unknown("the kernel accepted an invalid target".to_owned()),
    }
}

fn created(result: Result<OwnedFd, SysError>, expected: LinkType) -> Support {
    match result {
        Ok(link) => match sys::link_info(link.as_fd()) {
            Ok(info) if info.link_type == expected.raw() => Support::Yes,
            Ok(info) => Support::Unknown(format!("the link reports type {}", info.link_type)),
            Err(e) => Support::Unknown(format!("link created but its info is unreadable: {}", e.errno)),
        },
        Err(e) if e.errno == Errno::EINVAL => Support::No("EINVAL: the kernel does not know this link kind".to_owned()),
        Err(e) if e.errno == Errno::EOPNOTSUPP => Support::No("EOPNOTSUPP: not built into this kernel".to_owned()),
        Err(e) => Support::Unknown(format!("probe link failed with {}", e.errno)),
    }
}

const LOOPBACK_IFINDEX: u32 = 1;

fn in_netns(f: impl FnOnce(OwnedFd) -> Support + Send + 'static) -> Support {
    in_throwaway_netns(f).unwrap_or_else(Support::Unknown)
}

fn probe(link_type: LinkType) -> Support {
    if let Err(why) = privilege() {
        return Support::Unknown(why);
    }
    let attempt = || -> Result<Support, Support> {
        Ok(match link_type {
            LinkType::RawTracepoint => {
                let prog = load(ProgramType::RawTracepoint, None)?;
                let result = sys::raw_tracepoint_open(prog.as_fd(), Some(c"sys_enter"), 0);
                created(result, LinkType::RawTracepoint)
            }
            LinkType::Cgroup => {
                let prog = load(ProgramType::CgroupSkb, Some(AttachType::CgroupInetIngress))?;
                let result = sys::link_create(
                    prog.as_fd(),
                    u32::MAX,
                    AttachType::CgroupInetIngress.raw(),
                    0,
                    LinkTarget::Plain { target_btf_id: 0 },
                );
                bad_target_answer(result)
            }
            LinkType::PerfEvent => {
                let prog = load(ProgramType::PerfEvent, None)?;
                let result = sys::link_create(
                    prog.as_fd(),
                    u32::MAX,
                    AttachType::PerfEvent.raw(),
                    0,
                    LinkTarget::PerfEvent { cookie: 0 },
                );
                bad_target_answer(result)
            }
            LinkType::Netns => {
                let prog = load(ProgramType::SkLookup, Some(AttachType::SkLookup))?;
                in_netns(move |netns| {
                    let result = sys::link_create(
                        prog.as_fd(),
                        netns.as_raw_fd() as u32,
                        AttachType::SkLookup.raw(),
                        0,
                        LinkTarget::Plain { target_btf_id: 0 },
                    );
                    created(result, LinkType::Netns)
                })
            }
            LinkType::Xdp => {
                let prog = load(ProgramType::Xdp, Some(AttachType::Xdp))?;
                in_netns(move |_| {
                    const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
                    let result = sys::link_create(
                        prog.as_fd(),
                        LOOPBACK_IFINDEX,
                        AttachType::Xdp.raw(),
                        XDP_FLAGS_SKB_MODE,
                        LinkTarget::Plain { target_btf_id: 0 },
                    );
                    created(result, LinkType::Xdp)
                })
            }
            LinkType::Tcx => {
                let prog = load(ProgramType::SchedCls, None)?;
                in_netns(move |_| {
                    let result = sys::link_create(
                        prog.as_fd(),
                        LOOPBACK_IFINDEX,
                        AttachType::TcxIngress.raw(),
                        0,
                        LinkTarget::Mprog { relative: 0, expected_revision: 0 },
                    );
                    created(result, LinkType::Tcx)
                })
            }
            LinkType::Netkit => {
                let prog = load(ProgramType::SchedCls, None)?;
                in_netns(move |_| {
                    // Loopback is not a netkit device: a kernel with netkit links says ENXIO.
                    match sys::link_create(
                        prog.as_fd(),
                        LOOPBACK_IFINDEX,
                        AttachType::NetkitPrimary.raw(),
                        0,
                        LinkTarget::Mprog { relative: 0, expected_revision: 0 },
                    ) {
                        Err(e) if e.errno == Errno::ENXIO => Support::Yes,
                        other => created(other, LinkType::Netkit),
                    }
                })
            }
            LinkType::Netfilter => {
                let prog = load(ProgramType::Netfilter, Some(AttachType::Netfilter))?;
                in_netns(move |_| {
                    const NFPROTO_IPV4: u32 = 2;
                    const NF_INET_LOCAL_IN: u32 = 1;
                    let target =
                        LinkTarget::Netfilter { pf: NFPROTO_IPV4, hooknum: NF_INET_LOCAL_IN, priority: 1, flags: 0 };
                    created(
                        sys::link_create(prog.as_fd(), 0, AttachType::Netfilter.raw(), 0, target),
                        LinkType::Netfilter,
                    )
                })
            }
            LinkType::Sockmap => {
                let prog = load(ProgramType::SkSkb, Some(AttachType::SkSkbStreamVerdict))?;
                let map = sys::map_create(&MapCreate {
                    map_type: MapType::Sockmap.raw(),
                    key_size: 4,
                    value_size: 4,
                    max_entries: 1,
                    ..Default::default()
                })
                .map_err(|e| Support::Unknown(format!("could not create a sockmap: {}", e.errno)))?;
                let result = sys::link_create(
                    prog.as_fd(),
                    map.as_fd().as_raw_fd() as u32,
                    AttachType::SkSkbStreamVerdict.raw(),
                    0,
                    LinkTarget::Plain { target_btf_id: 0 },
                );
                created(result, LinkType::Sockmap)
            }
            LinkType::Tracing | LinkType::Iter => match program_type_support(ProgramType::Tracing) {
                Support::Yes => {
                    Support::Unknown("needs a kernel function's BTF id to attach to; not probed".to_owned())
                }
                other => other,
            },
            LinkType::StructOps => {
                Support::Unknown("needs a struct_ops map registered against a kernel type; not probed".to_owned())
            }
            LinkType::KprobeMulti | LinkType::UprobeMulti => {
                let attach = if link_type == LinkType::KprobeMulti {
                    AttachType::TraceKprobeMulti
                } else {
                    AttachType::TraceUprobeMulti
                };
                let prog = load(ProgramType::Kprobe, Some(attach))?;
                // With no targets, a kernel built without fprobe/uprobes says EOPNOTSUPP; one
                // built with them says EINVAL, as does a kernel that predates the link kind.
                match sys::link_create(prog.as_fd(), 0, attach.raw(), 0, LinkTarget::Plain { target_btf_id: 0 }) {
                    Err(e) if e.errno == Errno::EOPNOTSUPP => {
                        Support::No("EOPNOTSUPP: not built into this kernel".to_owned())
                    }
                    Err(e) => Support::Unknown(format!(
                        "{} without targets; only attaching to real functions would tell",
                        e.errno
                    )),
                    Ok(_) => Support::Unknown("the kernel accepted a link without targets".to_owned()),
                }
            }
        })
    };
    attempt().unwrap_or_else(|answer| answer)
}
