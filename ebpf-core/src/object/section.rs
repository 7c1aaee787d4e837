//! Program section names, as libbpf reads them: the name says the program type, the attach
//! type the verifier checks against, load flags, and for some kinds what to attach to.

use crate::program::ProgramFlags;
use crate::types::{AttachType, ProgramType};

/// What a section name says about the programs in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionKind {
    /// Program type.
    pub program_type: ProgramType,
    /// Expected attach type, where the kernel checks one at load.
    pub attach_type: Option<AttachType>,
    /// Load flags the name implies (`.s` sleepable, `.frags` multi-buffer XDP).
    pub flags: ProgramFlags,
    /// What follows the prefix (`tp/net/netif_rx` → `net/netif_rx`), when the kind takes one.
    pub attach_to: Option<String>,
}

impl SectionKind {
    /// What a section name that says no program type gives: `ProgramType::Unspec`, for the
    /// caller to set before load.
    pub fn unspecified() -> SectionKind {
        SectionKind {
            program_type: ProgramType::Unspec,
            attach_type: None,
            flags: ProgramFlags::empty(),
            attach_to: None,
        }
    }
}

/// How a definition matches: the whole name, or a prefix followed by `/argument`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Match {
    Exact,
    /// `name` or `name/anything`.
    ExactOrArg,
    /// `name/argument`, argument required.
    Arg,
}

use AttachType as A;
use Match::*;
use ProgramType as P;

const SLEEPABLE: ProgramFlags = ProgramFlags::SLEEPABLE;
const FRAGS: ProgramFlags = ProgramFlags::XDP_HAS_FRAGS;
const NONE: ProgramFlags = ProgramFlags::empty();

