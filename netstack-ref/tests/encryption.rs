//! Transparent encryption on a cluster (`netstack cluster up --encryption wireguard`), in both
//! routing modes: every node publishes a key and has the others as peers; a TCP stream
//! between pods on two nodes arrives whole while a capture on the sender's underlay holds only
//! WireGuard (UDP/51871) and never the stream's marker; a stream between pods of one node
//! does not touch the device.

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;

use ebpf_test_support::{eventually, require_etcd, require_executable, require_kernel, unique_name};
use netstack_ref::agent::api_types::Status;
use netstack_ref::agent::netns;
use netstack_ref::cluster::topology::NodeRecord;
use netstack_ref::encryption::WIREGUARD_PORT;
use support::capture::{udp_ports, Capture};
use support::cluster::{cluster_up, endpoint, netstack, Cluster, RemovedOnDrop};

const MARKER: &[u8] = b"netstack-encryption-marker-51c2";

fn pods() -> String {
    let pod = |name: &str, node: &str| {
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: enc\n  labels:\n    app: {name}\n\
             spec:\n  nodeName: {node}\n"
        )
    };
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: enc\n{}{}{}",
        pod("sender", "node1"),
        pod("neighbour", "node1"),
        pod("receiver", "node2")
    )
}

/// The node agent's status (`None` while it does not answer).
fn status(node: &NodeRecord) -> Option<Status> {
    let out = netstack(&["status", "--state-dir", node.state_dir.to_str().unwrap(), "-o", "json"]);
    serde_json::from_slice(&out.stdout).ok()
}

/// Sends `bytes` of the marker from pod namespace `from` to `to`:7000, where a listener in
/// `at` reads it all; the bytes that arrived.
fn stream(from: &str, at: &str, to: Ipv4Addr, bytes: usize) -> usize {
    let listener = netns::run_in(at, || TcpListener::bind("0.0.0.0:7000").unwrap()).unwrap();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        all
    });
    let payload: Vec<u8> = MARKER.iter().copied().cycle().take(bytes).collect();
    let expected = payload.clone();
    netns::run_in(from, move || {
        let mut s = TcpStream::connect_timeout(&SocketAddrV4::new(to, 7000).into(), Duration::from_secs(5)).unwrap();
        s.write_all(&payload).unwrap();
    })
    .unwrap();
    let got = reader.join().unwrap();
    assert!(got == expected, "the stream arrived whole: {} of {bytes}", got.len());
    got.len()
}

fn encrypted_between_nodes(routing: &str) {
    let Some(_root) = require_kernel() else { return };
    let Some(()) = require_etcd() else { return };
    let Some(()) = require_executable("tcpdump", "tcpdump") else { return };
    let name = unique_name("enc").replace('_', "");
    let state_dir = std::env::temp_dir().join(unique_name("encryption"));
    let _cluster = Cluster { name: name.clone(), state_dir: state_dir.clone() };
    let manifests = std::env::temp_dir().join(unique_name("enc-manifests"));
    std::fs::create_dir_all(&manifests).unwrap();
    let _manifests = RemovedOnDrop(manifests.clone());
    std::fs::write(manifests.join("pods.yaml"), pods()).unwrap();
    let record = cluster_up(
        &name,
        state_dir.to_str().unwrap(),
        &["--routing", routing, "--encryption", "wireguard", "--manifests", manifests.to_str().unwrap()],
    );
    let (node1, node2) = (&record.nodes[0], &record.nodes[1]);
    let log = |node: &NodeRecord| std::fs::read_to_string(node.state_dir.join("agent.log")).unwrap_or_default();

    // Every node has a key and the other two as peers.
    for node in &record.nodes {
        let peers_known = || {
            let encryption = status(node).and_then(|s| s.encryption);
            encryption.is_some_and(|e| e.peers.len() == 2 && e.public_key.len() == 44)
        };
        let shown = || status(node).map(|s| s.encryption);
        assert!(eventually(Duration::from_secs(30), peers_known), "{}: {:?}\n{}", node.name, shown(), log(node));
    }
    let at = |node: &NodeRecord, pod: &str| {
        let found = || endpoint(&node.state_dir, pod).is_some();
        assert!(eventually(Duration::from_secs(30), found), "{pod} on {}\n{}", node.name, log(node));
        let e = endpoint(&node.state_dir, pod).unwrap();
        (e["netns"].as_str().unwrap().to_owned(), e["ipv4"].as_str().unwrap().parse::<Ipv4Addr>().unwrap())
    };
    let (sender, _) = at(node1, "enc/sender");
    let (neighbour, neighbour_ip) = at(node1, "enc/neighbour");
    let (receiver, receiver_ip) = at(node2, "enc/receiver");
    // node1 knows the receiver (its ipcache, through the kvstore) before it sends.
    let ipcache_knows = || {
        let out = netstack(&["bpf", "ipcache", "list", "--state-dir", node1.state_dir.to_str().unwrap(), "-o", "json"]);
        String::from_utf8_lossy(&out.stdout).contains(&receiver_ip.to_string())
    };
    assert!(eventually(Duration::from_secs(30), ipcache_knows), "{}", log(node1));

    // Every IPv4 packet on node1's underlay but the kvstore's own traffic.
    let capture = Capture::start(&node1.netns, "underlay0", "ip and not port 2379");
    const BYTES: usize = 1 << 20;
    stream(&sender, &receiver, receiver_ip, BYTES);
    let tx_after_remote = peer_tx(node1, "node2");
    stream(&sender, &neighbour, neighbour_ip, BYTES);
    let frames = capture.packets();
    assert!(frames.len() > 100, "the stream crossed the underlay: {} frames", frames.len());
    for frame in &frames {
        let ports = udp_ports(frame);
        assert!(
            ports.is_some_and(|(s, d)| s == WIREGUARD_PORT && d == WIREGUARD_PORT),
            "only WireGuard on the underlay ({routing}): {ports:?} {:02x?}",
            &frame[..frame.len().min(64)]
        );
        assert!(!frame.windows(MARKER.len()).any(|w| w == MARKER), "the marker never crosses in clear");
    }
    assert!(tx_after_remote >= BYTES as u64, "the remote stream went through the device: {tx_after_remote}");
    // The neighbour is on the same node: its stream never reached the device (a few bytes of
    // keepalive at most).
    let tx_after_local = peer_tx(node1, "node2");
    assert!(tx_after_local - tx_after_remote < 4096, "{tx_after_remote} → {tx_after_local}");
    let received =
        status(node2).and_then(|s| s.encryption).unwrap().peers.into_iter().find(|p| p.name == "node1").unwrap();
    assert!(received.rx_bytes >= BYTES as u64 && received.last_handshake_millis.is_some(), "{received:?}");
}

fn peer_tx(node: &NodeRecord, peer: &str) -> u64 {
    let encryption = status(node).and_then(|s| s.encryption).expect("encryption status");
    encryption.peers.iter().find(|p| p.name == peer).map_or(0, |p| p.tx_bytes)
}

#[test]
fn pods_talk_encrypted_between_nodes_natively_routed() {
    encrypted_between_nodes("native");
}

#[test]
fn pods_talk_encrypted_between_nodes_through_the_tunnel() {
    encrypted_between_nodes("tunnel");
}
