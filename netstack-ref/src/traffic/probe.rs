//! Connectivity probes between pods (the demo's table and the traffic tests): a listener in
//! one pod's namespace, a client in another's, and what happened.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::agent::netns::{join, spawn_in, PlumbingError};

/// Why a probe could not run at all (as opposed to running and seeing a drop).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Entering a namespace.
    #[error(transparent)]
    Plumbing(#[from] PlumbingError),
    /// A socket operation of the probe's own.
    #[error("{what}: {source}")]
    Socket {
        /// The operation (`listen 8080`, `raw ICMP socket`).
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The listener did not report it was ready.
    #[error("the listener on port {port} did not start")]
    ListenerNotReady {
        /// The port.
        port: u16,
    },
}

fn socket_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ProbeError {
    let what = what.into();
    move |source| ProbeError::Socket { what, source }
}

/// What a probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The peer answered.
    Connected,
    /// Nothing came back in time (a drop).
    TimedOut,
    /// The peer refused (a reset or an ICMP error).
    Refused,
    /// The probe itself failed.
    Failed(String),
}

impl Outcome {
    /// Whether the traffic got through.
    pub fn passed(&self) -> bool {
        *self == Outcome::Connected
    }
}

/// A probe's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// TCP connect to a port, and one byte each way.
    Tcp(u16),
    /// TCP connect to a service's port, the listener on its target port (a NodePort and the
    /// pod's port behind it), one byte each way.
    TcpService {
        /// The port connected to.
        port: u16,
        /// The port the pod listens on.
        target_port: u16,
    },
    /// One UDP datagram to a port, answered by the listener.
    Udp(u16),
    /// ICMP echo with a fresh identifier.
    Icmp,
    /// ICMP echo with this identifier (a reused one is what a forged "reply" would carry).
    IcmpId(u16),
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Tcp(p) => write!(f, "TCP/{p}"),
            Probe::TcpService { port, target_port } => write!(f, "TCP/{port}→{target_port}"),
            Probe::Udp(p) => write!(f, "UDP/{p}"),
            Probe::Icmp => f.write_str("ICMP echo"),
            Probe::IcmpId(id) => write!(f, "ICMP echo id {id}"),
        }
    }
}

