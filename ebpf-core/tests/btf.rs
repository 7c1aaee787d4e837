//! BTF blobs built, re-encoded and sanitised by ebpf-btf, loaded into the running kernel.

use ebpf_core::btf::LoadedBtf;
use ebpf_test_support::require_kernel;

#[test]
fn the_kernel_accepts_btf_we_encode() {
    use ebpf_btf::{BtfBuilder, IntEncoding, Linkage, Member, Param};
    let Some(_root) = require_kernel() else { return };
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, IntEncoding::Signed);
    let uint = b.add_int("unsigned int", 4, IntEncoding::Unsigned);
    b.add_struct(
        "flags",
        8,
        &[
            Member { name: "low", ty: uint, bit_offset: 0, bitfield_size: 3 },
            Member { name: "count", ty: int, bit_offset: 32, bitfield_size: 0 },
        ],
    );
    let proto = b.add_func_proto(Some(int), &[Param { name: "x", ty: Some(int) }]);
    b.add_func("handler", proto, Linkage::Global);
    b.add_enum64("wide", 8, false, &[ebpf_btf::EnumValue { name: "BIG", value: 1 << 40 }]);
    let loaded = LoadedBtf::load(&b.encode()).expect("the kernel accepts the blob");
    let id = loaded.info().unwrap().id;
    assert!(id > 0);
    assert_eq!(LoadedBtf::from_id(id).unwrap().info().unwrap().id, id);
    assert!(ebpf_core::program::btf_ids().any(|found| found.unwrap() == id), "listed among the BTF ids");

    // And the kernel's own BTF, parsed and written out again by us.
    let vmlinux = ebpf_btf::kernel::vmlinux().unwrap();
    let again = BtfBuilder::from_btf(&vmlinux).encode();
    if let Err(e) = LoadedBtf::load(&again) {
        panic!("re-encoded vmlinux BTF ({} bytes) refused: {e}", again.len());
    }
}

#[test]
fn sanitised_btf_for_an_old_kernel_still_loads() {
    use ebpf_btf::{sanitize, Btf, BtfBuilder, BtfSupport, DatasecVar, EnumValue, IntEncoding, Linkage, Param};
    let Some(_root) = require_kernel() else { return };
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, IntEncoding::Signed);
    let proto = b.add_func_proto(Some(int), &[Param { name: "x", ty: Some(int) }]);
    let func = b.add_func("f", proto, Linkage::Global);
    let var = b.add_var("v", int, Linkage::Global);
    b.add_datasec(".data", 4, &[DatasecVar { var, offset: 0, size: 4 }]);
    b.add_float("double", 8);
    b.add_decl_tag("tag", func, -1);
    let tagged = b.add_type_tag("user", int);
    b.add_ptr(tagged);
    b.add_enum64("wide", 8, false, &[EnumValue { name: "BIG", value: 1 << 40 }]);
    let modern = Btf::parse(b.encode()).unwrap();
    let none = BtfSupport::NONE;
    for support in [none, BtfSupport { enum64: false, ..BtfSupport::ALL }, BtfSupport::ALL] {
        let blob = sanitize(&modern, support);
        if let Err(e) = LoadedBtf::load(&blob) {
            panic!("sanitised for {support:?}: {e}");
        }
    }
}

/// Where two objects' data sections go when merged: one after the other, 8-byte aligned.
struct SideBySide {
    sizes: Vec<std::collections::HashMap<String, u32>>,
}

impl SideBySide {
    fn base(&self, input: usize, section: &str) -> u32 {
        self.sizes[..input].iter().map(|s| s.get(section).copied().unwrap_or(0).next_multiple_of(8)).sum()
    }
}

impl ebpf_btf::merge::DataLayout for SideBySide {
    fn place(&self, input: usize, section: &str, _: &str, offset: u32) -> Option<u32> {
        Some(self.base(input, section) + offset)
    }
    fn section_size(&self, section: &str) -> u32 {
        self.base(self.sizes.len(), section)
    }
}

#[test]
fn merged_btf_of_two_objects_loads_into_the_kernel() {
    use ebpf_btf::{Btf, BtfKind};
    let Some(_root) = require_kernel() else { return };
    let btf_of = |name: &str| {
        let path = format!("{}/../bpf-programs/out/tests/{name}.o", env!("CARGO_MANIFEST_DIR"));
        let spec = ebpf_core::CollectionSpec::from_elf(&std::fs::read(path).unwrap()).unwrap();
        Btf::parse(spec.btf.unwrap()).unwrap()
    };
    let inputs = [btf_of("xdp_count"), btf_of("template"), btf_of("xdp_count")];
    let sizes = inputs
        .iter()
        .map(|btf| {
            btf.types()
                .filter(|t| t.is(BtfKind::Datasec))
                .map(|t| (t.name().to_owned(), t.size().unwrap_or(0)))
                .collect()
        })
        .collect();
    let layout = SideBySide { sizes };
    let merged = ebpf_btf::merge::merge(&inputs.iter().collect::<Vec<_>>(), &layout);
    // The same object twice adds nothing but its static variables.
    let once = ebpf_btf::merge::merge(&[&inputs[0], &inputs[1]], &layout).type_count();
    assert!(merged.type_count() < once + 4, "{} vs {once}", merged.type_count());
    let blob = merged.finish();
    let parsed = Btf::parse(blob.clone()).unwrap();
    assert!(parsed.find("xdp_count", BtfKind::Func).is_some() && parsed.find("templated", BtfKind::Func).is_some());
    LoadedBtf::load(&blob).expect("the kernel accepts the merged BTF");
}
