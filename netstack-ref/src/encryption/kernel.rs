//! The kernel's WireGuard, where the kernel has it: a link of kind `wireguard` made over route
//! netlink and configured over generic netlink (family `wireguard`, linux/wireguard.h) — its
//! private key and port, and each peer's key, endpoint and allowed IPs — as `wg` would, without
//! it. Peers are changed one by one (a peer whose key stayed keeps its sessions); the device
//! outlives the agent, and a restarted agent adopts it with its sessions.
//!
//! Rotation: the kernel holds one private key per device, and a new one expires the sessions
//! made with the old; each peer handshakes again once it has learned the new public key from
//! the kvstore, so packets between the change and that handshake are lost and TCP retransmits
//! them (the userspace backend keeps the old session meanwhile, and loses none). The peer
//! handshakes as soon as it adds the new key (see [`PERSISTENT_KEEPALIVE_SECONDS`]), so the
//! gap is the kvstore's propagation and a round trip.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use boringtun::x25519::StaticSecret;

use super::genl::{AttributeIter, Attributes, Genl, GenlError, NLM_F_ACK, NLM_F_DUMP};
use super::peer::{PeerConfig, PeerStatus};
use crate::agent::netns::PlumbingError;
use crate::agent::rtnl::Rtnl;
use crate::policy::api::Cidr;

/// linux/wireguard.h: the family, its version and commands.
const WG_GENL_NAME: &str = "wireguard";
const WG_GENL_VERSION: u8 = 1;
const WG_CMD_GET_DEVICE: u8 = 0;
const WG_CMD_SET_DEVICE: u8 = 1;

/// The device's attributes and flags.
const WGDEVICE_A_IFNAME: u16 = 2;
const WGDEVICE_A_PRIVATE_KEY: u16 = 3;
const WGDEVICE_A_FLAGS: u16 = 5;
const WGDEVICE_A_LISTEN_PORT: u16 = 6;
const WGDEVICE_A_PEERS: u16 = 8;
const WGDEVICE_F_REPLACE_PEERS: u32 = 1;

/// A peer's attributes and flags.
const WGPEER_A_PUBLIC_KEY: u16 = 1;
const WGPEER_A_FLAGS: u16 = 3;
const WGPEER_A_ENDPOINT: u16 = 4;
const WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL: u16 = 5;
const WGPEER_A_LAST_HANDSHAKE_TIME: u16 = 6;
const WGPEER_A_RX_BYTES: u16 = 7;
const WGPEER_A_TX_BYTES: u16 = 8;
const WGPEER_A_ALLOWEDIPS: u16 = 9;
const WGPEER_F_REMOVE_ME: u32 = 1;
const WGPEER_F_REPLACE_ALLOWEDIPS: u32 = 2;

/// An allowed IP's attributes.
const WGALLOWEDIP_A_FAMILY: u16 = 1;
const WGALLOWEDIP_A_IPADDR: u16 = 2;
const WGALLOWEDIP_A_CIDR_MASK: u16 = 3;

/// Seconds between keepalives to an idle peer. Beside keeping the session, it makes the
/// kernel send one at once when a peer is added — so a peer whose key changed (a rotation
/// learned from the kvstore) handshakes right away instead of when a packet next waits for
/// it, which for a one-way stream is the other side's retry, 5 s later.
const PERSISTENT_KEEPALIVE_SECONDS: u16 = 25;

/// Why the kernel's device could not be made, configured or read.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Generic netlink: the family, or the kernel's answer to a command.
    #[error("kernel WireGuard {device}: {source}")]
    Genl {
        /// The device.
        device: String,
        /// Why.
        #[source]
        source: GenlError,
    },
    /// Its link.
    #[error("kernel WireGuard {device}: {source}")]
    Link {
        /// The device.
        device: String,
        /// Why.
        #[source]
        source: PlumbingError,
    },
}

