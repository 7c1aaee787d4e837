//! `ebpftool map dump` against `bpftool map dump`: the same entries, byte for byte.

use std::collections::BTreeMap;
use std::process::Command;

use ebpf_core::{Map, MapSpec, MapType, UpdateFlags};
use ebpf_test_support::{require_kernel, require_tool, unique_name};

type Entries = BTreeMap<Vec<u8>, Vec<u8>>;

fn bytes(value: &serde_json::Value) -> Vec<u8> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|b| match b {
            serde_json::Value::String(s) => u8::from_str_radix(s.trim_start_matches("0x"), 16).unwrap(),
            n => n.as_u64().unwrap() as u8,
        })
        .collect()
}

fn parse(json: &[u8]) -> Entries {
    let list: serde_json::Value = serde_json::from_slice(json).unwrap();
    list.as_array().unwrap().iter().map(|e| (bytes(&e["key"]), bytes(&e["value"]))).collect()
}

#[test]
fn dumps_match_bpftool_for_hash_and_array_maps() {
    let Some(_root) = require_kernel() else { return };
    let Some(()) = require_tool("bpftool") else { return };
    let hash = Map::create(&MapSpec::new(&unique_name("dump"), MapType::Hash, 4, 8, 64)).unwrap();
    for k in 0u32..50 {
        hash.update(&k.to_ne_bytes(), &(u64::from(k) * 1000 + 7).to_ne_bytes(), UpdateFlags::ANY).unwrap();
    }
    let array = Map::create(&MapSpec::new(&unique_name("dump"), MapType::Array, 4, 12, 5)).unwrap();
    array.update(&3u32.to_ne_bytes(), &[9u8; 12], UpdateFlags::ANY).unwrap();
    for (map, expected) in [(&hash, 50), (&array, 5)] {
        let id = map.info().unwrap().id.to_string();
        let ours = Command::new(env!("CARGO_BIN_EXE_ebpftool")).args(["map", "dump", &id, "--json"]).output().unwrap();
        assert!(ours.status.success(), "{}", String::from_utf8_lossy(&ours.stderr));
        let theirs = Command::new("bpftool").args(["map", "dump", "id", &id, "-j"]).output().unwrap();
        assert!(theirs.status.success());
        let (ours, theirs) = (parse(&ours.stdout), parse(&theirs.stdout));
        assert_eq!(ours.len(), expected);
        assert_eq!(ours, theirs);
    }
}
