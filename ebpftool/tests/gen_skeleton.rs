//! `ebpftool gen skeleton`: prints the same skeleton the build-script helper writes (formatted),
//! names the object in it, and refuses what is not a BPF object with the parser's reason.

use std::path::Path;
use std::process::Command;

const OBJECT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../bpf-programs/out/tests/xdp_count.o");

#[test]
fn prints_the_skeleton_of_an_object() {
    let out = Command::new(env!("CARGO_BIN_EXE_ebpftool"))
        .args(["gen", "skeleton", OBJECT, "--name", "counter", "--include-path", "xdp_count.o"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "from xdp_count.o — do not edit",
        "pub const OBJECT: &[u8] = include_bytes!(\"xdp_count.o\");",
        "pub struct OpenCounter {",
        "pub fn set_drop_port(&mut self, value: u16)",
        "pub fn verdicts(&self) -> Result<::ebpf_maps::Array<u64>, ::ebpf_maps::MapError>",
        "pub fn xdp_count(&self) -> &'a ::ebpf_core::Program",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // The same as the build-script helper writes, but for the embedded path.
    let dir = std::env::temp_dir().join(format!("ebpftool-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("counter.skel.rs");
    ebpf_gen::build::skeleton_to(Path::new(OBJECT), "counter", &file).unwrap();
    let helper = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let absolute = std::fs::canonicalize(OBJECT).unwrap();
    let embedded = format!("include_bytes!({:?})", absolute.to_string_lossy());
    assert_eq!(helper, text.replace("include_bytes!(\"xdp_count.o\")", &embedded));
}

#[test]
fn refuses_what_is_not_an_object() {
    let out = Command::new(env!("CARGO_BIN_EXE_ebpftool")).args(["gen", "skeleton", "Cargo.toml"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("ebpftool: object Cargo.toml: not a readable ELF object"), "{err}");
}
