//! CO-RE relocations of a clang-built object, resolved against the running kernel's BTF and
//! against hand-built targets where fields moved, grew, vanished or were renamed.

use std::collections::HashMap;

use ebpf_btf::core::{resolve, CoreError, CoreFixup};
use ebpf_btf::*;
use object::{Object, ObjectSection};

const FIXTURE: &[u8] = include_bytes!("../../bpf-programs/out/btf/core_relocs.o");

struct Local {
    btf: Btf,
    relos: Vec<CoreRelo>,
}

fn local() -> Local {
    // A heap copy: the ELF reader wants its input aligned, which include_bytes! does not promise.
    let data = FIXTURE.to_vec();
    let elf = object::File::parse(&*data).unwrap();
    let section = |name: &str| elf.section_by_name(name).unwrap().data().unwrap().to_vec();
    let btf = Btf::parse(section(".BTF")).unwrap();
    let ext = BtfExt::parse(&section(".BTF.ext"), &btf).unwrap();
    let relos = ext.core_relos.iter().find(|s| s.name == "raw_tracepoint/sys_enter").unwrap().records.clone();
    Local { btf, relos }
}

/// `(root type name, kind, access string)` of a relocation, to pick it out.
fn key(local: &Local, relo: &CoreRelo) -> (String, CoreReloKind, String) {
    let name = local.btf.type_by_id(relo.type_id).unwrap().name().to_owned();
    (name, relo.kind, local.btf.string(relo.access_str_off).to_owned())
}

fn resolve_all(local: &Local, target: &Btf) -> HashMap<(String, CoreReloKind, String), Result<CoreFixup, CoreError>> {
    local.relos.iter().map(|r| (key(local, r), resolve(&local.btf, r, &[target]))).collect()
}

fn value(
    results: &HashMap<(String, CoreReloKind, String), Result<CoreFixup, CoreError>>,
    name: &str,
    kind: CoreReloKind,
    access: &str,
) -> CoreFixup {
    results
        .get(&(name.to_owned(), kind, access.to_owned()))
        .unwrap_or_else(|| {
            panic!("no relocation {name} {kind:?} {access}; have {:?}", results.keys().collect::<Vec<_>>())
        })
        .clone()
        .unwrap()
}

