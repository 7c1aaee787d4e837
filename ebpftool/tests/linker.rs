//! `ebpftool gen object` (ebpf_core::object::Linker) beside `bpftool gen object` (libbpf's
//! linker), on bpf-programs/link/: both outputs load (ours also under libbpf), hold the same
//! programs, maps and variables, and run alike.

use std::process::Command;

use ebpf_core::object::{Collection, CollectionSpec, Linker};
use ebpf_core::{LoadOptions, TestRun};
use ebpf_test_support::{require_kernel, require_tool, unique_name, PinDir};

fn input(name: &str) -> String {
    format!("{}/../bpf-programs/out/link/{name}.o", env!("CARGO_MANIFEST_DIR"))
}

/// (programs, maps as "name type key value entries", variables as "name section+offset").
fn shape(spec: &CollectionSpec) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut programs: Vec<String> = spec.programs.iter().map(|p| format!("{} {}", p.name, p.program_type)).collect();
    let mut maps: Vec<String> = spec
        .maps
        .iter()
        .map(|m| format!("{} {} {} {} {}", m.name, m.map_type, m.key_size, m.value_size, m.max_entries))
        .collect();
    let mut variables: Vec<String> =
        spec.variables.iter().map(|v| format!("{} {}+{} {}", v.name, v.section, v.offset, v.ty)).collect();
    programs.sort();
    maps.sort();
    variables.sort();
    (programs, maps, variables)
}

fn verdicts(spec: CollectionSpec) -> Vec<u32> {
    let collection = Collection::load(spec, &LoadOptions::default()).unwrap();
    let program = collection.program("linked_xdp").unwrap();
    (0..5).map(|_| program.test_run(&TestRun::with_data(&[0u8; 64])).unwrap().retval).collect()
}

#[test]
fn our_linker_and_bpftools_give_objects_that_load_and_behave_alike() {
    let Some(_root) = require_kernel() else { return };
    let Some(()) = require_tool("bpftool") else { return };
    let scratch = std::env::temp_dir().join(unique_name("link"));
    std::fs::create_dir_all(&scratch).unwrap();
    let (ours_path, theirs_path) = (scratch.join("ours.o"), scratch.join("theirs.o"));
    let ours = Command::new(env!("CARGO_BIN_EXE_ebpftool"))
        .args(["gen", "object"])
        .arg(&ours_path)
        .args([input("link_main"), input("link_lib")])
        .output()
        .unwrap();
    assert!(ours.status.success(), "{}", String::from_utf8_lossy(&ours.stderr));
    let theirs = Command::new("bpftool")
        .args(["gen", "object"])
        .arg(&theirs_path)
        .args([input("link_main"), input("link_lib")])
        .output()
        .unwrap();
    assert!(theirs.status.success(), "{}", String::from_utf8_lossy(&theirs.stderr));
    let (ours, theirs) = (std::fs::read(&ours_path).unwrap(), std::fs::read(&theirs_path).unwrap());

    let (ours_spec, theirs_spec) =
        (CollectionSpec::from_elf(&ours).unwrap(), CollectionSpec::from_elf(&theirs).unwrap());
    assert_eq!(shape(&ours_spec), shape(&theirs_spec));
    // XDP_PASS until bump() counts past lib_threshold (3), then the strong verdict(): XDP_DROP.
    assert_eq!(verdicts(ours_spec), vec![2, 2, 2, 1, 1]);
    assert_eq!(verdicts(theirs_spec), vec![2, 2, 2, 1, 1]);

    // libbpf loads what we linked.
    let Some(pins) = PinDir::new("linked") else { return };
    let loadall = Command::new("bpftool").args(["prog", "loadall"]).arg(&ours_path).arg(pins.path()).output().unwrap();
    assert!(loadall.status.success(), "{}", String::from_utf8_lossy(&loadall.stderr));
    assert!(pins.path().join("linked_xdp").exists());
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn linking_refuses_two_strong_definitions_and_what_is_no_object() {
    let lib = std::fs::read(input("link_lib")).unwrap();
    let mut linker = Linker::new();
    linker.add("a.o", &lib).unwrap().add("b.o", &lib).unwrap();
    let err = linker.link().unwrap_err().to_string();
    assert!(err.contains("is defined in both a.o and b.o"), "{err}");
    let err = Linker::new().add("x.o", b"not an object").unwrap_err().to_string();
    assert!(err.starts_with("x.o: not a 64-bit ELF file"), "{err}");
}

#[test]
fn truncated_and_corrupted_inputs_are_errors_not_panics() {
    let (main, lib) = (std::fs::read(input("link_main")).unwrap(), std::fs::read(input("link_lib")).unwrap());
    for len in (0..lib.len()).step_by(97) {
        let mut linker = Linker::new();
        if linker.add("main.o", &main).is_ok() && linker.add("lib.o", &lib[..len]).is_ok() {
            let _ = linker.link();
        }
    }
    for at in (0..lib.len()).step_by(13) {
        let mut corrupted = lib.clone();
        corrupted[at] ^= 0xa5;
        let mut linker = Linker::new();
        if linker.add("main.o", &main).is_ok() && linker.add("lib.o", &corrupted).is_ok() {
            let _ = linker.link();
        }
    }
}
