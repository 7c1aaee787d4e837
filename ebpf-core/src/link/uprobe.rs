use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use super::Link;
use crate::error::{Error, Result};
use crate::program::Program;
use crate::sys::{self, LinkTarget, UprobeEvent};
use crate::types::AttachType;
use crate::uprobe::{resolve_binary, UprobePmu, UserBinary};

/// How a user-space probe attaches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UprobeOptions {
    /// Only in this process (`None`: in every process that runs the code).
    pub pid: Option<u32>,
    /// A return probe (`uretprobe`): runs when the function returns.
    pub retprobe: bool,
    /// What `bpf_get_attach_cookie` returns in the program.
    pub cookie: u64,
    /// File offset of a reference counter (a USDT semaphore) the kernel raises while the probe
    /// is attached (0: none).
    pub ref_ctr_offset: u64,
}

fn invalid(object: String, reason: impl Into<String>) -> Error {
    Error::InvalidSpec { object, reason: reason.into() }
}

/// Where in `binary` `function` puts a probe: `name`, `name+OFFSET` or a bare file offset
/// (`0x1234`), as libbpf's section names write it.
fn function_offset(binary: &UserBinary, function: &str) -> Result<u64> {
    let number = |text: &str| match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    };
    if let Some(offset) = number(function) {
        return Ok(offset);
    }
    let (name, extra) = match function.rsplit_once('+') {
        Some((name, extra)) => (
            name,
            number(extra)
                .ok_or_else(|| invalid(format!("uprobe target {function}"), format!("{extra:?} is not an offset")))?,
        ),
        None => (function, 0),
    };
    Ok(binary.symbol_offset(name)? + extra)
}

fn c_path(path: &Path, what: &str) -> Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| invalid(what.to_owned(), "the binary's path contains a NUL"))
}

/// A uprobe or uretprobe (`uprobe/…`, `uretprobe/…` programs, of kprobe type) on a function of
/// a user-space binary, attached through the kernel's uprobe PMU and a `bpf_link`.
#[derive(Debug)]
pub struct Uprobe {
    link: Link,
    _event: OwnedFd,
}

impl Uprobe {
    /// Attaches `program` to `function` of `binary`. `binary` is a path, or a library or
    /// program name found as [`resolve_binary`] finds it; `function` is a symbol, `symbol+OFFSET`
    /// or a file offset. PIE executables and shared libraries need nothing more: probes go by
    /// file offset.
    pub fn attach(program: &Program, binary: &str, function: &str, options: &UprobeOptions) -> Result<Uprobe> {
        let path = resolve_binary(binary)?;
        let offset = function_offset(&UserBinary::open(&path)?, function)?;
        Self::attach_offset(program, &path, offset, options)
    }

    /// Attaches `program` at file offset `offset` of the binary at `path`.
    pub fn attach_offset(program: &Program, path: &Path, offset: u64, options: &UprobeOptions) -> Result<Uprobe> {
        let kind = if options.retprobe { "uretprobe" } else { "uprobe" };
        let pid = options.pid.map_or(String::new(), |p| format!(" in process {p}"));
        let what = format!("{kind} {}:{offset:#x}{pid} link of program \"{}\"", path.display(), program.name());
        let pmu = UprobePmu::read()?;
        let c_path = c_path(path, &what)?;
        let mut config = options.ref_ctr_offset.checked_shl(pmu.ref_ctr_shift).unwrap_or(0);
        if options.ref_ctr_offset != 0 && config >> pmu.ref_ctr_shift != options.ref_ctr_offset {
            return Err(invalid(what, "the reference counter offset does not fit the PMU's config field"));
        }
        if options.retprobe {
            config |= 1 << pmu.retprobe_bit;
        }
        let event = sys::perf_event_open_uprobe(&UprobeEvent {
            pmu_type: pmu.perf_type,
            config,
            path: &c_path,
            offset,
            pid: options.pid,
        })
        .map_err(|errno| Error::Os { operation: format!("open perf event for {what}"), errno })?;
        let fd = sys::link_create(
            program.as_fd(),
            event.as_raw_fd() as u32,
            AttachType::PerfEvent.raw(),
            0,
            LinkTarget::PerfEvent { cookie: options.cookie },
        )
        .map_err(|e| Error::syscall(format!("attach {what}"), e))?;
        Ok(Uprobe { link: Link::new(fd, what), _event: event })
    }
}

