//! Parsing BTF built here, byte-swapped, corrupted, and the running kernel's.

use ebpf_btf::*;
use proptest::prelude::*;

/// One type of every kind, as the builder writes them.
fn every_kind() -> Vec<u8> {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, IntEncoding::Signed); // 1
    let uint = b.add_int("unsigned int", 4, IntEncoding::Unsigned); // 2
    let ptr = b.add_ptr(int); // 3
    b.add_array(int, uint, 16); // 4
    let pair = b.add_struct(
        "flags",
        8,
        &[
            Member { name: "low", ty: uint, bit_offset: 0, bitfield_size: 3 },
            Member { name: "high", ty: uint, bit_offset: 3, bitfield_size: 29 },
            Member { name: "", ty: int, bit_offset: 32, bitfield_size: 0 },
        ],
    ); // 5
    b.add_union("u", 8, &[Member { name: "p", ty: ptr, bit_offset: 0, bitfield_size: 0 }]); // 6
    b.add_enum("dir", 4, true, &[EnumValue { name: "IN", value: -1 }, EnumValue { name: "OUT", value: 1 }]); // 7
    b.add_fwd("later", true); // 8
    let td = b.add_typedef("flags_t", pair); // 9
    let v = b.add_volatile(td); // 10
    let c = b.add_const(v); // 11
    b.add_restrict(ptr); // 12
    let proto = b.add_func_proto(Some(int), &[Param { name: "x", ty: Some(c) }, Param { name: "", ty: None }]); // 13
    let func = b.add_func("handler", proto, Linkage::Global); // 14
    let var = b.add_var("counter", int, Linkage::Static); // 15
    b.add_datasec(".data", 4, &[DatasecVar { var, offset: 0, size: 4 }]); // 16
    b.add_float("double", 8); // 17
    b.add_decl_tag("kfunc", func, -1); // 18
    b.add_type_tag("user", int); // 19
    b.add_enum64("wide", 8, false, &[EnumValue { name: "BIG", value: 1 << 40 }]); // 20
    b.encode()
}

const EVERY_KIND_DUMP: &str = "\
[1] INT 'int' size=4 bits_offset=0 nr_bits=32 encoding=SIGNED
[2] INT 'unsigned int' size=4 bits_offset=0 nr_bits=32 encoding=(none)
[3] PTR '(anon)' type_id=1
[4] ARRAY '(anon)' type_id=1 index_type_id=2 nr_elems=16
[5] STRUCT 'flags' size=8 vlen=3
\t'low' type_id=2 bits_offset=0 bitfield_size=3
\t'high' type_id=2 bits_offset=3 bitfield_size=29
\t'(anon)' type_id=1 bits_offset=32
[6] UNION 'u' size=8 vlen=1
\t'p' type_id=3 bits_offset=0
[7] ENUM 'dir' encoding=SIGNED size=4 vlen=2
\t'IN' val=-1
\t'OUT' val=1
[8] FWD 'later' fwd_kind=union
[9] TYPEDEF 'flags_t' type_id=5
[10] VOLATILE '(anon)' type_id=9
[11] CONST '(anon)' type_id=10
[12] RESTRICT '(anon)' type_id=3
[13] FUNC_PROTO '(anon)' ret_type_id=1 vlen=2
\t'x' type_id=11
\t'(anon)' type_id=0
[14] FUNC 'handler' type_id=13 linkage=global
[15] VAR 'counter' type_id=1, linkage=static
[16] DATASEC '.data' size=4 vlen=1
\ttype_id=15 offset=0 size=4 (VAR 'counter')
[17] FLOAT 'double' size=8
[18] DECL_TAG 'kfunc' type_id=14 component_idx=-1
[19] TYPE_TAG 'user' type_id=1
[20] ENUM64 'wide' encoding=UNSIGNED size=8 vlen=1
\t'BIG' val=1099511627776ULL
";

