//! Transparent encryption on a cluster (`netstack cluster up --encryption wireguard`), in both
//! routing modes: every node publishes a key and has the others as peers; a TCP stream
//! between pods on two nodes arrives whole while a capture on the sender's underlay holds only
//! WireGuard (UDP/51871) and never the stream's marker; a stream between pods of one node
//! does not touch the device. Natively routed, a key rotation under a running stream neither
//! resets nor stalls it, nor does the agent's death and restart (the device outlives it);
//! through the tunnel, in strict mode, a pod's packet to a node whose key
//! was withdrawn is dropped and counted.

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;

use ebpf_test_support::{eventually, require_etcd, require_executable, require_kernel, unique_name};
use netstack_ref::agent::api_types::Status;
use netstack_ref::agent::netns;
use netstack_ref::cluster::kvstore::KvStore;
use netstack_ref::cluster::topology::{ClusterRecord, NodeRecord};
use netstack_ref::encryption::WIREGUARD_PORT;
use support::capture::{udp_ports, Capture};
use support::cluster::{cluster_up, endpoint, manifests_dir, netstack, verdict_count, Cluster};
use support::stream::steady_stream;

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

fn encrypted_between_nodes(routing: &str, encryption: &str) {
    let Some(_root) = require_kernel() else { return };
    let Some(()) = require_etcd() else { return };
    let Some(()) = require_executable("tcpdump", "tcpdump") else { return };
    let name = unique_name("enc").replace('_', "");
    let state_dir = std::env::temp_dir().join(unique_name("encryption"));
    let _cluster = Cluster { name: name.clone(), state_dir: state_dir.clone() };
    let manifests = manifests_dir("enc-manifests", "pods.yaml", &pods());
    let record = cluster_up(
        &name,
        state_dir.to_str().unwrap(),
        &["--routing", routing, "--encryption", encryption, "--manifests", manifests.0.to_str().unwrap()],
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
    // Datagrams sent together (UDP segmentation offload) cross the veth as one frame, of up to
    // 64 KiB, which a capture may miss a few of.
    let on_the_link: usize = frames.iter().map(Vec::len).sum();
    assert!(on_the_link > BYTES / 2, "the stream crossed the underlay: {on_the_link} bytes in {} frames", frames.len());
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

    if encryption == "wireguard-strict" {
        withdrawn_key_drops(&record, &sender, receiver_ip);
    } else {
        rotation_under_a_stream(node1, node2, &sender, &receiver, receiver_ip);
        agent_restart_under_a_stream(&state_dir, node1, &sender, &receiver, receiver_ip);
    }
}

/// node1's agent killed and restarted while a stream runs from its pod to node2's: the
/// WireGuard device is not the agent's to take down — the stream carries on encrypted, and the
/// restarted agent adopts the device it left.
fn agent_restart_under_a_stream(
    state_dir: &std::path::Path,
    node1: &NodeRecord,
    sender: &str,
    receiver: &str,
    receiver_ip: Ipv4Addr,
) {
    let before = status(node1).and_then(|s| s.encryption).unwrap();
    let agent_pid = std::fs::read_to_string(node1.state_dir.join("agent.pid")).unwrap().trim().parse().unwrap();
    let to = SocketAddrV4::new(receiver_ip, 7300);
    let (longest, received) = steady_stream(sender, receiver, to, Duration::from_secs(6), || {
        std::thread::sleep(Duration::from_millis(500));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent_pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        std::thread::sleep(Duration::from_secs(2));
        netstack_ref::cluster::topology::restart_agent(state_dir, &node1.name).unwrap();
    });
    assert!(longest < Duration::from_secs(1), "no stall over a second: {longest:?} ({received} bytes)");
    let adopted = || status(node1).and_then(|s| s.encryption).is_some_and(|e| e.peers.len() == 2);
    assert!(eventually(Duration::from_secs(30), adopted), "the restarted agent encrypts");
    let after = status(node1).and_then(|s| s.encryption).unwrap();
    assert_eq!(after.device_pid, before.device_pid, "the device the agent left, adopted");
    assert_eq!(after.public_key, before.public_key);
    let tx = |s: &netstack_ref::encryption::node::EncryptionStatus| {
        s.peers.iter().find(|p| p.name == "node2").map_or(0, |p| p.tx_bytes)
    };
    assert!(
        tx(&after) >= tx(&before) + received as u64,
        "the stream went through it: {} → {}",
        tx(&before),
        tx(&after)
    );
    eprintln!("agent killed and restarted under a stream of {received} bytes: longest gap {longest:?}");
}

/// `netstack encryption rotate` on node1 while a stream runs from its pod to node2's.
fn rotation_under_a_stream(
    node1: &NodeRecord,
    node2: &NodeRecord,
    sender: &str,
    receiver: &str,
    receiver_ip: Ipv4Addr,
) {
    let before = status(node1).and_then(|s| s.encryption).unwrap().public_key;
    let to = SocketAddrV4::new(receiver_ip, 7200);
    let (longest, received) = steady_stream(sender, receiver, to, Duration::from_secs(6), || {
        std::thread::sleep(Duration::from_secs(1));
        let out = netstack(&["encryption", "rotate", "--state-dir", node1.state_dir.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    });
    assert!(longest < Duration::from_secs(1), "no stall over a second: {longest:?} ({received} bytes)");
    let after = status(node1).and_then(|s| s.encryption).unwrap().public_key;
    assert_ne!(before, after, "a new key");
    let kept = netstack_ref::encryption::keys::NodeKey::load_or_create(&node1.state_dir).unwrap();
    assert_eq!(kept.public_base64(), after, "the new key is the one kept");
    // node2 has the new key, with a handshake made since.
    let learned = || {
        let peers = status(node2).and_then(|s| s.encryption).map(|e| e.peers).unwrap_or_default();
        peers
            .iter()
            .any(|p| p.name == "node1" && p.public_key == after && p.last_handshake_millis.is_some_and(|ms| ms < 8000))
    };
    assert!(eventually(Duration::from_secs(10), learned), "{:?}", status(node2).and_then(|s| s.encryption));
    eprintln!("rotation under a stream of {received} bytes: longest gap {longest:?}");
}

/// Strict mode: node2's key withdrawn from the kvstore, node1's pod can no longer reach
/// node2's (dropped, UNENCRYPTED_TRAFFIC, counted) rather than in clear.
fn withdrawn_key_drops(record: &ClusterRecord, sender: &str, receiver_ip: Ipv4Addr) {
    let (node1, node2) = (&record.nodes[0], &record.nodes[1]);
    let (endpoint, _, _) = record.etcd.clone().expect("the cluster's etcd");
    let node2_name = node2.name.clone();
    // Written under a lease of the test's, without the key; node2's agent sees its entry there
    // and leaves it.
    let store = netns::run_in(&record.underlay_netns, move || {
        let store = KvStore::connect(&[endpoint], "netstack", Duration::from_secs(5)).unwrap();
        let mut entry = store.nodes().unwrap().into_iter().find(|n| n.name == node2_name).unwrap();
        entry.encryption_key = None;
        let lease = store.lease(Duration::from_secs(120)).unwrap();
        store.put_node(&entry, &lease).unwrap();
        (store, lease)
    })
    .unwrap();
    let strict = || {
        let state = node1.state_dir.to_str().unwrap();
        let out = netstack(&["bpf", "ipcache", "list", "--state-dir", state, "-o", "json"]);
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let prefix = format!("{receiver_ip}/32");
        rows.as_array().into_iter().flatten().any(|r| r["prefix"] == prefix.as_str() && r["encrypt"] == "required")
    };
    assert!(eventually(Duration::from_secs(15), strict), "node1 learns node2 has no key");
    let dropped_before = verdict_count(&node1.state_dir, "enc/sender", "egress", "UNENCRYPTED_TRAFFIC");
    let reached = netns::run_in(sender, move || {
        TcpStream::connect_timeout(&SocketAddrV4::new(receiver_ip, 7000).into(), Duration::from_millis(700)).is_ok()
    })
    .unwrap();
    assert!(!reached, "no connection to a node without a key in strict mode");
    let dropped = verdict_count(&node1.state_dir, "enc/sender", "egress", "UNENCRYPTED_TRAFFIC");
    assert!(dropped > dropped_before, "dropped and counted: {dropped_before} → {dropped}");
    let nodes_without_key = status(node1).and_then(|s| s.encryption).unwrap().nodes_without_key;
    assert_eq!(nodes_without_key, std::slice::from_ref(&node2.name));
    drop(store);
}

fn peer_tx(node: &NodeRecord, peer: &str) -> u64 {
    let encryption = status(node).and_then(|s| s.encryption).expect("encryption status");
    encryption.peers.iter().find(|p| p.name == peer).map_or(0, |p| p.tx_bytes)
}

#[test]
fn pods_talk_encrypted_natively_routed_and_a_key_rotates_under_a_stream() {
    encrypted_between_nodes("native", "wireguard");
}

#[test]
fn pods_talk_encrypted_through_the_tunnel_and_strict_mode_drops_without_a_key() {
    encrypted_between_nodes("tunnel", "wireguard-strict");
}
