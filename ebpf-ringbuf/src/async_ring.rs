use std::os::fd::{AsFd, AsRawFd, RawFd};

use tokio::io::unix::AsyncFd;

use crate::{RingBuf, RingBufError};

/// The ring's map fd, which signals readability when records are pending.
#[derive(Debug)]
struct Readable(RingBuf);

impl AsRawFd for Readable {
    fn as_raw_fd(&self) -> RawFd {
        self.0.map().as_fd().as_raw_fd()
    }
}

/// A [`RingBuf`] for async code: [`AsyncRingBuf::next_batch`] waits on tokio's reactor
/// instead of blocking a thread in epoll. Needs the `tokio` feature and a tokio runtime.
#[derive(Debug)]
pub struct AsyncRingBuf {
    inner: AsyncFd<Readable>,
}

impl AsyncRingBuf {
    /// Registers `ring` with the current tokio runtime.
    pub fn new(ring: RingBuf) -> Result<AsyncRingBuf, RingBufError> {
        let map = ring.map().describe();
        // `AsyncFd::new` is deprecated because an `AsRawFd` value could close its fd while
        // registered. Ours cannot: `Readable` owns the ring, which owns the map fd, for exactly
        // as long as the registration lives. (`register` would say the same in an unsafe block.)
        #[allow(deprecated)]
        let inner = AsyncFd::new(Readable(ring)).map_err(|e| RingBufError::Epoll {
            map,
            source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc_eio())),
        })?;
        Ok(AsyncRingBuf { inner })
    }

    /// Waits until records are pending, then hands all of them to `handle`; returns how many.
    pub async fn next_batch(&mut self, mut handle: impl FnMut(&[u8])) -> Result<usize, RingBufError> {
        loop {
            let mut guard = self.inner.readable_mut().await.map_err(|e| RingBufError::Epoll {
                map: "ring buffer".to_owned(),
                source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc_eio())),
            })?;
            let ring = &mut guard.get_inner_mut().0;
            let handled = ring.consume(&mut handle)?;
            if handled > 0 {
                return Ok(handled);
            }
            // Nothing there after all: wait for the next wake-up (unless a record was committed
            // without one, racing the drain).
            if ring.nothing_to_read_before_wakeup() {
                guard.clear_ready();
            }
        }
    }

    /// The ring itself.
    pub fn ring(&mut self) -> &mut RingBuf {
        &mut self.inner.get_mut().0
    }
}

fn libc_eio() -> i32 {
    nix::errno::Errno::EIO as i32
}
