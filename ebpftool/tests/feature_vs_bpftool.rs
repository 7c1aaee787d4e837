//! `ebpftool feature --json` against `bpftool feature probe kernel -j`.

use std::process::Command;

use ebpf_test_support::{require_kernel, require_tool};
use serde_json::Value;

fn json_of(cmd: &mut Command) -> Value {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{:?}: {}", cmd, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn program_and_map_types_agree_with_bpftool() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let Some(()) = require_tool("bpftool") else { return };
    let ours = json_of(Command::new(env!("CARGO_BIN_EXE_ebpftool")).args(["feature", "--json"]));
    let theirs = json_of(Command::new("bpftool").args(["feature", "probe", "kernel", "-j"]));
    assert!(ours["kernel"].as_str().is_some_and(|k| !k.is_empty()));

    let mut compared = 0;
    for (section, suffix) in [("program_types", "_prog_type"), ("map_types", "_map_type")] {
        for (key, their_answer) in theirs[section].as_object().unwrap() {
            let name = key.strip_prefix("have_").and_then(|k| k.strip_suffix(suffix)).unwrap();
            let our_answer = &ours[section][name];
            assert!(!our_answer.is_null(), "{section}.{name}: bpftool knows it, we answered {our_answer}");
            assert_eq!(our_answer, their_answer, "{section}.{name} (our reason: {})", ours["reasons"][section][name]);
            compared += 1;
        }
    }
    assert!(compared >= 60, "only {compared} answers compared");
}

#[test]
fn json_keys_are_kernel_enum_names_without_prefix() {
    let Some(_root) = require_kernel() else {
        return;
    };
    let ours = json_of(Command::new(env!("CARGO_BIN_EXE_ebpftool")).args(["feature", "--json"]));
    assert_eq!(ours["program_types"]["sched_cls"], Value::Bool(true));
    assert_eq!(ours["map_types"]["lpm_trie"], Value::Bool(true));
    let xdp_helpers: Vec<&str> =
        ours["helpers"]["xdp"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(xdp_helpers.contains(&"bpf_map_lookup_elem"));
    assert!(ours["misc"]["bounded_loops"].as_bool().unwrap());
}
