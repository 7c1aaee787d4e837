//! Loading ELF objects built by clang for libbpf: every fixture under bpf-programs/tests,
//! against the real kernel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ebpf_core::object::{tail_call_sites, Collection, CollectionSpec, TailCallIndex, VariableType};
use ebpf_core::{BtfPolicy, Error, LoadOptions, LogLevel, Map, MapType, Pinning, Program, TestRun};
use ebpf_test_support::{require_kernel, unique_name, PinDir};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../bpf-programs/out/tests/{name}.o", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn load(name: &str) -> Collection {
    let spec = CollectionSpec::from_elf(&fixture(name)).unwrap();
    Collection::load(spec, &LoadOptions::default()).unwrap()
}

fn run(program: &Program, data: &[u8]) -> u32 {
    program.test_run(&TestRun::with_data(data)).unwrap().retval
}

#[test]
fn one_object_loaded_three_times_behaves_three_ways() {
    let Some(_root) = require_kernel() else { return };
    let elf = fixture("template");
    let mut logs = Vec::new();
    for (mode, verdict) in [(0u32, 2u32), (1, 1), (2, 3)] {
        let mut spec = CollectionSpec::from_elf(&elf).unwrap();
        spec.variable_mut("MODE").unwrap().set(mode).unwrap();
        let collection = Collection::load(spec, &LoadOptions::with_log(LogLevel::INSTRUCTIONS)).unwrap();
        let program = collection.program("templated").unwrap();
        assert_eq!(run(program, &[0u8; 64]), verdict, "MODE {mode}");
        logs.push(program.verifier_log().unwrap().to_owned());
    }
    // XDP_TX (`w0 = 3`) is reachable only when MODE is neither 0 nor 1. With MODE frozen at 1
    // the verifier reads the constant (R2=1) and never walks that instruction. Walked
    // instructions start a line with their index; the liveness listing above them is indented.
    let walked =
        |log: &str, insn: &str| log.lines().any(|l| l.starts_with(|c: char| c.is_ascii_digit()) && l.contains(insn));
    assert!(logs[1].contains("R1=map_value(map=.rodata,ks=4,vs=5) R2=1"), "{}", logs[1]);
    assert!(walked(&logs[2], ": (b4) w0 = 3"), "MODE 2 walks the XDP_TX branch:\n{}", logs[2]);
    assert!(!walked(&logs[1], ": (b4) w0 = 3"), "MODE 1 prunes the XDP_TX branch:\n{}", logs[1]);
    assert!(!walked(&logs[0], ": (b4) w0 = 1"), "MODE 0 prunes the XDP_DROP branch:\n{}", logs[0]);
}

#[test]
fn variables_are_checked_before_load_and_shared_memory_after() {
    let Some(_root) = require_kernel() else { return };
    let mut spec = CollectionSpec::from_elf(&fixture("template")).unwrap();
    let mode = spec.variable("MODE").unwrap();
    assert_eq!(
        (mode.section.as_str(), mode.ty.clone(), mode.constant),
        (".rodata", VariableType::Int { size: 4, signed: false }, true)
    );
    let err = spec.variable_mut("BIAS_ENABLED").unwrap().set(1u32).unwrap_err();
    assert_eq!(err.to_string(), "variable \"BIAS_ENABLED\": u32 does not fit u8 (.rodata+4)");
    assert!(spec.variable("no_such").is_err());
    spec.variable_mut("bias").unwrap().set(9u32).unwrap();

    let collection = Collection::load(spec, &LoadOptions::default()).unwrap();
    let biased = collection.program("biased").unwrap();
    assert_eq!(run(biased, &[0u8; 64]), 9, "the value set before load");
    let bias = collection.variable("bias").unwrap();
    bias.set(11u32).unwrap();
    assert_eq!(run(biased, &[0u8; 64]), 11, "a write through shared memory, seen by the next run");

    let templated = collection.program("templated").unwrap();
    for _ in 0..3 {
        run(templated, &[0u8; 80]);
    }
    assert_eq!(collection.variable("packets").unwrap().get::<u64>().unwrap(), 3);
    assert_eq!(collection.variable("last_len").unwrap().get::<u64>().unwrap(), 80);
    let frozen = collection.variable("MODE").unwrap();
    assert_eq!(frozen.get::<u32>().unwrap(), 0);
    assert!(frozen.set(1u32).is_err(), "constants are frozen at load");
    let rodata = collection.map(".rodata").unwrap();
    assert!(rodata.update(&0u32.to_ne_bytes(), &[0u8; 8], ebpf_core::UpdateFlags::ANY).is_err(), ".rodata is frozen");
}

