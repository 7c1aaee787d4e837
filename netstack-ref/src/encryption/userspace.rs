//! WireGuard in the agent, for kernels without it: a TUN device in the node's namespace, a UDP
//! socket on [`WIREGUARD_PORT`](super::WIREGUARD_PORT), and one thread running the event loop —
//! packets the node routes into the device are encrypted (boringtun's `Tunn`, one per peer,
//! chosen by the peer's allowed IPs) and sent to the peer's node; datagrams from a peer are
//! decrypted and, when their source is one of the peer's allowed IPs, handed to the node's
//! stack through the device. Timers (handshakes, keepalives, rekeys) run every 100 ms. Peers
//! are replaced while it runs; a peer whose key did not change keeps its sessions.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use boringtun::device::tun::TunSocket;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use mio::unix::SourceFd;
use mio::Interest;

use super::peer::{PeerConfig, PeerStatus};
use crate::policy::api::Cidr;

/// How often WireGuard's timers run.
const TIMER_TICK: Duration = Duration::from_millis(100);

/// The UDP socket's receive and send buffers.
const SOCKET_BUFFER: usize = 8 << 20;

/// Room for a packet of the largest MTU plus WireGuard's overhead.
const BUFFER: usize = 65_536 + 64;

/// Why the device could not be made or run.
#[derive(Debug, thiserror::Error)]
pub enum UserspaceError {
    /// The TUN device.
    #[error("userspace WireGuard: TUN device {device}: {source}")]
    Tun {
        /// Its name.
        device: String,
        /// Why.
        #[source]
        source: boringtun::device::Error,
    },
    /// A name that cannot be a TUN device's.
    #[error("userspace WireGuard: TUN device {0:?}: not a device name")]
    TunName(String),
    /// The UDP socket.
    #[error("userspace WireGuard: {operation} UDP socket {address}: {source}")]
    Socket {
        /// What was being done.
        operation: &'static str,
        /// Its address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The event loop's thread or runtime.
    #[error("userspace WireGuard: start its event loop: {0}")]
    EventLoop(#[source] std::io::Error),
}

/// What the loop counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Packets from the device no peer's allowed IPs contain (dropped).
    pub no_peer: u64,
    /// Datagrams from an address that is no peer's endpoint (dropped).
    pub unknown_sender: u64,
    /// Decrypted packets whose source the peer may not send (dropped).
    pub not_allowed: u64,
    /// Datagrams that did not decrypt (dropped).
    pub invalid: u64,
}

/// One tunnel to a peer: boringtun's state machine and the index its session ids carry.
struct Tunnel {
    tunn: Tunn,
    index: u32,
}

impl Tunnel {
    fn established(&self) -> bool {
        self.tunn.time_since_last_handshake().is_some()
    }
}

/// How long the tunnel from before a key change stays once the new one has a session (packets
/// the peer sent on the old session may still be in flight).
const PREVIOUS_GRACE: Duration = Duration::from_secs(5);

/// How often a new tunnel, while the old one still carries the traffic, asks for a handshake
/// (the peer may not know the new key yet: it learns it through the kvstore).
const REKEY_NUDGE: Duration = Duration::from_secs(1);

struct Peer {
    config: PeerConfig,
    /// The tunnel with the keys as they are now.
    current: Tunnel,
    /// The tunnel from before a key changed (ours or the peer's), carrying the traffic on its
    /// session until `current` has one; then kept for [`PREVIOUS_GRACE`].
    previous: Option<(Tunnel, Option<Instant>)>,
    last_nudge: Option<Instant>,
    /// Bytes of tunnels already gone, so the counters never run backwards.
    carried: (u64, u64),
}

impl Peer {
    /// The tunnel packets to the peer go through now: the current one once it has a session
    /// (or when there is nothing else), else the previous one while its session lasts.
    fn sending(&mut self) -> &mut Tunnel {
        let use_previous = !self.current.established()
            && self.previous.as_ref().is_some_and(|(t, _)| t.established() && !t.tunn.is_expired());
        match (&mut self.previous, use_previous) {
            (Some((previous, _)), true) => previous,
            _ => &mut self.current,
        }
    }

