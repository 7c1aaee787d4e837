//! The skeleton generator never panics, whatever object it is given (seed it with
//! bpf-programs/out/*/*.o): it generates source or returns a GenError.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let options = ebpf_gen::SkeletonOptions {
        name: "fuzzed".into(),
        object_name: "fuzzed.o".into(),
        include_path: "fuzzed.o".into(),
    };
    let _ = ebpf_gen::skeleton(data, &options);
});
