//! The userspace WireGuard device between two namespaces joined by a veth pair ("nodes"): a
//! TCP stream between addresses behind each device arrives whole; a capture on the link holds
//! only UDP/51871 WireGuard datagrams and never the stream's marker; both sides report the
//! handshake and the bytes; a decrypted packet from an address the peer may not send is
//! dropped and counted. The kernel's WireGuard, configured by the kernel backend, does the
//! same where the kernel has it; where it has none, starting it is refused with the reason.

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use ebpf_test_support::net::{NetNs, VethPair};
use ebpf_test_support::{eventually, require_executable, require_kernel};
use netstack_ref::encryption::genl::GenlError;
use netstack_ref::encryption::kernel::{KernelError, KernelWireguard};
use netstack_ref::encryption::keys::NodeKey;
use netstack_ref::encryption::peer::PeerConfig;
use netstack_ref::encryption::userspace::UserspaceWireguard;
use netstack_ref::encryption::WIREGUARD_PORT;
use netstack_ref::policy::api::Cidr;
use support::capture::{udp_ports, Capture};
use support::stream::steady_stream;

const DEVICE: &str = "nswg0";
const MARKER: &[u8] = b"netstack-wireguard-marker-7f3a";

fn ip(ns: &NetNs, args: &str) {
    let mut all = vec!["-n", ns.name()];
    all.extend(args.split(' '));
    let out = Command::new("ip").args(&all).output().unwrap();
    assert!(out.status.success(), "ip {args}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A node: its namespace's WireGuard device, the address behind it and the prefix it routes
/// to the other node.
fn start(ns: &NetNs, key: &NodeKey, own: &str, other: &str) -> UserspaceWireguard {
    let private = key.private().clone();
    let listen = SocketAddr::from((Ipv4Addr::UNSPECIFIED, WIREGUARD_PORT));
    let device = ns.run(move || UserspaceWireguard::start(DEVICE, listen, private, None)).unwrap().unwrap();
    ip(ns, &format!("addr add {own}/32 dev lo"));
    ip(ns, &format!("link set {DEVICE} mtu 1420 up"));
    ip(ns, &format!("route add {other} dev {DEVICE} src {own}"));
    device
}

fn peer(name: &str, key: &NodeKey, at: Ipv4Addr, allowed: &str) -> PeerConfig {
    PeerConfig {
        name: name.into(),
        public_key: key.public().to_bytes(),
        endpoint: SocketAddr::from((at, WIREGUARD_PORT)),
        allowed_ips: vec![Cidr::parse(allowed).unwrap()],
    }
}

/// Two "nodes" over a veth pair, each with its device, 10.98.1.1 behind the left one and
/// 10.98.2.1 behind the right one, each the other's peer.
struct Nodes {
    left: UserspaceWireguard,
    right: UserspaceWireguard,
    link: VethPair,
}

impl Nodes {
    fn new() -> Nodes {
        let link = VethPair::new().unwrap();
        let (left_key, right_key) = (NodeKey::generate().unwrap(), NodeKey::generate().unwrap());
        let left = start(&link.left, &left_key, "10.98.1.1", "10.98.2.0/24");
        let right = start(&link.right, &right_key, "10.98.2.1", "10.98.1.0/24");
        left.set_peers(vec![peer("right", &right_key, link.right_addr, "10.98.2.0/24")]);
        right.set_peers(vec![peer("left", &left_key, link.left_addr, "10.98.1.0/24")]);
        Nodes { left, right, link }
    }
}

/// One datagram from `ns`, sent from `from` to `to`.
fn send_datagram(ns: &NetNs, from: &'static str, to: &'static str) {
    ns.run(move || std::net::UdpSocket::bind(from).unwrap().send_to(b"datagram", to).unwrap()).unwrap();
}

/// Asserts that the captured `frames` are WireGuard between the nodes and never the marker.
fn only_wireguard(frames: &[Vec<u8>]) {
    for frame in frames {
        assert!(!frame.windows(MARKER.len()).any(|w| w == MARKER), "the marker never crosses in clear");
        // Besides the tunnel a link carries its own control: ARP to find the peer and the
        // kernel's IPv6 link-local multicast (neighbour discovery, MLD reports).
        let ethertype = frame.get(12..14);
        let to_multicast = frame.first().is_some_and(|octet| octet & 1 == 1);
        if ethertype == Some(&[0x08, 0x06]) || (ethertype == Some(&[0x86, 0xdd]) && to_multicast) {
            continue;
        }
        let ports = udp_ports(frame);
        assert!(
            ports.is_some_and(|(s, d)| s == WIREGUARD_PORT && d == WIREGUARD_PORT),
            "only WireGuard between the nodes: {ports:?} {:02x?}",
            &frame[..frame.len().min(64)]
        );
    }
}

#[test]
fn a_stream_crosses_encrypted_and_only_wireguard_is_on_the_link() {
    let Some(_root) = require_kernel() else { return };
    let Some(()) = require_executable("tcpdump", "tcpdump") else { return };
    let Nodes { link, left, right } = Nodes::new();

    let capture = Capture::start(link.left.name(), &link.ifname, "");
    let listener = link.right.run(|| TcpListener::bind("10.98.2.1:7000").unwrap()).unwrap();
    let receiver = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut all = Vec::new();
        stream.read_to_end(&mut all).unwrap();
        all
    });
    const BYTES: usize = 1 << 20;
    let sent: Vec<u8> = MARKER.iter().copied().cycle().take(BYTES).collect();
    let payload = sent.clone();
    link.left
        .run(move || {
            // The route into the device gives the source (10.98.1.1).
            let to = SocketAddr::from(SocketAddrV4::new(Ipv4Addr::new(10, 98, 2, 1), 7000));
            let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
            stream.write_all(&payload).unwrap();
        })
        .unwrap();
    let received = receiver.join().unwrap();
    assert!(received == sent, "the stream arrived whole: {} of {BYTES} bytes", received.len());

    let frames = capture.packets();
    // Datagrams sent together (UDP segmentation offload) cross the veth as one frame, of up to
    // 64 KiB, which a capture may miss a few of.
    let on_the_link: usize = frames.iter().map(Vec::len).sum();
    assert!(on_the_link > BYTES / 2, "the stream was on the link: {on_the_link} bytes in {} frames", frames.len());
    only_wireguard(&frames);

    for (side, device) in [("left", &left), ("right", &right)] {
        let peers = device.peers();
        assert_eq!(peers.len(), 1);
        assert!(peers[0].last_handshake_millis.is_some(), "{side}: a handshake completed: {peers:?}");
        assert!(peers[0].tx_bytes > 0 && peers[0].rx_bytes > 0, "{side}: {peers:?}");
    }
    assert!(right.peers()[0].rx_bytes as usize >= BYTES, "the stream's bytes came in through the tunnel");

    // A packet whose source the peer may not send (10.98.3.1 is not in the left node's
    // allowed IPs at the right) is decrypted and dropped.
    ip(&link.left, "addr add 10.98.3.1/32 dev lo");
    send_datagram(&link.left, "10.98.3.1:0", "10.98.2.1:7001");
    assert!(eventually(Duration::from_secs(2), || right.counters().not_allowed >= 1), "{:?}", right.counters());
    // Traffic for an address no peer routes: nothing to send it to.
    ip(&link.left, "route add 10.97.0.0/24 dev nswg0");
    send_datagram(&link.left, "0.0.0.0:0", "10.97.0.9:7001");
    assert!(eventually(Duration::from_secs(2), || left.counters().no_peer >= 1), "{:?}", left.counters());
}

