//! Consumers for BPF ring buffers (`BPF_MAP_TYPE_RINGBUF`) and perf event arrays.
//!
//! [`RingBuf`] maps the ring's consumer and producer pages and reads records in place,
//! zero-copy: the callback gets a slice of the shared pages, valid until it returns, after
//! which the space is released to the kernel. Busy (still being written) records stop a pass;
//! discarded records are skipped. Waiting uses epoll on the map fd; while the producer
//! streams, [`RingBuf::poll`] coalesces wake-ups (naps of up to
//! [`DEFAULT_WAKEUP_COALESCING`], bounded so the ring cannot fill at the measured rate), which
//! cuts the consumer's CPU per event by an order of magnitude at the cost of that much latency;
//! [`RingBuf::set_wakeup_coalescing`] tunes or turns it off.
//!
//! [`UserRingBuf`] is the producer side of `BPF_MAP_TYPE_USER_RINGBUF`.
//! [`RingBufPoller`] waits on many rings with one epoll; with the `tokio` feature,
//! `AsyncRingBuf` waits on tokio's reactor instead. [`PerfBuffer`] reads
//! `BPF_MAP_TYPE_PERF_EVENT_ARRAY` per-CPU rings (`perf_event_open` + mmap), copying records
//! that wrap around a ring's end and reporting the kernel's loss counts.
//!
//! ```no_run
//! use std::time::Duration;
//! use ebpf_core::{Map, MapSpec, MapType};
//! use ebpf_ringbuf::RingBuf;
//!
//! let map = Map::create(&MapSpec::new("events", MapType::Ringbuf, 0, 0, 64 * 1024))?;
//! let mut events = RingBuf::new(&map)?;
//! events.poll(Duration::from_millis(100), |record: &[u8]| println!("{} bytes", record.len()))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(feature = "tokio")]
mod async_ring;
mod perf;
mod poller;
mod ring;
mod user_ring;

#[cfg(feature = "tokio")]
pub use async_ring::AsyncRingBuf;
pub use perf::{PerfBuffer, PerfEvent};
pub use poller::RingBufPoller;
pub use ring::{RingBuf, RingBufError, DEFAULT_WAKEUP_COALESCING};
pub use user_ring::UserRingBuf;