fn dump(btf: &Btf) -> String {
    let mut out = Vec::new();
    raw_dump(btf, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// The same blob in the other byte order: every header and type word swapped.
fn byte_swapped(blob: &[u8]) -> Vec<u8> {
    let header = BtfHeader::parse(blob).unwrap();
    let mut out = blob.to_vec();
    out.swap(0, 1);
    let swap_words = |out: &mut Vec<u8>, range: std::ops::Range<usize>| {
        for word in out[range].chunks_exact_mut(4) {
            word.reverse();
        }
    };
    swap_words(&mut out, 4..24);
    swap_words(&mut out, header.type_range());
    out
}

#[test]
fn every_kind_parses_and_dumps_like_bpftool() {
    let btf = Btf::parse(every_kind()).unwrap();
    assert_eq!(btf.len(), 20);
    assert_eq!(dump(&btf), EVERY_KIND_DUMP);
}

#[test]
fn accessors_decode_each_kind() {
    let btf = Btf::parse(every_kind()).unwrap();
    let flags = btf.find("flags", BtfKind::Struct).unwrap();
    let members: Vec<_> = flags.members().collect();
    assert_eq!(members[1], StructMember { name: "high", ty: 2, bit_offset: 3, bitfield_size: 29 });
    let dir = btf.find("dir", BtfKind::Enum).unwrap();
    assert_eq!(dir.enumerators().map(|e| e.value).collect::<Vec<_>>(), [-1, 1]);
    let wide = btf.find("wide", BtfKind::Enum64).unwrap();
    assert_eq!(wide.enumerators().next().unwrap().value, 1 << 40);
    assert_eq!(btf.find("handler", BtfKind::Func).unwrap().linkage(), Some(TypeLinkage::Global));
    assert_eq!(btf.type_by_id(4).unwrap().array(), Some(ArrayInfo { elem: 1, index: 2, nelems: 16 }));
    assert!(btf.type_by_id(0).unwrap().is_void());
    assert!(btf.type_by_id(21).is_none());
    assert!(btf.find("flags", BtfKind::Union).is_none());
    assert_eq!(btf.ids_by_name("int"), [1]);
}

#[test]
fn the_other_byte_order_reads_the_same() {
    let swapped = Btf::parse(byte_swapped(&every_kind())).unwrap();
    assert!(swapped.header().swapped);
    assert_eq!(dump(&swapped), EVERY_KIND_DUMP);
}

#[test]
fn parse_encode_parse_is_the_identity() {
    let first = Btf::parse(every_kind()).unwrap();
    let again = Btf::parse(BtfBuilder::from_btf(&first).encode()).unwrap();
    assert_eq!(dump(&again), dump(&first));
}

#[test]
fn malformed_blobs_name_what_is_wrong() {
    let good = every_kind();
    let header = BtfHeader::parse(&good).unwrap();
    let types = header.type_range();

    let mut unknown_kind = good.clone();
    unknown_kind[types.start + 7] = 25; // kind byte of type 1's info word
    assert!(matches!(Btf::parse(unknown_kind), Err(BtfError::UnknownKind { id: 1, kind: 25 })));

    let mut bad_name = good.clone();
    bad_name[types.start..types.start + 4].copy_from_slice(&0xffffu32.to_ne_bytes());
    assert!(matches!(Btf::parse(bad_name), Err(BtfError::BadNameOffset { id: 1, offset: 0xffff })));

    let mut bad_ref = good.clone();
    // Type 3 (PTR) points at type 99.
    bad_ref[types.start + 32 + 8..types.start + 32 + 12].copy_from_slice(&99u32.to_ne_bytes());
    assert!(matches!(Btf::parse(bad_ref), Err(BtfError::BadTypeReference { id: 3, target: 99, last: 20 })));

    let mut truncated = good.clone();
    truncated[12..16].copy_from_slice(&(header.type_len - 2).to_ne_bytes());
    assert!(matches!(Btf::parse(truncated), Err(BtfError::TypeTruncated { id: 20, .. })));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn corrupted_blobs_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut blob = every_kind();
        let len = blob.len();
        for (at, value) in flips {
            blob[at % len] = value;
        }
        if let Ok(btf) = Btf::parse(blob) {
            let _ = dump(&btf);
            let _ = BtfBuilder::from_btf(&btf).encode();
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(btf) = Btf::parse(bytes) {
            let _ = dump(&btf);
        }
    }
}

#[test]
fn the_kernels_btf_parses_reencodes_and_answers_queries() {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        assert_ne!(std::env::var("EBPF_REQUIRE_KERNEL").as_deref(), Ok("1"), "no /sys/kernel/btf/vmlinux");
        eprintln!("SKIPPED: no /sys/kernel/btf/vmlinux");
        return;
    }
    let vmlinux = kernel::vmlinux().unwrap();
    assert!(vmlinux.len() > 10_000);
    let skb = vmlinux.find("sk_buff", BtfKind::Struct).unwrap();
    assert!(skb.members().any(|m| m.name == "len"));
    assert!(vmlinux.find("xdp_md", BtfKind::Struct).is_some());

    let again = Btf::parse(BtfBuilder::from_btf(&vmlinux).encode()).unwrap();
    assert_eq!(again.len(), vmlinux.len());
    assert_eq!(dump(&again), dump(&vmlinux));
}

#[test]
fn file_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("btf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("truncated.btf");
    std::fs::write(&path, &every_kind()[..30]).unwrap();
    let err = kernel::read_btf_file(&path).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(err.to_string().starts_with(&path.display().to_string()), "{err}");
}

#[test]
fn split_btf_continues_its_base() {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, IntEncoding::Signed);
    b.add_struct("base_s", 4, &[Member { name: "x", ty: int, bit_offset: 0, bitfield_size: 0 }]);
    let base = std::sync::Arc::new(Btf::parse(b.encode()).unwrap());

    let mut m = BtfBuilder::new_split(&base);
    let ptr = m.add_ptr(TypeId::new(2).unwrap()); // 3: pointer to the base's struct
    m.add_struct("module_s", 8, &[Member { name: "p", ty: ptr, bit_offset: 0, bitfield_size: 0 }]); // 4
    let module = Btf::parse_split(m.encode(), base.clone()).unwrap();
    assert_eq!((module.first_id(), module.last_id(), module.len()), (3, 4, 2));
    assert_eq!(module.find("module_s", BtfKind::Struct).unwrap().id(), 4);
    assert_eq!(module.find("base_s", BtfKind::Struct).unwrap().id(), 2, "base types are found through the split");
    assert_eq!(module.skip_mods_and_typedefs(3).unwrap().kind(), Some(BtfKind::Ptr));
    assert_eq!(module.resolve_size(4).unwrap(), 8);
    assert_eq!(
        dump(&module),
        "[3] PTR '(anon)' type_id=2\n[4] STRUCT 'module_s' size=8 vlen=1\n\t'p' type_id=3 bits_offset=0\n"
    );
    // A split blob that names a type past its own end is refused.
    let mut bad = BtfBuilder::new_split(&base);
    bad.add_ptr(TypeId::new(9).unwrap());
    assert!(matches!(Btf::parse_split(bad.encode(), base), Err(BtfError::BadTypeReference { target: 9, .. })));
}

