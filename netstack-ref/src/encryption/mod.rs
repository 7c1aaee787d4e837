//! Transparent encryption between nodes, as Cilium's WireGuard mode does it (issue 20, in
//! progress):
//!
//! - [`detached`]: the userspace device in a process of its own, driven over a socket.
//! - [`genl`]: generic netlink, as WireGuard's configuration needs it.
//! - [`kernel`]: the kernel's WireGuard device, configured over generic netlink.
//! - [`keys`]: each node's X25519 key pair, kept in its state directory.
//! - [`node`]: a node's encryption as the agent runs it: device, peers, routes, ipcache kinds.
//! - [`peer`]: a peer (another node) as both backends take and report it.
//! - [`probe`]: whether the kernel has WireGuard (its generic netlink family).
//! - [`userspace`]: WireGuard in the agent (boringtun's protocol state machine) on a TUN
//!   device, for kernels without WireGuard.

pub mod detached;
pub mod genl;
pub mod kernel;
pub mod keys;
pub mod node;
pub mod peer;
pub mod probe;
pub mod userspace;

/// WireGuard's port for node-to-node traffic, as Cilium uses it.
pub const WIREGUARD_PORT: u16 = 51871;