/// Runs `probe` from the pod namespace `from` to `to_ip` (a pod in namespace `to`), waiting
/// `timeout` for an answer.
pub fn run(from: &str, to: &str, to_ip: Ipv4Addr, probe: Probe, timeout: Duration) -> Outcome {
    match try_run(from, to, to_ip, probe, timeout) {
        Ok(o) => o,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

fn try_run(from: &str, to: &str, to_ip: Ipv4Addr, probe: Probe, timeout: Duration) -> Result<Outcome, ProbeError> {
    match probe {
        Probe::Tcp(port) => with_listener(
            from,
            to,
            port,
            move |ready| tcp_server(port, timeout, ready),
            move || tcp_client(to_ip, port, timeout),
        ),
        Probe::TcpService { port, target_port } => with_listener(
            from,
            to,
            target_port,
            move |ready| tcp_server(target_port, timeout, ready),
            move || tcp_client(to_ip, port, timeout),
        ),
        Probe::Udp(port) => with_listener(
            from,
            to,
            port,
            move |ready| udp_server(port, timeout, ready),
            move || udp_client(to_ip, port, timeout),
        ),
        Probe::Icmp => join(from, spawn_in(from, move || echo(to_ip, None, timeout))?)?,
        Probe::IcmpId(id) => join(from, spawn_in(from, move || echo(to_ip, Some(id), timeout))?)?,
    }
}

/// Runs `server` in namespace `to` and, once it reports ready, `client` in `from`.
fn with_listener(
    from: &str,
    to: &str,
    port: u16,
    server: impl FnOnce(mpsc::Sender<()>) -> Result<(), ProbeError> + Send + 'static,
    client: impl FnOnce() -> Outcome + Send + 'static,
) -> Result<Outcome, ProbeError> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = spawn_in(to, move || server(ready_tx))?;
    ready_rx.recv_timeout(Duration::from_secs(2)).map_err(|_| ProbeError::ListenerNotReady { port })?;
    let outcome = join(from, spawn_in(from, client)?)?;
    join(to, server)??;
    Ok(outcome)
}

/// Accepts one connection and echoes one byte (or gives up after the probe's time).
fn tcp_server(port: u16, timeout: Duration, ready: mpsc::Sender<()>) -> Result<(), ProbeError> {
    let listener = TcpListener::bind(("0.0.0.0", port)).map_err(socket_error(format!("listen {port}")))?;
    listener.set_nonblocking(true).map_err(socket_error("nonblocking listener"))?;
    let _ = ready.send(());
    let deadline = Instant::now() + timeout + Duration::from_millis(500);
    while Instant::now() < deadline {
        if let Ok((mut s, _)) = listener.accept() {
            let _ = s.set_nonblocking(false);
            let mut b = [0u8; 1];
            let _ = s.read_exact(&mut b).and_then(|_| s.write_all(&b));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn tcp_client(to_ip: Ipv4Addr, port: u16, timeout: Duration) -> Outcome {
    match TcpStream::connect_timeout(&SocketAddrV4::new(to_ip, port).into(), timeout) {
        Ok(mut s) => {
            let _ = s.set_read_timeout(Some(timeout));
            let mut b = [7u8];
            match s.write_all(&b).and_then(|_| s.read_exact(&mut b)) {
                Ok(()) => Outcome::Connected,
                Err(_) => Outcome::TimedOut,
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Outcome::Refused,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Outcome::TimedOut,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Answers one datagram with itself.
fn udp_server(port: u16, timeout: Duration, ready: mpsc::Sender<()>) -> Result<(), ProbeError> {
    let sock = UdpSocket::bind(("0.0.0.0", port)).map_err(socket_error(format!("bind {port}")))?;
    sock.set_read_timeout(Some(timeout + Duration::from_millis(500))).map_err(socket_error("read timeout"))?;
    let _ = ready.send(());
    let mut buf = [0u8; 64];
    if let Ok((n, peer)) = sock.recv_from(&mut buf) {
        let _ = sock.send_to(&buf[..n], peer);
    }
    Ok(())
}

fn udp_client(to_ip: Ipv4Addr, port: u16, timeout: Duration) -> Outcome {
    let Ok(sock) = UdpSocket::bind("0.0.0.0:0") else { return Outcome::Failed("bind".into()) };
    let _ = sock.set_read_timeout(Some(timeout));
    if let Err(e) = sock.send_to(b"probe", SocketAddrV4::new(to_ip, port)) {
        return Outcome::Failed(e.to_string());
    }
    let mut buf = [0u8; 64];
    match sock.recv_from(&mut buf) {
        Ok(_) => Outcome::Connected,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Outcome::Refused,
        Err(_) => Outcome::TimedOut,
    }
}

/// One ICMP echo from the calling thread's namespace over a raw socket (no `ping` binary), with
/// identifier `id` or a fresh one.
fn echo(to: Ipv4Addr, id: Option<u16>, timeout: Duration) -> Result<Outcome, ProbeError> {
    use nix::sys::socket::{
        recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType,
        SockaddrIn,
    };
    use std::os::fd::AsRawFd;
    let fd = socket(AddressFamily::Inet, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::Icmp)
        .map_err(|e| socket_error("raw ICMP socket")(e.into()))?;
    let tv = nix::sys::time::TimeVal::new(timeout.as_secs() as i64, timeout.subsec_micros() as i64);
    setsockopt(&fd, sockopt::ReceiveTimeout, &tv).map_err(|e| socket_error("receive timeout")(e.into()))?;
    // A fresh identifier per probe: an echo with a tracked identifier would be an established
    // flow, not a new one.
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let id = id.unwrap_or_else(|| {
        (std::process::id() as u16) ^ NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed).wrapping_mul(7919)
    });
    let mut packet = [8u8, 0, 0, 0, (id >> 8) as u8, id as u8, 0, 1, b'n', b's'];
    let mut sum: u32 = packet.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    packet[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    sendto(fd.as_raw_fd(), &packet, &SockaddrIn::from(SocketAddrV4::new(to, 0)), MsgFlags::empty())
        .map_err(|e| socket_error("send echo")(e.into()))?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    // A raw socket sees every ICMP packet of the namespace: wait for our reply.
    while Instant::now() < deadline {
        let Ok(n) = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) else { break };
        let header = usize::from(buf[0] & 0x0f) * 4;
        let icmp = &buf[header.min(n)..n];
        if icmp.len() >= 8 && icmp[0] == 0 && icmp[4..6] == id.to_be_bytes() {
            return Ok(Outcome::Connected);
        }
    }
    Ok(Outcome::TimedOut)
}
