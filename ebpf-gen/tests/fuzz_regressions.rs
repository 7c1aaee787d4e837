//! Inputs the skeleton fuzzer found, kept so they stay fixed: each must generate
//! source or fail with a `GenError`, never panic.

#[test]
fn fuzz_regressions_generate_or_fail_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let options = ebpf_gen::SkeletonOptions {
        name: "fuzzed".into(),
        object_name: "fuzzed.o".into(),
        include_path: "fuzzed.o".into(),
    };
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let input = std::fs::read(&path).unwrap();
        if let Err(error) = ebpf_gen::skeleton(&input, &options) {
            assert!(!error.to_string().is_empty(), "{}: empty error", path.display());
        }
        seen += 1;
    }
    assert!(seen > 0);
}