    /// The tunnel a datagram is for, by the receiver index it carries (data, handshake
    /// responses, cookies); `None` for a handshake initiation, which names none.
    fn receiving(&mut self, datagram: &[u8]) -> Option<&mut Tunnel> {
        let at = match datagram.first()? {
            2 => 8,
            3 | 4 => 4,
            _ => return None,
        };
        let receiver = u32::from_le_bytes(datagram.get(at..at + 4)?.try_into().ok()?) >> 8;
        match &mut self.previous {
            Some((previous, _)) if previous.index == receiver => Some(previous),
            _ => Some(&mut self.current),
        }
    }

    fn totals(&self) -> (Option<Duration>, u64, u64) {
        let (since, tx, rx, _, _) = self.current.tunn.stats();
        let (mut tx, mut rx) = (tx as u64 + self.carried.0, rx as u64 + self.carried.1);
        if let Some((previous, _)) = &self.previous {
            let (_, ptx, prx, _, _) = previous.tunn.stats();
            tx += ptx as u64;
            rx += prx as u64;
        }
        (since, tx, rx)
    }

    /// Makes `replacement` the current tunnel, the current one the previous (the one before
    /// goes, its bytes carried).
    fn replace(&mut self, replacement: Tunnel) {
        let old = std::mem::replace(&mut self.current, replacement);
        if let Some((gone, _)) = self.previous.replace((old, None)) {
            let (_, tx, rx, _, _) = gone.tunn.stats();
            self.carried.0 += tx as u64;
            self.carried.1 += rx as u64;
        }
        self.last_nudge = None;
    }
}

/// What the loop owns and the agent reads.
struct State {
    private: StaticSecret,
    peers: Vec<Peer>,
    counters: Counters,
    next_index: u32,
}

impl State {
    fn peer_for_destination(&mut self, destination: IpAddr) -> Option<&mut Peer> {
        self.peers.iter_mut().find(|p| p.config.allowed_ips.iter().any(|c| c.contains(destination)))
    }

    fn peer_at(&mut self, endpoint: SocketAddr) -> Option<&mut Peer> {
        self.peers.iter_mut().find(|p| p.config.endpoint.ip() == endpoint.ip())
    }

    fn tunnel(&mut self, peer_key: [u8; 32]) -> Option<Tunnel> {
        self.next_index = self.next_index.wrapping_add(1) & 0x00ff_ffff;
        let tunn = Tunn::new(self.private.clone(), PublicKey::from(peer_key), None, None, self.next_index, None);
        // A key the protocol refuses: no tunnel to that node.
        tunn.ok().map(|tunn| Tunnel { tunn, index: self.next_index })
    }

    /// Replaces the peers. A peer whose key stayed keeps its tunnel (and sessions); one whose
    /// key changed gets a new tunnel beside the old, which carries the traffic until the new
    /// one has a session.
    fn set_peers(&mut self, wanted: Vec<PeerConfig>) {
        let mut old: BTreeMap<String, Peer> = self.peers.drain(..).map(|p| (p.config.name.clone(), p)).collect();
        for config in wanted {
            let peer = match old.remove(&config.name) {
                Some(mut kept) if kept.config.public_key == config.public_key => {
                    kept.config = config;
                    kept
                }
                Some(mut kept) => {
                    let Some(tunnel) = self.tunnel(config.public_key) else { continue };
                    kept.replace(tunnel);
                    kept.config = config;
                    kept
                }
                None => {
                    let Some(current) = self.tunnel(config.public_key) else { continue };
                    Peer { config, current, previous: None, last_nudge: None, carried: (0, 0) }
                }
            };
            self.peers.push(peer);
        }
    }

    /// Takes `private` as the device's key: every peer gets a new tunnel beside the old one,
    /// which carries the traffic until the peer, having learned the new public key, completes
    /// a handshake with it.
    fn rotate(&mut self, private: StaticSecret) {
        self.private = private;
        for at in 0..self.peers.len() {
            let key = self.peers[at].config.public_key;
            if let Some(tunnel) = self.tunnel(key) {
                self.peers[at].replace(tunnel);
            }
        }
    }

    fn status(&self) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .map(|p| {
                let (since, tx, rx) = p.totals();
                PeerStatus::of(&p.config, since, tx, rx)
            })
            .collect()
    }
}

