//! A node's encryption as the agent runs it: its key, its WireGuard device (userspace on this
//! kernel), the other nodes as peers (those that published a key), and where pods' packets to
//! them go — the ipcache says, per remote pod, whether to the device, in clear, or (strict
//! mode, the pod's node without a key) nowhere. Natively routed, the endpoint redirects such
//! packets into the device; in tunnel mode the VXLAN packets themselves are routed into it
//! (a rule sends UDP to the VXLAN port to a table of its own, which routes each keyed peer's
//! underlay address into the device), as Cilium encrypts the tunnel; other traffic to a node's
//! address (SNAT replies, the node's own) keeps its way.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use super::detached::{DetachedDevice, DetachedError, DeviceOptions};
use super::kernel::{KernelError, KernelWireguard};
use super::keys::{parse_public, KeyError, NodeKey};
use super::peer::{PeerConfig, PeerStatus};
use super::userspace::{Counters, UserspaceError};
use super::WIREGUARD_PORT;
use crate::agent::netns::PlumbingError;
use crate::agent::rtnl::Rtnl;
use crate::cluster::kvstore::NodeEntry;
use crate::cluster::routing::underlay_ipv4;
use crate::datapath::{DatapathError, Encrypt};
use crate::policy::api::Cidr;

/// The WireGuard device's name (Cilium's is `cilium_wg0`).
pub const DEVICE: &str = "netstack_wg0";

/// The routing table tunnel packets to keyed peers take, and the rule's priority (before the
/// main table's 32766).
const TUNNEL_TABLE: u8 = 200;
const TUNNEL_RULE_PRIORITY: u32 = 100;

/// WireGuard's overhead on an IPv4 underlay: outer IPv4 20, UDP 8, WireGuard header 16 and tag
/// 16, rounded as `wg-quick` does (80, for IPv6 underlays too).
const OVERHEAD: u32 = 80;

/// Why encryption could not be set up or kept.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    /// The key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The userspace device.
    #[error(transparent)]
    Device(#[from] UserspaceError),
    /// The kernel's device.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The userspace device's process.
    #[error(transparent)]
    Detached(#[from] DetachedError),
    /// Its link or routes.
    #[error("WireGuard device {DEVICE}: {0}")]
    Plumbing(#[from] PlumbingError),
    /// The endpoints' setting.
    #[error("WireGuard device {DEVICE}: tell the endpoints: {0}")]
    Datapath(#[from] DatapathError),
    /// Asked of a node that does not encrypt.
    #[error("this node does not encrypt (netstack agent --enable-wireguard)")]
    Off,
    /// It needs the node's address.
    #[error("encryption needs the node's IPv4 address (--node-address): WireGuard listens there")]
    NoNodeAddress,
}

/// How the node encrypts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncryptionSettings {
    /// Drop pods' packets to a node of the cluster whose key is not known instead of sending
    /// them in clear.
    pub strict: bool,
    /// Which WireGuard.
    pub backend: BackendChoice,
}

/// Which WireGuard a node runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// The kernel's where the kernel has it, else userspace.
    #[default]
    Auto,
    /// The kernel's, or none (an error where the kernel has no WireGuard).
    Kernel,
    /// Userspace (boringtun on a TUN device), even where the kernel has WireGuard.
    Userspace,
}

impl BackendChoice {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Kernel => "kernel",
            BackendChoice::Userspace => "userspace",
        }
    }
}

