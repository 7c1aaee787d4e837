//! A seam for unit tests that run without root: while [`with_syscalls`] runs its body, every
//! `bpf(2)` call of this thread goes to the given handler instead of the kernel, which sees the
//! command and the attribute bytes (and may write them, as the kernel would). Map, program
//! and collection logic is then tested for what it asks of the kernel and how it takes the
//! answers, kernel or not.

use std::cell::RefCell;
use std::os::fd::IntoRawFd;

use super::{attr, Cmd, Errno, SysError, SysResult};

type Handler = Box<dyn FnMut(Cmd, &mut [u8]) -> Result<i64, Errno>>;

thread_local! {
    static HANDLER: RefCell<Option<Handler>> = const { RefCell::new(None) };
}

/// Runs `body` with this thread's `bpf(2)` calls answered by `handler`; the kernel is not
/// called. Commands that return a new fd must get a real one: see [`fake_fd`].
pub(crate) fn with_syscalls<R>(
    handler: impl FnMut(Cmd, &mut [u8]) -> Result<i64, Errno> + 'static,
    body: impl FnOnce() -> R,
) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            HANDLER.with(|h| h.borrow_mut().take());
        }
    }
    HANDLER.with(|h| *h.borrow_mut() = Some(Box::new(handler)));
    let _reset = Reset;
    body()
}

/// A new fd (of `/dev/null`) for a handler to return where the kernel would return a new
/// object's fd: the library wraps and closes it as it would a real one.
pub(crate) fn fake_fd() -> i64 {
    i64::from(std::fs::File::open("/dev/null").expect("/dev/null").into_raw_fd())
}

/// The handler's answer, when one is installed.
pub(super) fn call<A: attr::Attr>(cmd: Cmd, attr: &mut A) -> Option<SysResult<i64>> {
    HANDLER.with(|h| {
        let mut handler = h.try_borrow_mut().ok()?;
        let handler = handler.as_mut()?;
        // SAFETY: the attribute structs are `#[repr(C)]`, fully initialised and without
        // implicit padding (the sealed `Attr` trait's contract), so all their bytes may be
        // read and written as bytes for as long as `attr` is borrowed here.
        let bytes = unsafe { std::slice::from_raw_parts_mut(attr as *mut A as *mut u8, std::mem::size_of::<A>()) };
        Some(handler(cmd, bytes).map_err(|errno| SysError { cmd, errno }))
    })
}
