use std::os::fd::AsFd;
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use crate::{RingBuf, RingBufError};

/// One epoll over many ring buffers (like libbpf's `ring_buffer` manager): a single wait wakes
/// for whichever rings have records, and each record comes with the index of its ring.
#[derive(Debug)]
pub struct RingBufPoller {
    rings: Vec<RingBuf>,
    epoll: Epoll,
    events: Vec<EpollEvent>,
}

impl RingBufPoller {
    /// A poller with no rings.
    pub fn new() -> Result<RingBufPoller, RingBufError> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|source| RingBufError::Epoll { map: "ring buffer poller".to_owned(), source })?;
        Ok(RingBufPoller { rings: Vec::new(), epoll, events: Vec::new() })
    }

    /// Adds a ring; returns the index its records are reported under.
    pub fn add(&mut self, ring: RingBuf) -> Result<usize, RingBufError> {
        let index = self.rings.len();
        self.epoll
            .add(ring.map().as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, index as u64))
            .map_err(|source| RingBufError::Epoll { map: ring.map().describe(), source })?;
        self.rings.push(ring);
        self.events.push(EpollEvent::empty());
        Ok(index)
    }

    /// The ring at `index`.
    pub fn ring(&self, index: usize) -> Option<&RingBuf> {
        self.rings.get(index)
    }

    /// Number of rings.
    pub fn len(&self) -> usize {
        self.rings.len()
    }

    /// True with no rings.
    pub fn is_empty(&self) -> bool {
        self.rings.is_empty()
    }

    /// Drains every ring, reporting `(ring index, record)`; returns how many records.
    pub fn consume(&mut self, mut handle: impl FnMut(usize, &[u8])) -> Result<usize, RingBufError> {
        let mut total = 0;
        for (index, ring) in self.rings.iter_mut().enumerate() {
            total += ring.consume(|record| handle(index, record))?;
        }
        Ok(total)
    }

    /// Waits up to `timeout` for any ring to have records (not at all if some already do),
    /// then drains the rings that are ready. Returns how many records were handled.
    pub fn poll(&mut self, timeout: Duration, mut handle: impl FnMut(usize, &[u8])) -> Result<usize, RingBufError> {
        if self.rings.iter().any(|r| r.pending_bytes() > 0) {
            return self.consume(handle);
        }
        let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let ready = self
            .epoll
            .wait(&mut self.events, EpollTimeout::from(millis))
            .map_err(|source| RingBufError::Epoll { map: "ring buffer poller".to_owned(), source })?;
        let mut total = 0;
        for event in &self.events[..ready] {
            let index = event.data() as usize;
            if let Some(ring) = self.rings.get_mut(index) {
                total += ring.consume(|record| handle(index, record))?;
            }
        }
        Ok(total)
    }
}
