//! The generated skeletons against the real kernel: every object opens through its own
//! skeleton, the loadable ones load, and each is used through its typed maps and globals. A
//! skeleton opened on a rebuilt object whose struct changed is refused, naming map and member.

use ebpf_core::program::TestRun;
use ebpf_core::{CollectionSpec, LoadOptions};
use ebpf_maps::UpdateFlags;
use ebpf_test_support::{require_kernel, PinDir};
use skeleton_tests::*;

#[test]
fn every_object_opens_through_its_own_skeleton() {
    // Pure data: no kernel needed. The BTF and CO-RE fixtures and the tracing programs need not
    // load on every kernel, but their skeletons open.
    arena_map::OpenArenaMap::open().unwrap();
    attach_points::OpenAttachPoints::open().unwrap();
    autoload_variants::OpenAutoloadVariants::open().unwrap();
    bench_many::OpenBenchMany::open().unwrap();
    bench_one::OpenBenchOne::open().unwrap();
    core_kernel::OpenCoreKernel::open().unwrap();
    core_relocs::OpenCoreRelocs::open().unwrap();
    core_typedef_members::OpenCoreTypedefMembers::open().unwrap();
    cgroup_connect::OpenCgroupConnect::open().unwrap();
    endpoint::OpenEndpoint::open().unwrap();
    extern_funcs::OpenExternFuncs::open().unwrap();
    externs::OpenExterns::open().unwrap();
    iproute2_maps::OpenIproute2Maps::open().unwrap();
    legacy_map_layouts::OpenLegacyMapLayouts::open().unwrap();
    legacy_maps::OpenLegacyMaps::open().unwrap();
    maps_defs::OpenMapsDefs::open().unwrap();
    skeleton_layout::OpenSkeletonLayout::open().unwrap();
    skeleton_layout_changed::OpenSkeletonLayoutChanged::open().unwrap();
    subprogram_sections::OpenSubprogramSections::open().unwrap();
    struct_ops_cc::OpenStructOpsCc::open().unwrap();
    subprogs::OpenSubprogs::open().unwrap();
    tail_calls::OpenTailCalls::open().unwrap();
    template::OpenTemplate::open().unwrap();
    tracing_links::OpenTracingLinks::open().unwrap();
    unnamed_params::OpenUnnamedParams::open().unwrap();
    unspecified_type::OpenUnspecifiedType::open().unwrap();
    uprobe_count::OpenUprobeCount::open().unwrap();
    usdt_args::OpenUsdtArgs::open().unwrap();
    usdt_sections::OpenUsdtSections::open().unwrap();
    weak_ksyms::OpenWeakKsyms::open().unwrap();
    xdp_count::OpenXdpCount::open().unwrap();
    xdp_counter::OpenXdpCounter::open().unwrap();
    tc_classifier::OpenTcClassifier::open().unwrap();
    ringbuf_events::OpenRingbufEvents::open().unwrap();
    uprobe_counter::OpenUprobeCounter::open().unwrap();
}

#[test]
fn a_skeleton_refuses_an_object_whose_struct_changed() {
    let changed = CollectionSpec::from_elf(skeleton_layout_changed::OBJECT).unwrap();
    let err = skeleton_layout::OpenSkeletonLayout::from_spec(changed).unwrap_err().to_string();
    assert!(
        err.starts_with("stale skeleton for skeleton_layout.o: map \"records\" value: struct record: member 0 is port here, kind in the skeleton"),
        "{err}"
    );
    // And the other way round.
    let original = CollectionSpec::from_elf(skeleton_layout::OBJECT).unwrap();
    let err = skeleton_layout_changed::OpenSkeletonLayoutChanged::from_spec(original).unwrap_err().to_string();
    assert!(err.contains("map \"records\" value: struct record"), "{err}");
    // A spec edited through the escape hatch is checked again at load.
    let mut open = skeleton_layout::OpenSkeletonLayout::open().unwrap();
    open.spec_mut().maps.retain(|m| m.name != "records");
    let err = open.load(&LoadOptions::default()).unwrap_err().to_string();
    assert!(err.contains("map \"records\" is gone"), "{err}");
}

