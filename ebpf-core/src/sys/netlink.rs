//! A `NETLINK_ROUTE` socket: open, send a request, receive replies. Message building and
//! parsing live in `link::tc`; this is only the system-call boundary.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::Errno;

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_EXT_ACK: libc::c_int = 11;

/// A route netlink socket bound to the network namespace of the thread that opened it.
#[derive(Debug)]
pub struct NetlinkSocket {
    fd: OwnedFd,
}

impl NetlinkSocket {
    /// Opens a `NETLINK_ROUTE` socket with extended acks (the kernel's error messages).
    pub fn open() -> Result<NetlinkSocket, Errno> {
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: a new fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let one: libc::c_int = 1;
        // SAFETY: a live c_int of the size passed; the kernel only reads it. Failure is fine:
        // old kernels just send bare errnos.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                SOL_NETLINK,
                NETLINK_EXT_ACK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        Ok(NetlinkSocket { fd })
    }

    /// Sends one request to the kernel.
    pub fn send(&self, message: &[u8]) -> Result<(), Errno> {
        // SAFETY: `message` is a live buffer of the length passed; the kernel only reads it.
        // A netlink socket with no destination set sends to the kernel.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), message.as_ptr().cast(), message.len(), 0) };
        if n < 0 {
            Err(Errno::last())
        } else {
            Ok(())
        }
    }

    /// Receives one datagram of replies into `buf`; returns its length.
    pub fn recv(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        loop {
            // SAFETY: `buf` is a live, writable buffer of the length passed.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let errno = Errno::last();
            if errno != Errno::EINTR {
                return Err(errno);
            }
        }
    }
}