/// A peer as the kernel reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelPeer {
    /// Its public key.
    pub public_key: [u8; 32],
    /// Where it was last heard from (or was told to be).
    pub endpoint: Option<SocketAddr>,
    /// Its allowed IPs.
    pub allowed_ips: Vec<Cidr>,
    /// The wall-clock time of its last handshake; `None` before the first.
    pub last_handshake: Option<SystemTime>,
    /// Bytes received from it.
    pub rx_bytes: u64,
    /// Bytes sent to it.
    pub tx_bytes: u64,
}

/// The kernel's WireGuard device, configured by this node.
#[derive(Debug)]
pub struct KernelWireguard {
    device: String,
    /// Opened where the device was made: every request goes to that namespace.
    genl: std::sync::Mutex<Genl>,
    family: u16,
    /// The peers as last set, by public key.
    peers: BTreeMap<[u8; 32], PeerConfig>,
}

impl KernelWireguard {
    /// Makes (or adopts, left by an agent before) the kernel's WireGuard device `device` in
    /// the calling thread's namespace, with `private` as its key and listening on UDP
    /// `port`. The link is left down and unaddressed: the caller brings it up and routes into
    /// it. An adopted device keeps its peers until [`KernelWireguard::set_peers`].
    pub fn start(device: &str, port: u16, private: &StaticSecret) -> Result<KernelWireguard, KernelError> {
        let genl_failed = |source| KernelError::Genl { device: device.to_owned(), source };
        let link_failed = |source| KernelError::Link { device: device.to_owned(), source };
        let mut genl = Genl::open().map_err(genl_failed)?;
        let family = genl.family(WG_GENL_NAME).map_err(genl_failed)?;
        let mut rtnl = Rtnl::open().map_err(link_failed)?;
        let adopted = rtnl.link(device).is_ok();
        if !adopted {
            rtnl.add_wireguard(device).map_err(link_failed)?;
        }
        let mut wireguard = KernelWireguard {
            device: device.to_owned(),
            genl: std::sync::Mutex::new(genl),
            family,
            peers: BTreeMap::new(),
        };
        let mut attributes = Attributes::new();
        attributes.string(WGDEVICE_A_IFNAME, device);
        attributes.bytes(WGDEVICE_A_PRIVATE_KEY, private.as_bytes());
        attributes.u16(WGDEVICE_A_LISTEN_PORT, port);
        if !adopted {
            attributes.u32(WGDEVICE_A_FLAGS, WGDEVICE_F_REPLACE_PEERS);
        }
        wireguard.set_device("set its key and port", &attributes)?;
        if adopted {
            // What it had, so the first set_peers changes only what changed.
            for peer in wireguard.read()? {
                let config = PeerConfig {
                    name: String::new(),
                    public_key: peer.public_key,
                    endpoint: peer.endpoint.unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))),
                    allowed_ips: peer.allowed_ips,
                };
                wireguard.peers.insert(peer.public_key, config);
            }
        }
        Ok(wireguard)
    }

    /// The device's name.
    pub fn device(&self) -> &str {
        &self.device
    }

    fn set_device(&self, what: &str, attributes: &Attributes) -> Result<(), KernelError> {
        self.request(what, 0, WG_CMD_SET_DEVICE, attributes).map(|_| ())
    }

    fn request(
        &self,
        what: &str,
        flags: u16,
        command: u8,
        attributes: &Attributes,
    ) -> Result<Vec<Vec<u8>>, KernelError> {
        let operation = format!("{} {what}", self.device);
        let mut genl = self.genl.lock().expect("not poisoned");
        let flags = if flags & NLM_F_DUMP == 0 { flags | NLM_F_ACK } else { flags };
        genl.request(&operation, self.family, flags, command, WG_GENL_VERSION, attributes)
            .map_err(|source| KernelError::Genl { device: self.device.clone(), source })
    }

    /// Makes `wanted` the peers: those gone are removed, the others set (endpoint and allowed
    /// IPs replaced); a peer whose key stayed keeps its sessions.
    pub fn set_peers(&mut self, wanted: Vec<PeerConfig>) -> Result<(), KernelError> {
        let wanted: BTreeMap<[u8; 32], PeerConfig> = wanted.into_iter().map(|p| (p.public_key, p)).collect();
        let removed: Vec<[u8; 32]> = self.peers.keys().filter(|k| !wanted.contains_key(*k)).copied().collect();
        let changed: Vec<&PeerConfig> = wanted.values().filter(|p| self.peers.get(&p.public_key) != Some(p)).collect();
        if !removed.is_empty() || !changed.is_empty() {
            let attributes = set_peers_request(&self.device, &removed, &changed);
            self.set_device("set its peers", &attributes)?;
        }
        self.peers = wanted;
        Ok(())
    }

    /// Takes `private` as the device's key (sessions made with the old one expire).
    pub fn rotate(&self, private: &StaticSecret) -> Result<(), KernelError> {
        let mut attributes = Attributes::new();
        attributes.string(WGDEVICE_A_IFNAME, &self.device);
        attributes.bytes(WGDEVICE_A_PRIVATE_KEY, private.as_bytes());
        self.set_device("set its key", &attributes)
    }

    /// The peers as the kernel has them.
    pub fn read(&self) -> Result<Vec<KernelPeer>, KernelError> {
        let mut attributes = Attributes::new();
        attributes.string(WGDEVICE_A_IFNAME, &self.device);
        Ok(parse_device(&self.request("read its peers", NLM_F_DUMP, WG_CMD_GET_DEVICE, &attributes)?))
    }

    /// Each peer's handshake and traffic, named as the agent named it.
    pub fn peers(&self) -> Result<Vec<PeerStatus>, KernelError> {
        let now = SystemTime::now();
        let read: BTreeMap<[u8; 32], KernelPeer> = self.read()?.into_iter().map(|p| (p.public_key, p)).collect();
        Ok(self
            .peers
            .values()
            .map(|config| {
                let peer = read.get(&config.public_key).cloned().unwrap_or_default();
                let since = peer.last_handshake.map(|at| now.duration_since(at).unwrap_or(Duration::ZERO));
                PeerStatus::of(config, since, peer.tx_bytes, peer.rx_bytes)
            })
            .collect())
    }

    /// Deletes the device (from the calling thread's namespace: the device's).
    pub fn remove(self) -> Result<(), KernelError> {
        let link_failed = |source| KernelError::Link { device: self.device.clone(), source };
        let mut rtnl = Rtnl::open().map_err(link_failed)?;
        let (index, _) = rtnl.link(&self.device).map_err(link_failed)?;
        rtnl.delete_link(index).map_err(link_failed)
    }
}