/// One builder step; `r` picks an earlier type to refer to.
#[derive(Clone, Debug)]
enum Step {
    Int(u8, bool),
    Ptr(u32),
    Array(u32, u32),
    Struct(String, Vec<(String, u32, u8)>),
    Union(Vec<u32>),
    Enum(String, Vec<i32>, bool),
    Enum64(Vec<i64>),
    Fwd(String, bool),
    Typedef(String, u32),
    Qualifier(u8, u32),
    Proto(u32, Vec<u32>),
    Func(String, u8),
    Float(u8),
    TypeTag(String, u32),
}

fn step() -> impl Strategy<Value = Step> {
    let name = "[a-z]{1,6}(___[a-z]{1,3})?";
    prop_oneof![
        (0u8..4, any::<bool>()).prop_map(|(s, signed)| Step::Int(s, signed)),
        any::<u32>().prop_map(Step::Ptr),
        (any::<u32>(), 0u32..100).prop_map(|(r, n)| Step::Array(r, n)),
        (name, proptest::collection::vec((name, any::<u32>(), 0u8..8), 0..4)).prop_map(|(n, m)| Step::Struct(n, m)),
        proptest::collection::vec(any::<u32>(), 0..3).prop_map(Step::Union),
        (name, proptest::collection::vec(any::<i32>(), 0..4), any::<bool>()).prop_map(|(n, v, s)| Step::Enum(n, v, s)),
        proptest::collection::vec(any::<i64>(), 0..3).prop_map(Step::Enum64),
        (name, any::<bool>()).prop_map(|(n, u)| Step::Fwd(n, u)),
        (name, any::<u32>()).prop_map(|(n, r)| Step::Typedef(n, r)),
        (0u8..3, any::<u32>()).prop_map(|(q, r)| Step::Qualifier(q, r)),
        (any::<u32>(), proptest::collection::vec(any::<u32>(), 0..4)).prop_map(|(r, p)| Step::Proto(r, p)),
        (name, 0u8..3).prop_map(|(n, l)| Step::Func(n, l)),
        (0u8..3).prop_map(Step::Float),
        (name, any::<u32>()).prop_map(|(n, r)| Step::TypeTag(n, r)),
    ]
}

