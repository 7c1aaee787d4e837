//! `ebpftool btf dump vmlinux` against `bpftool btf dump file /sys/kernel/btf/vmlinux`.

use std::process::Command;

use ebpf_test_support::require_tool;

#[test]
fn raw_dump_of_vmlinux_matches_bpftool_line_for_line() {
    let vmlinux = "/sys/kernel/btf/vmlinux";
    let Some(()) = require_tool("bpftool") else { return };
    if !std::path::Path::new(vmlinux).exists() {
        assert_ne!(std::env::var("EBPF_REQUIRE_KERNEL").as_deref(), Ok("1"), "needs {vmlinux}");
        eprintln!("SKIPPED: needs {vmlinux}");
        return;
    }
    let ours = Command::new(env!("CARGO_BIN_EXE_ebpftool")).args(["btf", "dump", "vmlinux"]).output().unwrap();
    assert!(ours.status.success(), "{}", String::from_utf8_lossy(&ours.stderr));
    let theirs = Command::new("bpftool").args(["btf", "dump", "file", vmlinux]).output().unwrap();
    assert!(theirs.status.success());
    let (ours, theirs) = (String::from_utf8(ours.stdout).unwrap(), String::from_utf8(theirs.stdout).unwrap());
    let types = theirs.lines().filter(|l| l.starts_with('[')).count();
    assert!(types > 10_000, "bpftool listed only {types} types");
    if let Some((n, (a, b))) = ours.lines().zip(theirs.lines()).enumerate().find(|(_, (a, b))| a != b) {
        panic!("line {}: ours {a:?}, bpftool {b:?}", n + 1);
    }
    assert_eq!(ours.lines().count(), theirs.lines().count());
}

#[test]
fn object_files_dump_like_bpftool_too() {
    let Some(()) = require_tool("bpftool") else { return };
    let object = concat!(env!("CARGO_MANIFEST_DIR"), "/../bpf-programs/out/btf/core_relocs.o");
    let ours = Command::new(env!("CARGO_BIN_EXE_ebpftool")).args(["btf", "dump", object]).output().unwrap();
    assert!(ours.status.success(), "{}", String::from_utf8_lossy(&ours.stderr));
    let theirs = Command::new("bpftool").args(["btf", "dump", "file", object]).output().unwrap();
    assert!(theirs.status.success());
    assert_eq!(String::from_utf8(ours.stdout).unwrap(), String::from_utf8(theirs.stdout).unwrap());
}
