//! The reference node agent: endpoints, identities, policy, services, flows.
//!
//! The agent grows issue by issue; what is here now is the identity model every other part
//! keys on: reserved identities and the allocation of cluster identities from security labels.
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

pub mod identity;