/// The running device; stopped (and the TUN device gone with it) on drop.
pub struct UserspaceWireguard {
    device: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    waker: Arc<mio::Waker>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for UserspaceWireguard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserspaceWireguard").field("device", &self.device).finish()
    }
}

const TUN: mio::Token = mio::Token(0);
const SOCKET: mio::Token = mio::Token(1);
const WAKE: mio::Token = mio::Token(2);

impl UserspaceWireguard {
    /// Makes TUN device `device` and binds the UDP socket at `listen`, both in the calling
    /// thread's network namespace, then runs the loop on a thread of its own. The device is
    /// left down and unaddressed: the caller brings it up and routes into it. With
    /// `send_through`, the socket's datagrams leave by that device whatever the routes say (so
    /// routes that send a peer's address into the WireGuard device do not catch WireGuard's
    /// own traffic).
    pub fn start(
        device: &str,
        listen: SocketAddr,
        private: StaticSecret,
        send_through: Option<&str>,
    ) -> Result<UserspaceWireguard, UserspaceError> {
        // A name of digits would be taken for a file descriptor.
        if device.is_empty() || device.bytes().all(|b| b.is_ascii_digit()) {
            return Err(UserspaceError::TunName(device.to_owned()));
        }
        let tun = TunSocket::new(device)
            .and_then(TunSocket::set_non_blocking)
            .map_err(|source| UserspaceError::Tun { device: device.to_owned(), source })?;
        let socket = std::net::UdpSocket::bind(listen).map_err(|source| UserspaceError::Socket {
            operation: "bind",
            address: listen,
            source,
        })?;
        socket.set_nonblocking(true).map_err(|source| UserspaceError::Socket {
            operation: "configure",
            address: listen,
            source,
        })?;
        // Bursts of a fast TCP stream arrive faster than one thread decrypts them: room for
        // them in the socket (forced past rmem_max; the agent runs as root).
        for option in [
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBufForce, &SOCKET_BUFFER),
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::SndBufForce, &SOCKET_BUFFER),
        ] {
            option.map_err(|e| UserspaceError::Socket {
                operation: "size the buffers of",
                address: listen,
                source: e.into(),
            })?;
        }
        if let Some(link) = send_through {
            let bind = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::BindToDevice, &link.into());
            bind.map_err(|e| UserspaceError::Socket {
                operation: "bind to its device",
                address: listen,
                source: e.into(),
            })?;
        }
        let mut socket = mio::net::UdpSocket::from_std(socket);
        let poll = mio::Poll::new().map_err(UserspaceError::EventLoop)?;
        let registry = poll.registry();
        let tun_fd = tun.as_raw_fd();
        registry.register(&mut SourceFd(&tun_fd), TUN, Interest::READABLE).map_err(UserspaceError::EventLoop)?;
        registry.register(&mut socket, SOCKET, Interest::READABLE).map_err(UserspaceError::EventLoop)?;
        let waker = Arc::new(mio::Waker::new(registry, WAKE).map_err(UserspaceError::EventLoop)?);
        let state =
            Arc::new(Mutex::new(State { private, peers: Vec::new(), counters: Counters::default(), next_index: 0 }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            std::thread::Builder::new()
                .name(format!("wg-{device}"))
                .spawn(move || run(poll, &tun, &socket, &state, &stop))
                .map_err(UserspaceError::EventLoop)?
        };
        Ok(UserspaceWireguard { device: device.to_owned(), state, stop, waker, thread: Some(thread) })
    }

    /// The TUN device's name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Replaces the peers (a peer whose key stayed keeps its sessions; one whose key changed
    /// keeps its old session until a handshake with the new key completes).
    pub fn set_peers(&self, peers: Vec<PeerConfig>) {
        self.state.lock().expect("not poisoned").set_peers(peers);
    }

    /// Takes a new private key; each peer's traffic stays on its old session until the peer,
    /// told the new public key, completes a handshake with it.
    pub fn rotate(&self, private: StaticSecret) {
        self.state.lock().expect("not poisoned").rotate(private);
    }

    /// Each peer's handshake and traffic.
    pub fn peers(&self) -> Vec<PeerStatus> {
        self.state.lock().expect("not poisoned").status()
    }

    /// What the loop dropped, by why.
    pub fn counters(&self) -> Counters {
        self.state.lock().expect("not poisoned").counters
    }
}

