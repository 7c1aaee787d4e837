//! Kubernetes services handled in eBPF (the kube-proxy replacement): backend selection.

pub mod maglev;
