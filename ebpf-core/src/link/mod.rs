//! Attaching programs. One type per kernel attach point; each owns a `bpf_link` and detaches
//! on drop unless pinned: [`Xdp`], [`Tcx`], [`CgroupLink`], [`RawTracepoint`], [`Tracing`],
//! [`Tracepoint`], [`Iter`], [`SkLookup`], [`StructOps`], [`Uprobe`], [`UprobeMulti`],
//! [`Usdt`]. Where the kernel has no link: [`TcNetlink`] (a `cls_bpf` filter made over our own
//! netlink code), [`SocketFilter`] (`SO_ATTACH_BPF`) and [`SockMapProgram`]
//! (`BPF_PROG_ATTACH` to a sockmap); these detach on drop too.

/// `into_link` and `Deref<Target = Link>` for a link type that wraps a [`Link`] in `link`.
macro_rules! link_wrapper {
    ($name:ident) => {
        impl $name {
            /// The underlying link.
            pub fn into_link(self) -> $crate::link::Link {
                self.link
            }
        }

        impl std::ops::Deref for $name {
            type Target = $crate::link::Link;

            fn deref(&self) -> &$crate::link::Link {
                &self.link
            }
        }
    };
}

mod cgroup;
mod netlink;
mod socket;
mod struct_ops;
mod tc;
mod tcx;
mod tracing;
mod uprobe;
mod usdt;
mod xdp;

pub use cgroup::CgroupLink;
pub use socket::{SockMapProgram, SocketFilter};
pub use struct_ops::StructOps;
pub use tc::{TcAttach, TcDirection, TcFilterInfo, TcNetlink};
pub use tcx::{Tcx, TcxAttach};
pub use tracing::{tracepoint_id, Iter, RawTracepoint, SkLookup, Tracepoint, Tracing};
pub use uprobe::{Uprobe, UprobeMulti, UprobeOptions};
pub use usdt::{Usdt, UsdtOptions, UsdtSpecs, USDT_SPECS_MAP};
pub use xdp::{Xdp, XdpMode};

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use crate::error::{Error, Result};
use crate::program::Program;
use crate::sys::{self, LinkInfo};

/// The programs attached to `target` (a cgroup directory, a network namespace, an interface's
/// TCX hook by ifindex through [`Tcx::query`]) at `attach_type` (`BPF_PROG_QUERY`), in the order
/// they run, with the links that attach them.
pub fn query(target: &impl AsFd, attach_type: crate::AttachType) -> Result<crate::info::ProgQuery> {
    let raw = std::os::fd::AsRawFd::as_raw_fd(&target.as_fd()) as u32;
    sys::prog_query(raw, attach_type.raw(), 0)
        .map_err(|e| Error::syscall(format!("query the {attach_type} programs of fd {raw}"), e))
}

/// A `bpf_link`: the attachment lives as long as this fd (or a pin) does.
#[derive(Debug)]
pub struct Link {
    fd: OwnedFd,
    what: String,
}

impl Link {
    pub(crate) fn new(fd: OwnedFd, what: String) -> Link {
        Link { fd, what }
    }

    /// Opens the link pinned at `path` (dropping the handle leaves the pin, and so the
    /// attachment, in place).
    pub fn from_pin(path: impl AsRef<Path>) -> Result<Link> {
        let path = path.as_ref();
        let fd =
            sys::obj_get(path, 0).map_err(|e| Error::syscall(format!("open pinned link {}", path.display()), e))?;
        if sys::object_kind(fd.as_fd()) != sys::ObjectKind::Link {
            return Err(Error::InvalidSpec {
                object: format!("pin {}", path.display()),
                reason: "it is not a link".to_owned(),
            });
        }
        Ok(Link { fd, what: format!("pinned link {}", path.display()) })
    }

    /// Opens the link with global id `id` (see [`program::link_ids`](crate::program::link_ids)).
    /// Dropping the handle leaves the link as it was.
    pub fn from_id(id: u32) -> Result<Link> {
        let fd = sys::link_fd_by_id(id).map_err(|e| Error::syscall(format!("open link id {id}"), e))?;
        Ok(Link { fd, what: format!("link id {id}") })
    }

    /// What the kernel reports about the link.
    pub fn info(&self) -> Result<LinkInfo> {
        sys::link_info(self.fd.as_fd()).map_err(|e| Error::syscall(format!("read info of {}", self.what), e))
    }

    /// Swaps the attached program for `program`, atomically.
    pub fn update(&self, program: &Program) -> Result<()> {
        sys::link_update(self.fd.as_fd(), program.as_fd(), None, 0)
            .map_err(|e| Error::syscall(format!("update {} to program \"{}\"", self.what, program.name()), e))
    }

    /// Pins the link at `path` on bpffs: the attachment then outlives this process.
    pub fn pin(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        sys::obj_pin(self.fd.as_fd(), path)
            .map_err(|e| Error::syscall(format!("pin {} at {}", self.what, path.display()), e))
    }

    /// `"XDP link of program …"`, as errors name it.
    pub fn describe(&self) -> &str {
        &self.what
    }

    /// Detaches now, even if pinned (the fd and pins stay valid but attach nothing).
    pub fn detach(self) -> Result<()> {
        sys::link_detach(self.fd.as_fd()).map_err(|e| Error::syscall(format!("detach {}", self.what), e))
    }
}

impl AsFd for Link {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
