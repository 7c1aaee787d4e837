//! Several nodes: on one machine (namespaces on an underlay bridge) and the kvstore they
//! share (etcd).

pub mod kvstore;
pub mod lingering;
pub mod membership;
pub mod policy_status;
pub mod routing;
pub mod topology;
