//! Network policy: the CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy language
//! ([`api`]; decoded from YAML by [`crate::manifest::policy`] — this module knows no YAML),
//! label selectors, the identities policy is resolved against ([`universe`]), resolution into
//! per-endpoint policy map entries ([`mod@resolve`]) and the reference semantics the datapath
//! is tested against ([`model`]).

pub mod api;
pub mod model;
pub mod resolve;
pub mod scope;
pub mod selector;
pub mod universe;

pub use api::{Direction, Policy};
pub use resolve::{resolve, resolve_with, AllowLocalhost, PolicyKey, PolicyMapState, PolicyValue};
pub use universe::Universe;
