//! The bpftool verbs people use daily, against objects this test loads: prog load / show / run
//! / pin, map show / lookup / update / delete / pin, link show / pin / detach, net list and
//! cgroup tree — with bpftool's answers beside ours where Debian's bpftool gives them.

use std::path::Path;
use std::process::Command;

use ebpf_core::link::{CgroupLink, Xdp, XdpMode};
use ebpf_core::object::{Collection, CollectionSpec};
use ebpf_core::{AttachType, LoadOptions};
use ebpf_test_support::cgroup::CgroupGuard;
use ebpf_test_support::net::NetNs;
use ebpf_test_support::{require_kernel, require_tool, PinDir};
use serde_json::Value;

fn ebpftool(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ebpftool")).args(args).output().unwrap()
}

fn ok_json(args: &[&str]) -> Value {
    let out = ebpftool(args);
    assert!(out.status.success(), "ebpftool {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn fixture(dir: &str, name: &str) -> String {
    format!("{}/../bpf-programs/out/{dir}/{name}.o", env!("CARGO_MANIFEST_DIR"))
}

/// An Ethernet + IPv4 + UDP frame to `port`.
fn udp_frame(port: u16) -> Vec<u8> {
    let mut frame = vec![0u8; 14 + 20 + 8 + 4];
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    frame[14] = 0x45;
    frame[14 + 9] = 17;
    frame[34 + 2..34 + 4].copy_from_slice(&port.to_be_bytes());
    frame
}

#[test]
fn prog_and_map_verbs_load_show_run_and_edit() {
    let Some(_root) = require_kernel() else { return };
    let Some(pins) = PinDir::new("verbs") else { return };
    let prog_pin = pins.path().join("xdp_count");
    let prog_path = prog_pin.to_str().unwrap();
    let out = ebpftool(&["prog", "load", &fixture("tests", "xdp_count"), prog_path]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let shown = ok_json(&["prog", "show", "pinned", prog_path, "--json"]);
    assert_eq!((shown["type"].as_str(), shown["name"].as_str()), (Some("xdp"), Some("xdp_count")));
    let id = shown["id"].as_u64().unwrap().to_string();
    assert_eq!(ok_json(&["prog", "show", "id", &id, "--json"])["tag"], shown["tag"]);
    assert!(ok_json(&["prog", "list", "--json"]).as_array().unwrap().iter().any(|p| p["id"] == shown["id"]));

    // Run it: UDP to the templated port 53 is dropped (XDP_DROP 1), anything else passes (2).
    let scratch = std::env::temp_dir().join(ebpf_test_support::unique_name("verbs"));
    std::fs::create_dir_all(&scratch).unwrap();
    let (dns, other) = (scratch.join("dns.bin"), scratch.join("other.bin"));
    std::fs::write(&dns, udp_frame(53)).unwrap();
    std::fs::write(&other, udp_frame(80)).unwrap();
    let run =
        |file: &Path| ok_json(&["prog", "run", "id", &id, "data_in", file.to_str().unwrap(), "repeat", "3", "--json"]);
    assert_eq!(run(&dns)["retval"], 1);
    assert_eq!(run(&other)["retval"], 2);
    std::fs::remove_dir_all(&scratch).unwrap();

    // Its verdicts map: the three runs on the DNS frame counted under XDP_DROP (1), then
    // edited by hand.
    let map_ids: Vec<String> = shown["map_ids"].as_array().unwrap().iter().map(|v| v.to_string()).collect();
    let verdicts = map_ids
        .iter()
        .find(|m| ok_json(&["map", "show", "id", m, "--json"])["name"] == "verdicts")
        .expect("the verdicts map")
        .clone();
    let lookup = ok_json(&["map", "lookup", "id", &verdicts, "key", "1", "0", "0", "0", "--json"]);
    assert_eq!(lookup["value"][0], "0x03", "three runs dropped: {lookup}");
    let update = ebpftool(&[
        "map", "update", "id", &verdicts, "key", "1", "0", "0", "0", "value", "hex", "2a", "0", "0", "0", "0", "0",
        "0", "0",
    ]);
    assert!(update.status.success(), "{}", String::from_utf8_lossy(&update.stderr));
    assert_eq!(ok_json(&["map", "lookup", "id", &verdicts, "key", "1", "0", "0", "0", "--json"])["value"][0], "0x2a");
    let wrong = ebpftool(&["map", "lookup", "id", &verdicts, "key", "1", "0"]);
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("2 bytes given"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    let array_delete = ebpftool(&["map", "delete", "id", &verdicts, "key", "1", "0", "0", "0"]);
    assert!(!array_delete.status.success(), "arrays keep their elements");

    let map_pin = pins.path().join("verdicts");
    let out = ebpftool(&["map", "pin", "id", &verdicts, map_pin.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ok_json(&["map", "show", "pinned", map_pin.to_str().unwrap(), "--json"])["name"], "verdicts");

    // bpftool reads the same program and value.
    if require_tool("bpftool").is_some() {
        let theirs: Value = serde_json::from_slice(
            &Command::new("bpftool").args(["prog", "show", "id", &id, "-j"]).output().unwrap().stdout,
        )
        .unwrap();
        assert_eq!((theirs["name"].as_str(), theirs["tag"].as_str()), (Some("xdp_count"), shown["tag"].as_str()));
        let theirs: Value = serde_json::from_slice(
            &Command::new("bpftool")
                .args(["map", "lookup", "id", &verdicts, "key", "1", "0", "0", "0", "-j"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        assert_eq!(theirs["value"][0], "0x2a");
    }
}

#[test]
fn link_and_net_verbs_see_an_xdp_link_in_a_namespace() {
    let Some(_root) = require_kernel() else { return };
    let Some(pins) = PinDir::new("linkverbs") else { return };
    let ns = NetNs::new("lnk").unwrap();
    let spec = CollectionSpec::from_elf(&std::fs::read(fixture("tests", "xdp_count")).unwrap()).unwrap();
    let collection = Collection::load(spec, &LoadOptions::default()).unwrap();
    let program = collection.program("xdp_count").unwrap().try_clone().unwrap();
    let link = ns.run(move || Xdp::attach(&program, 1, XdpMode::Any)).unwrap().unwrap();
    let id = link.info().unwrap().id.to_string();

    let shown = ok_json(&["link", "show", "id", &id, "--json"]);
    assert_eq!((shown["type"].as_str(), shown["ifindex"].as_u64()), (Some("xdp"), Some(1)));
    assert_eq!(shown["prog_name"], "xdp_count");

    let listed = Command::new("ip")
        .args(["netns", "exec", ns.name(), env!("CARGO_BIN_EXE_ebpftool"), "net", "list", "--json"])
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let xdp = &listed[0]["xdp"][0];
    assert_eq!((xdp["devname"].as_str(), xdp["link_id"].to_string()), (Some("lo"), id.clone()), "{listed}");

    // Pinned, the link outlives our handle; detached, it attaches nothing.
    let pin = pins.path().join("xdp_link");
    let out = ebpftool(&["link", "pin", "id", &id, pin.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(link);
    assert_eq!(ok_json(&["link", "show", "pinned", pin.to_str().unwrap(), "--json"])["id"].to_string(), id);
    let out = ebpftool(&["link", "detach", "pinned", pin.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn cgroup_tree_lists_a_connect_hook() {
    let Some(_root) = require_kernel() else { return };
    let cgroup = CgroupGuard::new().unwrap();
    let spec = CollectionSpec::from_elf(&std::fs::read(fixture("examples", "cgroup_connect")).unwrap()).unwrap();
    let collection = Collection::load(spec, &LoadOptions::default()).unwrap();
    let dir = std::fs::File::open(cgroup.path()).unwrap();
    let _link = CgroupLink::attach(collection.program("cgroup_connect").unwrap(), &dir, AttachType::CgroupInet4Connect)
        .unwrap();
    let tree = ok_json(&["cgroup", "tree", cgroup.path().to_str().unwrap(), "--json"]);
    let programs = &tree[0]["programs"];
    assert_eq!(tree[0]["cgroup"].as_str(), cgroup.path().to_str());
    assert_eq!(
        (programs[0]["attach_type"].as_str(), programs[0]["name"].as_str()),
        (Some("cgroup_inet4_connect"), Some("cgroup_connect"))
    );
}

/// The marks of one program's `prog dump jited --json`.
fn jited_marks(id: u32) -> Vec<(String, String)> {
    let dump = ok_json(&["prog", "dump", "jited", "id", &id.to_string(), "--json"]);
    let mut marks = Vec::new();
    for function in dump.as_array().unwrap() {
        for insn in function["insns"].as_array().unwrap() {
            if let (Some(mark), Some(note)) = (insn["mark"].as_str(), insn["note"].as_str()) {
                marks.push((mark.to_owned(), note.to_owned()));
            }
        }
    }
    marks
}

#[test]
fn jited_dumps_show_what_tail_calls_became() {
    let Some(_root) = require_kernel() else { return };
    let spec = CollectionSpec::from_elf(&std::fs::read(fixture("tests", "tail_calls")).unwrap()).unwrap();
    // The collection holds the prog array: the kernel empties it when its last fd closes.
    let collection = Collection::load(spec, &LoadOptions::default()).unwrap();
    let id = |name: &str| collection.program(name).unwrap().info().unwrap().id;
    let has =
        |marks: &[(String, String)], kind: &str, text: &str| marks.iter().any(|(k, n)| k == kind && n.contains(text));

    // Slot 0 (stage_pass) filled at load: `entry`'s constant-index tail call is a direct jmp.
    let entry = jited_marks(id("entry"));
    assert!(has(&entry, "direct_tail_call", "_stage_pass"), "{entry:?}");
    // Emptied, the kernel patches the jump back into a 5-byte NOP.
    collection.map("jumps").unwrap().delete(&0u32.to_ne_bytes()).unwrap();
    let emptied = jited_marks(id("entry"));
    assert!(has(&emptied, "empty_tail_call_slot", "slot empty"), "{emptied:?}");
    assert!(!emptied.iter().any(|(k, _)| k == "direct_tail_call"), "{emptied:?}");
    // An index known only at run time goes through the prog array and an indirect jump.
    let dispatch = jited_marks(id("dispatch"));
    assert!(has(&dispatch, "dynamic_tail_call", ""), "{dispatch:?}");
    assert!(!dispatch.iter().any(|(k, _)| k == "direct_tail_call"), "{dispatch:?}");
}
