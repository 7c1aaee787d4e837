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

/// What a real load of a minimal program of `program_type`, attached to kernel function
/// `target` with `attach_type`, does on the running kernel: `Ok(true)` loaded, `Ok(false)`
/// refused as a kind (EPERM, EINVAL before verification), `Err` for anything else.
fn real_load(program_type: ProgramType, attach_type: AttachType, target: &str) -> Result<bool, Error> {
    let mut asm = Assembler::new();
    asm.mov64_imm(Reg::R0, 0).exit();
    let mut spec = ProgramSpec::from_assembled("real_load", program_type, asm.finish().unwrap());
    spec = spec.with_attach_type(attach_type);
    spec.attach_to = Some(target.to_owned());
    match Program::load(&spec) {
        Ok(_) => Ok(true),
        Err(e) if e.errno() == Some(ebpf_core::Errno::EPERM) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The probes must say what a real load says on this kernel — whatever this kernel allows.
#[test]
fn program_type_probes_agree_with_real_loads() {
    let Some(_root) = require_kernel() else {
        return;
    };
    for (program_type, attach_type, target) in [
        (ProgramType::Tracing, AttachType::TraceFentry, "tcp_v4_connect"),
        (ProgramType::Tracing, AttachType::TraceFexit, "tcp_v4_connect"),
        (ProgramType::Lsm, AttachType::LsmMac, "file_open"),
    ] {
        let loads = real_load(program_type, attach_type, target)
            .unwrap_or_else(|e| panic!("{program_type} ({attach_type}) on {target}: {e}"));
        let probed = features::program_type(program_type);
        match (loads, &probed) {
            (true, Support::Yes) => {}
            (false, Support::No(reason)) => assert!(reason.contains("EPERM"), "{program_type}: {reason}"),
            _ => panic!(
                "{program_type}: a real load {} but the probe says {probed}",
                if loads { "works" } else { "is refused" }
            ),
        }
        if !loads {
            ebpf_test_support::kernel_refuses(&format!("{program_type} programs"), "EPERM on a real load");
        }
    }
}

/// struct_ops: the probe's answer against a real congestion control's load.
#[test]
fn the_struct_ops_probe_agrees_with_a_real_struct_ops_load() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let path = format!("{}/../bpf-programs/out/tests/struct_ops_cc.o", env!("CARGO_MANIFEST_DIR"));
    let spec = ebpf_core::CollectionSpec::from_elf(&std::fs::read(path).unwrap()).unwrap();
    let loads = ebpf_core::Collection::load(spec, &ebpf_core::LoadOptions::default()).is_ok();
    assert_eq!(features::program_type(ProgramType::StructOps) == Support::Yes, loads);
    assert_eq!(features::map_type(MapType::StructOps) == Support::Yes, loads);
}

/// Map types: the probe's answer against a real creation of the same kind (an arena of four
/// pages; some kernels refuse arenas with EPERM).
#[test]
fn map_type_probes_agree_with_real_creations() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let arena =
        ebpf_core::MapSpec::new("real_arena", MapType::Arena, 0, 0, 4).with_flags(ebpf_core::MapFlags::MMAPABLE);
    let creates = match ebpf_core::Map::create(&arena) {
        Ok(_) => true,
        Err(e) if matches!(e.errno(), Some(ebpf_core::Errno::EPERM | ebpf_core::Errno::EINVAL)) => false,
        Err(e) => panic!("arena: {e}"),
    };
    assert_eq!(features::map_type(MapType::Arena) == Support::Yes, creates, "{}", features::map_type(MapType::Arena));
}

#[test]
fn answers_are_cached() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let first = features::map_type(MapType::BloomFilter);
    assert_eq!(features::map_type(MapType::BloomFilter), first);
}
