use std::fmt;

/// An errno as the kernel returned it, kept as its raw number so that kernel-internal values
/// (such as `ENOTSUPP`, 524) survive.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

#[allow(missing_docs)] // the constants are the standard errno names
impl Errno {
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const ESRCH: Errno = Errno(libc::ESRCH);
    pub const EINTR: Errno = Errno(libc::EINTR);
    pub const ENXIO: Errno = Errno(libc::ENXIO);
    pub const E2BIG: Errno = Errno(libc::E2BIG);
    pub const EBADF: Errno = Errno(libc::EBADF);
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    pub const ENOMEM: Errno = Errno(libc::ENOMEM);
    pub const EACCES: Errno = Errno(libc::EACCES);
    pub const EFAULT: Errno = Errno(libc::EFAULT);
    pub const EBUSY: Errno = Errno(libc::EBUSY);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const ENODEV: Errno = Errno(libc::ENODEV);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const ENOSPC: Errno = Errno(libc::ENOSPC);
    pub const ERANGE: Errno = Errno(libc::ERANGE);
    pub const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
    pub const ESTALE: Errno = Errno(libc::ESTALE);
    /// Kernel-internal "operation not supported", which BPF commands return to user space.
    pub const ENOTSUPP: Errno = Errno(524);

    /// The calling thread's current errno.
    pub fn last() -> Errno {
        Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    /// The symbolic name, such as `E2BIG` (`errno N` for numbers without one).
    pub fn name(self) -> String {
        if self == Errno::ENOTSUPP {
            return "ENOTSUPP".to_owned();
        }
        match nix::errno::Errno::from_raw(self.0) {
            nix::errno::Errno::UnknownErrno => format!("errno {}", self.0),
            known => format!("{known:?}"),
        }
    }

    /// The C library's description, such as "Argument list too long".
    pub fn description(self) -> &'static str {
        if self == Errno::ENOTSUPP {
            return "Operation not supported by the kernel";
        }
        nix::errno::Errno::from_raw(self.0).desc()
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// An errno is an error in its own right where a call returns nothing richer (e.g.
/// [`netns::cookie`](crate::netns::cookie)), so `?` lifts it into `Box<dyn Error>`.
impl std::error::Error for Errno {}

impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Errno {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}
