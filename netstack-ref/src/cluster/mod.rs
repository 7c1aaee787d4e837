//! Several nodes: the kvstore they share (etcd).

pub mod kvstore;
