//! struct_ops against the real kernel: a TCP congestion control written in BPF
//! (bpf-programs/tests/struct_ops_cc.c) registered, chosen for a real loopback connection with
//! `setsockopt(TCP_CONGESTION)`, data sent through it, its callbacks counted.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use ebpf_core::object::{Collection, CollectionSpec};
use ebpf_core::{LoadOptions, MapFlags, MapType, ProgramType};
use ebpf_test_support::{eventually, require_kernel, unique_name};
use nix::sys::socket::{getsockopt, setsockopt, sockopt};

fn fixture() -> Vec<u8> {
    let path = format!("{}/../bpf-programs/out/tests/struct_ops_cc.o", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The fixture's spec with every congestion control renamed to `name` (kernel names are
/// global: tests running in parallel must not share one).
fn spec_named(name: &str) -> CollectionSpec {
    let mut spec = CollectionSpec::from_elf(&fixture()).unwrap();
    for map in ["ebpf_cc", "ebpf_cc_link"] {
        spec.map_mut(map).unwrap().struct_ops_mut().unwrap().set("name", name.as_bytes()).unwrap();
    }
    spec
}

fn available(name: &str) -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_congestion_control")
        .unwrap()
        .split_whitespace()
        .any(|n| n == name)
}

/// Whether `name` leaves the list soon: a process spawned meanwhile holds copies of our fds
/// until it execs (see `eventually`).
fn gone(name: &str) -> bool {
    eventually(Duration::from_secs(2), || !available(name))
}

/// Per callback: init, ssthresh, cong_avoid, undo_cwnd.
fn calls(collection: &Collection) -> [u64; 4] {
    let bytes = collection.variable("calls").unwrap().get_bytes().unwrap();
    std::array::from_fn(|i| u64::from_ne_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap()))
}

/// Sends `bytes` over a loopback TCP connection whose sender uses congestion control `name`;
/// returns how many the receiver read.
fn send_with(name: &str, bytes: usize) -> usize {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let receiver = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut total = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).unwrap() {
                0 => return total,
                n => total += n,
            }
        }
    });
    let mut sender = TcpStream::connect(address).unwrap();
    setsockopt(&sender, sockopt::TcpCongestion, &OsString::from(name)).unwrap();
    let chosen = getsockopt(&sender, sockopt::TcpCongestion).unwrap();
    assert_eq!(chosen.to_str().unwrap().trim_end_matches('\0'), name);
    let chunk = vec![0x5au8; 64 * 1024];
    let mut sent = 0;
    while sent < bytes {
        let n = chunk.len().min(bytes - sent);
        sender.write_all(&chunk[..n]).unwrap();
        sent += n;
    }
    drop(sender);
    receiver.join().unwrap()
}

#[test]
fn struct_ops_sections_become_maps_wired_to_their_programs() {
    let spec = CollectionSpec::from_elf(&fixture()).unwrap();
    let link = spec.map("ebpf_cc_link").unwrap();
    assert_eq!((link.map_type, link.key_size, link.max_entries), (MapType::StructOps, 4, 1));
    assert!(link.flags.contains(MapFlags::LINK));
    assert!(!spec.map("ebpf_cc").unwrap().flags.contains(MapFlags::LINK));
    let ebpf_core::MapContents::StructOps(value) = &link.contents else { panic!("{:?}", link.contents) };
    assert_eq!(value.type_name, "tcp_congestion_ops");
    let program_of = |member: &str| value.member(member).unwrap().program.as_deref();
    assert_eq!(program_of("cong_avoid"), Some("ebpf_cc_cong_avoid"));
    assert_eq!(program_of("init"), Some("ebpf_cc_init"));
    assert_eq!(program_of("name"), None);
    let name = value.member("name").unwrap();
    assert_eq!(&value.data[name.offset as usize..][..13], b"ebpf_cc_link\0");

    let avoid = spec.program("ebpf_cc_cong_avoid").unwrap();
    assert_eq!(avoid.program_type, ProgramType::StructOps);
    assert_eq!(avoid.attach_to.as_deref(), Some("tcp_congestion_ops:cong_avoid"));
    // No struct_ops value points to it: nothing to implement, so it is left out.
    let unused = spec.program("ebpf_cc_unused").unwrap();
    assert!(!unused.autoload && unused.attach_to.is_none());
}

#[test]
fn a_bpf_congestion_control_runs_a_real_connection_and_unregisters_on_drop() {
    let Some(_root) = require_kernel() else { return };
    let name = unique_name("ecc");
    let collection = Collection::load(spec_named(&name), &LoadOptions::default()).unwrap();
    assert!(collection.program("ebpf_cc_unused").is_err(), "a program no struct_ops uses is not loaded");
    assert!(!available(&name));

    let registration = collection.register_struct_ops("ebpf_cc_link").unwrap();
    assert!(registration.link().is_some());
    assert!(available(&name), "{name} is offered once registered");
    assert_eq!(send_with(&name, 8 << 20), 8 << 20);
    let [init, ssthresh, cong_avoid, _undo] = calls(&collection);
    assert!(init >= 1, "init ran for the connection: {:?}", calls(&collection));
    assert!(cong_avoid >= 1, "cong_avoid ran as ACKs came back: {:?}", calls(&collection));
    let _ = ssthresh;

    drop(registration);
    assert!(gone(&name), "{name} is gone once the link is dropped");
}

#[test]
fn a_struct_ops_link_swaps_its_implementation() {
    let Some(_root) = require_kernel() else { return };
    let name = unique_name("ecc");
    let first = Collection::load(spec_named(&name), &LoadOptions::default()).unwrap();
    let second = Collection::load(spec_named(&name), &LoadOptions::default()).unwrap();
    let registration = first.register_struct_ops("ebpf_cc_link").unwrap();
    send_with(&name, 1 << 20);
    let first_inits = calls(&first)[0];
    assert!(first_inits >= 1);

    registration.update(second.map("ebpf_cc_link").unwrap()).unwrap();
    assert!(available(&name), "the name stays registered across the swap");
    send_with(&name, 1 << 20);
    assert!(calls(&second)[0] >= 1, "new connections run the second implementation");
    assert_eq!(calls(&first)[0], first_inits, "and no longer the first");
    registration.unregister().unwrap();
    assert!(gone(&name));
}

#[test]
fn a_plain_struct_ops_map_registers_by_update_and_unregisters_by_delete() {
    let Some(_root) = require_kernel() else { return };
    let name = unique_name("ecc");
    let collection = Collection::load(spec_named(&name), &LoadOptions::default()).unwrap();
    let registration = collection.register_struct_ops("ebpf_cc").unwrap();
    assert!(registration.link().is_none());
    assert!(available(&name));
    let err = registration.update(collection.map("ebpf_cc_link").unwrap()).unwrap_err();
    assert!(err.to_string().contains("only a .struct_ops.link registration"), "{err}");
    assert_eq!(send_with(&name, 1 << 20), 1 << 20);
    assert!(calls(&collection)[0] >= 1);
    drop(registration);
    assert!(gone(&name), "deleting the value unregisters it");
}

#[test]
fn a_member_the_kernel_lacks_is_refused_when_set() {
    let Some(_root) = require_kernel() else { return };
    let mut spec = spec_named(&unique_name("ecc"));
    let value = spec.map_mut("ebpf_cc_link").unwrap().struct_ops_mut().unwrap();
    value.type_name = "netstack_no_such_ops".to_owned();
    let err = Collection::load(spec, &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("netstack_no_such_ops"), "{err}");
}
