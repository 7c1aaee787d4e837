//! The USDT readers never panic: a whole ELF file (seed it with binaries built with
//! <sys/sdt.h>) and a bare `.note.stapsdt` section give probes or a UsdtError.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ebpf_core::usdt::read_probes(data);
    let _ = ebpf_core::usdt::read_notes(data, Some(0x2000));
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ebpf_core::usdt::parse_args(text);
    }
});