/// libbpf's section names. Order matters only among names that are prefixes of each other:
/// the longest name is tried first.
const DEFINITIONS: &[(&str, Match, ProgramType, Option<AttachType>, ProgramFlags)] = &[
    ("socket", ExactOrArg, P::SocketFilter, None, NONE),
    ("sk_reuseport/migrate", Exact, P::SkReuseport, Some(A::SkReuseportSelectOrMigrate), NONE),
    ("sk_reuseport", Exact, P::SkReuseport, Some(A::SkReuseportSelect), NONE),
    ("kprobe", Arg, P::Kprobe, None, NONE),
    ("kretprobe", Arg, P::Kprobe, None, NONE),
    ("uprobe", ExactOrArg, P::Kprobe, None, NONE),
    ("uretprobe", ExactOrArg, P::Kprobe, None, NONE),
    ("uprobe.s", ExactOrArg, P::Kprobe, None, SLEEPABLE),
    ("uretprobe.s", ExactOrArg, P::Kprobe, None, SLEEPABLE),
    ("kprobe.multi", Arg, P::Kprobe, Some(A::TraceKprobeMulti), NONE),
    ("kretprobe.multi", Arg, P::Kprobe, Some(A::TraceKprobeMulti), NONE),
    ("kprobe.session", Arg, P::Kprobe, Some(A::TraceKprobeSession), NONE),
    ("uprobe.multi", ExactOrArg, P::Kprobe, Some(A::TraceUprobeMulti), NONE),
    ("uretprobe.multi", ExactOrArg, P::Kprobe, Some(A::TraceUprobeMulti), NONE),
    ("uprobe.multi.s", ExactOrArg, P::Kprobe, Some(A::TraceUprobeMulti), SLEEPABLE),
    ("uretprobe.multi.s", ExactOrArg, P::Kprobe, Some(A::TraceUprobeMulti), SLEEPABLE),
    ("uprobe.session", ExactOrArg, P::Kprobe, Some(A::TraceUprobeSession), NONE),
    ("uprobe.session.s", ExactOrArg, P::Kprobe, Some(A::TraceUprobeSession), SLEEPABLE),
    // USDT probes are uprobes at the note's address; the BPF side reads arguments by spec.
    ("usdt", ExactOrArg, P::Kprobe, None, NONE),
    ("usdt.s", ExactOrArg, P::Kprobe, None, SLEEPABLE),
    ("ksyscall", Arg, P::Kprobe, None, NONE),
    ("kretsyscall", Arg, P::Kprobe, None, NONE),
    ("tc/ingress", Exact, P::SchedCls, Some(A::TcxIngress), NONE),
    ("tc/egress", Exact, P::SchedCls, Some(A::TcxEgress), NONE),
    ("tcx/ingress", Exact, P::SchedCls, Some(A::TcxIngress), NONE),
    ("tcx/egress", Exact, P::SchedCls, Some(A::TcxEgress), NONE),
    ("tc", ExactOrArg, P::SchedCls, None, NONE),
    ("classifier", ExactOrArg, P::SchedCls, None, NONE),
    ("action", ExactOrArg, P::SchedAct, None, NONE),
    ("netkit/primary", Exact, P::SchedCls, Some(A::NetkitPrimary), NONE),
    ("netkit/peer", Exact, P::SchedCls, Some(A::NetkitPeer), NONE),
    ("tracepoint", Arg, P::Tracepoint, None, NONE),
    ("tp", Arg, P::Tracepoint, None, NONE),
    ("raw_tracepoint.w", Arg, P::RawTracepointWritable, None, NONE),
    ("raw_tp.w", Arg, P::RawTracepointWritable, None, NONE),
    ("raw_tracepoint", Arg, P::RawTracepoint, None, NONE),
    ("raw_tp", Arg, P::RawTracepoint, None, NONE),
    ("tp_btf", Arg, P::Tracing, Some(A::TraceRawTp), NONE),
    ("fentry.s", Arg, P::Tracing, Some(A::TraceFentry), SLEEPABLE),
    ("fentry", Arg, P::Tracing, Some(A::TraceFentry), NONE),
    ("fmod_ret.s", Arg, P::Tracing, Some(A::ModifyReturn), SLEEPABLE),
    ("fmod_ret", Arg, P::Tracing, Some(A::ModifyReturn), NONE),
    ("fexit.s", Arg, P::Tracing, Some(A::TraceFexit), SLEEPABLE),
    ("fexit", Arg, P::Tracing, Some(A::TraceFexit), NONE),
    ("freplace", Arg, P::Ext, None, NONE),
    ("lsm.s", Arg, P::Lsm, Some(A::LsmMac), SLEEPABLE),
    ("lsm_cgroup", Arg, P::Lsm, Some(A::LsmCgroup), NONE),
    ("lsm", Arg, P::Lsm, Some(A::LsmMac), NONE),
    ("iter.s", Arg, P::Tracing, Some(A::TraceIter), SLEEPABLE),
    ("iter", Arg, P::Tracing, Some(A::TraceIter), NONE),
    ("syscall", Exact, P::Syscall, None, SLEEPABLE),
    ("xdp.frags/devmap", Exact, P::Xdp, Some(A::XdpDevmap), FRAGS),
    ("xdp/devmap", Exact, P::Xdp, Some(A::XdpDevmap), NONE),
    ("xdp.frags/cpumap", Exact, P::Xdp, Some(A::XdpCpumap), FRAGS),
    ("xdp/cpumap", Exact, P::Xdp, Some(A::XdpCpumap), NONE),
    ("xdp.frags", Exact, P::Xdp, Some(A::Xdp), FRAGS),
    ("xdp", ExactOrArg, P::Xdp, Some(A::Xdp), NONE),
    ("perf_event", Exact, P::PerfEvent, None, NONE),
    ("lwt_in", Exact, P::LwtIn, None, NONE),
    ("lwt_out", Exact, P::LwtOut, None, NONE),
    ("lwt_xmit", Exact, P::LwtXmit, None, NONE),
    ("lwt_seg6local", Exact, P::LwtSeg6local, None, NONE),
    ("sockops", Exact, P::SockOps, Some(A::CgroupSockOps), NONE),
    ("sk_skb/stream_parser", Exact, P::SkSkb, Some(A::SkSkbStreamParser), NONE),
    ("sk_skb/stream_verdict", Exact, P::SkSkb, Some(A::SkSkbStreamVerdict), NONE),
    ("sk_skb/verdict", Exact, P::SkSkb, Some(A::SkSkbVerdict), NONE),
    ("sk_skb", ExactOrArg, P::SkSkb, None, NONE),
    ("sk_msg", Exact, P::SkMsg, Some(A::SkMsgVerdict), NONE),
    ("lirc_mode2", Exact, P::LircMode2, Some(A::LircMode2), NONE),
    ("flow_dissector", Exact, P::FlowDissector, Some(A::FlowDissector), NONE),
    ("cgroup_skb/ingress", Exact, P::CgroupSkb, Some(A::CgroupInetIngress), NONE),
    ("cgroup_skb/egress", Exact, P::CgroupSkb, Some(A::CgroupInetEgress), NONE),
    ("cgroup/skb", Exact, P::CgroupSkb, None, NONE),
    ("cgroup/sock_create", Exact, P::CgroupSock, Some(A::CgroupInetSockCreate), NONE),
    ("cgroup/sock_release", Exact, P::CgroupSock, Some(A::CgroupInetSockRelease), NONE),
    ("cgroup/sock", Exact, P::CgroupSock, Some(A::CgroupInetSockCreate), NONE),
    ("cgroup/post_bind4", Exact, P::CgroupSock, Some(A::CgroupInet4PostBind), NONE),
    ("cgroup/post_bind6", Exact, P::CgroupSock, Some(A::CgroupInet6PostBind), NONE),
    ("cgroup/bind4", Exact, P::CgroupSockAddr, Some(A::CgroupInet4Bind), NONE),
    ("cgroup/bind6", Exact, P::CgroupSockAddr, Some(A::CgroupInet6Bind), NONE),
    ("cgroup/connect4", Exact, P::CgroupSockAddr, Some(A::CgroupInet4Connect), NONE),
    ("cgroup/connect6", Exact, P::CgroupSockAddr, Some(A::CgroupInet6Connect), NONE),
    ("cgroup/connect_unix", Exact, P::CgroupSockAddr, Some(A::CgroupUnixConnect), NONE),
    ("cgroup/sendmsg4", Exact, P::CgroupSockAddr, Some(A::CgroupUdp4Sendmsg), NONE),
    ("cgroup/sendmsg6", Exact, P::CgroupSockAddr, Some(A::CgroupUdp6Sendmsg), NONE),
    ("cgroup/sendmsg_unix", Exact, P::CgroupSockAddr, Some(A::CgroupUnixSendmsg), NONE),
    ("cgroup/recvmsg4", Exact, P::CgroupSockAddr, Some(A::CgroupUdp4Recvmsg), NONE),
    ("cgroup/recvmsg6", Exact, P::CgroupSockAddr, Some(A::CgroupUdp6Recvmsg), NONE),
    ("cgroup/recvmsg_unix", Exact, P::CgroupSockAddr, Some(A::CgroupUnixRecvmsg), NONE),
    ("cgroup/getpeername4", Exact, P::CgroupSockAddr, Some(A::CgroupInet4Getpeername), NONE),
    ("cgroup/getpeername6", Exact, P::CgroupSockAddr, Some(A::CgroupInet6Getpeername), NONE),
    ("cgroup/getpeername_unix", Exact, P::CgroupSockAddr, Some(A::CgroupUnixGetpeername), NONE),
    ("cgroup/getsockname4", Exact, P::CgroupSockAddr, Some(A::CgroupInet4Getsockname), NONE),
    ("cgroup/getsockname6", Exact, P::CgroupSockAddr, Some(A::CgroupInet6Getsockname), NONE),
    ("cgroup/getsockname_unix", Exact, P::CgroupSockAddr, Some(A::CgroupUnixGetsockname), NONE),
    ("cgroup/sysctl", Exact, P::CgroupSysctl, Some(A::CgroupSysctl), NONE),
    ("cgroup/getsockopt", Exact, P::CgroupSockopt, Some(A::CgroupGetsockopt), NONE),
    ("cgroup/setsockopt", Exact, P::CgroupSockopt, Some(A::CgroupSetsockopt), NONE),
    ("cgroup/dev", Exact, P::CgroupDevice, Some(A::CgroupDevice), NONE),
    ("struct_ops.s", ExactOrArg, P::StructOps, None, SLEEPABLE),
    ("struct_ops", ExactOrArg, P::StructOps, None, NONE),
    ("sk_lookup", Exact, P::SkLookup, Some(A::SkLookup), NONE),
    ("netfilter", Exact, P::Netfilter, Some(A::Netfilter), NONE),
];

