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
