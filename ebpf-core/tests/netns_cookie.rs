//! `ebpf_core::netns::cookie`: one cookie per network namespace, the same for every socket in
//! it, and what a BPF program's `bpf_get_netns_cookie()` sees (the socket LB of the reference
//! stack keys its map by it; its tests check the match end to end).

use std::net::UdpSocket;

use ebpf_test_support::net::NetNs;
use ebpf_test_support::require_kernel;

#[test]
fn every_socket_of_a_namespace_has_its_cookie_and_namespaces_differ() {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let here = ebpf_core::netns::cookie(&a).unwrap();
    assert_ne!(here, 0);
    assert_eq!(ebpf_core::netns::cookie(&b).unwrap(), here);

    let Some(_root) = require_kernel() else { return };
    let ns = NetNs::new("cookie").unwrap();
    let there = ns.run(|| ebpf_core::netns::cookie(&UdpSocket::bind("0.0.0.0:0").unwrap()).unwrap()).unwrap();
    assert_ne!(there, here, "another namespace, another cookie");
}

#[test]
fn a_file_that_is_no_socket_is_an_error() {
    let file = std::fs::File::open("/proc/self/stat").unwrap();
    let error = ebpf_core::netns::cookie(&file).unwrap_err();
    assert_eq!(error.0, libc::ENOTSOCK, "{error:?}");
}