#[test]
fn constant_tail_calls_are_reported_direct_and_dynamic_ones_not() {
    let Some(_root) = require_kernel() else { return };
    let spec = CollectionSpec::from_elf(&fixture("tail_calls")).unwrap();
    let index = |program: &str| {
        let sites = tail_call_sites(spec.program(program).unwrap());
        assert_eq!(sites.len(), 1, "{program}: {sites:?}");
        assert_eq!(sites[0].map.as_deref(), Some("jumps"));
        sites[0].index
    };
    assert_eq!(index("entry"), TailCallIndex::Constant(0));
    assert_eq!(index("chain"), TailCallIndex::Constant(2));
    assert_eq!(index("stage_hop"), TailCallIndex::Constant(1));
    assert_eq!(index("dispatch"), TailCallIndex::Dynamic);

    let collection = Collection::load(spec, &LoadOptions::default()).unwrap();
    let packet = |first: u8| {
        let mut p = [0u8; 64];
        p[0] = first;
        p
    };
    assert_eq!(run(collection.program("entry").unwrap(), &packet(0)), 2, "slot 0: stage_pass");
    assert_eq!(run(collection.program("chain").unwrap(), &packet(0)), 1, "slot 2 → slot 1: stage_drop");
    let dispatch = collection.program("dispatch").unwrap();
    assert_eq!(run(dispatch, &packet(1)), 1);
    assert_eq!(run(dispatch, &packet(3)), 0, "an empty slot falls through to XDP_ABORTED");

    let err = collection.replace_tail_call("jumps", 3, collection.program("devmap_pass").unwrap()).unwrap_err();
    assert!(err.to_string().contains("attach type"), "{err}");
}

#[test]
fn swapping_a_slot_under_load_never_fails_a_run() {
    let Some(_root) = require_kernel() else { return };
    let collection = Arc::new(load("tail_calls"));
    let done = Arc::new(AtomicBool::new(false));
    let runner = {
        let (collection, done) = (collection.clone(), done.clone());
        std::thread::spawn(move || {
            let entry = collection.program("entry").unwrap();
            let mut seen = [0usize; 4];
            for _ in 0..100_000 {
                let verdict = entry.test_run(&TestRun::with_data(&[0u8; 64])).unwrap().retval;
                seen[verdict.min(3) as usize] += 1;
            }
            done.store(true, Ordering::Release);
            seen
        })
    };
    let (pass, drop) = (collection.program("stage_pass").unwrap(), collection.program("stage_drop").unwrap());
    let mut swaps = 0u64;
    while !done.load(Ordering::Acquire) {
        let next = if swaps % 2 == 0 { drop } else { pass };
        collection.replace_tail_call("jumps", 0, next).unwrap();
        swaps += 1;
    }
    let seen = runner.join().unwrap();
    println!("100000 runs over {swaps} swaps: {} pass, {} drop", seen[2], seen[1]);
    assert_eq!(seen[0] + seen[3], 0, "a run fell through the tail call: {seen:?}");
    assert_eq!(seen[1] + seen[2], 100_000);
    assert!(seen[1] > 0 && seen[2] > 0, "both targets ran: {seen:?}");
}