/// A WG_CMD_SET_DEVICE request's attributes removing the peers keyed `removed` and setting
/// `changed` (each peer's allowed IPs replaced).
fn set_peers_request(device: &str, removed: &[[u8; 32]], changed: &[&PeerConfig]) -> Attributes {
    let mut peers = Attributes::new();
    for key in removed {
        let mut peer = Attributes::new();
        peer.bytes(WGPEER_A_PUBLIC_KEY, key).u32(WGPEER_A_FLAGS, WGPEER_F_REMOVE_ME);
        peers.nested(0, &peer);
    }
    for config in changed {
        let mut allowed = Attributes::new();
        for cidr in &config.allowed_ips {
            let mut one = Attributes::new();
            match cidr.addr {
                IpAddr::V4(v4) => {
                    one.u16(WGALLOWEDIP_A_FAMILY, libc::AF_INET as u16).bytes(WGALLOWEDIP_A_IPADDR, &v4.octets())
                }
                IpAddr::V6(v6) => {
                    one.u16(WGALLOWEDIP_A_FAMILY, libc::AF_INET6 as u16).bytes(WGALLOWEDIP_A_IPADDR, &v6.octets())
                }
            };
            one.u8(WGALLOWEDIP_A_CIDR_MASK, cidr.len);
            allowed.nested(0, &one);
        }
        let mut peer = Attributes::new();
        peer.bytes(WGPEER_A_PUBLIC_KEY, &config.public_key)
            .u32(WGPEER_A_FLAGS, WGPEER_F_REPLACE_ALLOWEDIPS)
            .bytes(WGPEER_A_ENDPOINT, &sockaddr(config.endpoint))
            .u16(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, PERSISTENT_KEEPALIVE_SECONDS)
            .nested(WGPEER_A_ALLOWEDIPS, &allowed);
        peers.nested(0, &peer);
    }
    let mut attributes = Attributes::new();
    attributes.string(WGDEVICE_A_IFNAME, device).nested(WGDEVICE_A_PEERS, &peers);
    attributes
}

