//! Feature probes against the running kernel.

use ebpf_core::features::{self, helper, MiscFeature, Support};
use ebpf_core::insn::{helpers::helper_id, Assembler, Reg};
use ebpf_core::{AttachType, Error, LinkType, MapType, Program, ProgramSpec, ProgramType};
use ebpf_test_support::require_kernel;

/// Pairs whose answer follows from what each program type is for.
const KNOWN: &[(ProgramType, &str, bool)] = &[
    (ProgramType::SocketFilter, "bpf_map_lookup_elem", true),
    (ProgramType::SocketFilter, "bpf_xdp_adjust_head", false),
    (ProgramType::SocketFilter, "bpf_redirect", false),
    (ProgramType::SocketFilter, "bpf_bind", false),
    (ProgramType::Xdp, "bpf_xdp_adjust_head", true),
    (ProgramType::Xdp, "bpf_skb_store_bytes", false),
    (ProgramType::Xdp, "bpf_redirect_map", true),
    (ProgramType::SchedCls, "bpf_skb_store_bytes", true),
    (ProgramType::SchedCls, "bpf_redirect", true),
    (ProgramType::SchedCls, "bpf_xdp_adjust_head", false),
    (ProgramType::CgroupSockAddr, "bpf_bind", true),
    (ProgramType::Kprobe, "bpf_get_current_pid_tgid", true),
    (ProgramType::Kprobe, "bpf_skb_store_bytes", false),
];

/// Loads `call helper; exit` through the public API and reads the verifier's answer.
fn direct_load_accepts_the_call(program_type: ProgramType, helper: &str) -> bool {
    let mut asm = Assembler::new();
    asm.call(helper_id(helper).unwrap()).mov64_imm(Reg::R0, 0).exit();
    let mut spec = ProgramSpec::from_assembled("helper_probe", program_type, asm.finish().unwrap());
    if program_type == ProgramType::CgroupSockAddr {
        spec = spec.with_attach_type(AttachType::CgroupInet4Connect);
    }
    match Program::load(&spec) {
        Ok(_) => true,
        Err(Error::Verifier(v)) => {
            !(v.log.contains("program of this type cannot use helper") || v.log.contains("unknown func"))
        }
        Err(other) => panic!("{program_type} calling {helper}: {other}"),
    }
}

#[test]
fn helper_probes_give_the_kernels_real_answer() {
    let Some(_root) = require_kernel() else {
        return;
    };
    for &(program_type, name, expected) in KNOWN {
        let probed = helper(program_type, helper_id(name).unwrap());
        assert_eq!(probed.as_bool(), Some(expected), "probe: {program_type} calling {name}: {probed}");
        assert_eq!(
            direct_load_accepts_the_call(program_type, name),
            expected,
            "direct load: {program_type} calling {name}"
        );
    }
}

#[test]
fn helper_lists_hold_only_what_the_type_may_call() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let xdp = features::helpers_for(ProgramType::Xdp).unwrap();
    assert!(xdp.contains(&"bpf_xdp_adjust_head"));
    assert!(!xdp.contains(&"bpf_skb_store_bytes"));
    let socket_filter = features::helpers_for(ProgramType::SocketFilter).unwrap();
    assert!(socket_filter.len() < xdp.len() + 60, "not every helper for every type");
}

#[test]
fn program_and_map_types_this_stack_needs_are_present() {
    let Some(_root) = require_kernel() else {
        return;
    };
    for t in [ProgramType::SocketFilter, ProgramType::Xdp, ProgramType::SchedCls, ProgramType::CgroupSockAddr] {
        assert_eq!(features::program_type(t), Support::Yes, "{t}");
    }
    for t in [MapType::Hash, MapType::LruHash, MapType::LpmTrie, MapType::ProgArray, MapType::Ringbuf] {
        assert_eq!(features::map_type(t), Support::Yes, "{t}");
    }
    for t in [LinkType::Xdp, LinkType::Tcx, LinkType::Cgroup, LinkType::Netns] {
        assert_eq!(features::link_type(t), Support::Yes, "{t}");
    }
    for f in [MiscFeature::BoundedLoops, MiscFeature::LargeInsnLimit, MiscFeature::MmapableMaps, MiscFeature::Btf] {
        assert_eq!(features::misc(f), Support::Yes, "{f}");
    }
}

#[test]
fn types_this_kernel_lacks_say_no_with_a_reason() {
    let Some(_root) = require_kernel() else {
        return;
    };
    // Per the machine notes: fentry/fexit/lsm/freplace loads are refused here.
    for t in [ProgramType::Tracing, ProgramType::Lsm, ProgramType::Ext] {
        match features::program_type(t) {
            Support::No(reason) => assert!(reason.contains("EPERM"), "{t}: {reason}"),
            other => panic!("{t}: expected no, got {other}"),
        }
    }
}

#[test]
fn answers_are_cached() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let first = features::map_type(MapType::BloomFilter);
    assert_eq!(features::map_type(MapType::BloomFilter), first);
}
