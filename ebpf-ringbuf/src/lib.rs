//! Consumers for `BPF_MAP_TYPE_RINGBUF` and the per-CPU perf event buffer.
//!
//! This crate is filled by the maps/ring-buffer issue: the zero-copy ring consumer (mmap of
//! the consumer page and the double-mapped data area, epoll wake-ups, many rings in one
//! poller, an async API behind a `tokio` feature), the user-space producer for
//! `BPF_MAP_TYPE_USER_RINGBUF`, and the perf event array reader. It has no public items yet,
//! so nothing here can be mistaken for a working consumer.
