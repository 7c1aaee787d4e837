//! The only place in the workspace that calls `bpf(2)`.
//!
//! Every command has a `#[repr(C)]` attribute layout sized as the kernel expects (private to
//! this module) and a safe function that fills it from Rust values: slices whose lengths the
//! function checks against what the kernel will read or write, and owned file descriptors that
//! close on drop. A failed call returns [`SysError`], which names the command and the errno.

mod attr;
mod btf;
mod cmd;
mod errno;
mod ids;
mod info;
mod link;
mod map;
mod mmap;
mod netlink;
mod obj;
mod perf;
mod prog;
#[cfg(test)]
pub(crate) mod seam;
mod sock;

use std::os::fd::{FromRawFd, OwnedFd};

pub use btf::{btf_load, BtfLoadError};
pub use cmd::Cmd;
pub use ids::{btf_fd_by_id, link_fd_by_id, map_fd_by_id, next_id, prog_fd_by_id, IdKind};
pub use info::{
    btf_info, link_info, map_info, prog_info, prog_jited, prog_xlated, BtfInfo, JitedImage, LinkInfo, MapInfo, ProgInfo,
};
pub use link::{iter_create, link_create, link_detach, link_update, raw_tracepoint_open, LinkTarget};
pub use map::{
    map_create, map_delete_batch, map_delete_elem, map_freeze, map_get_next_key, map_lookup_and_delete_batch,
    map_lookup_and_delete_elem, map_lookup_batch, map_lookup_elem, map_update_batch, map_update_elem, MapCreate, MapFd,
};
pub use mmap::{page_size, MmapRegion, RingData};
pub use netlink::NetlinkSocket;
pub use obj::{obj_get, obj_pin, object_kind, prog_attach, prog_detach, prog_query, ObjectKind, ProgQuery};
pub use perf::{
    perf_event_open_bpf_output, perf_event_open_kprobe, perf_event_open_tracepoint, perf_event_open_uprobe, UprobeEvent,
};
pub use prog::{enable_stats, prog_bind_map, prog_load, prog_test_run, ProgLoad, TestRun};
pub use sock::{attach_socket_filter, detach_socket_filter, netns_cookie};

pub use errno::Errno;

/// A failed `bpf(2)` call: which command, and the errno the kernel returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{cmd}: {} ({})", errno.name(), errno.description())]
pub struct SysError {
    /// The command that failed.
    pub cmd: Cmd,
    /// What the kernel said.
    pub errno: Errno,
}

/// The symbolic name of an errno, such as `E2BIG`.
pub fn errno_name(errno: Errno) -> String {
    errno.name()
}

/// The outcome of one `bpf(2)` call.
pub type SysResult<T> = Result<T, SysError>;

thread_local! {
    static CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many `bpf(2)` calls this thread has made through this library: what a load costs in
/// system calls, measured in a test without strace (and without counting other threads).
pub fn bpf_calls_on_this_thread() -> u64 {
    CALLS.with(|c| c.get())
}

fn raw_bpf<A: attr::Attr>(cmd: Cmd, attr: &mut A) -> SysResult<i64> {
    loop {
        CALLS.with(|c| c.set(c.get() + 1));
        #[cfg(test)]
        if let Some(result) = seam::call(cmd, attr) {
            return result;
        }
        // SAFETY: `attr` is one of this module's `#[repr(C)]` attribute structs (sealed trait),
        // fully initialised with no implicit padding, and valid for `size_of::<A>()` bytes of
        // reads and writes. Any pointer it carries was set by a function of this module to a
        // live buffer whose length it checked against what the kernel reads or writes there.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd as libc::c_long,
                attr as *mut A as *mut libc::c_void,
                std::mem::size_of::<A>() as libc::c_uint,
            )
        };
        if ret >= 0 {
            return Ok(ret);
        }
        let errno = Errno::last();
        if errno != Errno::EINTR {
            return Err(SysError { cmd, errno });
        }
    }
}

fn bpf_fd<A: attr::Attr>(cmd: Cmd, attr: &mut A) -> SysResult<OwnedFd> {
    let fd = raw_bpf(cmd, attr)?;
    // SAFETY: the commands passed here return a new file descriptor on success, which nothing
    // else owns; converting it to `OwnedFd` makes it close exactly once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn ptr<T>(slice: &[T]) -> u64 {
    if slice.is_empty() {
        0
    } else {
        slice.as_ptr() as u64
    }
}

fn mut_ptr<T>(slice: &mut [T]) -> u64 {
    if slice.is_empty() {
        0
    } else {
        slice.as_mut_ptr() as u64
    }
}

fn fd_u32(fd: std::os::fd::BorrowedFd<'_>) -> u32 {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd() as u32
}

/// Copies `name` into a kernel object name field: at most 15 bytes, NUL-terminated, keeping
/// only the characters the kernel accepts (alphanumerics, `_` and `.`).
pub fn object_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut len = 0;
    for &byte in name.as_bytes() {
        if len == 15 {
            break;
        }
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'.' {
            out[len] = byte;
            len += 1;
        }
    }
    out
}

/// The number of possible CPUs (`/sys/devices/system/cpu/possible`), which sizes per-CPU values.
pub fn possible_cpus() -> std::io::Result<usize> {
    static CACHE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    if let Some(n) = CACHE.get() {
        return Ok(*n);
    }
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let n = parse_cpu_list(&text)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unreadable CPU list {text:?}")))?;
    Ok(*CACHE.get_or_init(|| n))
}

/// Highest CPU number + 1 in a kernel CPU list such as `0-3,5`.
fn parse_cpu_list(text: &str) -> Option<usize> {
    let mut highest = None;
    for part in text.trim().split(',') {
        let last = part.rsplit('-').next()?;
        let n: usize = last.trim().parse().ok()?;
        highest = Some(highest.map_or(n, |h: usize| h.max(n)));
    }
    highest.map(|h| h + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_count_the_highest_cpu() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-3,8-11"), Some(12));
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn object_names_are_truncated_and_filtered() {
        assert_eq!(&object_name("from-container_x")[..15], b"fromcontainer_x");
        assert_eq!(object_name("a_very_long_map_name_indeed")[15], 0);
    }

    #[test]
    fn errors_name_the_command_and_errno() {
        let e = SysError { cmd: Cmd::MapUpdateElem, errno: Errno::E2BIG };
        assert_eq!(e.to_string(), "BPF_MAP_UPDATE_ELEM: E2BIG (Argument list too long)");
    }
}
