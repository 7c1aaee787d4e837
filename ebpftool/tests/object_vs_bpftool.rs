//! `ebpftool object load` against `bpftool prog loadall` (libbpf), fixture by fixture: both
//! load it or both refuse it, and when both load it they load the same programs using the
//! same maps. Also `object info` and the exit status of `object load`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use ebpf_core::{Map, Program};
use ebpf_test_support::{require_kernel, require_tool, PinDir};

fn ebpftool(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ebpftool")).args(args).output().unwrap()
}

fn fixtures() -> Vec<std::path::PathBuf> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../bpf-programs/out/tests");
    let mut all: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    all.sort();
    all
}

/// (program names, maps as "name type key value entries") of the programs pinned in `dir`,
/// read back from the kernel. libbpf names data-section maps `<object prefix>.rodata`; we name
/// them by section, so names compare from the first '.'.
fn pinned_view(dir: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut names = BTreeSet::new();
    let mut maps = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let Ok(program) = Program::from_pin(&path) else { continue };
        let info = program.info().unwrap();
        names.insert(info.name.clone());
        for id in info.map_ids {
            let map = Map::from_id(id).unwrap().info().unwrap();
            let name = map.name.find('.').map_or(map.name.clone(), |dot| map.name[dot..].to_owned());
            maps.insert(format!("{name} {} {} {} {}", map.map_type, map.key_size, map.value_size, map.max_entries));
        }
    }
    (names, maps)
}

#[test]
fn ebpftool_and_bpftool_load_every_fixture_alike() {
    let Some(_root) = require_kernel() else { return };
    let Some(pins) = PinDir::new("loadall") else { return };
    let Some(()) = require_tool("bpftool") else { return };
    let mut compared = 0;
    for path in fixtures() {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let (ours_dir, theirs_dir) =
            (pins.path().join(format!("{name}_ours")), pins.path().join(format!("{name}_libbpf")));
        std::fs::create_dir_all(&theirs_dir).unwrap();
        let ours = ebpftool(&["object", "load", path.to_str().unwrap(), "--pin", ours_dir.to_str().unwrap()]);

        let pinned_before: BTreeSet<_> =
            std::fs::read_dir("/sys/fs/bpf").unwrap().flatten().map(|e| e.path()).collect();
        let libbpf = Command::new("bpftool").args(["prog", "loadall"]).arg(&path).arg(&theirs_dir).output().unwrap();
        // libbpf pins maps declared `pinning: by name` under /sys/fs/bpf itself.
        for pin in std::fs::read_dir("/sys/fs/bpf").unwrap().flatten().map(|e| e.path()) {
            if !pinned_before.contains(&pin) && pin.is_file() {
                let _ = std::fs::remove_file(pin);
            }
        }
        let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
        if ["legacy_maps", "legacy_map_layouts", "iproute2_maps"].contains(&name.as_str()) {
            // libbpf 1.0 removed `struct bpf_map_def` maps (and never read iproute2's); we read them.
            assert!(!libbpf.status.success(), "libbpf was expected to refuse legacy maps");
            assert!(ours.status.success(), "{name}: {}", stderr(&ours));
            println!("{name}: loads here; libbpf >= 1.0 refuses legacy map definitions by design");
            continue;
        }
        if name == "subprogram_sections" {
            // cilium/ebpf's rule: sections of static functions are subprograms; libbpf refuses them.
            assert!(stderr(&libbpf).contains("is static and not supported"), "{}", stderr(&libbpf));
            assert!(ours.status.success(), "{name}: {}", stderr(&ours));
            println!("{name}: loads here; libbpf refuses static functions outside .text by design");
            continue;
        }
        if stderr(&libbpf).contains("failed to guess program type from ELF section 'uprobe.multi") {
            // uprobe.multi sections arrived in libbpf 1.3; Debian's 1.1 does not know them.
            assert!(ours.status.success(), "{name}: {}", stderr(&ours));
            println!("{name}: loads here; libbpf 1.1 predates uprobe.multi sections");
            continue;
        }
        if name == "struct_ops_cc" {
            // libbpf >= 1.3 leaves out struct_ops programs no value points to, as we do;
            // Debian's 1.1 loads them and the kernel refuses one without an attach point.
            assert!(stderr(&libbpf).contains("prog 'ebpf_cc_unused': failed to load"), "{}", stderr(&libbpf));
            assert!(ours.status.success(), "{name}: {}", stderr(&ours));
            println!(
                "{name}: loads here; libbpf 1.1 loads a struct_ops program nothing uses, which the kernel refuses"
            );
            continue;
        }
        match (ours.status.success(), libbpf.status.success()) {
            (true, true) => {
                let (mine, theirs) = (pinned_view(&ours_dir), pinned_view(&theirs_dir));
                assert_eq!(mine, theirs, "{name}: our load differs from libbpf's");
                println!("{name}: both load {} programs using {} maps", mine.0.len(), mine.1.len());
            }
            (false, false) => println!("{name}: both refuse it ({})", stderr(&ours).lines().next().unwrap_or("")),
            (false, true) => panic!("{name}: libbpf loads it, we refuse it: {}", stderr(&ours)),
            (true, false) => panic!("{name}: libbpf refuses it, we load it: {}", stderr(&libbpf)),
        }
        compared += 1;
    }
    assert!(compared >= 7, "only {compared} fixtures compared");
}