/// What `section` says, or `None` for a name libbpf would not load either.
pub fn classify(section: &str) -> Option<SectionKind> {
    DEFINITIONS.iter().find_map(|&(name, matching, program_type, attach_type, flags)| {
        let argument = match section.strip_prefix(name) {
            Some("") if matching != Arg => None,
            Some(rest) if matching != Exact => match rest.strip_prefix('/') {
                Some(arg) if !arg.is_empty() => Some(arg.to_owned()),
                _ => return None,
            },
            _ => return None,
        };
        Some(SectionKind { program_type, attach_type, flags, attach_to: argument })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libbpf_names_map_to_types() {
        let xdp = classify("xdp").unwrap();
        assert_eq!((xdp.program_type, xdp.attach_type), (P::Xdp, Some(A::Xdp)));
        assert_eq!(classify("xdp.frags").unwrap().flags, FRAGS);
        assert_eq!(classify("tcx/ingress").unwrap().attach_type, Some(A::TcxIngress));
        assert_eq!(classify("tc").unwrap().program_type, P::SchedCls);
        assert_eq!(classify("classifier/anything").unwrap().program_type, P::SchedCls);
        assert_eq!(classify("cgroup/connect4").unwrap().attach_type, Some(A::CgroupInet4Connect));
        assert_eq!(classify("cgroup/post_bind4").unwrap().program_type, P::CgroupSock);
        let tp = classify("tp/net/netif_rx").unwrap();
        assert_eq!((tp.program_type, tp.attach_to.as_deref()), (P::Tracepoint, Some("net/netif_rx")));
        assert_eq!(classify("fentry.s/do_sys_open").unwrap().flags, SLEEPABLE);
        assert_eq!(classify("iter/bpf_map").unwrap().attach_to.as_deref(), Some("bpf_map"));
        assert_eq!(classify("sk_skb/stream_verdict").unwrap().attach_type, Some(A::SkSkbStreamVerdict));
    }

    #[test]
    fn user_space_probe_names_map_to_kprobe_programs() {
        for name in ["usdt", "usdt/libc.so.6:libc:setjmp", "uprobe//bin/true:main", "uretprobe"] {
            assert_eq!(classify(name).unwrap().program_type, P::Kprobe, "{name}");
        }
        assert_eq!(classify("usdt.s").unwrap().flags, SLEEPABLE);
        assert_eq!(classify("uprobe.s//bin/true:main").unwrap().flags, SLEEPABLE);
        let multi = classify("uprobe.multi//usr/lib/libc.so.6:malloc*").unwrap();
        assert_eq!((multi.attach_type, multi.flags), (Some(A::TraceUprobeMulti), NONE));
        assert_eq!(classify("uprobe.multi.s").unwrap().flags, SLEEPABLE);
        assert_eq!(classify("kprobe.multi/tcp_*").unwrap().attach_type, Some(A::TraceKprobeMulti));
        assert_eq!(classify("kprobe.session/tcp_*").unwrap().attach_type, Some(A::TraceKprobeSession));
        assert_eq!(classify("uprobe.session").unwrap().attach_type, Some(A::TraceUprobeSession));
        assert_eq!(classify("usdtx"), None);
    }

    #[test]
    fn names_that_only_look_alike_are_refused() {
        assert_eq!(classify("xdpfoo"), None);
        assert_eq!(classify("tracepoint"), None, "a tracepoint needs its category/name");
        assert_eq!(classify("tp/"), None);
        assert_eq!(classify("sockops/x"), None);
        assert_eq!(classify(".text"), None);
    }
}
