use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

use super::Link;
use crate::error::{Error, Result};
use crate::program::Program;
use crate::sys::{self, LinkTarget};
use crate::types::AttachType;

/// A raw tracepoint program (`raw_tracepoint/…`, `raw_tp/…`) attached to a tracepoint by
/// name; the program gets the tracepoint's raw arguments.
#[derive(Debug)]
pub struct RawTracepoint {
    link: Link,
}

impl RawTracepoint {
    /// Attaches `program` to the raw tracepoint `name` (for example `sys_enter`).
    pub fn attach(program: &Program, name: &str) -> Result<RawTracepoint> {
        let what = format!("raw tracepoint {name} link of program \"{}\"", program.name());
        let c_name = CString::new(name)
            .map_err(|_| Error::InvalidSpec { object: what.clone(), reason: "the name contains a NUL".into() })?;
        let fd = sys::raw_tracepoint_open(program.as_fd(), Some(&c_name), 0)
            .map_err(|e| Error::syscall(format!("attach {what}"), e))?;
        Ok(RawTracepoint { link: Link::new(fd, what) })
    }
}

link_wrapper!(RawTracepoint);

/// BTF-typed tracing programs (`tp_btf/…`, `fentry/…`, `fexit/…`, `fmod_ret/…`, `lsm/…`):
/// the attach target was fixed at load (the program's attach BTF id); linking activates it.
#[derive(Debug)]
pub struct Tracing {
    link: Link,
}

impl Tracing {
    /// Activates `program`, loaded with expected attach type `attach_type`.
    pub fn attach(program: &Program, attach_type: AttachType, cookie: u64) -> Result<Tracing> {
        let what = format!("{attach_type} link of program \"{}\"", program.name());
        let target = if cookie == 0 {
            LinkTarget::Plain { target_btf_id: 0 }
        } else {
            LinkTarget::Tracing { target_btf_id: 0, cookie }
        };
        let fd = sys::link_create(program.as_fd(), 0, attach_type.raw(), 0, target)
            .map_err(|e| Error::syscall(format!("attach {what}"), e))?;
        Ok(Tracing { link: Link::new(fd, what) })
    }
}

link_wrapper!(Tracing);

/// Where tracefs is mounted: `/sys/kernel/tracing`, or under debugfs on older systems.
fn tracefs_events() -> Option<PathBuf> {
    ["/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"].iter().map(PathBuf::from).find(|p| p.is_dir())
}

/// The tracefs id of tracepoint `category/name`.
pub fn tracepoint_id(category: &str, name: &str) -> Result<u64> {
    let events = tracefs_events().ok_or_else(|| Error::InvalidSpec {
        object: format!("tracepoint {category}/{name}"),
        reason: "tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)".to_owned(),
    })?;
    let path = events.join(category).join(name).join("id");
    let text =
        std::fs::read_to_string(&path).map_err(|source| Error::Io { operation: "read", path: path.clone(), source })?;
    text.trim().parse().map_err(|_| Error::InvalidSpec {
        object: format!("tracepoint {category}/{name}"),
        reason: format!("{} holds {text:?}, not an id", path.display()),
    })
}

/// A tracepoint program (`tracepoint/<category>/<name>`, `tp/…`) attached through a perf
/// event and a `bpf_link`; it runs on every CPU.
#[derive(Debug)]
pub struct Tracepoint {
    link: Link,
    _event: std::os::fd::OwnedFd,
}

impl Tracepoint {
    /// Attaches `program` to tracepoint `category/name` (for example `syscalls`,
    /// `sys_enter_getpid`). Needs tracefs mounted to find the tracepoint's id.
    pub fn attach(program: &Program, category: &str, name: &str) -> Result<Tracepoint> {
        let what = format!("tracepoint {category}/{name} link of program \"{}\"", program.name());
        let id = tracepoint_id(category, name)?;
        let event = sys::perf_event_open_tracepoint(id)
            .map_err(|errno| Error::Os { operation: format!("open perf event for {what}"), errno })?;
        let target = std::os::fd::AsRawFd::as_raw_fd(&event) as u32;
        let fd = sys::link_create(
            program.as_fd(),
            target,
            AttachType::PerfEvent.raw(),
            0,
            LinkTarget::PerfEvent { cookie: 0 },
        )
        .map_err(|e| Error::syscall(format!("attach {what}"), e))?;
        Ok(Tracepoint { link: Link::new(fd, what), _event: event })
    }
}

link_wrapper!(Tracepoint);

/// An iterator (`iter/bpf_map`, `iter/task`, …): a link whose program runs as a reader reads.
#[derive(Debug)]
pub struct Iter {
    link: Link,
}

impl Iter {
    /// Creates the iterator link of `program` (a `tracing` program loaded for `iter/<target>`).
    /// `info` is the target's `bpf_iter_link_info` (empty for most targets; a map fd for
    /// `bpf_map_elem`).
    pub fn attach(program: &Program, info: &[u8]) -> Result<Iter> {
        let what = format!("iterator link of program \"{}\"", program.name());
        let fd = sys::link_create(program.as_fd(), 0, AttachType::TraceIter.raw(), 0, LinkTarget::Iter { info })
            .map_err(|e| Error::syscall(format!("attach {what}"), e))?;
        Ok(Iter { link: Link::new(fd, what) })
    }

    /// A new reader: each read runs the program over the next objects and returns what it
    /// printed (`bpf_seq_printf`, `bpf_seq_write`).
    pub fn open(&self) -> Result<File> {
        let fd = sys::iter_create(self.link.as_fd())
            .map_err(|e| Error::syscall(format!("open a reader of {}", self.link.describe()), e))?;
        Ok(File::from(fd))
    }
}

link_wrapper!(Iter);

/// An `sk_lookup` program attached to a network namespace: it picks the listening socket for
/// new connections and datagrams before the kernel's own lookup.
#[derive(Debug)]
pub struct SkLookup {
    link: Link,
}

impl SkLookup {
    /// Attaches `program` to the network namespace open at `netns` (`/proc/self/ns/net`, a
    /// `/run/netns/<name>` file).
    pub fn attach(program: &Program, netns: &impl AsFd) -> Result<SkLookup> {
        let what = format!("sk_lookup link of program \"{}\"", program.name());
        let target = std::os::fd::AsRawFd::as_raw_fd(&netns.as_fd()) as u32;
        let fd = sys::link_create(
            program.as_fd(),
            target,
            AttachType::SkLookup.raw(),
            0,
            LinkTarget::Plain { target_btf_id: 0 },
        )
        .map_err(|e| Error::syscall(format!("attach {what}"), e))?;
        Ok(SkLookup { link: Link::new(fd, what) })
    }
}

link_wrapper!(SkLookup);