#[test]
fn a_key_rotation_under_a_running_stream_neither_breaks_nor_stalls_it() {
    let Some(_root) = require_kernel() else { return };
    let Nodes { link, left, right } = Nodes::new();
    let new_left = NodeKey::generate().unwrap();
    let to = SocketAddrV4::new(Ipv4Addr::new(10, 98, 2, 1), 7100);
    let (longest, received) = steady_stream(link.left.name(), link.right.name(), to, Duration::from_secs(4), || {
        std::thread::sleep(Duration::from_secs(1));
        // The left node rotates; the right one learns the new key a while later, as a
        // kvstore would tell it.
        left.rotate(new_left.private().clone());
        std::thread::sleep(Duration::from_millis(700));
        right.set_peers(vec![peer("left", &new_left, link.left_addr, "10.98.1.0/24")]);
    });
    assert!(longest < Duration::from_secs(1), "no stall over a second: {longest:?} ({received} bytes)");
    // The new key is in use: the right side's peer has it, with a fresh handshake.
    let peers = right.peers();
    assert_eq!(peers[0].public_key, new_left.public_base64());
    assert!(peers[0].last_handshake_millis.is_some_and(|ms| ms < 4000), "{peers:?}");
    eprintln!("rotation under a stream of {received} bytes: longest gap {longest:?}");
}

