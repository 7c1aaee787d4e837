//! The static linker never panics: the input is split in two objects (seed it with pairs of
//! bpf-programs/out/link/*.o joined, the split point in the first two bytes), which link into
//! an object or a LinkError.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((split, rest)) = data.split_first_chunk::<2>() else { return };
    let at = usize::from(u16::from_le_bytes(*split)).min(rest.len());
    let (first, second) = rest.split_at(at);
    let mut linker = ebpf_core::object::Linker::new();
    if linker.add("first.o", first).is_ok() && linker.add("second.o", second).is_ok() {
        if let Ok(linked) = linker.link() {
            let _ = ebpf_core::CollectionSpec::from_elf(&linked);
        }
    }
});
