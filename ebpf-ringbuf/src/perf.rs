use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use ebpf_core::mem::{page_size, MmapRegion};
use ebpf_core::{Map, MapType, UpdateFlags};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use crate::RingBufError;

/// What a perf buffer delivers.
#[derive(Debug, PartialEq, Eq)]
pub enum PerfEvent<'a> {
    /// A record a program wrote with `bpf_perf_event_output`. The kernel pads the data so the
    /// record stays 8-byte aligned: it may end with up to 7 bytes the program did not write.
    Sample {
        /// CPU whose buffer held it.
        cpu: u32,
        /// The data.
        data: &'a [u8],
    },
    /// The kernel dropped records because the buffer was full.
    Lost {
        /// CPU whose buffer overflowed.
        cpu: u32,
        /// How many records were dropped.
        count: u64,
    },
}

// struct perf_event_mmap_page
const DATA_HEAD: usize = 1024;
const DATA_TAIL: usize = 1032;
const PERF_RECORD_LOST: u32 = 2;
const PERF_RECORD_SAMPLE: u32 = 9;

#[derive(Debug)]
struct CpuRing {
    cpu: u32,
    _event: OwnedFd,
    region: MmapRegion,
    data_size: usize,
    page: usize,
    /// Records that wrap around the end of the ring are copied here to be contiguous.
    scratch: Vec<u8>,
}

impl CpuRing {
    fn consume(&mut self, handle: &mut impl FnMut(PerfEvent<'_>)) -> usize {
        let head = self.region.load_u64_acquire(DATA_HEAD).unwrap_or(0);
        let mut tail = self.region.load_u64_acquire(DATA_TAIL).unwrap_or(0);
        let mut handled = 0;
        let mut scratch = std::mem::take(&mut self.scratch);
        while tail < head {
            // The data size is a power of two: masks, not divisions.
            let mask = self.data_size - 1;
            let at = tail as usize & mask;
            let mut header = [0u8; 8];
            match self.region.committed_bytes(self.page + at, 8) {
                Some(bytes) if at + 8 <= self.data_size => header.copy_from_slice(bytes),
                _ => self.copy_out(at, &mut header),
            }
            let kind = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]);
            let size = u16::from_ne_bytes([header[6], header[7]]) as usize;
            if size < 8 || size > self.data_size {
                // Not a record a kernel writes: drop everything pending rather than misread.
                tail = head;
                break;
            }
            let body_at = (at + 8) & mask;
            let body_len = size - 8;
            // Records that do not wrap are read in place; the rare one that does is copied.
            let body: &[u8] = if body_at + body_len <= self.data_size {
                self.region.committed_bytes(self.page + body_at, body_len).unwrap_or(&[])
            } else {
                scratch.resize(body_len, 0);
                self.copy_out(body_at, &mut scratch);
                &scratch
            };
            match kind {
                PERF_RECORD_SAMPLE if body.len() >= 4 => {
                    let len = (u32::from_ne_bytes(body[..4].try_into().expect("4 bytes")) as usize).min(body.len() - 4);
                    handle(PerfEvent::Sample { cpu: self.cpu, data: &body[4..4 + len] });
                    handled += 1;
                }
                PERF_RECORD_LOST if body.len() >= 16 => {
                    let count = u64::from_ne_bytes(body[8..16].try_into().expect("8 bytes"));
                    handle(PerfEvent::Lost { cpu: self.cpu, count });
                    handled += 1;
                }
                _ => {}
            }
            tail += size as u64;
        }
        self.scratch = scratch;
        self.region.store_u64(DATA_TAIL, tail);
        handled
    }

    /// Copies ring bytes starting at data offset `at`, wrapping around the end.
    fn copy_out(&self, at: usize, out: &mut [u8]) {
        let first = out.len().min(self.data_size - at);
        if let Some(bytes) = self.region.committed_bytes(self.page + at, first) {
            out[..first].copy_from_slice(bytes);
        }
        if first < out.len() {
            if let Some(bytes) = self.region.committed_bytes(self.page, out.len() - first) {
                out[first..].copy_from_slice(bytes);
            }
        }
    }
}

/// A reader of a `BPF_MAP_TYPE_PERF_EVENT_ARRAY`: one ring per CPU, opened with
/// `perf_event_open` and placed in the map, read with one epoll.
#[derive(Debug)]
pub struct PerfBuffer {
    map: Map,
    rings: Vec<CpuRing>,
    epoll: Epoll,
}

impl PerfBuffer {
    /// Opens a ring of `pages` pages (a power of two) on every online CPU the map has a slot
    /// for, and stores each in the map.
    pub fn new(map: &Map, pages: usize) -> Result<PerfBuffer, RingBufError> {
        if map.map_type() != Some(MapType::PerfEventArray) {
            return Err(RingBufError::NotARingBuf { map: map.describe() });
        }
        let map = crate::ring::own_handle(map)?;
        let pages = pages.max(1).next_power_of_two();
        let page = page_size();
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|source| RingBufError::Epoll { map: map.describe(), source })?;
        let cpus = ebpf_core::possible_cpus().unwrap_or(1).min(map.max_entries() as usize);
        let mut rings = Vec::new();
        for cpu in 0..cpus as u32 {
            let event = match ebpf_core::perf::open_bpf_output_event(cpu, 1) {
                Ok(fd) => fd,
                // Offline CPUs have no events; their slots stay empty.
                Err(e) if e.errno == ebpf_core::Errno::ENODEV || e.errno == ebpf_core::Errno::EINVAL && cpu > 0 => {
                    continue
                }
                Err(source) => return Err(RingBufError::Mmap { what: "perf event", map: map.describe(), source }),
            };
            let region = MmapRegion::map(event.as_fd(), page * (pages + 1), 0, true)
                .map_err(|source| RingBufError::Mmap { what: "perf ring", map: map.describe(), source })?;
            map.update(&cpu.to_ne_bytes(), &(event.as_raw_fd() as u32).to_ne_bytes(), UpdateFlags::ANY).map_err(
                |e| RingBufError::Corrupt { map: map.describe(), position: u64::from(cpu), reason: e.to_string() },
            )?;
            epoll
                .add(event.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, u64::from(cpu)))
                .map_err(|source| RingBufError::Epoll { map: map.describe(), source })?;
            rings.push(CpuRing { cpu, _event: event, region, data_size: page * pages, page, scratch: Vec::new() });
        }
        Ok(PerfBuffer { map, rings, epoll })
    }

    /// The map behind the buffer.
    pub fn map(&self) -> &Map {
        &self.map
    }

    /// CPUs with a ring.
    pub fn cpus(&self) -> Vec<u32> {
        self.rings.iter().map(|r| r.cpu).collect()
    }

    /// Hands every pending sample and loss report of every CPU to `handle`; returns how many.
    pub fn consume(&mut self, mut handle: impl FnMut(PerfEvent<'_>)) -> usize {
        self.rings.iter_mut().map(|ring| ring.consume(&mut handle)).sum()
    }

    /// Waits up to `timeout` for data on any CPU, then consumes everything pending.
    pub fn poll(&mut self, timeout: Duration, handle: impl FnMut(PerfEvent<'_>)) -> Result<usize, RingBufError> {
        let mut events = [EpollEvent::empty(); 8];
        let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        self.epoll
            .wait(&mut events, EpollTimeout::from(millis))
            .map_err(|source| RingBufError::Epoll { map: self.map.describe(), source })?;
        Ok(self.consume(handle))
    }
}