/// Builds a valid blob: every reference points at an earlier type (the first is an int).
fn build(steps: &[Step]) -> Vec<u8> {
    let mut b = BtfBuilder::new();
    let mut last = b.add_int("int", 4, IntEncoding::Signed).get();
    let mut protos: Vec<u32> = Vec::new();
    let pick = |r: u32, last: u32| TypeId::new(1 + r % last).unwrap();
    for s in steps {
        let id = match s {
            Step::Int(size, signed) => {
                let enc = if *signed { IntEncoding::Signed } else { IntEncoding::Unsigned };
                b.add_int("i", 1 << size, enc)
            }
            Step::Ptr(r) => b.add_ptr(pick(*r, last)),
            Step::Array(r, n) => b.add_array(pick(*r, last), TypeId::new(1).unwrap(), *n),
            Step::Struct(n, members) => {
                let members: Vec<Member> = members
                    .iter()
                    .enumerate()
                    .map(|(i, (mn, r, bits))| Member {
                        name: mn,
                        ty: pick(*r, last),
                        bit_offset: 32 * i as u32,
                        bitfield_size: *bits,
                    })
                    .collect();
                b.add_struct(n, 4 * members.len() as u32, &members)
            }
            Step::Union(rs) => {
                let members: Vec<Member> = rs
                    .iter()
                    .map(|r| Member { name: "u", ty: pick(*r, last), bit_offset: 0, bitfield_size: 0 })
                    .collect();
                b.add_union("", 8, &members)
            }
            Step::Enum(n, vals, signed) => {
                let values: Vec<EnumValue> =
                    vals.iter().map(|v| EnumValue { name: "E", value: i64::from(*v) }).collect();
                b.add_enum(n, 4, *signed, &values)
            }
            Step::Enum64(vals) => {
                let values: Vec<EnumValue> = vals.iter().map(|v| EnumValue { name: "W", value: *v }).collect();
                b.add_enum64("w", 8, false, &values)
            }
            Step::Fwd(n, union) => b.add_fwd(n, *union),
            Step::Typedef(n, r) => b.add_typedef(n, pick(*r, last)),
            Step::Qualifier(q, r) => match q {
                0 => b.add_const(pick(*r, last)),
                1 => b.add_volatile(pick(*r, last)),
                _ => b.add_restrict(pick(*r, last)),
            },
            Step::Proto(ret, params) => {
                let params: Vec<Param> = params.iter().map(|p| Param { name: "p", ty: Some(pick(*p, last)) }).collect();
                let id = b.add_func_proto(Some(pick(*ret, last)), &params);
                protos.push(id.get());
                id
            }
            Step::Func(n, linkage) => match protos.last() {
                Some(&proto) => {
                    let linkage = [Linkage::Static, Linkage::Global, Linkage::Extern][*linkage as usize];
                    b.add_func(n, TypeId::new(proto).unwrap(), linkage)
                }
                None => b.add_float("f", 4),
            },
            Step::Float(size) => b.add_float("f", 4 << size),
            Step::TypeTag(n, r) => b.add_type_tag(n, pick(*r, last)),
        };
        last = id.get();
    }
    b.encode()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn parse_encode_parse_is_the_identity_for_random_type_graphs(steps in proptest::collection::vec(step(), 0..40)) {
        let first = Btf::parse(build(&steps)).unwrap();
        let again = Btf::parse(BtfBuilder::from_btf(&first).encode()).unwrap();
        prop_assert_eq!(dump(&again), dump(&first));
        let swapped = Btf::parse(byte_swapped(&BtfBuilder::from_btf(&first).encode())).unwrap();
        prop_assert_eq!(dump(&swapped), dump(&first));
        // Whatever the graph, C output either succeeds or names a type it cannot express.
        let _ = c_dump(&first, "T_H");
    }
}

#[test]
fn fuzzer_findings_stay_fixed() {
    // Each file is an input that once crashed or exhausted the btf_parse fuzz target; run it
    // through the same pipeline. Halves: BTF, then .BTF.ext.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let input = std::fs::read(entry.unwrap().path()).unwrap();
        let (btf_bytes, ext_bytes) = input.split_at(input.len() / 2);
        let started = std::time::Instant::now();
        if let Ok(btf) = Btf::parse(btf_bytes.to_vec()) {
            for ty in btf.types() {
                let _ = raw_type(&ty);
                let _ = btf.resolve_size(ty.id());
                let _ = btf.alignment(ty.id());
            }
            let _ = c_dump(&btf, "T_H");
            let again = Btf::parse(BtfBuilder::from_btf(&btf).encode()).unwrap();
            assert_eq!(again.len(), btf.len());
            let none = BtfSupport::NONE;
            Btf::parse(sanitize(&btf, none)).unwrap();
            let _ = BtfExt::parse(ext_bytes, &btf);
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        seen += 1;
    }
    assert!(seen >= 2);
}
