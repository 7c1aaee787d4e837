#![no_main]
//! Parsing a BTF header never panics, and a header that parses names sections inside the blob.

use ebpf_btf::BtfHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = BtfHeader::parse(data) {
        let end = u64::from(header.hdr_len) + u64::from(header.str_off) + u64::from(header.str_len);
        assert!(end <= data.len() as u64);
    }
});
