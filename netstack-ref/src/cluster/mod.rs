//! Several nodes: on one machine (namespaces on an underlay bridge) and the kvstore they
//! share (etcd).

pub mod kvstore;
pub mod membership;
pub mod routing;
pub mod topology;
