//! Consumers for BPF ring buffers (`BPF_MAP_TYPE_RINGBUF`).
//!
//! [`RingBuf`] maps the ring's consumer and producer pages and reads records in place,
//! zero-copy: the callback gets a slice of the shared pages, valid until it returns, after
//! which the space is released to the kernel. Busy (still being written) records stop a pass;
//! discarded records are skipped. Waiting uses epoll on the map fd.
//!
//! ```no_run
//! use std::time::Duration;
//! use ebpf_core::{Map, MapSpec, MapType};
//! use ebpf_ringbuf::RingBuf;
//!
//! let map = Map::create(&MapSpec::new("events", MapType::Ringbuf, 0, 0, 64 * 1024))?;
//! let mut events = RingBuf::new(map)?;
//! events.poll(Duration::from_millis(100), |record: &[u8]| println!("{} bytes", record.len()))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod ring;

pub use ring::{RingBuf, RingBufError};