#[test]
fn the_fixture_carries_every_relocation_kind() {
    let local = local();
    let mut kinds: Vec<_> = local.relos.iter().map(|r| r.kind.name()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(kinds.len(), 13, "{kinds:?}");
}

#[test]
fn kernel_types_resolve_against_the_running_kernel() {
    let Ok(vmlinux) = kernel::vmlinux() else {
        assert_ne!(std::env::var("EBPF_REQUIRE_KERNEL").as_deref(), Ok("1"), "no kernel BTF");
        eprintln!("SKIPPED: no /sys/kernel/btf/vmlinux");
        return;
    };
    let local = local();
    let results = resolve_all(&local, &vmlinux);
    let skb = vmlinux.find("sk_buff", BtfKind::Struct).unwrap();
    let mark = vmlinux.find_member(skb.id(), "mark").unwrap();
    let len = vmlinux.find_member(skb.id(), "len").unwrap();

    let offset = value(&results, "sk_buff", CoreReloKind::FieldByteOffset, "0:1");
    assert_eq!((offset.local_value, offset.target_value), (4, u64::from(mark.bit_offset / 8)));
    let size = value(&results, "sk_buff", CoreReloKind::FieldByteSize, "0:0");
    assert_eq!(size.target_value, u64::from(vmlinux.resolve_size(len.member.ty).unwrap()));
    assert_eq!(value(&results, "task_struct", CoreReloKind::FieldExists, "0:1").target_value, 1);
    let missing = value(&results, "task_struct", CoreReloKind::FieldExists, "0:2");
    assert_eq!((missing.target_value, missing.poison), (0, false));

    // A flavored local type (xdp_md___local) finds the kernel's xdp_md.
    assert_eq!(value(&results, "xdp_md___local", CoreReloKind::TypeExists, "0").target_value, 1);
    let xdp_md = vmlinux.find("xdp_md", BtfKind::Struct).unwrap();
    assert_eq!(
        value(&results, "xdp_md___local", CoreReloKind::TypeSize, "0").target_value,
        u64::from(xdp_md.size().unwrap())
    );
    assert_eq!(value(&results, "xdp_md___local", CoreReloKind::TypeMatches, "0").target_value, 1);

    let ringbuf = value(&results, "bpf_map_type", CoreReloKind::EnumvalValue, "27");
    assert_eq!((ringbuf.local_value, ringbuf.target_value), (27, 27));
    assert_eq!(value(&results, "bpf_map_type", CoreReloKind::EnumvalExists, "27").target_value, 1);
    assert_eq!(value(&results, "sk_buff", CoreReloKind::TypeIdTarget, "0").target_value, u64::from(skb.id()));

    // Our own probe types are not in the kernel: existence says 0, offsets poison.
    let gone = value(&results, "probe", CoreReloKind::FieldByteOffset, "0:1");
    assert!(gone.poison);
    assert_eq!(value(&results, "probe___old", CoreReloKind::FieldExists, "0:1").target_value, 0);
}

/// Target BTF for the probe types: `b` moved and grew a flavor of its own, bitfields moved,
/// the array grew, the union's member moved, an enumerator changed and one vanished.
fn moved_target() -> Btf {
    let mut t = BtfBuilder::new();
    let int = t.add_int("int", 4, IntEncoding::Signed); // 1
    let uint = t.add_int("unsigned int", 4, IntEncoding::Unsigned); // 2
    let llong = t.add_int("long long", 8, IntEncoding::Signed); // 3
    let long = t.add_int("long", 8, IntEncoding::Signed); // 4
    let bits = t.add_struct(
        "probe_bits",
        8,
        &[
            Member { name: "pad", ty: uint, bit_offset: 0, bitfield_size: 30 },
            Member { name: "low", ty: uint, bit_offset: 30, bitfield_size: 3 },
            Member { name: "mid", ty: int, bit_offset: 33, bitfield_size: 9 },
            Member { name: "high", ty: uint, bit_offset: 42, bitfield_size: 20 },
        ],
    ); // 5
    let arr = t.add_array(int, int, 8); // 6
    let anon = t.add_union(
        "",
        8,
        &[
            Member { name: "u0", ty: int, bit_offset: 0, bitfield_size: 0 },
            Member { name: "u2", ty: long, bit_offset: 0, bitfield_size: 0 },
        ],
    ); // 7
    t.add_struct(
        "probe",
        96,
        &[
            Member { name: "a", ty: int, bit_offset: 0, bitfield_size: 0 },
            Member { name: "legacy", ty: int, bit_offset: 32, bitfield_size: 0 },
            Member { name: "extra", ty: llong, bit_offset: 64, bitfield_size: 0 },
            Member { name: "b", ty: llong, bit_offset: 128, bitfield_size: 0 },
            Member { name: "bits", ty: bits, bit_offset: 192, bitfield_size: 0 },
            Member { name: "arr", ty: arr, bit_offset: 256, bitfield_size: 0 },
            Member { name: "", ty: anon, bit_offset: 512, bitfield_size: 0 },
        ],
    ); // 8
    t.add_enum(
        "probe_mode",
        4,
        false,
        &[EnumValue { name: "PROBE_OFF", value: 0 }, EnumValue { name: "PROBE_ON", value: 70 }],
    );
    Btf::parse(t.encode()).unwrap()
}

#[test]
fn moved_grown_and_renamed_fields_relocate_by_value() {
    let local = local();
    let results = resolve_all(&local, &moved_target());
    let b = value(&results, "probe", CoreReloKind::FieldByteOffset, "0:1");
    assert_eq!((b.local_value, b.target_value, b.local_size, b.target_size), (8, 16, 8, 8));
    assert_eq!(value(&results, "probe", CoreReloKind::FieldByteSize, "0:1").target_value, 8);
    // arr[2]: 32 + 2 * 4
    let arr = value(&results, "probe", CoreReloKind::FieldByteOffset, "0:3:2");
    assert_eq!((arr.local_value, arr.target_value), (28, 40));
    // u2 through the anonymous union: local 40, target 64
    let u2 = value(&results, "probe", CoreReloKind::FieldByteOffset, "0:4:1");
    assert_eq!((u2.local_value, u2.target_value), (40, 64));
    // The flavor probe___old finds `legacy` in the target's probe.
    assert_eq!(value(&results, "probe___old", CoreReloKind::FieldExists, "0:1").target_value, 1);
    let on = value(&results, "probe_mode", CoreReloKind::EnumvalValue, "1");
    assert_eq!((on.local_value, on.target_value), (7, 70));
    assert_eq!(value(&results, "probe_mode", CoreReloKind::EnumvalExists, "2").target_value, 0);
    // probe's `b` type and the union's `u1` are gone from the target: it no longer matches.
    assert_eq!(value(&results, "probe", CoreReloKind::TypeMatches, "0").target_value, 0);
    assert_eq!(
        value(&results, "probe", CoreReloKind::TypeIdLocal, "0").target_value,
        u64::from(local.btf.find("probe", BtfKind::Struct).unwrap().id())
    );
}

#[test]
fn bitfield_reads_relocate_shifts_sizes_and_sign() {
    let local = local();
    let results = resolve_all(&local, &moved_target());
    let get = |kind| value(&results, "probe", kind, "0:2:1");
    // Local: bits sits at byte 16, mid at its bits 3..12: bit 131, read with a 4-byte load at
    // byte 16. Target: bits at byte 24, mid at its bit 33: bit 225, a 4-byte load at byte 28.
    let offset = get(CoreReloKind::FieldByteOffset);
    assert_eq!((offset.local_value, offset.target_value), (16, 28));
    assert_eq!(get(CoreReloKind::FieldByteSize).target_value, 4);
    assert_eq!(get(CoreReloKind::FieldSigned).target_value, 1);
    let lshift = get(CoreReloKind::FieldLshiftU64);
    assert_eq!((lshift.local_value, lshift.target_value), (64 - (131 + 9 - 128), 64 - (225 + 9 - 224)));
    assert_eq!(get(CoreReloKind::FieldRshiftU64).target_value, 64 - 9);
}

#[test]
fn vanished_fields_poison_and_existence_says_no() {
    let mut t = BtfBuilder::new();
    let int = t.add_int("int", 4, IntEncoding::Signed);
    t.add_struct("probe", 4, &[Member { name: "a", ty: int, bit_offset: 0, bitfield_size: 0 }]);
    let target = Btf::parse(t.encode()).unwrap();
    let local = local();
    let results = resolve_all(&local, &target);
    let b = value(&results, "probe", CoreReloKind::FieldByteOffset, "0:1");
    assert!(b.poison, "{b:?}");
    assert_eq!(value(&results, "probe___old", CoreReloKind::FieldExists, "0:1").target_value, 0);
    assert_eq!(value(&results, "probe_mode", CoreReloKind::EnumvalExists, "2").target_value, 0);
    assert!(value(&results, "probe_mode", CoreReloKind::EnumvalValue, "1").poison);
}

#[test]
fn candidates_that_disagree_are_an_error() {
    let mut t = BtfBuilder::new();
    let int = t.add_int("int", 4, IntEncoding::Signed);
    let llong = t.add_int("long long", 8, IntEncoding::Signed);
    for (name, offset) in [("probe", 64), ("probe___dup", 128)] {
        t.add_struct(
            name,
            24,
            &[
                Member { name: "a", ty: int, bit_offset: 0, bitfield_size: 0 },
                Member { name: "b", ty: llong, bit_offset: offset, bitfield_size: 0 },
            ],
        );
    }
    let target = Btf::parse(t.encode()).unwrap();
    let local = local();
    let relo = local
        .relos
        .iter()
        .find(|r| key(&local, r) == ("probe".into(), CoreReloKind::FieldByteOffset, "0:1".into()))
        .unwrap();
    let err = resolve(&local.btf, relo, &[&target]).unwrap_err();
    assert!(matches!(err, CoreError::Ambiguous { .. }), "{err}");
    assert!(err.to_string().contains("ambiguous"), "{err}");
}

#[test]
fn func_and_line_info_name_the_function_and_its_source() {
    let data = FIXTURE.to_vec();
    let elf = object::File::parse(&*data).unwrap();
    let section = |name: &str| elf.section_by_name(name).unwrap().data().unwrap().to_vec();
    let btf = Btf::parse(section(".BTF")).unwrap();
    let ext = BtfExt::parse(&section(".BTF.ext"), &btf).unwrap();
    let funcs = &ext.func_info.iter().find(|s| s.name == "raw_tracepoint/sys_enter").unwrap().records;
    assert_eq!(funcs.len(), 1);
    assert_eq!(funcs[0].insn_off, 0);
    assert_eq!(btf.type_by_id(funcs[0].type_id).unwrap().name(), "core_relocs");
    assert!(ext.func_info_rec_size >= 8 && ext.line_info_rec_size >= 16);
    let lines = &ext.line_info.iter().find(|s| s.name == "raw_tracepoint/sys_enter").unwrap().records;
    assert!(lines.len() > 10);
    assert!(
        btf.string(lines[0].file_name_off).ends_with("btf/core_relocs.c"),
        "{}",
        btf.string(lines[0].file_name_off)
    );
    assert!(btf.string(lines[1].line_off).contains("results["), "{}", btf.string(lines[1].line_off));
    assert!(lines.iter().all(|l| l.line() > 0));
}

proptest::proptest! {
    #[test]
    fn ext_parsing_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
        let btf = Btf::parse(BtfBuilder::new().encode()).unwrap();
        let _ = BtfExt::parse(&bytes, &btf);
    }
}