#[test]
fn the_kernel_empties_a_prog_array_with_its_last_user_reference() {
    let Some(_root) = require_kernel() else { return };
    let collection = load("tail_calls");
    let entry = collection.program("entry").unwrap().try_clone().unwrap();
    assert_eq!(run(&entry, &[0u8; 64]), 2, "the collection holds the prog array: slot 0 is filled");
    drop(collection);
    // The program still references the array, but no user-space fd does: the kernel cleared it.
    let deadline = Instant::now() + Duration::from_secs(2);
    while run(&entry, &[0u8; 64]) != 0 {
        assert!(Instant::now() < deadline, "the prog array kept its programs after the last fd closed");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn subprograms_calls_and_callbacks_are_linked_per_program() {
    let Some(_root) = require_kernel() else { return };
    let collection = load("subprogs");
    assert_eq!(run(collection.program("tc_twice").unwrap(), &[0u8; 64]), 8);
    assert_eq!(run(collection.program("tc_loop").unwrap(), &[0u8; 64]), 9);
    // A socket filter sees the packet after its Ethernet header: 64 - 14 = 50 bytes, + 3.
    assert_eq!(run(collection.program("socket_calls").unwrap(), &[0u8; 64]), 53);
    let mut count = [0u8; 8];
    assert!(collection.map("calls").unwrap().lookup(&0u32.to_ne_bytes(), &mut count).unwrap());
    assert_eq!(u64::from_ne_bytes(count), 3, "add3 ran once per program, counting in the shared map");
}

#[test]
fn map_definitions_of_every_shape_are_read_and_created() {
    let Some(_root) = require_kernel() else { return };
    let Some(pins) = PinDir::new("mapdefs") else { return };
    let spec = CollectionSpec::from_elf(&fixture("maps_defs")).unwrap();
    let outer = spec.map("outer").unwrap();
    assert_eq!((outer.map_type, outer.key_size, outer.value_size), (MapType::ArrayOfMaps, 4, 4));
    assert_eq!(outer.inner.as_ref().unwrap().map_type, MapType::Array);
    assert_eq!(outer.contents, ebpf_core::MapContents::Maps(vec![(0, "inner_a".into()), (1, "inner_b".into())]));
    let pinned = spec.map("lib_fixture_pinned").unwrap();
    assert_eq!(pinned.pinning, Pinning::ByName);
    assert_eq!(pinned.flags, ebpf_core::MapFlags::NO_PREALLOC);
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    let last: u32 = cpus.trim().rsplit(['-', ',']).next().unwrap().parse().unwrap();
    assert_eq!(spec.map("perf_events").unwrap().max_entries, last + 1, "sized to the possible CPUs");
    let sized = spec.map("sized_by_number").unwrap();
    assert_eq!((sized.key_size, sized.value_size), (8, 16));

    let options = LoadOptions::default().pin_dir(pins.path());
    let first = Collection::load(spec.clone(), &options).unwrap();
    let pin = pins.path().join("lib_fixture_pinned");
    assert!(pin.exists());
    let id = first.map("lib_fixture_pinned").unwrap().info().unwrap().id;
    let second = Collection::load(spec.clone(), &options).unwrap();
    assert_eq!(second.map("lib_fixture_pinned").unwrap().info().unwrap().id, id, "the pin is reused");
    assert_eq!(run(first.program("through_outer").unwrap(), &[0u8; 64]), 1, "inner_b reached through outer");
    drop((first, second));

    std::fs::remove_file(&pin).unwrap();
    let wrong = Map::create(&ebpf_core::MapSpec::new("lib_fixture_pin", MapType::Hash, 4, 8, 8)).unwrap();
    wrong.pin(&pin).unwrap();
    let err = Collection::load(spec, &options).unwrap_err().to_string();
    assert!(err.contains("max_entries 8 (pinned) vs 16 (object)"), "{err}");
    assert!(err.contains("map_flags 0x0 (pinned) vs 0x1 (object)"), "{err}");
}

#[test]
fn externs_get_the_kernels_config_and_symbols() {
    let Some(_root) = require_kernel() else { return };
    let collection = load("externs");
    assert_eq!(run(collection.program("read_externs").unwrap(), &[0u8; 64]), 2);
    let seen = words(&collection.variable("seen").unwrap().get::<[u8; 48]>().unwrap());
    let word = |i: usize| seen[i];
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release.split(['.', '-']).map(|p| p.trim().parse::<u64>().unwrap_or(0));
    let (a, b, c) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    assert_eq!(word(0), (a << 16) + (b << 8) + c.min(255), "LINUX_KERNEL_VERSION");
    assert_eq!(word(1), 1, "CONFIG_BPF_SYSCALL=y");
    assert_eq!(word(2), 0, "a weak, missing option reads 0");
    let symbols = ebpf_core::kallsyms::KernelSymbols::load().unwrap();
    assert_eq!(word(3), symbols.address_of("bpf_prog_put").unwrap(), "typeless ksym");
    assert_eq!(word(4), tracepoint_may_call("bpf_get_attach_cookie") as u64, "LINUX_HAS_BPF_COOKIE");
    assert_eq!(word(5), syscall_wrapper_attachable() as u64, "LINUX_HAS_SYSCALL_WRAPPER");
}

#[test]
fn weak_kernel_symbols_the_kernel_lacks_read_zero() {
    let spec = CollectionSpec::from_elf(&fixture("weak_ksyms")).unwrap();
    let references = &spec.program("probe_weak_ksyms").unwrap().ksym_references;
    assert!(references.iter().all(|r| r.weak), "{references:?}");
    let Some(_root) = require_kernel() else { return };
    let collection = Collection::load(spec.clone(), &LoadOptions::default()).unwrap();
    assert_eq!(run(collection.program("probe_weak_ksyms").unwrap(), &[0u8; 64]), 2);
    let exists = words(&collection.variable("exists").unwrap().get::<[u8; 32]>().unwrap());
    let symbols = ebpf_core::kallsyms::KernelSymbols::load().unwrap();
    assert_eq!(exists[0], 0, "a kfunc no kernel has");
    assert_eq!(exists[1], 0, "a symbol no kernel has");
    assert_eq!(exists[2], symbols.address_of("bpf_rcu_read_lock").is_some() as u64, "a kfunc the kernel has");
    assert_eq!(exists[3], 1, "bpf_prog_put");

    // A strong reference to a missing kfunc still fails the load, naming it.
    let mut strong = spec;
    let program = strong.program_mut("probe_weak_ksyms").unwrap();
    program.ksym_references.iter_mut().for_each(|r| r.weak = false);
    let err = Collection::load(strong, &LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("bpf_netstack_no_such_kfunc") || err.contains("netstack_no_such_symbol"), "{err}");
}

/// A `__u64` array global, read as bytes (variables of array type read as bytes only).
fn words(bytes: &[u8]) -> Vec<u64> {
    bytes.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap())).collect()
}

