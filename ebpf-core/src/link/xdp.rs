use std::os::fd::AsFd;

use super::Link;
use crate::error::{Error, Result};
use crate::program::Program;
use crate::sys::{self, LinkTarget};
use crate::types::AttachType;

/// Where an XDP program runs (`XDP_FLAGS_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpMode {
    /// Let the kernel choose: the driver if it supports XDP, generic otherwise.
    #[default]
    Any,
    /// Generic (SKB) mode: works on every device, after the stack allocates the skb.
    Generic,
    /// In the driver, before any allocation; fails on drivers without native XDP.
    Driver,
    /// Offloaded to the NIC.
    Offload,
}

impl XdpMode {
    fn flags(self) -> u32 {
        match self {
            XdpMode::Any => 0,
            XdpMode::Generic => 1 << 1,
            XdpMode::Driver => 1 << 2,
            XdpMode::Offload => 1 << 3,
        }
    }
}

/// An XDP program attached to a network interface through a `bpf_link`.
#[derive(Debug)]
pub struct Xdp {
    link: Link,
}

impl Xdp {
    /// Attaches `program` to interface `ifindex` of the calling thread's network namespace.
    pub fn attach(program: &Program, ifindex: u32, mode: XdpMode) -> Result<Xdp> {
        let what = format!("XDP link of program \"{}\" on ifindex {ifindex}", program.name());
        let fd = sys::link_create(
            program.as_fd(),
            ifindex,
            AttachType::Xdp.raw(),
            mode.flags(),
            LinkTarget::Plain { target_btf_id: 0 },
        )
        .map_err(|e| {
            let hint = if mode == XdpMode::Driver && e.errno == sys::Errno::EOPNOTSUPP {
                " (the driver has no native XDP; use XdpMode::Generic)"
            } else {
                ""
            };
            Error::syscall(format!("attach {what}{hint}"), e)
        })?;
        Ok(Xdp { link: Link::new(fd, what) })
    }
}

link_wrapper!(Xdp);
