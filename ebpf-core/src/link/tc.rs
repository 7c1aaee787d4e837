use std::os::fd::{AsFd, AsRawFd};

use super::netlink::{
    attributes, transact, NetlinkError, Request, TcMsg, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_ECHO, NLM_F_EXCL,
    NLM_F_REQUEST, RTM_DELQDISC, RTM_DELTFILTER, RTM_GETTFILTER, RTM_NEWQDISC, RTM_NEWTFILTER,
};
use crate::error::{Error, Result};
use crate::program::Program;
use crate::sys::{Errno, NetlinkSocket};

const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_BPF_FD: u16 = 6;
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_FLAGS: u16 = 8;
const TCA_BPF_ID: u16 = 11;
const TCA_BPF_FLAG_ACT_DIRECT: u32 = 1;
const TC_H_CLSACT: u32 = 0xffff_fff1;
const TC_H_MIN_INGRESS: u32 = 0xfff2;
const TC_H_MIN_EGRESS: u32 = 0xfff3;
const CLSACT_HANDLE: u32 = 0xffff_0000;
const ETH_P_ALL: u16 = 0x0003;

/// Which side of the interface a tc program runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcDirection {
    /// Packets arriving on the interface.
    Ingress,
    /// Packets leaving it.
    Egress,
}

impl TcDirection {
    fn parent(self) -> u32 {
        (TC_H_CLSACT & 0xffff_0000)
            | match self {
                TcDirection::Ingress => TC_H_MIN_INGRESS,
                TcDirection::Egress => TC_H_MIN_EGRESS,
            }
    }

    fn name(self) -> &'static str {
        match self {
            TcDirection::Ingress => "ingress",
            TcDirection::Egress => "egress",
        }
    }
}

/// Where a netlink tc filter goes: direction, priority (lower runs first; 0 lets the kernel
/// choose) and handle (0 lets the kernel choose).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcAttach {
    /// Ingress or egress.
    pub direction: TcDirection,
    /// Filter priority (preference).
    pub priority: u16,
    /// Filter handle.
    pub handle: u32,
}

impl TcAttach {
    /// Ingress, priority and handle chosen by the kernel.
    pub fn ingress() -> TcAttach {
        TcAttach { direction: TcDirection::Ingress, priority: 0, handle: 0 }
    }

    /// Egress, priority and handle chosen by the kernel.
    pub fn egress() -> TcAttach {
        TcAttach { direction: TcDirection::Egress, priority: 0, handle: 0 }
    }

    /// The same, at `priority`.
    pub fn priority(mut self, priority: u16) -> TcAttach {
        self.priority = priority;
        self
    }

    /// The same, with `handle`.
    pub fn handle(mut self, handle: u32) -> TcAttach {
        self.handle = handle;
        self
    }
}

/// A `cls_bpf` filter in direct-action mode under the interface's `clsact` qdisc, made with
/// netlink (tc before TCX, or beside it: TCX programs run first, then these). Deleted on drop.
/// The netlink socket is kept, so the delete reaches the namespace the filter lives in.
#[derive(Debug)]
pub struct TcNetlink {
    socket: NetlinkSocket,
    ifindex: u32,
    direction: TcDirection,
    priority: u16,
    handle: u32,
    what: String,
}

/// What `TcNetlink::list` reports about one filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcFilterInfo {
    /// Priority.
    pub priority: u16,
    /// Handle.
    pub handle: u32,
    /// Id of the BPF program.
    pub program_id: u32,
    /// The name tc shows (`TCA_BPF_NAME`).
    pub name: String,
}

fn os_error(operation: String, error: NetlinkError) -> Error {
    let operation = match error.message {
        Some(message) => format!("{operation} ({message})"),
        None => operation,
    };
    Error::Os { operation, errno: error.errno }
}

fn socket(what: &str) -> Result<NetlinkSocket> {
    NetlinkSocket::open().map_err(|errno| Error::Os { operation: format!("{what}: open a netlink socket"), errno })
}

fn clsact(ifindex: u32) -> TcMsg {
    TcMsg { ifindex: ifindex as i32, handle: CLSACT_HANDLE, parent: TC_H_CLSACT, info: 0 }
}