/// Whether a tracepoint program calling `helper` loads: what libbpf's cookie probe asks,
/// asked here without the library's feature probes.
fn tracepoint_may_call(helper: &str) -> bool {
    use ebpf_core::insn::{helpers::helper_id, Assembler};
    use ebpf_core::{ProgramSpec, ProgramType};
    let mut asm = Assembler::new();
    asm.call(helper_id(helper).unwrap());
    asm.exit();
    let spec = ProgramSpec::from_assembled(&unique_name("cookie"), ProgramType::Tracepoint, asm.finish().unwrap());
    Program::load(&spec).is_ok()
}

/// Whether a kprobe could attach to this kernel's `bpf(2)` wrapper: with neither the kprobe PMU
/// nor tracefs kprobe events nothing attaches; otherwise the wrapper must be a kernel symbol.
fn syscall_wrapper_attachable() -> bool {
    let kprobes = [
        "/sys/bus/event_source/devices/kprobe",
        "/sys/kernel/tracing/kprobe_events",
        "/sys/kernel/debug/tracing/kprobe_events",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists());
    let wrapper = match std::env::consts::ARCH {
        "x86_64" => "__x64_sys_bpf",
        "aarch64" => "__arm64_sys_bpf",
        "s390x" => "__s390x_sys_bpf",
        "riscv64" => "__riscv_sys_bpf",
        _ => return false,
    };
    let symbols = ebpf_core::kallsyms::KernelSymbols::load().unwrap();
    kprobes && symbols.address_of(wrapper).is_some()
}

#[test]
fn legacy_map_definitions_still_load() {
    let Some(_root) = require_kernel() else { return };
    let spec = CollectionSpec::from_elf(&fixture("legacy_maps")).unwrap();
    let map = spec.map("legacy_counts").unwrap();
    assert_eq!((map.map_type, map.key_size, map.value_size, map.max_entries), (MapType::Array, 4, 8, 4));
    let collection = Collection::load(spec, &LoadOptions::default()).unwrap();
    run(collection.program("legacy_count").unwrap(), &[0u8; 64]);
    let mut value = [0u8; 8];
    collection.map("legacy_counts").unwrap().lookup(&0u32.to_ne_bytes(), &mut value).unwrap();
    assert_eq!(u64::from_ne_bytes(value), 1);

    // Past 16 maps the load binds references through a hash index: still the right map.
    let mut spec = CollectionSpec::from_elf(&fixture("legacy_maps")).unwrap();
    for i in 0..20 {
        spec.maps.insert(0, ebpf_core::MapSpec::new(&format!("extra_{i}"), MapType::Array, 4, 8, 4));
    }
    let collection = Collection::load(spec, &LoadOptions::default()).unwrap();
    run(collection.program("legacy_count").unwrap(), &[0u8; 64]);
    collection.map("legacy_counts").unwrap().lookup(&0u32.to_ne_bytes(), &mut value).unwrap();
    assert_eq!(u64::from_ne_bytes(value), 1);
    collection.map("extra_0").unwrap().lookup(&0u32.to_ne_bytes(), &mut value).unwrap();
    assert_eq!(u64::from_ne_bytes(value), 0);
}

#[test]
fn legacy_definitions_larger_than_bpf_map_def_load() {
    let Some(_root) = require_kernel() else { return };
    let spec = CollectionSpec::from_elf(&fixture("legacy_map_layouts")).unwrap();
    let hash = spec.map("sized_hash").unwrap();
    assert_eq!((hash.map_type, hash.key_size, hash.value_size, hash.max_entries), (MapType::Hash, 4, 8, 16));
    let array = spec.map("sized_array").unwrap();
    assert_eq!((array.map_type, array.key_size, array.value_size, array.max_entries), (MapType::Array, 4, 4, 2));
    let collection = Collection::load(spec, &LoadOptions::default()).unwrap();
    let program = collection.program("count_in_both").unwrap();
    run(program, &[0u8; 64]);
    run(program, &[0u8; 64]);
    let mut count = [0u8; 8];
    collection.map("sized_hash").unwrap().lookup(&1u32.to_ne_bytes(), &mut count).unwrap();
    assert_eq!(u64::from_ne_bytes(count), 2);
    let mut slot = [0u8; 4];
    collection.map("sized_array").unwrap().lookup(&1u32.to_ne_bytes(), &mut slot).unwrap();
    assert_eq!(u32::from_ne_bytes(slot), 2);
}

