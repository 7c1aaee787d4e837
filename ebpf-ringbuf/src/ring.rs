use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use ebpf_core::mem::{self, MmapRegion};
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
        source: ebpf_core::SysError,
    },
    /// epoll failed.
    #[error("epoll on {map}: {source}")]
    Epoll {
        /// The map.
        map: String,
        /// The errno.
        source: nix::Error,
    },
    /// The map's fd could not be duplicated for the buffer to keep.
    #[error("duplicate the fd of {map}: {source}")]
    Duplicate {
        /// The map.
        map: String,
        /// The failed call.
        source: Box<ebpf_core::Error>,
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

/// A handle of the buffer's own on `map`.
pub(crate) fn own_handle(map: &Map) -> Result<Map, RingBufError> {
    map.try_clone().map_err(|source| RingBufError::Duplicate { map: map.describe(), source: Box::new(source) })
}

const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;
const HEADER_LEN: u64 = 8;

/// A `BPF_MAP_TYPE_RINGBUF` consumer.
///
/// Latency: while the producer streams, [`poll`](Self::poll) coalesces wake-ups — it naps up
/// to [`DEFAULT_WAKEUP_COALESCING`] (50 µs) for more records instead of sleeping until the
/// kernel wakes it — so a record may reach the handler up to that much later than it would
/// with libbpf's reader, in exchange for a fraction of the consumer's CPU per record. Set the
/// window with [`set_wakeup_coalescing`](Self::set_wakeup_coalescing); `Duration::ZERO` turns
/// it off. [`consume`](Self::consume) never waits.
#[derive(Debug)]
pub struct RingBuf {
    map: Map,
    consumer: MmapRegion,
    producer: MmapRegion,
    page: usize,
    mask: u64,
    epoll: Epoll,
    coalescing: Duration,
    /// When the last poll that handled records returned.
    last_drain: Instant,
    /// How long the next poll naps before it asks the kernel for a wake-up (zero: it asks at
    /// once), set while the producer streams.
    nap: Duration,
}

/// A poll that handles at least this many records finds the producer streaming.
const BURST: usize = 8;

/// The default for [`RingBuf::set_wakeup_coalescing`].
pub const DEFAULT_WAKEUP_COALESCING: Duration = Duration::from_micros(50);

impl RingBuf {
    /// Maps the ring of `map` (which must be a ring buffer) for consuming. Like the typed map
    /// views, the buffer keeps its own handle on the map (a duplicated fd).
    pub fn new(map: &Map) -> Result<RingBuf, RingBufError> {
        if map.map_type() != Some(MapType::Ringbuf) {
            return Err(RingBufError::NotARingBuf { map: map.describe() });
        }
        let map = own_handle(map)?;
        let page = mem::page_size();
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
        Ok(RingBuf {
            mask: size as u64 - 1,
            map,
            consumer,
            producer,
            page,
            epoll,
            coalescing: DEFAULT_WAKEUP_COALESCING,
            last_drain: Instant::now(),
            nap: Duration::ZERO,
        })
    }

    /// The map behind the ring.
    pub fn map(&self) -> &Map {
        &self.map
    }

    /// While the producer streams, [`poll`](Self::poll) waits for the next records by napping up
    /// to `window` instead of asking the kernel for a wake-up at the first one: a sleep and
    /// wake-up cost the consumer microseconds of CPU, and a wake-up per handful of records is
    /// most of its work. Records then reach the handler up to `window` later. A nap never
    /// lasts longer than the producer, at the rate measured over the last drain, takes to fill
    /// a quarter of the ring, so a steady producer does not fill it meanwhile (one that speeds
    /// up sharply can, for one nap). Only `poll` coalesces. `Duration::ZERO` turns it off (every
    /// commit at the consumer position wakes the consumer, as libbpf's reader does). Default:
    /// [`DEFAULT_WAKEUP_COALESCING`].
    pub fn set_wakeup_coalescing(&mut self, window: Duration) {
        self.coalescing = window;
        self.nap = self.nap.min(window);
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
        let Some(data) = self.producer.ring_data(self.page, self.capacity() as usize) else {
            return Err(self.corrupt(consumer, "data area not mapped twice"));
        };
        loop {
            let producer = self.producer_pos();
            if consumer >= producer {
                break;
            }
            let mut release_at = consumer + release_every;
            while consumer < producer {
                let header = data.header(consumer);
                if header & BUSY_BIT != 0 {
                    self.consumer.store_u64(0, consumer);
                    return Ok(handled);
                }
                let len = header & !(BUSY_BIT | DISCARD_BIT);
                let Some(record) = data.record(consumer, len) else {
                    return Err(
                        self.corrupt(consumer, &format!("record of {len} bytes in a {}-byte ring", self.capacity()))
                    );
                };
                if header & DISCARD_BIT == 0 {
                    handle(record);
                    handled += 1;
                }
                consumer += (u64::from(len) + HEADER_LEN + 7) & !7;
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
    /// between records instead of spinning on ones still being written. While the producer
    /// streams, wake-ups are coalesced (see [`set_wakeup_coalescing`](Self::set_wakeup_coalescing)).
    pub fn poll(&mut self, timeout: Duration, mut handle: impl FnMut(&[u8])) -> Result<usize, RingBufError> {
        let handled = self.drain(&mut handle)?;
        if handled > 0 {
            return Ok(handled);
        }
        let mut timeout = timeout;
        if !self.nap.is_zero() {
            let nap = std::mem::take(&mut self.nap).min(timeout);
            std::thread::sleep(nap);
            let handled = self.drain(&mut handle)?;
            if handled > 0 {
                return Ok(handled);
            }
            timeout -= nap;
        }
        if self.nothing_to_read_before_wakeup() {
            let mut events = [EpollEvent::empty()];
            let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
            self.epoll
                .wait(&mut events, EpollTimeout::from(millis))
                .map_err(|source| RingBufError::Epoll { map: self.map.describe(), source })?;
        }
        self.drain(handle)
    }

    /// `consume`, noting whether the producer streams and, if so, how long the next poll may
    /// nap: the coalescing window, or less if the producer would fill a quarter of the ring
    /// sooner at the rate of this drain.
    fn drain(&mut self, handle: impl FnMut(&[u8])) -> Result<usize, RingBufError> {
        let before = self.consumer_pos();
        let handled = self.consume(handle)?;
        if handled == 0 {
            return Ok(0);
        }
        let now = Instant::now();
        let bytes = self.consumer_pos().wrapping_sub(before);
        self.nap = nap(self.coalescing, handled, bytes, now.duration_since(self.last_drain), self.capacity());
        self.last_drain = now;
        Ok(handled)
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
        self.producer
            .ring_data(self.page, self.capacity() as usize)
            .is_some_and(|data| data.header(consumer) & BUSY_BIT == 0)
    }

    #[cold]
    fn corrupt(&self, position: u64, reason: &str) -> RingBufError {
        RingBufError::Corrupt { map: self.map.describe(), position, reason: reason.to_owned() }
    }
}

/// How long to nap after a drain that handled `handled` records, `bytes` of the ring, produced
/// over `elapsed`: nothing unless the producer streams; else the coalescing window, or less if
/// at that rate the producer would fill a quarter of the ring sooner.
fn nap(window: Duration, handled: usize, bytes: u64, elapsed: Duration, capacity: u64) -> Duration {
    if handled < BURST || window.is_zero() {
        return Duration::ZERO;
    }
    let quarter_ring = elapsed.mul_f64(capacity as f64 / 4.0 / bytes.max(1) as f64);
    window.min(quarter_ring)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naps_only_while_streaming_and_never_past_a_quarter_ring() {
        let window = Duration::from_micros(50);
        let ring = 1 << 20;
        assert_eq!(nap(window, BURST - 1, 1000, Duration::from_micros(10), ring), Duration::ZERO, "no burst");
        assert_eq!(nap(Duration::ZERO, 100, 1000, Duration::from_micros(10), ring), Duration::ZERO, "turned off");
        assert_eq!(nap(window, 100, 2400, Duration::from_micros(10), ring), window, "a slow producer");
        // 64 KiB in 10 µs: a quarter of the ring (256 KiB) fills in 40 µs.
        assert_eq!(nap(window, 100, 64 << 10, Duration::from_micros(10), ring), Duration::from_micros(40));
    }
}
