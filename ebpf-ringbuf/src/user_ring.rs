use std::os::fd::AsFd;

use ebpf_core::mem::{self, MmapRegion};
use ebpf_core::{Map, MapType};

use crate::RingBufError;

const BUSY_BIT: u32 = 1 << 31;
const HEADER_LEN: u64 = 8;

/// The user-space producer of a `BPF_MAP_TYPE_USER_RINGBUF`: records pushed here are drained
/// by programs with `bpf_user_ringbuf_drain`.
#[derive(Debug)]
pub struct UserRingBuf {
    map: Map,
    consumer: MmapRegion,
    producer: MmapRegion,
    page: usize,
    mask: u64,
}

impl UserRingBuf {
    /// Maps the ring of `map` (which must be a user ring buffer) for producing.
    pub fn new(map: &Map) -> Result<UserRingBuf, RingBufError> {
        if map.map_type() != Some(MapType::UserRingbuf) {
            return Err(RingBufError::NotARingBuf { map: map.describe() });
        }
        let map = crate::ring::own_handle(map)?;
        let page = mem::page_size();
        let size = map.max_entries() as usize;
        // The consumer page is the kernel's (read-only here); the producer page and the data,
        // mapped twice in a row so a record can run over the end, are ours.
        let consumer = MmapRegion::map(map.as_fd(), page, 0, false).map_err(|source| RingBufError::Mmap {
            what: "consumer page",
            map: map.describe(),
            source,
        })?;
        let producer = MmapRegion::map(map.as_fd(), page + 2 * size, page, true)
            .map_err(|source| RingBufError::Mmap { what: "producer and data pages", map: map.describe(), source })?;
        Ok(UserRingBuf { mask: size as u64 - 1, map, consumer, producer, page })
    }

    /// The map behind the ring.
    pub fn map(&self) -> &Map {
        &self.map
    }

    /// Bytes free for records (each takes its length plus 8, rounded up to 8).
    pub fn free_bytes(&self) -> u64 {
        let consumer = self.consumer.load_u64_acquire(0).unwrap_or(0);
        let producer = self.producer.load_u64_acquire(0).unwrap_or(0);
        (self.mask + 1).saturating_sub(producer.wrapping_sub(consumer))
    }

    /// Pushes one record. `Ok(false)` when the ring has no room for it now (the programs have
    /// not drained enough yet); an error for a record that could never fit.
    pub fn push(&mut self, record: &[u8]) -> Result<bool, RingBufError> {
        let len = record.len() as u64;
        let total = (len + HEADER_LEN + 7) & !7;
        if len == 0 || total > self.mask + 1 {
            return Err(RingBufError::Corrupt {
                map: self.map.describe(),
                position: 0,
                reason: format!("a {len}-byte record cannot go into a {}-byte ring", self.mask + 1),
            });
        }
        if total > self.free_bytes() {
            return Ok(false);
        }
        let position = self.producer.load_u64_acquire(0).unwrap_or(0);
        let at = self.page + (position & self.mask) as usize;
        let header = len as u32;
        // Reserve: a busy header, then publish the new producer position; the kernel stops at
        // the busy record until it is committed below.
        self.producer.store_u32_release(at, header | BUSY_BIT);
        self.producer.store_u32_release(at + 4, 0);
        self.producer.store_u64(0, position + total);
        self.producer.write_words(at + HEADER_LEN as usize, record);
        // Commit.
        self.producer.store_u32_release(at, header);
        Ok(true)
    }
}