link_wrapper!(Uprobe);

/// `BPF_F_UPROBE_MULTI_RETURN`.
const UPROBE_MULTI_RETURN: u32 = 1;

/// Several uprobes of one program on one binary in one `bpf_link` (`uprobe.multi/…`
/// programs, loaded with the `trace_uprobe_multi` attach type; Linux 6.6+).
#[derive(Debug)]
pub struct UprobeMulti {
    link: Link,
}

impl UprobeMulti {
    /// Attaches `program` to every function of `binary` that `patterns` name; a pattern may
    /// hold `*` and `?` wildcards (`malloc*`), as libbpf's `uprobe.multi` sections do.
    /// `options.cookie` is given to every probe; `options.ref_ctr_offset` must be 0 (give
    /// per-probe counters through [`UprobeMulti::attach_offsets`]).
    pub fn attach(program: &Program, binary: &str, patterns: &[&str], options: &UprobeOptions) -> Result<UprobeMulti> {
        let path = resolve_binary(binary)?;
        let file = UserBinary::open(&path)?;
        let mut offsets = Vec::new();
        for pattern in patterns {
            let found = if pattern.contains(['*', '?']) {
                file.matching_functions(pattern)?
            } else {
                vec![function_offset(&file, pattern)?]
            };
            if found.is_empty() {
                return Err(invalid(format!("binary {}", path.display()), format!("no function matches {pattern}")));
            }
            offsets.extend(found);
        }
        offsets.sort_unstable();
        offsets.dedup();
        if options.ref_ctr_offset != 0 {
            return Err(invalid(
                format!("uprobe_multi link of program \"{}\"", program.name()),
                "give reference counters per offset through attach_offsets",
            ));
        }
        let cookies = if options.cookie == 0 { Vec::new() } else { vec![options.cookie; offsets.len()] };
        Self::attach_offsets(program, &path, &offsets, &[], &cookies, options)
    }

    /// Attaches `program` at `offsets` of the binary at `path`, with a reference counter and a
    /// cookie per offset where `ref_ctr_offsets` and `cookies` are not empty (each then has one
    /// entry per offset). `options.pid` and `options.retprobe` apply to all.
    pub fn attach_offsets(
        program: &Program,
        path: &Path,
        offsets: &[u64],
        ref_ctr_offsets: &[u64],
        cookies: &[u64],
        options: &UprobeOptions,
    ) -> Result<UprobeMulti> {
        let kind = if options.retprobe { "uretprobe_multi" } else { "uprobe_multi" };
        let what =
            format!("{kind} {} ({} places) link of program \"{}\"", path.display(), offsets.len(), program.name());
        let per_offset = |list: &[u64]| list.is_empty() || list.len() == offsets.len();
        if offsets.is_empty() || !per_offset(ref_ctr_offsets) || !per_offset(cookies) {
            return Err(invalid(what, "give at least one offset, and counters and cookies for none or for each"));
        }
        let c_path = c_path(path, &what)?;
        let target = LinkTarget::UprobeMulti {
            path: &c_path,
            offsets,
            ref_ctr_offsets,
            cookies,
            flags: if options.retprobe { UPROBE_MULTI_RETURN } else { 0 },
            pid: options.pid.unwrap_or(0),
        };
        let fd = sys::link_create(program.as_fd(), 0, AttachType::TraceUprobeMulti.raw(), 0, target)
            .map_err(|e| Error::syscall(format!("attach {what}"), e))?;
        Ok(UprobeMulti { link: Link::new(fd, what) })
    }
}

link_wrapper!(UprobeMulti);