#[test]
fn iproute2_pin_global_ns_pins_under_the_callers_directory() {
    let Some(_root) = require_kernel() else { return };
    let spec = CollectionSpec::from_elf(&fixture("iproute2_maps")).unwrap();
    assert_eq!(spec.map("tc_shared_counts").unwrap().pinning, Pinning::ByName);
    assert_eq!(spec.map("tc_private_counts").unwrap().pinning, Pinning::None);
    assert_eq!(spec.program("tc_count").unwrap().program_type, ebpf_core::ProgramType::SchedCls);

    let err = Collection::load(spec.clone(), &LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("tc_shared_counts") && err.contains("no pin_dir"), "never silently unpinned: {err}");

    let Some(pins) = PinDir::new("iproute2") else { return };
    let options = LoadOptions::default().pin_dir(pins.path());
    let first = Collection::load(spec.clone(), &options).unwrap();
    assert!(pins.path().join("tc_shared_counts").exists());
    assert!(!pins.path().join("tc_private_counts").exists());
    run(first.program("tc_count").unwrap(), &[0u8; 64]);
    let second = Collection::load(spec, &options).unwrap();
    run(second.program("tc_count").unwrap(), &[0u8; 64]);
    let read = |collection: &Collection, map: &str| {
        let mut value = [0u8; 8];
        collection.map(map).unwrap().lookup(&0u32.to_ne_bytes(), &mut value).unwrap();
        u64::from_ne_bytes(value)
    };
    assert_eq!(read(&second, "tc_shared_counts"), 2, "both loads count into the pinned map");
    assert_eq!(read(&second, "tc_private_counts"), 1, "each load has its own unpinned map");
}

#[test]
fn sections_of_static_functions_are_subprograms_not_programs() {
    let spec = CollectionSpec::from_elf(&fixture("subprogram_sections")).unwrap();
    let names: Vec<&str> = spec.programs.iter().map(|p| &*p.name).collect();
    assert_eq!(names, ["call_across_sections"], "\"static\" and \"helpers/math\" make no programs");
    let Some(_root) = require_kernel() else { return };
    let collection = Collection::load(spec, &LoadOptions::default()).unwrap();
    assert_eq!(run(collection.program("call_across_sections").unwrap(), &[0u8; 64]), 5 * 2 + 3);
}

#[test]
fn a_section_naming_no_type_loads_once_the_caller_sets_one() {
    let mut spec = CollectionSpec::from_elf(&fixture("unspecified_type")).unwrap();
    let program = spec.program("count_runs").unwrap();
    assert_eq!(program.program_type, ebpf_core::ProgramType::Unspec);
    assert_eq!(program.section.as_deref(), Some("netstack_custom/count"));
    let Some(_root) = require_kernel() else { return };
    let err = Collection::load(spec.clone(), &LoadOptions::default()).unwrap_err().to_string();
    assert!(
        err.contains("count_runs") && err.contains("netstack_custom/count") && err.contains("set its program_type"),
        "{err}"
    );
    spec.program_mut("count_runs").unwrap().program_type = ebpf_core::ProgramType::SocketFilter;
    let collection = Collection::load(spec, &LoadOptions::default()).unwrap();
    assert_eq!(run(collection.program("count_runs").unwrap(), &[0u8; 64]), 7);
    let mut runs = [0u8; 8];
    collection.map("custom_runs").unwrap().lookup(&0u32.to_ne_bytes(), &mut runs).unwrap();
    assert_eq!(u64::from_ne_bytes(runs), 1);
}

#[test]
fn an_arena_takes_its_64_bit_map_extra_from_ulong() {
    let spec = CollectionSpec::from_elf(&fixture("arena_map")).unwrap();
    let arena = spec.map("arena").unwrap();
    assert_eq!((arena.map_type, arena.max_entries, arena.map_extra), (MapType::Arena, 4, 1 << 44));
    let Some(_root) = require_kernel() else { return };
    match ebpf_core::features::map_type(MapType::Arena) {
        ebpf_core::features::Support::Yes => {
            let collection = Collection::load(spec, &LoadOptions::default()).unwrap();
            let info = collection.map("arena").unwrap().info().unwrap();
            assert_eq!(info.map_extra, 1 << 44);
            let arena = collection.arena("arena").unwrap();
            assert_eq!(arena.address(), 1 << 44, "mapped where the programs expect it");
            assert!(arena.write_value(0, &7u64.to_ne_bytes()));
        }
        refused => {
            let err = Collection::load(spec, &LoadOptions::default()).unwrap_err().to_string();
            assert!(err.contains("arena"), "{err}");
            ebpf_test_support::kernel_refuses(
                "arena maps created and mapped (the mapping is tested without the kernel in rootless_tests)",
                &format!("{refused:?}"),
            );
        }
    }
}