/// `struct sockaddr_in` / `sockaddr_in6` as the kernel takes an endpoint: family in host
/// order, port and address in network order.
fn sockaddr(endpoint: SocketAddr) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(28);
    match endpoint {
        SocketAddr::V4(v4) => {
            bytes.extend((libc::AF_INET as u16).to_ne_bytes());
            bytes.extend(v4.port().to_be_bytes());
            bytes.extend(v4.ip().octets());
            bytes.resize(16, 0);
        }
        SocketAddr::V6(v6) => {
            bytes.extend((libc::AF_INET6 as u16).to_ne_bytes());
            bytes.extend(v6.port().to_be_bytes());
            bytes.extend(v6.flowinfo().to_be_bytes());
            bytes.extend(v6.ip().octets());
            bytes.extend(v6.scope_id().to_ne_bytes());
        }
    }
    bytes
}

/// An endpoint from its `sockaddr` bytes.
fn parse_sockaddr(bytes: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes(bytes.get(..2)?.try_into().ok()?));
    let port = u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?);
    match family {
        libc::AF_INET => {
            let octets: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::from((Ipv4Addr::from(octets), port)))
        }
        libc::AF_INET6 => {
            let octets: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
            Some(SocketAddr::from((Ipv6Addr::from(octets), port)))
        }
        _ => None,
    }
}

/// An allowed IP from its nested attributes.
fn parse_allowed_ip(attributes: AttributeIter<'_>) -> Option<Cidr> {
    let (mut address, mut prefix) = (None, None);
    for attribute in attributes {
        match attribute.kind {
            WGALLOWEDIP_A_IPADDR => {
                address = match attribute.value.len() {
                    4 => Some(IpAddr::from(<[u8; 4]>::try_from(attribute.value).ok()?)),
                    16 => Some(IpAddr::from(<[u8; 16]>::try_from(attribute.value).ok()?)),
                    _ => None,
                }
            }
            WGALLOWEDIP_A_CIDR_MASK => prefix = attribute.value.first().copied(),
            _ => {}
        }
    }
    Cidr::new(address?, prefix?)
}

/// The peers of a WG_CMD_GET_DEVICE dump: one peer's attributes may run over several
/// messages (the later ones carry its key and more allowed IPs), so they are merged by key.
/// Whatever does not parse is left out.
pub fn parse_device(replies: &[Vec<u8>]) -> Vec<KernelPeer> {
    let mut peers: Vec<KernelPeer> = Vec::new();
    for reply in replies {
        for device_attribute in AttributeIter::new(reply) {
            if device_attribute.kind != WGDEVICE_A_PEERS {
                continue;
            }
            for entry in device_attribute.nested() {
                let mut peer = KernelPeer::default();
                let mut keyed = false;
                for attribute in entry.nested() {
                    match attribute.kind {
                        WGPEER_A_PUBLIC_KEY => {
                            if let Ok(key) = <[u8; 32]>::try_from(attribute.value) {
                                peer.public_key = key;
                                keyed = true;
                            }
                        }
                        WGPEER_A_ENDPOINT => peer.endpoint = parse_sockaddr(attribute.value),
                        WGPEER_A_LAST_HANDSHAKE_TIME => peer.last_handshake = parse_timespec(attribute.value),
                        WGPEER_A_RX_BYTES => peer.rx_bytes = attribute.as_u64().unwrap_or(0),
                        WGPEER_A_TX_BYTES => peer.tx_bytes = attribute.as_u64().unwrap_or(0),
                        WGPEER_A_ALLOWEDIPS => {
                            peer.allowed_ips.extend(attribute.nested().filter_map(|ip| parse_allowed_ip(ip.nested())))
                        }
                        _ => {}
                    }
                }
                if !keyed {
                    continue;
                }
                match peers.iter_mut().find(|p| p.public_key == peer.public_key) {
                    Some(earlier) => earlier.allowed_ips.extend(peer.allowed_ips),
                    None => peers.push(peer),
                }
            }
        }
    }
    peers
}

