//! Kubernetes services handled in eBPF (the kube-proxy replacement).
//!
//! - [`catalog`]: Services, slices and pods → frontends with their backends (allocation,
//!   selector-made slices, named target ports, kube-proxy's choice of backends).
//! - [`lbmap`]: frontends → the load balancer's maps, atomically per frontend.
//! - [`node`]: a node's services: the socket LB attached, synced on every agent sync.
//! - [`health`]: `healthCheckNodePort` servers (HTTP 200/503 by local endpoints).
//! - [`view`]: what the CLI shows.
//! - [`maglev`]: Maglev tables for north-south backend choice.

pub mod catalog;
pub mod health;
pub mod lbmap;
pub mod maglev;
pub mod node;
pub mod view;
