use std::os::fd::{AsFd, AsRawFd};

use super::Link;
use crate::error::{Error, Result};
use crate::program::Program;
use crate::sys::{self, LinkTarget};
use crate::types::AttachType;

/// A program attached to a cgroup v2 through a `bpf_link` (sock_addr hooks such as
/// `cgroup_inet4_connect`, sock_create, cgroup_skb, sock_ops, sockopt, sysctl, device).
/// It runs for every process in the cgroup and its descendants.
#[derive(Debug)]
pub struct CgroupLink {
    link: Link,
}

impl CgroupLink {
    /// Attaches `program` to the cgroup open at `cgroup` (a directory fd) at `attach_type`.
    pub fn attach(program: &Program, cgroup: &impl AsFd, attach_type: AttachType) -> Result<CgroupLink> {
        let what = format!("{attach_type} cgroup link of program \"{}\"", program.name());
        let target = cgroup.as_fd().as_raw_fd() as u32;
        let fd =
            sys::link_create(program.as_fd(), target, attach_type.raw(), 0, LinkTarget::Plain { target_btf_id: 0 })
                .map_err(|e| Error::syscall(format!("attach {what}"), e))?;
        Ok(CgroupLink { link: Link::new(fd, what) })
    }
}

link_wrapper!(CgroupLink);
