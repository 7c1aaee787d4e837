#![no_main]
//! Reading arbitrary bytes as an ELF object never panics; whatever spec comes out can be
//! analysed for tail calls without panicking either.

use ebpf_core::object::{tail_call_sites, CollectionSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = CollectionSpec::from_elf(data) {
        for program in &spec.programs {
            let _ = tail_call_sites(program);
        }
    }
});
