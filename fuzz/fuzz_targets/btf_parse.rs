#![no_main]
//! Parsing arbitrary bytes as BTF never panics; whatever parses can be listed, dumped as C,
//! re-encoded, sanitised, queried, and used to read arbitrary `.BTF.ext` bytes.

use ebpf_btf::{c_dump, raw_type, sanitize, Btf, BtfBuilder, BtfExt, BtfSupport};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.len() / 2;
    let (btf_bytes, ext_bytes) = data.split_at(split);
    if let Ok(lazy) = Btf::parse_lazy(btf_bytes.to_vec()) {
        let _ = lazy.ids_by_name("a");
        let _ = c_dump(&lazy, "FUZZ_H");
    }
    let Ok(btf) = Btf::parse(btf_bytes.to_vec()) else { return };
    for ty in btf.types() {
        let _ = raw_type(&ty);
        let _ = btf.resolve_size(ty.id());
        let _ = btf.alignment(ty.id());
        let _ = btf.find_member(ty.id(), "a");
    }
    let _ = c_dump(&btf, "FUZZ_H");
    let again = Btf::parse(BtfBuilder::from_btf(&btf).encode()).expect("re-encoded BTF parses");
    assert_eq!(again.len(), btf.len());
    let none = BtfSupport::NONE;
    let _ = Btf::parse(sanitize(&btf, none)).expect("sanitised BTF parses");
    let _ = BtfExt::parse(ext_bytes, &btf);
});
