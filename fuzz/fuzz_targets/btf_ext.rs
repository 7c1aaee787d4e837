#![no_main]
//! Parsing arbitrary `.BTF.ext` bytes against a small fixed BTF never panics, and CO-RE
//! resolution of whatever relocations they hold never panics either.

use ebpf_btf::core::resolve;
use ebpf_btf::{Btf, BtfBuilder, BtfExt, IntEncoding, Member};
use libfuzzer_sys::fuzz_target;

fn fixed_btf() -> Btf {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, IntEncoding::Signed);
    let arr = b.add_array(int, int, 4);
    b.add_struct("s", 24, &[
        Member { name: "a", ty: int, bit_offset: 0, bitfield_size: 0 },
        Member { name: "b", ty: arr, bit_offset: 32, bitfield_size: 0 },
        Member { name: "c", ty: int, bit_offset: 160, bitfield_size: 5 },
    ]);
    b.add_string("0:1:2");
    b.add_string("sec");
    Btf::parse(b.encode()).expect("fixed BTF")
}

fuzz_target!(|data: &[u8]| {
    let btf = fixed_btf();
    if let Ok(ext) = BtfExt::parse(data, &btf) {
        for section in &ext.core_relos {
            for relo in &section.records {
                let _ = resolve(&btf, relo, &[&btf]);
            }
        }
    }
});
