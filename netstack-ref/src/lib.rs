//! The reference node agent: endpoints, identities, policy, and the eBPF datapath that enforces
//! it, built on the `ebpf-*` crates.
//!
//! - [`manifest`]: Kubernetes-shaped YAML (`Namespace`, `Pod`, `CiliumNetworkPolicy`,
//!   `CiliumClusterwideNetworkPolicy`), decoded strictly with file, line and field in errors.
//! - [`identity`]: reserved identities and the allocation of identities from security labels.
//! - [`policy`]: the policy language, its resolution into per-endpoint policy map entries, and
//!   a reference model of its semantics.
//! - [`datapath`]: the endpoint eBPF object, templated per pod, and its maps.
//! - [`agent`]: the node agent (endpoints in network namespaces, the local API) and its CLI.
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
pub mod file_error;
pub mod identity;
pub mod manifest;
pub mod policy;
pub mod services;
pub mod traffic;