impl Drop for UserspaceWireguard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The event loop: the device, the socket and the timers until `stop`.
fn run(mut poll: mio::Poll, tun: &TunSocket, socket: &mio::net::UdpSocket, state: &Mutex<State>, stop: &AtomicBool) {
    let mut events = mio::Events::with_capacity(64);
    let mut packet = vec![0u8; BUFFER];
    let mut out = vec![0u8; BUFFER];
    let mut sender = Sender::new(socket);
    let mut receiver = Receiver::new(socket);
    let mut next_tick = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let wait = next_tick.saturating_duration_since(Instant::now());
        if poll.poll(&mut events, Some(wait)).is_err() {
            continue;
        }
        for event in &events {
            match event.token() {
                // Edge-triggered: everything there is, until it would block.
                TUN => {
                    while let Ok(read) = tun.read(&mut packet) {
                        let n = read.len();
                        sender.encrypt(state, &packet[..n]);
                    }
                    sender.flush();
                }
                SOCKET => {
                    while let Some(received) = receiver.receive() {
                        let Some((from, datagrams)) = received else { continue };
                        for datagram in datagrams {
                            let (to_network, to_device) = incoming(state, from, datagram, &mut out);
                            for answer in to_network {
                                let _ = socket.send_to(&answer, from);
                            }
                            for decrypted in to_device {
                                tun.write4(&decrypted);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if Instant::now() >= next_tick {
            for (datagram, to) in tick(state, &mut out) {
                let _ = socket.send_to(&datagram, to);
            }
            next_tick = Instant::now() + TIMER_TICK;
        }
    }
}

/// At most this many datagrams go in one send (the kernel's UDP_MAX_SEGMENTS, 64 before
/// Linux 6.7) …
const GSO_SEGMENTS: usize = 64;

/// … and at most this many bytes (what one UDP datagram may carry).
const GSO_BYTES: usize = 65_000;

/// Encrypted datagrams gathered as the device's packets are read, sent together: a run of
/// datagrams of one size to one peer (a bulk stream's) leaves in one `sendmsg` with UDP
/// segmentation offload (`UDP_SEGMENT`), which the kernel splits as late as it can — over a
/// veth, not before the receiving socket. Where the kernel refuses it, one by one.
struct Sender<'a> {
    socket: &'a mio::net::UdpSocket,
    buffer: Vec<u8>,
    /// Each datagram's start and length in `buffer`, and where it goes.
    datagrams: Vec<(usize, usize, SocketAddr)>,
    end: usize,
    offload: bool,
}

impl<'a> Sender<'a> {
    fn new(socket: &'a mio::net::UdpSocket) -> Sender<'a> {
        Sender {
            socket,
            buffer: vec![0u8; GSO_BYTES + BUFFER],
            datagrams: Vec::with_capacity(GSO_SEGMENTS),
            end: 0,
            offload: true,
        }
    }

    /// Encrypts a packet from the device for the peer its destination belongs to (or queues
    /// it behind a handshake, whose initiation is then what goes out).
    fn encrypt(&mut self, state: &Mutex<State>, packet: &[u8]) {
        // Room for the packet, WireGuard's header and tag, or a handshake initiation.
        if self.datagrams.len() == GSO_SEGMENTS || self.buffer.len() - self.end < packet.len() + 256 {
            self.flush();
        }
        let mut state = state.lock().expect("not poisoned");
        let Some(destination) = Tunn::dst_address(packet) else { return };
        let Some(peer) = state.peer_for_destination(destination) else {
            state.counters.no_peer += 1;
            return;
        };
        let endpoint = peer.config.endpoint;
        let space = &mut self.buffer[self.end..];
        let base = space.as_ptr() as usize;
        if let TunnResult::WriteToNetwork(datagram) = peer.sending().tunn.encapsulate(packet, space) {
            let start = self.end + (datagram.as_ptr() as usize - base);
            self.datagrams.push((start, datagram.len(), endpoint));
            self.end = start + datagram.len();
        }
    }

    /// Sends what was gathered.
    fn flush(&mut self) {
        let mut at = 0;
        while at < self.datagrams.len() {
            let run = self.run_from(at);
            let (start, size, to) = self.datagrams[at];
            let (_, last_len, _) = self.datagrams[at + run - 1];
            let end = self.datagrams[at + run - 1].0 + last_len;
            if run == 1 || !self.send_segmented(start, end, size, to) {
                for &(start, len, to) in &self.datagrams[at..at + run] {
                    let _ = self.socket.send_to(&self.buffer[start..start + len], to);
                }
            }
            at += run;
        }
        self.datagrams.clear();
        self.end = 0;
    }

    /// How many datagrams from `at` can go as one: contiguous, to one peer, of one size (the
    /// last may be shorter), within the offload's limits.
    fn run_from(&self, at: usize) -> usize {
        let (start, size, to) = self.datagrams[at];
        let mut run = 1;
        let mut previous_len = size;
        while self.offload && at + run < self.datagrams.len() && run < GSO_SEGMENTS {
            let (next_start, len, next_to) = self.datagrams[at + run];
            let contiguous = next_start == start + run * size;
            if next_to != to || !contiguous || len > size || previous_len < size || next_start + len - start > GSO_BYTES
            {
                break;
            }
            previous_len = len;
            run += 1;
        }
        run
    }

    /// One `sendmsg` of `buffer[start..end]`, cut by the kernel into datagrams of `size`;
    /// false (and offload off from now on) where the kernel does not do it.
    fn send_segmented(&mut self, start: usize, end: usize, size: usize, to: SocketAddr) -> bool {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, SockaddrStorage};
        let segment = size as u16;
        let address = SockaddrStorage::from(to);
        let iov = [std::io::IoSlice::new(&self.buffer[start..end])];
        let control = [ControlMessage::UdpGsoSegments(&segment)];
        match sendmsg(self.socket.as_raw_fd(), &iov, &control, MsgFlags::empty(), Some(&address)) {
            Ok(_) => true,
            // A full socket buffer drops them, as it would one datagram.
            Err(nix::errno::Errno::EAGAIN) => true,
            Err(_) => {
                self.offload = false;
                false
            }
        }
    }
}

/// Datagrams from the socket. With UDP receive offload (`UDP_GRO`) one read may bring
/// several datagrams of one sender, coalesced, with their size in a control message.
struct Receiver<'a> {
    socket: &'a mio::net::UdpSocket,
    buffer: Vec<u8>,
    control: Vec<u8>,
}

impl<'a> Receiver<'a> {
    fn new(socket: &'a mio::net::UdpSocket) -> Receiver<'a> {
        // Without it, datagrams come one by one.
        let _ = nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::UdpGroSegment, &true);
        Receiver { socket, buffer: vec![0u8; BUFFER], control: nix::cmsg_space!(i32) }
    }

    /// The next read's sender and datagrams (`Some(None)`: a read that brought none, such as
    /// an ICMP error's), until none is waiting.
    fn receive(&mut self) -> Option<Option<(SocketAddr, std::slice::Chunks<'_, u8>)>> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
        let (bytes, from, segment) = {
            let mut iov = [std::io::IoSliceMut::new(&mut self.buffer)];
            let message = match recvmsg::<SockaddrStorage>(
                self.socket.as_raw_fd(),
                &mut iov,
                Some(&mut self.control),
                MsgFlags::empty(),
            ) {
                Ok(message) => message,
                Err(nix::errno::Errno::EAGAIN) => return None,
                Err(_) => return Some(None),
            };
            let segment = message.cmsgs().ok().and_then(|mut cmsgs| {
                cmsgs.find_map(|c| match c {
                    ControlMessageOwned::UdpGroSegments(size) => usize::try_from(size).ok(),
                    _ => None,
                })
            });
            (message.bytes, message.address, segment)
        };
        let Some(from) = from.and_then(|a| socket_addr(&a)) else { return Some(None) };
        let segment = segment.filter(|s| *s > 0).unwrap_or(bytes.max(1));
        Some(Some((from, self.buffer[..bytes].chunks(segment))))
    }
}

/// A socket address of the IP families.
fn socket_addr(address: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    address.as_sockaddr_in6().map(|v6| SocketAddr::from((v6.ip(), v6.port())))
}

/// A datagram from `from`: what to answer on the network (handshake responses, queued
/// packets) and what to hand to the device (decrypted packets from the peer's allowed IPs).
fn incoming(state: &Mutex<State>, from: SocketAddr, datagram: &[u8], out: &mut [u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut state = state.lock().expect("not poisoned");
    let (mut to_network, mut to_device) = (Vec::new(), Vec::new());
    let mut dropped = Counters::default();
    match state.peer_at(from) {
        None => dropped.unknown_sender += 1,
        Some(peer) => {
            // A handshake initiation names no tunnel: the current one answers it, else (the
            // peer still knows our old key) the previous one.
            let allowed = peer.config.allowed_ips.clone();
            let named = peer.receiving(datagram).is_some();
            let tunnels: Vec<&mut Tunnel> = if named {
                peer.receiving(datagram).into_iter().collect()
            } else {
                std::iter::once(&mut peer.current).chain(peer.previous.as_mut().map(|(t, _)| t)).collect()
            };
            for tunnel in tunnels {
                let outcome = decapsulate(&mut tunnel.tunn, from, datagram, out, &allowed);
                let failed = outcome.failed;
                to_network.extend(outcome.to_network);
                to_device.extend(outcome.to_device);
                dropped.not_allowed += outcome.not_allowed;
                if !failed {
                    dropped.invalid = 0;
                    break;
                }
                dropped.invalid = 1;
            }
        }
    }
    let counters = &mut state.counters;
    counters.unknown_sender += dropped.unknown_sender;
    counters.not_allowed += dropped.not_allowed;
    counters.invalid += dropped.invalid;
    (to_network, to_device)
}

/// What one tunnel made of a datagram.
#[derive(Default)]
struct Decapsulated {
    to_network: Vec<Vec<u8>>,
    to_device: Vec<Vec<u8>>,
    not_allowed: u64,
    failed: bool,
}

fn decapsulate(tunn: &mut Tunn, from: SocketAddr, datagram: &[u8], out: &mut [u8], allowed: &[Cidr]) -> Decapsulated {
    let mut done = Decapsulated::default();
    let mut result = tunn.decapsulate(Some(from.ip()), datagram, out);
    loop {
        match result {
            TunnResult::WriteToNetwork(answer) => {
                done.to_network.push(answer.to_vec());
                // Packets queued behind the handshake follow.
                result = tunn.decapsulate(None, &[], out);
            }
            TunnResult::WriteToTunnelV4(decrypted, source) => {
                if allowed.iter().any(|c| c.contains(IpAddr::V4(source))) {
                    done.to_device.push(decrypted.to_vec());
                } else {
                    done.not_allowed += 1;
                }
                return done;
            }
            TunnResult::WriteToTunnelV6(_, _) => {
                done.not_allowed += 1;
                return done;
            }
            TunnResult::Err(_) => {
                done.failed = true;
                return done;
            }
            TunnResult::Done => return done,
        }
    }
}

/// WireGuard's timers for every peer (handshake retries, keepalives, rekeys); a new tunnel
/// beside an old one asks for its handshake every [`REKEY_NUDGE`]; an old tunnel goes
/// [`PREVIOUS_GRACE`] after the new one has a session.
fn tick(state: &Mutex<State>, out: &mut [u8]) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut state = state.lock().expect("not poisoned");
    let mut sends = Vec::new();
    let now = Instant::now();
    for peer in &mut state.peers {
        let endpoint = peer.config.endpoint;
        if let TunnResult::WriteToNetwork(datagram) = peer.current.tunn.update_timers(out) {
            sends.push((datagram.to_vec(), endpoint));
        }
        let current_established = peer.current.established();
        let Some((previous, since)) = &mut peer.previous else { continue };
        if let TunnResult::WriteToNetwork(datagram) = previous.tunn.update_timers(out) {
            sends.push((datagram.to_vec(), endpoint));
        }
        if current_established {
            let since = *since.get_or_insert(now);
            if now.duration_since(since) >= PREVIOUS_GRACE {
                let (_, tx, rx, _, _) = previous.tunn.stats();
                peer.carried.0 += tx as u64;
                peer.carried.1 += rx as u64;
                peer.previous = None;
            }
        } else if peer.last_nudge.is_none_or(|t| now.duration_since(t) >= REKEY_NUDGE) {
            peer.last_nudge = Some(now);
            if let TunnResult::WriteToNetwork(datagram) = peer.current.tunn.format_handshake_initiation(out, true) {
                sends.push((datagram.to_vec(), endpoint));
            }
        }
    }
    sends
}
