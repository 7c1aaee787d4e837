//! A cluster of the test's own (`netstack cluster up`), brought down on drop, and what tests ask
//! of its agents through the `netstack` CLI; packets crafted and sent from a namespace.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use netstack_ref::agent::netns;

/// Runs the `netstack` binary.
pub fn netstack(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_netstack")).args(args).output().unwrap()
}

/// A cluster of the test's own, brought down on drop.
pub struct Cluster {
    /// Its name (the prefix of its namespaces).
    pub name: String,
    /// Its state directory.
    pub state_dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = netstack(&["cluster", "down", "--name", &self.name, "--state-dir", self.state_dir.to_str().unwrap()]);
    }
}

/// A directory removed when the test ends, passed or failed.
pub struct RemovedOnDrop(pub PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh manifests directory (under the temp directory, named after `prefix`) holding
/// `file` with `text`, removed when the test ends.
pub fn manifests_dir(prefix: &str, file: &str, text: &str) -> RemovedOnDrop {
    let dir = std::env::temp_dir().join(ebpf_test_support::unique_name(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(file), text).unwrap();
    RemovedOnDrop(dir)
}

/// Sends one datagram from namespace `from` to `to:port`, where namespace `at` listens;
/// whether it arrived within a second.
pub fn udp_reaches(from: &str, at: &str, to: Ipv4Addr, port: u16) -> bool {
    let receiver = netns::run_in(at, move || {
        let socket = UdpSocket::bind(("0.0.0.0", port)).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        socket
    })
    .unwrap();
    // A send can fail: a service without a backend (yet) refuses it.
    let sent =
        netns::run_in(from, move || UdpSocket::bind("0.0.0.0:0").unwrap().send_to(b"netstack", (to, port)).is_ok())
            .unwrap();
    if !sent {
        return false;
    }
    let mut buf = [0u8; 16];
    receiver.recv_from(&mut buf).is_ok()
}

/// The endpoint row of pod `pod` (`namespace/name`) on the agent of `state_dir`.
pub fn endpoint(state_dir: &Path, pod: &str) -> Option<serde_json::Value> {
    let out = netstack(&["endpoint", "list", "--state-dir", state_dir.to_str()?, "-o", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    rows.as_array()?.iter().find(|r| r["pod"] == pod).cloned()
}

/// An IPv4 header (checksummed) and a UDP datagram (no checksum) from `src` to `dst:port`.
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, port: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = (8 + payload.len()) as u16;
    let mut packet = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
    packet[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
    packet.extend(src.octets());
    packet.extend(dst.octets());
    let sum = packet.chunks(2).fold(0u32, |s, w| s + u32::from(u16::from_be_bytes([w[0], w[1]])));
    let folded = (sum & 0xffff) + (sum >> 16);
    packet[10..12].copy_from_slice(&(!((folded & 0xffff) + (folded >> 16)) as u16).to_be_bytes());
    packet.extend(40000u16.to_be_bytes());
    packet.extend(port.to_be_bytes());
    packet.extend(udp_len.to_be_bytes());
    packet.extend([0, 0]);
    packet.extend(payload);
    packet
}

/// Sends `packet` (a whole IPv4 packet, source address and all) from namespace `from` through
/// a raw socket: the kernel routes it by its destination.
pub fn send_raw(from: &str, packet: Vec<u8>) {
    use nix::sys::socket::{sendto, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn};
    use std::os::fd::AsRawFd;
    netns::run_in(from, move || {
        let fd = socket(AddressFamily::Inet, SockType::Raw, SockFlag::empty(), SockProtocol::Raw).unwrap();
        let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
        sendto(fd.as_raw_fd(), &packet, &SockaddrIn::from(std::net::SocketAddrV4::new(dst, 0)), MsgFlags::empty())
            .unwrap();
    })
    .unwrap();
}

/// Whether a datagram to `port` arrives in namespace `at` within a second of `send`.
pub fn arrives(at: &str, port: u16, send: impl FnOnce()) -> bool {
    let receiver = netns::run_in(at, move || {
        let socket = UdpSocket::bind(("0.0.0.0", port)).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        socket
    })
    .unwrap();
    send();
    let mut buf = [0u8; 64];
    receiver.recv_from(&mut buf).is_ok()
}

/// Packets endpoint `pod`'s datapath on `state_dir`'s agent counted for `reason` in `direction`.
pub fn verdict_count(state_dir: &Path, pod: &str, direction: &str, reason: &str) -> u64 {
    let id = endpoint(state_dir, pod).and_then(|row| row["id"].as_u64()).unwrap_or(0).to_string();
    let out = netstack(&["endpoint", "verdicts", &id, "--state-dir", state_dir.to_str().unwrap(), "-o", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    rows.as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["direction"] == direction && r["reason"] == reason)
        .filter_map(|r| r["packets"].as_u64())
        .sum()
}

/// Packets the tunnel of `state_dir`'s agent counted for `reason` in `direction`.
pub fn tunnel_count(state_dir: &Path, direction: &str, reason: &str) -> u64 {
    device_count(state_dir, |status| vec![status["tunnel"].clone()], direction, reason)
}

/// Packets the north-south LB of `state_dir`'s agent counted for `reason` in `direction`, on
/// all its devices.
pub fn north_south_count(state_dir: &Path, direction: &str, reason: &str) -> u64 {
    device_count(state_dir, |status| status["northSouth"].as_array().cloned().unwrap_or_default(), direction, reason)
}

/// Sums the `verdicts` rows for (`direction`, `reason`) of the device counters `devices` picks
/// out of `state_dir`'s agent's status.
fn device_count(
    state_dir: &Path,
    devices: impl Fn(&serde_json::Value) -> Vec<serde_json::Value>,
    direction: &str,
    reason: &str,
) -> u64 {
    let out = netstack(&["status", "--state-dir", state_dir.to_str().unwrap(), "-o", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    devices(&status)
        .iter()
        .flat_map(|d| d["verdicts"].as_array().cloned().unwrap_or_default())
        .filter(|r| r["direction"] == direction && r["reason"] == reason)
        .filter_map(|r| r["packets"].as_u64())
        .sum()
}

/// A VXLAN datagram's payload: the header with `vni`, and an Ethernet frame around `packet`.
pub fn vxlan(vni: u32, packet: &[u8]) -> Vec<u8> {
    let mut out = vec![0x08, 0, 0, 0];
    out.extend(&(vni << 8).to_be_bytes());
    out.extend([2, 0, 0, 0, 0, 0xaa, 2, 0, 0, 0, 0, 0xbb, 0x08, 0x00]);
    out.extend(packet);
    out
}

/// `netstack cluster up` of 3 nodes named `name` under `state`, with etcd, and `options` (e.g.
/// `--routing tunnel`, `--manifests DIR`); the record it prints. Fails the test when it fails.
/// `NETSTACK_CLUSTER_ENCRYPTION=wireguard` (or `wireguard-strict`) runs every cluster test's
/// cluster encrypted, unless the test says otherwise (`--encryption` in `options`).
pub fn cluster_up(name: &str, state: &str, options: &[&str]) -> netstack_ref::cluster::topology::ClusterRecord {
    let mut args = vec!["cluster", "up", "--nodes", "3", "--name", name, "--kvstore", "etcd", "--state-dir", state];
    args.extend_from_slice(options);
    let encryption = std::env::var("NETSTACK_CLUSTER_ENCRYPTION").unwrap_or_default();
    if !encryption.is_empty() && !options.contains(&"--encryption") {
        args.extend_from_slice(&["--encryption", encryption.as_str()]);
    }
    args.extend_from_slice(&["-o", "json"]);
    let up = netstack(&args);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    serde_json::from_slice(&up.stdout).expect("the cluster's record")
}
