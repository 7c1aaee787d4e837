//! The reference node agent: endpoints, identities, policy, and the eBPF datapath that enforces
//! it, built on the `ebpf-*` crates.
//!
//! - [`manifest`]: Kubernetes-shaped YAML (`Namespace`, `Pod`, `Service`, `EndpointSlice`,
//!   `Endpoints`, `CiliumNetworkPolicy`, `CiliumClusterwideNetworkPolicy`), decoded strictly
//!   with file, line and field in errors.
//! - [`identity`]: reserved identities and the allocation of identities from security labels.
//! - [`policy`]: the policy language, its resolution into per-endpoint policy map entries, and
//!   a reference model of its semantics.
//! - [`datapath`]: the eBPF objects (endpoint, overlay, socket LB, north-south LB), templated
//!   and loaded, and their maps.
//! - [`agent`]: the node agent (endpoints in network namespaces, its resource sources — files,
//!   the kvstore, a Kubernetes API server —, the local API) and its CLI.
//! - [`cluster`]: several nodes: etcd as the kvstore (nodes, identities, ipcache, policy status),
//!   routing between nodes (native, VXLAN), nodes on one machine (`netstack cluster`).
//! - [`services`]: the kube-proxy replacement: the service catalog, the load balancer's maps,
//!   Maglev, health check node ports.
//! - [`observe`]: Hubble-style flows.
//! - [`demo`]: the README's main job.
//! - [`process`]: processes started and stopped by pid.
//! - [`traffic`]: probes and test frames for the demo, tests and benchmarks.
//!
//! ```
//! use netstack_ref::identity::{IdentityAllocator, Labels, ReservedIdentity};
//!
//! let mut ids = IdentityAllocator::new();
//! let web = Labels::from_pairs([("app", "web"), ("io.kubernetes.pod.namespace", "shop")]);
//! let a = ids.allocate(&web);
//! assert_eq!(a, ids.allocate(&web), "identical labels share an identity");
//! assert!(a.get() >= 256);
//! assert_eq!(ReservedIdentity::World.id(), 2);
//! ```

pub mod agent;
pub mod cluster;
pub mod datapath;
pub mod demo;
pub mod encryption;
pub mod file_error;
pub mod identity;
pub mod manifest;
pub mod observe;
pub mod policy;
pub mod process;
pub mod services;
pub mod traffic;
