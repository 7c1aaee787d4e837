#![no_main]
//! What the kernel WireGuard backend reads from a WG_CMD_GET_DEVICE dump (any bytes, as the
//! replies' payloads) never panics.

use libfuzzer_sys::fuzz_target;
use netstack_ref::encryption::kernel::parse_device;

fuzz_target!(|data: &[u8]| {
    // Several replies: split where a 0xff byte stands, as a dump comes in several messages.
    let replies: Vec<Vec<u8>> = data.split(|b| *b == 0xff).map(<[u8]>::to_vec).collect();
    let _ = parse_device(&replies);
});