/// The WireGuard a node runs.
#[derive(Debug)]
enum Backend {
    /// In a process of its own, so it outlives the agent as the kernel's does.
    Userspace(DetachedDevice),
    Kernel(KernelWireguard),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Userspace(_) => "userspace",
            Backend::Kernel(_) => "kernel",
        }
    }

    fn set_peers(&mut self, peers: Vec<PeerConfig>) -> Result<(), EncryptionError> {
        match self {
            Backend::Userspace(device) => device.set_peers(&peers)?,
            Backend::Kernel(device) => device.set_peers(peers)?,
        }
        Ok(())
    }

    fn rotate(&mut self, key: &NodeKey) -> Result<(), EncryptionError> {
        match self {
            // It reads the key the caller stored.
            Backend::Userspace(device) => device.reload_key()?,
            Backend::Kernel(device) => device.rotate(key.private())?,
        }
        Ok(())
    }

    /// Each peer's handshake and traffic, and what the device dropped by why (the userspace
    /// device counts; the kernel's counts its drops in the link's statistics only).
    fn observe(&self) -> Result<(Vec<PeerStatus>, Option<Counters>), EncryptionError> {
        match self {
            Backend::Userspace(device) => {
                let report = device.status()?;
                Ok((report.peers, Some(report.counters)))
            }
            Backend::Kernel(device) => Ok((device.peers()?, None)),
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Backend::Userspace(device) => Some(device.pid()),
            Backend::Kernel(_) => None,
        }
    }
}

/// Picks the backend `choice` asks for given what the kernel has (`probe`), and says why.
fn choose(choice: BackendChoice, probe: Result<bool, super::genl::GenlError>) -> (BackendChoice, String) {
    match (choice, probe) {
        (BackendChoice::Userspace, _) => (BackendChoice::Userspace, "asked for (--wireguard-backend userspace)".into()),
        (BackendChoice::Kernel, _) => (BackendChoice::Kernel, "asked for (--wireguard-backend kernel)".into()),
        (BackendChoice::Auto, Ok(true)) => (BackendChoice::Kernel, "the kernel has WireGuard".into()),
        (BackendChoice::Auto, Ok(false)) => {
            (BackendChoice::Userspace, "the kernel has no WireGuard (no generic netlink family `wireguard`)".into())
        }
        (BackendChoice::Auto, Err(e)) => {
            (BackendChoice::Userspace, format!("the kernel could not be asked about WireGuard: {e}"))
        }
    }
}

/// The status `netstack status` and `netstack encryption status` show.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EncryptionStatus {
    /// `wireguard`.
    pub mode: String,
    /// `userspace` (boringtun on a TUN device) or `kernel`.
    pub backend: String,
    /// Why that backend: what the probe found.
    #[serde(default)]
    pub backend_reason: String,
    /// The device.
    pub device: String,
    /// The userspace device's process (it outlives the agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_pid: Option<u32>,
    /// Strict mode.
    pub strict: bool,
    /// This node's public key.
    pub public_key: String,
    /// The peers.
    pub peers: Vec<PeerStatus>,
    /// Why the device could not say what its peers are, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers_unreadable: Option<String>,
    /// Nodes of the cluster without a (valid) key: not peers.
    pub nodes_without_key: Vec<String>,
    /// What the device dropped, by why (the userspace device; the kernel's counts its drops
    /// in the link's statistics only).
    pub dropped: Option<Counters>,
}

/// The running encryption of a node.
#[derive(Debug)]
pub struct NodeEncryption {
    key: NodeKey,
    device: Backend,
    settings: EncryptionSettings,
    tunnel: bool,
    /// Why that backend.
    backend_reason: String,
    /// Underlay addresses of the nodes that are peers.
    keyed: BTreeSet<Ipv4Addr>,
    /// Nodes without a usable key, by name.
    without_key: Vec<String>,
    /// Tunnel mode: peers' underlay addresses routed into the device.
    routed: BTreeSet<Ipv4Addr>,
}

/// The name of the link that holds `address`.
fn link_with(address: Ipv4Addr) -> Option<String> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|i| {
        let held = i.address?.as_sockaddr_in()?.ip();
        (held == address).then_some(i.interface_name)
    })
}

