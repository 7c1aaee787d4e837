//! A peer as both backends take it and report it: another node of the cluster.

use std::net::SocketAddr;
use std::time::Duration;

use boringtun::x25519::PublicKey;

use crate::policy::api::Cidr;

/// A peer: another node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// The node's name.
    pub name: String,
    /// Its public key.
    pub public_key: [u8; 32],
    /// Where its WireGuard listens (its underlay address, the WireGuard port).
    pub endpoint: SocketAddr,
    /// What may come from it and goes to it: its pod CIDR (native routing) or its underlay
    /// address (the tunnel's packets, in tunnel mode).
    pub allowed_ips: Vec<Cidr>,
}

/// A peer as it stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerStatus {
    /// The node's name.
    pub name: String,
    /// Its public key, base64.
    pub public_key: String,
    /// Where it is reached.
    pub endpoint: String,
    /// Its allowed IPs.
    pub allowed_ips: Vec<String>,
    /// Milliseconds since the last completed handshake (none yet: `None`).
    pub last_handshake_millis: Option<u64>,
    /// Bytes sent to it (encrypted payload).
    pub tx_bytes: u64,
    /// Bytes received from it.
    pub rx_bytes: u64,
}

impl PeerStatus {
    /// The status of the peer configured as `config`: its last handshake `since` ago (none
    /// yet: `None`), `tx` bytes sent and `rx` received.
    pub fn of(config: &PeerConfig, since: Option<Duration>, tx: u64, rx: u64) -> PeerStatus {
        PeerStatus {
            name: config.name.clone(),
            public_key: super::keys::public_base64(&PublicKey::from(config.public_key)),
            endpoint: config.endpoint.to_string(),
            allowed_ips: config.allowed_ips.iter().map(ToString::to_string).collect(),
            last_handshake_millis: since.map(|d| d.as_millis() as u64),
            tx_bytes: tx,
            rx_bytes: rx,
        }
    }
}
