//! The traffic helpers against real namespaces.

use ebpf_test_support::net::{ping, send_udp, UdpCounter, VethPair};
use ebpf_test_support::require_kernel;

#[test]
fn udp_and_icmp_cross_a_veth_pair() {
    let Some(_root) = require_kernel() else { return };
    let net = VethPair::new().unwrap();
    let counter = UdpCounter::bind(&net.right, 7200).unwrap();
    send_udp(&net.left, net.right_addr, 7200, 12).unwrap();
    assert_eq!(counter.drain(), 12);
    assert_eq!(ping(&net.left, net.right_addr, 3, std::time::Duration::from_secs(1)).unwrap(), 3);
}
