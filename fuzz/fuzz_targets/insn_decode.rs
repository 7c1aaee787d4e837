#![no_main]
//! Decoding never panics, and what decodes re-encodes to the same bytes' slot count and
//! disassembles without panicking.

use ebpf_core::insn::{decode_bytes, encode_bytes, Disassembler};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(insns) = decode_bytes(data) {
        assert_eq!(encode_bytes(&insns).len(), data.len());
        let _ = Disassembler::new().listing(&insns);
    }
});