impl NodeEncryption {
    /// Loads (or makes) the node's key from `state_dir`, starts the device in this namespace
    /// (or adopts the one a previous agent left: the kernel's, or the userspace one, which
    /// runs as `netstack_binary wireguard-device`), listening on `node_address`, and tells the
    /// endpoints pinned under `bpffs` about it.
    pub fn start(
        netstack_binary: &Path,
        state_dir: &Path,
        bpffs: &Path,
        node_address: Option<IpAddr>,
        tunnel: bool,
        settings: EncryptionSettings,
    ) -> Result<NodeEncryption, EncryptionError> {
        let Some(IpAddr::V4(address)) = node_address else { return Err(EncryptionError::NoNodeAddress) };
        let (backend, backend_reason) = choose(settings.backend, super::probe::kernel_has_wireguard());
        let key = NodeKey::load_or_create(state_dir)?;
        let underlay = link_with(address);
        let device = match backend {
            BackendChoice::Kernel => Backend::Kernel(KernelWireguard::start(DEVICE, WIREGUARD_PORT, key.private())?),
            _ => {
                let options = DeviceOptions {
                    state_dir: state_dir.to_owned(),
                    device: DEVICE.to_owned(),
                    listen: SocketAddr::from((address, WIREGUARD_PORT)),
                    send_through: underlay.clone(),
                };
                Backend::Userspace(DetachedDevice::adopt_or_start(netstack_binary, &options)?)
            }
        };
        let mut rtnl = Rtnl::open()?;
        let (index, _) = rtnl.link(DEVICE)?;
        let underlay_mtu = underlay
            .as_deref()
            .and_then(|name| std::fs::read_to_string(format!("/sys/class/net/{name}/mtu")).ok())
            .and_then(|m| m.trim().parse::<u32>().ok())
            .unwrap_or(1500);
        rtnl.set_mtu(index, underlay_mtu - OVERHEAD)?;
        rtnl.set_up(index)?;
        if tunnel {
            rtnl.add_udp_port_rule(TUNNEL_RULE_PRIORITY, crate::cluster::routing::VXLAN_PORT, TUNNEL_TABLE)?;
        }
        crate::datapath::node_config::set_wireguard_ifindex(bpffs, index)?;
        Ok(NodeEncryption {
            key,
            device,
            settings,
            tunnel,
            backend_reason,
            keyed: BTreeSet::new(),
            without_key: Vec::new(),
            routed: BTreeSet::new(),
        })
    }

    /// Makes a new key pair, keeps it in `state_dir` and gives it to the device; the old key
    /// carries each peer's traffic until that peer, told the new public key (returned, for the
    /// node entry), completes a handshake with the new one.
    pub fn rotate(&mut self, state_dir: &Path) -> Result<String, EncryptionError> {
        let key = NodeKey::generate()?;
        key.store(state_dir)?;
        self.device.rotate(&key)?;
        self.key = key;
        Ok(self.public_key())
    }

    /// This node's public key (base64), for its node entry.
    pub fn public_key(&self) -> String {
        self.key.public_base64()
    }