#[test]
fn a_changed_enum_value_or_variable_is_stale_too() {
    use ebpf_core::object::layout::{ExpectedObject, ExpectedType};
    let spec = CollectionSpec::from_elf(skeleton_layout::OBJECT).unwrap();
    let mut renumbered: Vec<ExpectedType> = skeleton_layout::EXPECTED.types.to_vec();
    let state = renumbered.iter_mut().find(|t| t.name == "enum record_state").unwrap();
    state.enumerators = &[("RECORD_NEW", 1), ("RECORD_SEEN", 3), ("RECORD_GONE", 255)];
    let types: &'static [ExpectedType] = Box::leak(renumbered.into_boxed_slice());
    let expected = ExpectedObject { types, ..skeleton_layout::EXPECTED };
    let err = expected.check(&spec).unwrap_err().to_string();
    assert!(err.contains("enum record_state: RECORD_SEEN is 2 here, 3 in the skeleton"), "{err}");
}

#[test]
fn generated_types_read_what_the_programs_write() {
    let Some(_root) = require_kernel() else { return };
    let mut open = skeleton_layout::OpenSkeletonLayout::open().unwrap();
    assert_eq!(open.record_limit().unwrap(), 16);
    open.set_record_limit(4).unwrap();
    let loaded = open.load(&LoadOptions::default()).unwrap();
    assert_eq!(loaded.record_limit().unwrap(), 4, "the templated constant");
    let records = loaded.maps().records().unwrap();
    let mut record = skeleton_layout::types::record {
        kind: 7,
        port: 8080,
        state: skeleton_layout::types::record_state::RECORD_GONE,
        ..Default::default()
    };
    record.set_flags(5);
    record.set_ttl(30);
    record.addr.set_v4(0x0a00_0001);
    // The key is the packet's length modulo RECORD_LIMIT: 65 % 4 = 1.
    records.insert(&1, &record, UpdateFlags::ANY).unwrap();
    let program = loaded.progs().count_records();
    let frame = [0u8; 65];
    let run = TestRun::with_data(&frame);
    assert_eq!(program.test_run(&run).unwrap().retval, 1, "XDP_DROP: the program read state RECORD_GONE");
    let read = records.get(&1).unwrap().unwrap();
    assert_eq!((read.seen, read.kind, read.port, read.flags(), read.ttl()), (1, 7, 8080, 5, 30));
    assert_eq!(read.addr.v4(), 0x0a00_0001);
    assert_eq!(format!("{:?}", read.state), "RECORD_GONE");
    // An enum anchored in a section no map is made of reaches the skeleton, and the object
    // still loads (the loader sizes that section's BTF from its symbols).
    assert_eq!(skeleton_layout::types::record_kind::KIND_SPECIAL.0, 2);
    assert_eq!(skeleton_layout::types::record_kind(7).name(), None);
    assert_eq!(loaded.lookups().unwrap(), 1, ".bss, live");
    loaded.set_lookups(40).unwrap();
    program.test_run(&run).unwrap();
    assert_eq!(loaded.lookups().unwrap(), 41);
}

#[test]
fn xdp_count_templated_and_counted_through_its_skeleton() {
    let Some(_root) = require_kernel() else { return };
    let mut open = xdp_count::OpenXdpCount::open().unwrap();
    assert_eq!(open.drop_port().unwrap(), 53);
    open.set_drop_port(8080).unwrap();
    let loaded = open.load(&LoadOptions::default()).unwrap();
    // Ethernet, IPv4 (ihl 5, UDP), UDP to 8080.
    let mut frame = vec![0u8; 14 + 20 + 8];
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14] = 0x45;
    frame[14 + 9] = 17;
    frame[14 + 20 + 2..14 + 20 + 4].copy_from_slice(&8080u16.to_be_bytes());
    let result = loaded.progs().xdp_count().test_run(&TestRun::with_data(&frame)).unwrap();
    assert_eq!(result.retval, 1, "XDP_DROP");
    assert_eq!(loaded.maps().verdicts().unwrap().get(1).unwrap(), 1);
    assert_eq!(loaded.drop_port().unwrap(), 8080);
}