impl TcNetlink {
    /// Adds `program` (a `sched_cls` program) as a direct-action filter on interface `ifindex`
    /// of the calling thread's network namespace, creating the `clsact` qdisc if there is
    /// none (an existing one is reused, and left in place on drop).
    pub fn attach(program: &Program, ifindex: u32, at: TcAttach) -> Result<TcNetlink> {
        let what = format!("tc {} filter of program \"{}\" on ifindex {ifindex}", at.direction.name(), program.name());
        let socket = socket(&what)?;
        let mut qdisc =
            Request::new(RTM_NEWQDISC, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, clsact(ifindex));
        qdisc.attr_str(TCA_KIND, "clsact");
        match transact(&socket, &mut qdisc) {
            Ok(_) => {}
            Err(e) if e.errno == Errno::EEXIST => {}
            Err(e) => return Err(os_error(format!("create the clsact qdisc for {what}"), e)),
        }
        let tc = TcMsg {
            ifindex: ifindex as i32,
            handle: at.handle,
            parent: at.direction.parent(),
            info: (u32::from(at.priority) << 16) | u32::from(ETH_P_ALL.to_be()),
        };
        let mut filter =
            Request::new(RTM_NEWTFILTER, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO, tc);
        filter
            .attr_str(TCA_KIND, "bpf")
            .begin_nested(TCA_OPTIONS)
            .attr_u32(TCA_BPF_FD, program.as_fd().as_raw_fd() as u32)
            .attr_str(TCA_BPF_NAME, program.name())
            .attr_u32(TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT)
            .end_nested();
        let replies = transact(&socket, &mut filter).map_err(|e| os_error(format!("attach {what}"), e))?;
        // The echo of the new filter says which priority and handle the kernel chose.
        let echo = replies.iter().find(|r| r.kind == RTM_NEWTFILTER).map(|r| r.tc).unwrap_or(tc);
        Ok(TcNetlink {
            socket,
            ifindex,
            direction: at.direction,
            priority: (echo.info >> 16) as u16,
            handle: echo.handle,
            what,
        })
    }

    /// The filter's priority (chosen by the kernel when 0 was asked).
    pub fn priority(&self) -> u16 {
        self.priority
    }

    /// The filter's handle.
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// The BPF filters on one side of interface `ifindex` (of the calling thread's namespace),
    /// in priority order.
    pub fn list(ifindex: u32, direction: TcDirection) -> Result<Vec<TcFilterInfo>> {
        let what = format!("list tc {} filters on ifindex {ifindex}", direction.name());
        let socket = socket(&what)?;
        let tc = TcMsg { ifindex: ifindex as i32, handle: 0, parent: direction.parent(), info: 0 };
        let mut request = Request::new(RTM_GETTFILTER, NLM_F_REQUEST | NLM_F_DUMP, tc);
        let replies = match transact(&socket, &mut request) {
            Ok(replies) => replies,
            // No clsact qdisc: no filters.
            Err(e) if e.errno == Errno::EINVAL || e.errno == Errno::ENOENT => return Ok(Vec::new()),
            Err(e) => return Err(os_error(what, e)),
        };
        let mut filters = Vec::new();
        for reply in replies.iter().filter(|r| r.kind == RTM_NEWTFILTER) {
            let mut kind_is_bpf = false;
            let (mut program_id, mut name) = (0, String::new());
            for (kind, value) in attributes(&reply.attrs) {
                match kind {
                    TCA_KIND => kind_is_bpf = value.starts_with(b"bpf\0"),
                    TCA_OPTIONS => {
                        for (option, v) in attributes(value) {
                            match option {
                                TCA_BPF_ID if v.len() >= 4 => {
                                    program_id = u32::from_ne_bytes(v[..4].try_into().expect("4 bytes"));
                                }
                                TCA_BPF_NAME => {
                                    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
                                    name = String::from_utf8_lossy(&v[..end]).into_owned();
                                }
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            // A dump also lists each priority's chain head (handle 0) without options.
            if kind_is_bpf && program_id != 0 {
                filters.push(TcFilterInfo {
                    priority: (reply.tc.info >> 16) as u16,
                    handle: reply.tc.handle,
                    program_id,
                    name,
                });
            }
        }
        Ok(filters)
    }

    /// Removes the `clsact` qdisc of interface `ifindex` and with it every tc filter on it.
    pub fn remove_clsact(ifindex: u32) -> Result<()> {
        let what = format!("remove the clsact qdisc of ifindex {ifindex}");
        let socket = socket(&what)?;
        let mut request = Request::new(RTM_DELQDISC, NLM_F_REQUEST | NLM_F_ACK, clsact(ifindex));
        request.attr_str(TCA_KIND, "clsact");
        transact(&socket, &mut request).map(drop).map_err(|e| os_error(what, e))
    }

    /// Deletes the filter now (drop does the same, ignoring errors).
    pub fn detach(self) -> Result<()> {
        let result = self.delete();
        std::mem::forget(self);
        result
    }

    fn delete(&self) -> Result<()> {
        let tc = TcMsg {
            ifindex: self.ifindex as i32,
            handle: self.handle,
            parent: self.direction.parent(),
            info: (u32::from(self.priority) << 16) | u32::from(ETH_P_ALL.to_be()),
        };
        let mut request = Request::new(RTM_DELTFILTER, NLM_F_REQUEST | NLM_F_ACK, tc);
        request.attr_str(TCA_KIND, "bpf");
        transact(&self.socket, &mut request).map(drop).map_err(|e| os_error(format!("detach {}", self.what), e))
    }
}

impl Drop for TcNetlink {
    fn drop(&mut self) {
        let _ = self.delete();
    }
}