#[test]
fn usdt_and_sleepable_uprobe_sections_load_as_kprobe_programs() {
    let spec = CollectionSpec::from_elf(&fixture("usdt_sections")).unwrap();
    let usdt = spec.program("on_any_usdt").unwrap();
    assert_eq!(usdt.program_type, ebpf_core::ProgramType::Kprobe);
    let sleepable = spec.program("on_uprobe_sleepable").unwrap();
    assert!(sleepable.flags.contains(ebpf_core::program::ProgramFlags::SLEEPABLE));
    let Some(_root) = require_kernel() else { return };
    let collection = Collection::load(spec, &LoadOptions::default()).unwrap();
    for name in ["on_any_usdt", "on_uprobe_sleepable"] {
        let info = collection.program(name).unwrap().info().unwrap();
        assert_eq!(info.prog_type, ebpf_core::ProgramType::Kprobe.raw(), "{name}");
    }
}

#[test]
fn a_kfunc_declared_with_unnamed_parameters_loads() {
    let spec = CollectionSpec::from_elf(&fixture("unnamed_params")).unwrap();
    let btf = ebpf_btf::Btf::parse(spec.btf.clone().unwrap().to_vec()).unwrap();
    let kfunc = btf.types().find(|t| t.name() == "bpf_cast_to_kern_ctx").unwrap();
    let proto = btf.type_by_id(kfunc.size_or_type()).unwrap();
    assert!(proto.params().all(|p| !p.name.is_empty()), "the kernel refuses unnamed parameters");
    let Some(_root) = require_kernel() else { return };
    // With the object's BTF handed to the kernel, which checks every FUNC's parameters.
    let collection = Collection::load(spec, &LoadOptions::default().btf(BtfPolicy::Always)).unwrap();
    assert_eq!(run(collection.program("cast_context").unwrap(), &[0u8; 64]), 2);
    assert_eq!(collection.variable("cast_ok").unwrap().get::<u64>().unwrap(), 1);
}

#[test]
fn programs_left_out_are_neither_resolved_nor_loaded() {
    let Some(_root) = require_kernel() else { return };
    let mut spec = CollectionSpec::from_elf(&fixture("autoload_variants")).unwrap();
    let err = Collection::load(spec.clone(), &LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("variant_fentry") && err.contains("netstack_no_such_kernel_function"), "{err}");

    spec.program_mut("variant_fentry").unwrap().autoload = false;
    let collection = Collection::load(spec, &LoadOptions::default()).unwrap();
    assert!(collection.program("variant_fentry").is_err(), "left out, so not loaded");
    assert_eq!(run(collection.program("variant_socket").unwrap(), &[0u8; 64]), 1);
    assert_eq!(collection.variable("runs").unwrap().get::<u64>().unwrap(), 1);
}

#[test]
fn core_paths_through_typedefd_members_resolve() {
    let Some(_root) = require_kernel() else { return };
    let collection = load("core_typedef_members");
    assert_eq!(run(collection.program("core_typedef_members").unwrap(), &[0u8; 64]), 0);
    let offsets = words(&collection.variable("offsets").unwrap().get::<[u8; 24]>().unwrap());
    let kernel = ebpf_core::program::kernel_btf().unwrap();
    let expected = [
        kernel_offset(&kernel, "sock", &["__sk_common", "skc_net", "net"]),
        kernel_offset(&kernel, "sock", &["__sk_common", "skc_refcnt", "refs", "counter"]),
        kernel_offset(&kernel, "sock", &["sk_uid", "val"]),
    ];
    assert_eq!(offsets, expected);
}

/// Byte offset of `path` (member names, typedefs looked through) in struct `root` of `btf`.
fn kernel_offset(btf: &ebpf_btf::Btf, root: &str, path: &[&str]) -> u64 {
    let mut id = btf.find(root, ebpf_btf::BtfKind::Struct).unwrap().id();
    let mut bits = 0u64;
    for name in path {
        let found = btf.find_member(id, name).unwrap_or_else(|| panic!("{root}: no member {name}"));
        bits += u64::from(found.bit_offset);
        id = found.member.ty;
    }
    bits / 8
}

#[test]
fn an_object_meant_for_linking_loads_what_stands_alone() {
    let mut spec = CollectionSpec::from_elf(&fixture("extern_funcs")).unwrap();
    let btf = ebpf_btf::Btf::parse(spec.btf.clone().unwrap().to_vec()).unwrap();
    let externs = btf.types().filter(|t| t.linkage() == Some(ebpf_btf::TypeLinkage::Extern)).count();
    assert_eq!(externs, 0, "the kernel refuses extern FUNCs in BTF");
    let Some(_root) = require_kernel() else { return };
    let err = Collection::load(spec.clone(), &LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("netstack_defined_elsewhere"), "{err}");
    spec.program_mut("calls_elsewhere").unwrap().autoload = false;
    let collection = Collection::load(spec, &LoadOptions::default().btf(BtfPolicy::Always)).unwrap();
    assert_eq!(run(collection.program("stands_alone").unwrap(), &[0u8; 64]), 3);
}

