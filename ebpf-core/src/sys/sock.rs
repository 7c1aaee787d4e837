//! Socket-level attachment: `SO_ATTACH_BPF` / `SO_DETACH_BPF`.

use std::os::fd::{AsRawFd, BorrowedFd};

use super::Errno;

const SO_ATTACH_BPF: libc::c_int = 50;
const SO_DETACH_BPF: libc::c_int = 27;

fn setsockopt(socket: BorrowedFd<'_>, option: libc::c_int, value: Option<u32>) -> Result<(), Errno> {
    let value = value.unwrap_or(0);
    // SAFETY: `socket` is an open fd; the option value is a live u32 of the length passed, which
    // the kernel only reads.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const u32).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

/// Runs the socket filter `prog` on every packet `socket` receives (`SO_ATTACH_BPF`),
/// replacing any filter it had.
pub fn attach_socket_filter(socket: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> Result<(), Errno> {
    setsockopt(socket, SO_ATTACH_BPF, Some(prog.as_raw_fd() as u32))
}

/// Removes the socket's filter (`SO_DETACH_BPF`).
pub fn detach_socket_filter(socket: BorrowedFd<'_>) -> Result<(), Errno> {
    setsockopt(socket, SO_DETACH_BPF, None)
}

const SO_NETNS_COOKIE: libc::c_int = 71;

/// The cookie of the network namespace `socket` lives in (`SO_NETNS_COOKIE`): what
/// `bpf_get_netns_cookie()` returns for that namespace's sockets and packets.
pub fn netns_cookie(socket: BorrowedFd<'_>) -> Result<u64, Errno> {
    let mut cookie = 0u64;
    let mut length = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `socket` is an open fd; `cookie` is a live u64 whose length is passed in `length`,
    // both writable for the call's duration.
    let ret = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut length,
        )
    };
    if ret == 0 {
        Ok(cookie)
    } else {
        Err(Errno::last())
    }
}