#[test]
fn object_info_reports_tail_calls_maps_and_variables() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../bpf-programs/out/tests");
    let out = ebpftool(&["object", "info", &format!("{dir}/tail_calls.o"), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let program = |name: &str| info["programs"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap().clone();
    assert_eq!(program("entry")["tail_calls"][0]["index"], 0);
    assert_eq!(program("entry")["tail_calls"][0]["direct"], true);
    assert_eq!(program("dispatch")["tail_calls"][0]["index"], serde_json::Value::Null);
    assert_eq!(program("dispatch")["tail_calls"][0]["direct"], false);
    assert_eq!(program("devmap_pass")["attach_type"], "xdp_devmap");
    assert_eq!(info["maps"][0]["type"], "prog_array");

    let out = ebpftool(&["object", "info", &format!("{dir}/template.o")]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("MODE  .rodata+0  size 4  type u32  const"), "{text}");
    assert!(text.contains("last_len  .bss+8  size 8  type u64"), "{text}");
}

#[test]
fn object_load_sets_variables_and_exits_nonzero_on_a_rejection() {
    let Some(_root) = require_kernel() else { return };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../bpf-programs/out");
    let ok = ebpftool(&["object", "load", &format!("{dir}/tests/template.o"), "--set", "MODE=2", "--json"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let bad = ebpftool(&["object", "load", &format!("{dir}/tests/template.o"), "--set", "BIAS_ENABLED=300"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("does not fit u8"));

    let rejected = ebpftool(&["object", "load", &format!("{dir}/btf/core_relocs.o")]);
    assert_eq!(rejected.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&rejected.stderr);
    assert!(
        stderr.contains("load program \"core_relocs\" (section raw_tracepoint/sys_enter): rejected by the verifier"),
        "{stderr}"
    );
    assert!(stderr.contains("processed "), "the whole log follows: {stderr}");
}

#[test]
fn object_load_picks_programs_and_gives_unnamed_sections_a_type() {
    let Some(_root) = require_kernel() else { return };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../bpf-programs/out/tests");
    let loaded = |output: &std::process::Output| -> Vec<String> {
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        report["programs"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect()
    };
    let variants = format!("{dir}/autoload_variants.o");
    let all = ebpftool(&["object", "load", &variants]);
    assert!(String::from_utf8_lossy(&all.stderr).contains("netstack_no_such_kernel_function"));
    let chosen = ebpftool(&["object", "load", &variants, "--program", "variant_socket", "--json"]);
    assert_eq!(loaded(&chosen), ["variant_socket"]);
    let unknown = ebpftool(&["object", "load", &variants, "--program", "no_such_program"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no_such_program"));

    let unspecified = format!("{dir}/unspecified_type.o");
    let typed = ebpftool(&["object", "load", &unspecified, "--type", "count_runs=socket_filter", "--json"]);
    assert_eq!(loaded(&typed), ["count_runs"]);
}

#[test]
fn an_object_linked_by_bpftool_loads_and_runs() {
    let Some(_root) = require_kernel() else { return };
    let Some(()) = require_tool("bpftool") else { return };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../bpf-programs/out/link");
    let out = std::env::temp_dir().join(format!("{}.o", ebpf_test_support::unique_name("bpftool_linked")));
    let linked = Command::new("bpftool")
        .args(["gen", "object"])
        .arg(&out)
        .arg(format!("{dir}/link_main.o"))
        .arg(format!("{dir}/link_lib.o"))
        .output()
        .unwrap();
    assert!(linked.status.success(), "{}", String::from_utf8_lossy(&linked.stderr));
    let bytes = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    // Two statics named calls_seen share .bss: the linker's offsets stand.
    let spec = ebpf_core::CollectionSpec::from_elf(&bytes).unwrap();
    let offsets: Vec<u32> = spec.variables.iter().filter(|v| v.name == "calls_seen").map(|v| v.offset).collect();
    assert_eq!(offsets, vec![0, 8]);
    let collection = ebpf_core::Collection::load(spec, &ebpf_core::LoadOptions::default()).unwrap();
    let program = collection.program("linked_xdp").unwrap();
    let verdicts: Vec<u32> =
        (0..5).map(|_| program.test_run(&ebpf_core::TestRun::with_data(&[0u8; 64])).unwrap().retval).collect();
    // XDP_PASS until bump() counts past lib_threshold (3), then the strong verdict(): XDP_DROP.
    assert_eq!(verdicts, vec![2, 2, 2, 1, 1]);
}