/// A node with the kernel's device, configured over generic netlink by the kernel backend.
fn start_kernel(ns: &NetNs, key: &NodeKey, own: &str, other: &str) -> Result<KernelWireguard, KernelError> {
    let private = key.private().clone();
    let device = ns.run(move || KernelWireguard::start(DEVICE, WIREGUARD_PORT, &private)).unwrap()?;
    ip(ns, &format!("addr add {own}/32 dev lo"));
    ip(ns, &format!("link set {DEVICE} mtu 1420 up"));
    ip(ns, &format!("route add {other} dev {DEVICE} src {own}"));
    Ok(device)
}

#[test]
fn the_kernel_backend_carries_a_stream_where_the_kernel_has_wireguard() {
    let Some(_root) = require_kernel() else { return };
    let Some(()) = require_executable("tcpdump", "tcpdump") else { return };
    let link = VethPair::new().unwrap();
    let (left_key, right_key) = (NodeKey::generate().unwrap(), NodeKey::generate().unwrap());
    let left = match start_kernel(&link.left, &left_key, "10.98.1.1", "10.98.2.0/24") {
        Err(KernelError::Genl { source: GenlError::NoFamily(family), .. }) => {
            assert_eq!(family, "wireguard");
            assert!(!std::path::Path::new("/sys/module/wireguard").exists(), "refused though the kernel has it");
            eprintln!(
                "this kernel has no WireGuard: only the kernel backend's refusal was exercised, not a stream \
                 through the kernel's device"
            );
            return;
        }
        other => other.unwrap(),
    };
    let mut right = start_kernel(&link.right, &right_key, "10.98.2.1", "10.98.1.0/24").unwrap();
    let mut left = left;
    left.set_peers(vec![peer("right", &right_key, link.right_addr, "10.98.2.0/24")]).unwrap();
    right.set_peers(vec![peer("left", &left_key, link.left_addr, "10.98.1.0/24")]).unwrap();

    let capture = Capture::start(link.left.name(), &link.ifname, "");
    let to = SocketAddrV4::new(Ipv4Addr::new(10, 98, 2, 1), 7200);
    let (longest, received) = steady_stream(link.left.name(), link.right.name(), to, Duration::from_secs(2), || {});
    assert!(longest < Duration::from_secs(1), "{longest:?}");
    only_wireguard(&capture.packets());
    let peers = right.peers().unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].public_key, left_key.public_base64());
    assert!(peers[0].last_handshake_millis.is_some(), "{peers:?}");
    assert!(peers[0].rx_bytes >= received as u64, "{peers:?}");
    // A peer whose key stayed keeps its session when the peers are set again.
    let handshakes = right.read().unwrap()[0].last_handshake;
    right.set_peers(vec![peer("left", &left_key, link.left_addr, "10.98.1.0/24")]).unwrap();
    assert_eq!(right.read().unwrap()[0].last_handshake, handshakes);
}