    /// Makes the other nodes (`nodes`, this one left out by the caller) the device's peers:
    /// each with a valid key and an IPv4 address, allowed its pod CIDR (native) or its
    /// underlay address (tunnel). In tunnel mode, routes peers' underlay addresses into the
    /// device.
    pub fn sync_peers<'a>(&mut self, nodes: impl IntoIterator<Item = &'a NodeEntry>) -> Result<(), EncryptionError> {
        let mut peers = Vec::new();
        let mut keyed = BTreeSet::new();
        let mut without_key = Vec::new();
        for node in nodes {
            let key = node.encryption_key.as_deref().and_then(parse_public);
            let (Some(key), Some(address)) = (key, underlay_ipv4(&node.addresses)) else {
                without_key.push(node.name.clone());
                continue;
            };
            let allowed = if self.tunnel { Cidr::new(IpAddr::V4(address), 32) } else { Cidr::parse(&node.pod_cidr) };
            let Some(allowed) = allowed else {
                without_key.push(node.name.clone());
                continue;
            };
            keyed.insert(address);
            peers.push(PeerConfig {
                name: node.name.clone(),
                public_key: key.to_bytes(),
                endpoint: SocketAddr::from((address, WIREGUARD_PORT)),
                allowed_ips: vec![allowed],
            });
        }
        self.device.set_peers(peers)?;
        self.keyed = keyed;
        self.without_key = without_key;
        if self.tunnel {
            self.route_peers()?;
        }
        Ok(())
    }

    /// Tunnel mode: the tunnel's packets to each keyed peer's underlay address into the
    /// device, to no other.
    fn route_peers(&mut self) -> Result<(), EncryptionError> {
        let mut rtnl = Rtnl::open()?;
        let (index, _) = rtnl.link(DEVICE)?;
        for gone in self.routed.difference(&self.keyed).copied().collect::<Vec<_>>() {
            // Gone already is what was wanted.
            let _ = rtnl.remove_table_route(TUNNEL_TABLE, gone, 32);
            self.routed.remove(&gone);
        }
        for new in self.keyed.difference(&self.routed).copied().collect::<Vec<_>>() {
            rtnl.add_table_route(TUNNEL_TABLE, new, 32, index)?;
            self.routed.insert(new);
        }
        Ok(())
    }

    /// How a pod's packet to a pod of the node at `node` must leave.
    pub fn encrypt_to(&self, node: Ipv4Addr) -> Encrypt {
        match (self.keyed.contains(&node), self.settings.strict) {
            (true, _) => Encrypt::WireGuard,
            (false, true) => Encrypt::Required,
            (false, false) => Encrypt::None,
        }
    }

    /// Its status.
    pub fn status(&self) -> EncryptionStatus {
        let ((peers, dropped), peers_unreadable) = match self.device.observe() {
            Ok(observed) => (observed, None),
            Err(e) => ((Vec::new(), None), Some(e.to_string())),
        };
        EncryptionStatus {
            mode: "wireguard".into(),
            backend: self.device.name().into(),
            backend_reason: self.backend_reason.clone(),
            device: DEVICE.into(),
            device_pid: self.device.pid(),
            strict: self.settings.strict,
            public_key: self.public_key(),
            peers,
            peers_unreadable,
            nodes_without_key: self.without_key.clone(),
            dropped,
        }
    }
}

/// Undoes what a node's encryption made, the agent gone (`agent reset`): the userspace
/// device's process stopped, the kernel's device deleted, the tunnel's rule removed (its
/// routes went with the device).
pub fn reset(state_dir: &Path) -> Result<(), PlumbingError> {
    super::detached::stop(state_dir);
    let mut rtnl = Rtnl::open()?;
    if let Ok((index, _)) = rtnl.link(DEVICE) {
        rtnl.delete_link(index)?;
    }
    rtnl.remove_udp_port_rule(TUNNEL_RULE_PRIORITY, crate::cluster::routing::VXLAN_PORT, TUNNEL_TABLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_backend_where_the_kernel_has_one_unless_told_otherwise() {
        let no = || Err(super::super::genl::GenlError::NoFamily("wireguard".into()));
        assert_eq!(choose(BackendChoice::Auto, Ok(true)).0, BackendChoice::Kernel);
        assert_eq!(choose(BackendChoice::Auto, Ok(false)).0, BackendChoice::Userspace);
        let (backend, reason) = choose(BackendChoice::Auto, no());
        assert_eq!(backend, BackendChoice::Userspace);
        assert!(reason.contains("could not be asked"), "{reason}");
        assert_eq!(choose(BackendChoice::Userspace, Ok(true)).0, BackendChoice::Userspace);
        assert_eq!(choose(BackendChoice::Kernel, Ok(false)).0, BackendChoice::Kernel, "and fails to start");
    }
}
