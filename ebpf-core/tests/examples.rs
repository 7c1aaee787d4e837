//! The crate's runnable examples (`ebpf-core/examples/`), run as a user would run them, against
//! real traffic in namespaces of the test's own, a cgroup of its own, or its own process.

use std::process::Command;

use ebpf_test_support::cgroup::CgroupGuard;
use ebpf_test_support::example::RunningExample;
use ebpf_test_support::net::{send_udp, UdpCounter, VethPair};
use ebpf_test_support::require_kernel;

/// The number after `word` on the last line that has it (`passed 3, dropped 10` → 10 for
/// `dropped`).
fn last_count(output: &str, word: &str) -> u64 {
    output
        .lines()
        .rev()
        .find_map(|line| line.split(word).nth(1))
        .and_then(|rest| rest.trim_start_matches([' ', ':']).split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count after {word:?} in:\n{output}"))
}

#[test]
fn tc_classifier_drops_its_port_and_passes_the_rest() {
    let Some(_root) = require_kernel() else { return };
    let pair = VethPair::new().unwrap();
    let (blocked, open) = (7100 + (std::process::id() % 500) as u16, 7700 + (std::process::id() % 500) as u16);
    let example =
        RunningExample::start("tc_classifier", Some(&pair.right), &[&pair.ifname, &blocked.to_string(), "2"]).unwrap();
    assert!(example.first_line().contains(&format!("dropping UDP to port {blocked}")), "{}", example.first_line());
    let (blocked_socket, open_socket) =
        (UdpCounter::bind(&pair.right, blocked).unwrap(), UdpCounter::bind(&pair.right, open).unwrap());
    send_udp(&pair.left, pair.right_addr, blocked, 10).unwrap();
    send_udp(&pair.left, pair.right_addr, open, 10).unwrap();
    assert_eq!((blocked_socket.drain(), open_socket.drain()), (0, 10));
    let output = example.finish().unwrap();
    assert!(last_count(&output, "dropped") >= 10, "{output}");
    assert!(last_count(&output, "passed") >= 10, "{output}");
}

#[test]
fn cgroup_connect_refuses_its_port_to_processes_in_the_cgroup() {
    let Some(_root) = require_kernel() else { return };
    let cgroup = CgroupGuard::new().unwrap();
    let port = (7200 + std::process::id() % 500).to_string();
    let dir = cgroup.path().to_str().unwrap().to_owned();
    let example = RunningExample::start("cgroup_connect", None, &[&dir, &port, "2"]).unwrap();
    // A process that joins the cgroup, then connects (bash's /dev/tcp) to the port.
    let script = format!("echo $$ > {dir}/cgroup.procs && exec bash -c 'echo > /dev/tcp/127.0.0.1/{port}'");
    let attempt = Command::new("bash").args(["-c", &script]).output().unwrap();
    let stderr = String::from_utf8_lossy(&attempt.stderr);
    assert!(!attempt.status.success() && stderr.contains("Operation not permitted"), "{stderr}");
    let output = example.finish().unwrap();
    assert!(last_count(&output, "refused") >= 1, "{output}");
}

#[test]
fn uprobe_counter_counts_a_libc_function_of_one_process() {
    let Some(_root) = require_kernel() else { return };
    let me = std::process::id().to_string();
    let example = RunningExample::start("uprobe_counter", None, &["libc.so.6", "getppid", "2", &me]).unwrap();
    for _ in 0..5 {
        nix::unistd::getppid();
    }
    let output = example.finish().unwrap();
    assert!(last_count(&output, &format!("pid {me}")) >= 5, "{output}");
}