#[test]
fn verifier_logs_show_c_source_lines() {
    let Some(_root) = require_kernel() else { return };
    let spec = CollectionSpec::from_elf(&fixture("xdp_count")).unwrap();
    let collection = Collection::load(spec, &LoadOptions::with_log(LogLevel::INSTRUCTIONS)).unwrap();
    let log = collection.program("xdp_count").unwrap().verifier_log().unwrap();
    assert!(log.contains("@ xdp_count.c:"), "{log}");
}

#[test]
fn a_rejected_program_fails_the_whole_load_and_leaves_nothing() {
    let Some(_root) = require_kernel() else { return };
    let mut spec = CollectionSpec::from_elf(&fixture("xdp_count")).unwrap();
    let marker = unique_name("half");
    // A second, broken program: it returns r0 without setting it.
    let mut broken = spec.programs[0].clone();
    broken.name = "broken".into();
    broken.instructions = vec![ebpf_core::insn::Instruction::Exit].into();
    broken.map_references.clear();
    broken.btf = None;
    spec.programs.push(broken);
    spec.maps[0].name = marker.clone();
    for reference in &mut spec.programs[0].map_references {
        if reference.name == "verdicts" {
            reference.name = marker.clone();
        }
    }
    let err = Collection::load(spec, &LoadOptions::default()).unwrap_err();
    let Error::Verifier(rejection) = &err else { panic!("{err}") };
    assert_eq!((rejection.program.as_str(), rejection.section.as_deref()), ("broken", Some("xdp")));
    assert!(rejection.log.contains("R0 !read_ok"), "{}", rejection.log);
    // Maps are freed once the programs that used them are (after an RCU grace period).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left =
            ebpf_core::program::map_ids().filter_map(|id| Map::from_id(id.ok()?).ok()).any(|m| m.name() == marker);
        if !left {
            break;
        }
        assert!(Instant::now() < deadline, "map {marker} outlived the failed load");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_map_pinned_by_name_needs_a_pin_dir() {
    let Some(_root) = require_kernel() else { return };
    let spec = CollectionSpec::from_elf(&fixture("maps_defs")).unwrap();
    let err = Collection::load(spec, &LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("lib_fixture_pinned") && err.contains("pin_dir"), "{err}");
}

#[test]
fn a_caller_hands_in_the_kernel_btf_and_decides_when_it_goes() {
    let Some(_root) = require_kernel() else { return };
    let kernel = ebpf_core::program::read_kernel_btf().unwrap();
    let options = LoadOptions::default().kernel_btf(kernel.clone());
    let spec = CollectionSpec::from_elf(&fixture("core_kernel")).unwrap();
    let collection = Collection::load(spec, &options).unwrap();
    assert_eq!(run(collection.program("core_kernel").unwrap(), &[0u8; 64]), 0);
    drop(options);
    assert_eq!(std::sync::Arc::strong_count(&kernel), 1, "nothing kept a copy of the caller's BTF");
    // The process's copy can be dropped and is read again when next needed.
    ebpf_core::program::release_kernel_btf();
    load("core_kernel");
}

#[test]
fn co_re_relocations_follow_the_running_kernels_types() {
    let Some(_root) = require_kernel() else { return };
    let collection = load("core_kernel");
    assert_eq!(run(collection.program("core_kernel").unwrap(), &[0u8; 64]), 0);
    let results = words(&collection.variable("results").unwrap().get::<[u8; 48]>().unwrap());
    let word = |i: usize| results[i];
    let kernel = ebpf_core::program::kernel_btf().unwrap();
    let sk_buff = kernel.find("sk_buff", ebpf_btf::BtfKind::Struct).unwrap();
    let mark = kernel.find_member(sk_buff.id(), "mark").unwrap();
    assert_eq!(word(0), u64::from(mark.bit_offset / 8), "offsetof(struct sk_buff, mark) in this kernel");
    assert_eq!(word(1), 4, "sizeof sk_buff.len");
    assert_eq!(word(2), 0, "a field no kernel has does not exist");
    assert_eq!(word(3), 27, "BPF_MAP_TYPE_RINGBUF");
    assert_eq!(word(4), u64::from(sk_buff.id()), "kernel type id of struct sk_buff");
    assert_eq!(word(5), 64, "__sk_buff.len read at its relocated offset");
}

#[test]
fn a_pin_opens_only_as_the_kind_of_object_it_is() {
    let Some(_root) = require_kernel() else { return };
    let Some(pins) = PinDir::new("kinds") else { return };
    let collection = load("xdp_count");
    let paths = collection.pin_maps(pins.path()).unwrap();
    assert!(paths.iter().any(|p| p.ends_with("_rodata")), "bpffs names have no '.': {paths:?}");
    let map_pin = pins.path().join("verdicts");
    assert!(Map::from_pin(&map_pin).is_ok());
    let err = Program::from_pin(&map_pin).unwrap_err().to_string();
    assert!(err.contains("not a program"), "{err}");
    let programs = collection.pin_programs(pins.path()).unwrap();
    assert!(Map::from_pin(&programs[0]).unwrap_err().to_string().contains("not a map"));
    assert!(ebpf_core::link::Link::from_pin(&programs[0]).unwrap_err().to_string().contains("not a link"));
}

#[test]
fn reopening_an_object_gives_the_same_spec_and_edits_stay_with_their_copy() {
    let elf = fixture("xdp_count");
    let fresh = CollectionSpec::from_elf(&elf).unwrap();
    for _ in 0..4 {
        let mut spec = CollectionSpec::from_elf(&elf).unwrap();
        assert_eq!(spec, fresh);
        let mut copy = spec.clone();
        spec.variable_mut("DROP_PORT").unwrap().set(8080u16).unwrap();
        spec.programs.clear();
        assert_eq!(copy, fresh, "edits of one copy stay with it");
        copy.programs.clear();
    }
}

#[test]
fn a_one_program_object_loads_in_two_bpf_calls() {
    let Some(_root) = require_kernel() else { return };
    let elf = fixture("bench_one");
    let mut counts = Vec::new();
    for _ in 0..3 {
        let before = ebpf_core::bpf_calls_on_this_thread();
        let collection = Collection::load(CollectionSpec::from_elf(&elf).unwrap(), &LoadOptions::default()).unwrap();
        counts.push(ebpf_core::bpf_calls_on_this_thread() - before);
        drop(collection);
    }
    // PROG_LOAD alone: nothing here needs the kernel to see BTF, and nothing is probed.
    assert_eq!(counts, [1, 1, 1]);
    let many = fixture("bench_many");
    let before = ebpf_core::bpf_calls_on_this_thread();
    let collection = Collection::load(CollectionSpec::from_elf(&many).unwrap(), &LoadOptions::default()).unwrap();
    assert_eq!(ebpf_core::bpf_calls_on_this_thread() - before, 7);
    assert_eq!(collection.programs().count(), 7);
    // As libbpf does: BTF_LOAD once, shared by every program.
    let before = ebpf_core::bpf_calls_on_this_thread();
    let always = LoadOptions::default().btf(BtfPolicy::Always);
    let collection = Collection::load(CollectionSpec::from_elf(&elf).unwrap(), &always).unwrap();
    assert_eq!(ebpf_core::bpf_calls_on_this_thread() - before, 2);
    assert_ne!(collection.program("bench_one").unwrap().info().unwrap().btf_id, 0);
}

#[test]
fn btf_goes_to_the_kernel_when_something_needs_it() {
    let Some(_root) = require_kernel() else { return };
    // Subprograms (func info for the global function and the callback).
    let subprogs = load("subprogs");
    assert_ne!(subprogs.program("tc_loop").unwrap().info().unwrap().btf_id, 0);
    // A spin lock in a map value.
    let Some(pins) = PinDir::new("spinlock") else { return };
    let spec = CollectionSpec::from_elf(&fixture("maps_defs")).unwrap();
    let collection = Collection::load(spec, &LoadOptions::default().pin_dir(pins.path())).unwrap();
    assert_ne!(collection.map("locked").unwrap().info().unwrap().btf_id, 0);
    // Nothing needs it: no BTF, so no func info either.
    assert_eq!(load("bench_one").program("bench_one").unwrap().info().unwrap().btf_id, 0);
}

#[test]
fn a_program_rejected_without_btf_is_explained_with_source_lines() {
    let Some(_root) = require_kernel() else { return };
    let elf = std::fs::read(format!("{}/../bpf-programs/out/btf/core_relocs.o", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let err = Collection::load(CollectionSpec::from_elf(&elf).unwrap(), &LoadOptions::default()).unwrap_err();
    let Error::Verifier(rejection) = err else { panic!("{err}") };
    assert!(rejection.log.contains("@ core_relocs.c:"), "{}", rejection.log);
    // The log only says `call unknown#195896080`; the error says which relocation that was.
    let explanation = rejection.explanation.as_deref().unwrap_or("");
    assert!(explanation.contains("has no match in the running kernel's types"), "{explanation}");
    assert!(rejection.to_string().lines().next().unwrap().contains("CO-RE relocation"), "{rejection}");
}

#[test]
fn local_storage_maps_get_their_btf_even_when_nothing_else_needs_it() {
    let Some(_root) = require_kernel() else { return };
    let mut spec = CollectionSpec::from_elf(&fixture("maps_defs")).unwrap();
    spec.programs.clear();
    spec.maps.retain(|m| m.name == "sk_counts");
    spec.variables.clear();
    let collection = Collection::load(spec, &LoadOptions::default()).unwrap();
    let info = collection.map("sk_counts").unwrap().info().unwrap();
    assert_eq!(info.map_type, MapType::SkStorage.raw());
    assert_ne!(info.btf_id, 0);
}