/// `struct __kernel_timespec` (two 64-bit fields) as a wall-clock time; zero is "never".
fn parse_timespec(bytes: &[u8]) -> Option<SystemTime> {
    let seconds = i64::from_ne_bytes(bytes.get(..8)?.try_into().ok()?);
    let nanos = i64::from_ne_bytes(bytes.get(8..16)?.try_into().ok()?);
    if seconds <= 0 && nanos <= 0 {
        return None;
    }
    let nanos = u32::try_from(nanos).ok().filter(|n| *n < 1_000_000_000)?;
    UNIX_EPOCH.checked_add(Duration::new(u64::try_from(seconds).ok()?, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(key: u8, endpoint: &str, allowed: &[&str]) -> PeerConfig {
        PeerConfig {
            name: format!("node{key}"),
            public_key: [key; 32],
            endpoint: endpoint.parse().unwrap(),
            allowed_ips: allowed.iter().map(|c| Cidr::parse(c).unwrap()).collect(),
        }
    }

    /// A peer as a dump shows it: configuration, handshake (seconds, nanoseconds), rx, tx.
    type Dumped<'a> = (&'a PeerConfig, Option<(i64, i64)>, u64, u64);

    /// A dump reply as the kernel writes one: the device's name, then its peers.
    fn reply(peers: &[Dumped<'_>]) -> Vec<u8> {
        let mut list = Attributes::new();
        for (config, handshake, rx, tx) in peers {
            let mut peer = Attributes::new();
            peer.bytes(WGPEER_A_PUBLIC_KEY, &config.public_key).bytes(WGPEER_A_ENDPOINT, &sockaddr(config.endpoint));
            let (seconds, nanos) = handshake.unwrap_or((0, 0));
            let mut timespec = seconds.to_ne_bytes().to_vec();
            timespec.extend(nanos.to_ne_bytes());
            peer.bytes(WGPEER_A_LAST_HANDSHAKE_TIME, &timespec);
            peer.bytes(WGPEER_A_RX_BYTES, &rx.to_ne_bytes()).bytes(WGPEER_A_TX_BYTES, &tx.to_ne_bytes());
            // What a set request carries is what a dump carries.
            let request = set_peers_request("wg", &[], &[config]);
            let allowed = AttributeIter::new(request.as_bytes())
                .find(|a| a.kind == WGDEVICE_A_PEERS)
                .and_then(|a| a.nested().next())
                .and_then(|p| p.nested().find(|a| a.kind == WGPEER_A_ALLOWEDIPS))
                .unwrap();
            peer.bytes(WGPEER_A_ALLOWEDIPS | super::super::genl::NLA_F_NESTED, allowed.value);
            list.nested(0, &peer);
        }
        let mut device = Attributes::new();
        device.string(WGDEVICE_A_IFNAME, "wg").u16(WGDEVICE_A_LISTEN_PORT, 51871).nested(WGDEVICE_A_PEERS, &list);
        device.as_bytes().to_vec()
    }

    #[test]
    fn a_set_request_is_laid_out_as_linux_wireguard_h_says() {
        let changed = config(7, "192.0.2.7:51871", &["10.0.7.0/24"]);
        let request = set_peers_request("netstack_wg0", &[[9; 32]], &[&changed]);
        let bytes = request.as_bytes();
        // IFNAME: 4 + 13 bytes, padded to 20.
        assert_eq!(&bytes[0..4], &[17, 0, WGDEVICE_A_IFNAME as u8, 0]);
        assert_eq!(&bytes[4..17], b"netstack_wg0\0");
        // PEERS, nested.
        assert_eq!(u16::from_ne_bytes([bytes[22], bytes[23]]), WGDEVICE_A_PEERS | 0x8000);
        let peers: Vec<_> = AttributeIter::new(bytes).find(|a| a.kind == WGDEVICE_A_PEERS).unwrap().nested().collect();
        assert_eq!(peers.len(), 2);
        let removed: Vec<_> = peers[0].nested().collect();
        assert_eq!((removed[0].kind, removed[0].value), (WGPEER_A_PUBLIC_KEY, &[9u8; 32][..]));
        assert_eq!((removed[1].kind, removed[1].as_u32()), (WGPEER_A_FLAGS, Some(WGPEER_F_REMOVE_ME)));
        let set: Vec<_> = peers[1].nested().collect();
        assert_eq!(set[1].as_u32(), Some(WGPEER_F_REPLACE_ALLOWEDIPS));
        // sockaddr_in: AF_INET, port 51871 big-endian, the address, eight zeros.
        let mut endpoint = (libc::AF_INET as u16).to_ne_bytes().to_vec();
        endpoint.extend([0xca, 0x9f, 192, 0, 2, 7, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!((set[2].kind, set[2].value), (WGPEER_A_ENDPOINT, &endpoint[..]));
        assert_eq!((set[3].kind, set[3].as_u16()), (WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, Some(25)));
        let allowed: Vec<_> = set[4].nested().next().unwrap().nested().collect();
        assert_eq!(allowed[0].as_u16(), Some(libc::AF_INET as u16));
        assert_eq!(allowed[1].value, &[10, 0, 7, 0]);
        assert_eq!((allowed[2].kind, allowed[2].value), (WGALLOWEDIP_A_CIDR_MASK, &[24u8][..]));
    }

    #[test]
    fn a_dump_reads_back_each_peer_merged_across_messages() {
        let a = config(1, "192.0.2.1:51871", &["10.0.1.0/24"]);
        let b = config(2, "[2001:db8::2]:51871", &["10.0.2.0/24", "fd00::/64"]);
        let b_more = config(2, "[2001:db8::2]:51871", &["10.9.0.0/16"]);
        let replies =
            vec![reply(&[(&a, Some((1_700_000_000, 5)), 10, 20), (&b, None, 0, 0)]), reply(&[(&b_more, None, 0, 0)])];
        let peers = parse_device(&replies);
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0].public_key, [1; 32]);
        assert_eq!(peers[0].endpoint, Some("192.0.2.1:51871".parse().unwrap()));
        assert_eq!(peers[0].last_handshake, Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5)));
        assert_eq!((peers[0].rx_bytes, peers[0].tx_bytes), (10, 20));
        assert_eq!(peers[1].endpoint, Some("[2001:db8::2]:51871".parse().unwrap()));
        assert_eq!(peers[1].last_handshake, None, "zero is never");
        let allowed: Vec<String> = peers[1].allowed_ips.iter().map(ToString::to_string).collect();
        assert_eq!(allowed, ["10.0.2.0/24", "fd00::/64", "10.9.0.0/16"]);
    }

    proptest::proptest! {
        #[test]
        fn a_dump_of_any_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_device(&[bytes]);
        }
    }

    #[test]
    fn starting_where_the_kernel_has_no_wireguard_says_so() {
        if super::super::probe::kernel_has_wireguard().unwrap() {
            eprintln!("this kernel has WireGuard: the refusal cannot be seen here");
            return;
        }
        let key = StaticSecret::from([3; 32]);
        let error = KernelWireguard::start("nsnowg0", 51999, &key).unwrap_err();
        assert!(
            matches!(&error, KernelError::Genl { source: GenlError::NoFamily(f), .. } if f == "wireguard"),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "kernel WireGuard nsnowg0: generic netlink: the kernel has no family `wireguard`"
        );
    }
}
