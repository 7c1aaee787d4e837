use std::os::fd::AsFd;
use std::time::Duration;

use ebpf_core::sys::{self, MmapRegion};
use ebpf_core::{Map, MapType};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// Why a ring buffer could not be opened or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RingBufError {
    /// The map is not a ring buffer.
    #[error("{map}: not a ring buffer")]
    NotARingBuf {
        /// The map, as errors name it.
        map: String,
    },
    /// Mapping the ring's pages failed.
    #[error("mmap {what} of {map}: {source}")]
    Mmap {
        /// Which pages.
        what: &'static str,
        /// The map.
        map: String,
        /// The failed call.
        source: sys::SysError,
    },
    /// epoll failed.
    #[error("epoll on {map}: {source}")]
    Epoll {
        /// The map.
        map: String,
        /// The errno.
        source: nix::Error,
    },
    /// The producer page holds something no kernel writes: the ring is not what it claims.
    #[error("{map}: corrupt record at position {position} ({reason})")]
    Corrupt {
        /// The map.
        map: String,
        /// Consumer position.
        position: u64,
        /// What was wrong.
        reason: String,
    },
}

const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;
const HEADER_LEN: u64 = 8;

/// A `BPF_MAP_TYPE_RINGBUF` consumer.
#[derive(Debug)]
pub struct RingBuf {
    map: Map,
    consumer: MmapRegion,
    producer: MmapRegion,
    page: usize,
    mask: u64,
    epoll: Epoll,
}

impl RingBuf {
    /// Maps the ring of `map` (which must be a ring buffer) for consuming.
    pub fn new(map: Map) -> Result<RingBuf, RingBufError> {
        if map.map_type() != Some(MapType::Ringbuf) {
            return Err(RingBufError::NotARingBuf { map: map.describe() });
        }
        let page = sys::page_size();
        let size = map.max_entries() as usize;
        let consumer = MmapRegion::map(map.as_fd(), page, 0, true).map_err(|source| RingBufError::Mmap {
            what: "consumer page",
            map: map.describe(),
            source,
        })?;
        // The producer page, then the data pages mapped twice in a row, so a record that wraps
        // around the end reads as one contiguous slice.
        let producer = MmapRegion::map(map.as_fd(), page + 2 * size, page, false)
            .map_err(|source| RingBufError::Mmap { what: "producer and data pages", map: map.describe(), source })?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|source| RingBufError::Epoll { map: map.describe(), source })?;
        epoll
            .add(map.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLET, 0))
            .map_err(|source| RingBufError::Epoll { map: map.describe(), source })?;
        Ok(RingBuf { mask: size as u64 - 1, map, consumer, producer, page, epoll })
    }

    /// The map behind the ring.
    pub fn map(&self) -> &Map {
        &self.map
    }

    /// Capacity of the data area in bytes.
    pub fn capacity(&self) -> u64 {
        self.mask + 1
    }

    fn consumer_pos(&self) -> u64 {
        self.consumer.load_u64_acquire(0).unwrap_or(0)
    }

    fn producer_pos(&self) -> u64 {
        self.producer.load_u64_acquire(0).unwrap_or(0)
    }

    /// Bytes produced and not yet consumed (headers and padding included).
    pub fn pending_bytes(&self) -> u64 {
        self.producer_pos().wrapping_sub(self.consumer_pos())
    }

    /// Hands every committed record to `handle`, in order, releasing each record's space once
    /// `handle` returns. Stops at a record the kernel is still writing. Returns how many
    /// records were handled (discarded ones are skipped and not counted).
    pub fn consume(&mut self, mut handle: impl FnMut(&[u8])) -> Result<usize, RingBufError> {
        let mut consumer = self.consumer_pos();
        let mut handled = 0;
        // Space is handed back to the producer every quarter ring, and at the end: one store
        // per record would cost more than the record.
        let release_every = (self.mask + 1) / 4;
        let (data, page, mask) = (&self.producer, self.page, self.mask);
        loop {
            let producer = self.producer_pos();
            if consumer >= producer {
                break;
            }
            let mut release_at = consumer + release_every;
            while consumer < producer {
                let Some((header, record)) = data.ring_record(page + (consumer & mask) as usize) else {
                    return Err(self.corrupt(consumer, "record out of range"));
                };
                if header & BUSY_BIT != 0 {
                    self.consumer.store_u64(0, consumer);
                    return Ok(handled);
                }
                let len = u64::from(header & !(BUSY_BIT | DISCARD_BIT));
                if len > mask {
                    return Err(self.corrupt(consumer, &format!("record of {len} bytes in a {}-byte ring", mask + 1)));
                }
                if header & DISCARD_BIT == 0 {
                    handle(record);
                    handled += 1;
                }
                consumer += (len + HEADER_LEN + 7) & !7;
                if consumer >= release_at {
                    self.consumer.store_u64(0, consumer);
                    release_at = consumer + release_every;
                }
            }
            // Release the space (and the slices handed out above) to the kernel.
            self.consumer.store_u64(0, consumer);
        }
        Ok(handled)
    }

    /// Consumes what is committed; when that is nothing, waits up to `timeout` for the kernel
    /// to commit a record, then consumes. Returns how many were handled; 0 after a timeout.
    ///
    /// The ring is watched edge-triggered: the kernel signals when it commits a record at the
    /// position the consumer has reached, so a consumer that keeps up with its producer sleeps
    /// between records instead of spinning on ones still being written.
    pub fn poll(&mut self, timeout: Duration, mut handle: impl FnMut(&[u8])) -> Result<usize, RingBufError> {
        let handled = self.consume(&mut handle)?;
        if handled > 0 {
            return Ok(handled);
        }
        if self.nothing_to_read_before_wakeup() {
            let mut events = [EpollEvent::empty()];
            let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
            self.epoll
                .wait(&mut events, EpollTimeout::from(millis))
                .map_err(|source| RingBufError::Epoll { map: self.map.describe(), source })?;
        }
        self.consume(handle)
    }

    /// After a drain that found nothing: true when it is safe to sleep until the kernel's next
    /// signal. A commit that read the consumer position before the drain published it sent no
    /// signal, but then its record is visible here: the fence pairs with the kernel's full
    /// barrier between writing a record's header and reading the consumer position.
    pub(crate) fn nothing_to_read_before_wakeup(&self) -> bool {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        !self.next_is_committed()
    }

    /// True when the record at the consumer position is written (committed or discarded).
    fn next_is_committed(&self) -> bool {
        let consumer = self.consumer_pos();
        if consumer >= self.producer_pos() {
            return false;
        }
        let at = self.page + (consumer & self.mask) as usize;
        self.producer.load_u32_acquire(at).is_some_and(|header| header & BUSY_BIT == 0)
    }

    #[cold]
    fn corrupt(&self, position: u64, reason: &str) -> RingBufError {
        RingBufError::Corrupt { map: self.map.describe(), position, reason: reason.to_owned() }
    }
}
