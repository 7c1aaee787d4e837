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
