//! Network namespaces and veth pairs for tests, removed on drop (also when a test panics).

use std::net::Ipv4Addr;
use std::process::Command;

use crate::unique_name;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// A named network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a namespace with a unique name and brings its loopback up.
    pub fn new(prefix: &str) -> Result<NetNs, String> {
        let name = unique_name(prefix);
        ip(&["netns", "add", &name])?;
        let ns = NetNs { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on a new thread that has entered this namespace, and returns its result.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {path}: {e}"))?;
            Ok(f())
        })
        .join()
        .map_err(|_| "namespace thread panicked".to_owned())?
    }

    /// The interface index of `ifname` inside this namespace.
    pub fn ifindex(&self, ifname: &str) -> Result<u32, String> {
        let name = ifname.to_owned();
        self.run(move || {
            nix::net::if_::if_nametoindex(name.as_str()).map_err(|e| format!("if_nametoindex {name}: {e}"))
        })?
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace also destroys the interfaces inside it.
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Two namespaces joined by a veth pair, addressed 10.x.y.1/30 (left) and 10.x.y.2/30 (right)
/// from a per-pair subnet, so pairs in parallel tests never overlap.
#[derive(Debug)]
pub struct VethPair {
    /// The left end's namespace.
    pub left: NetNs,
    /// The right end's namespace.
    pub right: NetNs,
    /// Interface name of each end (the same name in both namespaces).
    pub ifname: String,
    /// Address of the left end.
    pub left_addr: Ipv4Addr,
    /// Address of the right end.
    pub right_addr: Ipv4Addr,
}

impl VethPair {
    /// Creates both namespaces and the pair, addressed and up.
    pub fn new() -> Result<VethPair, String> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let left = NetNs::new("vl")?;
        let right = NetNs::new("vr")?;
        let ifname = "veth0".to_owned();
        let peer = unique_name("vp");
        ip(&["-n", left.name(), "link", "add", &ifname, "type", "veth", "peer", "name", &peer, "netns", right.name()])?;
        ip(&["-n", right.name(), "link", "set", &peer, "name", &ifname])?;
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let subnet = (std::process::id() % 200 + 20) as u8;
        let block = (n % 64 * 4) as u8;
        let left_addr = Ipv4Addr::new(10, 231, subnet, block + 1);
        let right_addr = Ipv4Addr::new(10, 231, subnet, block + 2);
        for (ns, addr) in [(&left, left_addr), (&right, right_addr)] {
            ip(&["-n", ns.name(), "addr", "add", &format!("{addr}/30"), "dev", &ifname])?;
            ip(&["-n", ns.name(), "link", "set", &ifname, "up"])?;
        }
        Ok(VethPair { left, right, ifname, left_addr, right_addr })
    }
}

/// Sends `count` UDP datagrams from a thread in `from` to `to:port`.
pub fn send_udp(from: &NetNs, to: Ipv4Addr, port: u16, count: usize) -> Result<(), String> {
    from.run(move || -> Result<(), String> {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        for _ in 0..count {
            socket.send_to(b"ebpf test datagram", (to, port)).map_err(|e| e.to_string())?;
        }
        Ok(())
    })?
}

/// A UDP socket bound in a namespace, counting what arrives.
#[derive(Debug)]
pub struct UdpCounter {
    socket: std::net::UdpSocket,
}

impl UdpCounter {
    /// Binds `0.0.0.0:port` inside `ns` (the socket keeps the namespace it was made in).
    pub fn bind(ns: &NetNs, port: u16) -> Result<UdpCounter, String> {
        let socket = ns.run(move || std::net::UdpSocket::bind(("0.0.0.0", port)).map_err(|e| e.to_string()))??;
        socket.set_read_timeout(Some(std::time::Duration::from_millis(200))).map_err(|e| e.to_string())?;
        Ok(UdpCounter { socket })
    }

    /// Datagrams received until none arrives for 200 ms.
    pub fn drain(&self) -> usize {
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while self.socket.recv_from(&mut buf).is_ok() {
            n += 1;
        }
        n
    }
}

/// Sends `count` ICMP echo requests from a thread in `from` to `to`, one at a time, and returns
/// how many were answered within `timeout` each (a raw socket: no `ping` binary needed).
pub fn ping(from: &NetNs, to: Ipv4Addr, count: u16, timeout: std::time::Duration) -> Result<usize, String> {
    use nix::sys::socket::{
        recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType,
        SockaddrIn,
    };
    from.run(move || -> Result<usize, String> {
        let fd = socket(AddressFamily::Inet, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::Icmp)
            .map_err(|e| format!("raw ICMP socket: {e}"))?;
        let tv = nix::sys::time::TimeVal::new(timeout.as_secs() as i64, timeout.subsec_micros() as i64);
        setsockopt(&fd, sockopt::ReceiveTimeout, &tv).map_err(|e| e.to_string())?;
        let id = (std::process::id() & 0xffff) as u16;
        let dest = SockaddrIn::from(std::net::SocketAddrV4::new(to, 0));
        let mut answered = 0;
        for seq in 0..count {
            let mut packet =
                [8u8, 0, 0, 0, (id >> 8) as u8, id as u8, (seq >> 8) as u8, seq as u8, b'e', b'b', b'p', b'f'];
            let sum = icmp_checksum(&packet);
            packet[2..4].copy_from_slice(&sum.to_be_bytes());
            sendto(std::os::fd::AsRawFd::as_raw_fd(&fd), &packet, &dest, MsgFlags::empty())
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 1500];
            // A raw socket sees every ICMP packet of the namespace: wait for our reply.
            while let Ok(n) = recv(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut buf, MsgFlags::empty()) {
                let header = usize::from(buf[0] & 0x0f) * 4;
                let icmp = &buf[header.min(n)..n];
                if icmp.len() >= 8 && icmp[0] == 0 && icmp[4..6] == id.to_be_bytes() && icmp[6..8] == seq.to_be_bytes()
                {
                    answered += 1;
                    break;
                }
            }
        }
        Ok(answered)
    })?
}

fn icmp_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