#[test]
fn the_endpoint_skeleton_types_its_lpm_tries() {
    let Some(_root) = require_kernel() else { return };
    let pins = PinDir::new("skelep").expect("bpffs");
    let mut open = endpoint::OpenEndpoint::open().unwrap();
    open.set_endpoint_id(9).unwrap();
    open.set_host_mac([2, 0, 0, 0, 0, 9]).unwrap();
    let loaded = open.load(&LoadOptions::default().pin_dir(pins.path())).unwrap();
    let ipcache = loaded.maps().ipcache().unwrap();
    let data =
        endpoint::types::ipcache_key_data { family: 4, addr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 0, 0] };
    let value = endpoint::types::ipcache_value { identity: 300, ..Default::default() };
    ipcache.insert(&data, 32 + 96 + 16, &value, UpdateFlags::ANY).unwrap();
    let mut host = data;
    host.addr[15] = 7;
    assert_eq!(ipcache.lookup(&host).unwrap().map(|v| v.identity), Some(300), "10.1.0.7 under 10.1.0.0/16");
    assert_eq!(loaded.endpoint_id().unwrap(), 9);
    assert_eq!(loaded.host_mac().unwrap(), [2, 0, 0, 0, 0, 9]);
    assert!(loaded.maps().policy().is_ok() && loaded.maps().conntrack().is_ok());
}

#[test]
fn every_loadable_object_loads_and_is_used_through_its_skeleton() {
    let Some(_root) = require_kernel() else { return };
    let pins = PinDir::new("skelall").expect("bpffs");
    let options = LoadOptions::default().pin_dir(pins.path());

    let template = template::OpenTemplate::open().unwrap();
    assert_eq!(template.mode().unwrap(), 0);
    let template = template.load(&options).unwrap();
    template.set_packets(3).unwrap();
    assert_eq!(template.packets().unwrap(), 3);

    let maps_defs = maps_defs::OpenMapsDefs::open().unwrap().load(&options).unwrap();
    let pinned = maps_defs.maps().lib_fixture_pinned().unwrap();
    pinned.insert(&1, &2, UpdateFlags::ANY).unwrap();
    assert_eq!(pinned.get(&1).unwrap(), Some(2));
    assert_eq!(maps_defs.maps().locked().unwrap().get(0).unwrap().count, 0);

    let subprogs = subprogs::OpenSubprogs::open().unwrap().load(&options).unwrap();
    assert_eq!(subprogs.maps().calls().unwrap().get(0).unwrap(), 0);
    let sections = subprogram_sections::OpenSubprogramSections::open().unwrap().load(&options).unwrap();
    let program = sections.progs().call_across_sections();
    assert_eq!(program.test_run(&TestRun::with_data(&[0u8; 64])).unwrap().retval, 13);

    let legacy = legacy_maps::OpenLegacyMaps::open().unwrap().load(&options).unwrap();
    assert_eq!(legacy.maps().legacy_counts().unwrap().get(0).unwrap(), [0; 8]);
    let layouts = legacy_map_layouts::OpenLegacyMapLayouts::open().unwrap().load(&options).unwrap();
    assert_eq!(layouts.maps().sized_array().unwrap().get(1).unwrap(), [0; 4]);
    let iproute2 = iproute2_maps::OpenIproute2Maps::open().unwrap().load(&options).unwrap();
    assert_eq!(iproute2.maps().tc_shared_counts().unwrap().get(0).unwrap(), [0; 8]);
    assert!(pins.path().join("tc_shared_counts").exists());

    let tail_calls = tail_calls::OpenTailCalls::open().unwrap().load(&options).unwrap();
    tail_calls.maps().jumps().unwrap();
    tail_calls.progs().stage_hop();

    let externs = externs::OpenExterns::open().unwrap().load(&options).unwrap();
    assert_eq!(externs.seen().unwrap(), [0; 6]);
    let weak = weak_ksyms::OpenWeakKsyms::open().unwrap().load(&options).unwrap();
    assert_eq!(weak.exists().unwrap(), [0; 4]);

    let mut attach = attach_points::OpenAttachPoints::open().unwrap();
    attach.set_denied_port(9999).unwrap();
    let attach = attach.load(&options).unwrap();
    assert_eq!(attach.denied_port().unwrap(), 9999);
    attach.maps().steer_to().unwrap();

    let core = core_kernel::OpenCoreKernel::open().unwrap().load(&options).unwrap();
    assert_eq!(core.results().unwrap(), [0; 6]);

    // A struct_ops program no value points to is left out: its accessor says so.
    let struct_ops = struct_ops_cc::OpenStructOpsCc::open().unwrap().load(&options).unwrap();
    assert!(struct_ops.progs().ebpf_cc_unused().is_none());
    struct_ops.progs().ebpf_cc_cong_avoid();
    assert_eq!(struct_ops.calls().unwrap(), [0; 4]);

    bench_one::OpenBenchOne::open().unwrap().load(&options).unwrap().progs().bench_one();
    bench_many::OpenBenchMany::open().unwrap().load(&options).unwrap().progs().many_tc();
}
