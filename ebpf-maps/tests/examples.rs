//! The crate's runnable examples (`ebpf-maps/examples/`), run as a user would run them against
//! real traffic between namespaces of the test's own.

use ebpf_test_support::example::RunningExample;
use ebpf_test_support::net::{send_udp, VethPair};
use ebpf_test_support::require_kernel;

#[test]
fn xdp_counter_counts_packets_per_protocol() {
    let Some(_root) = require_kernel() else { return };
    let pair = VethPair::new().unwrap();
    let example = RunningExample::start("xdp_counter", Some(&pair.right), &[&pair.ifname, "2"]).unwrap();
    send_udp(&pair.left, pair.right_addr, 9999, 20).unwrap();
    let output = example.finish().unwrap();
    let udp: u64 = output
        .lines()
        .last()
        .and_then(|line| line.split("udp ").nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no udp count in:\n{output}"));
    assert!(udp >= 20, "{output}");
}
