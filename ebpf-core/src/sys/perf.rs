use std::os::fd::{FromRawFd, OwnedFd};

use super::{Cmd, Errno, SysError};

/// `struct perf_event_attr` (`PERF_ATTR_SIZE_VER8`, 136 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved_2: u16,
    aux_sample_size: u32,
    reserved_3: u32,
    sig_data: u64,
    config3: u64,
}

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_BPF_OUTPUT: u64 = 10;
const PERF_SAMPLE_RAW: u64 = 1 << 10;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// `perf_event_open(attr, pid -1, cpu, no group, CLOEXEC)`: the event for every task on `cpu`.
fn open(attr: &PerfEventAttr, cpu: u32) -> Result<OwnedFd, Errno> {
    open_for(attr, -1, cpu as libc::c_int)
}

/// `perf_event_open(attr, pid, cpu, no group, CLOEXEC)`.
fn open_for(attr: &PerfEventAttr, pid: libc::pid_t, cpu: libc::c_int) -> Result<OwnedFd, Errno> {
    // SAFETY: `attr` is a fully initialised perf_event_attr of the size it declares; the
    // kernel only reads it (and whatever its config words point to, which callers keep alive
    // for the call). pid and cpu are plain integers the kernel checks.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr as *const PerfEventAttr,
            pid,
            cpu,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: a new fd returned by the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Opens the per-CPU software event that `bpf_perf_event_output` writes to, on `cpu`,
/// waking readers after `wakeup_events` samples.
pub fn perf_event_open_bpf_output(cpu: u32, wakeup_events: u32) -> Result<OwnedFd, SysError> {
    let attr = PerfEventAttr {
        kind: PERF_TYPE_SOFTWARE,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: PERF_COUNT_SW_BPF_OUTPUT,
        sample_period: 1,
        sample_type: PERF_SAMPLE_RAW,
        wakeup_events: wakeup_events.max(1),
        ..PerfEventAttr::default()
    };
    // perf_event_open has no bpf command; report it under the map update it serves.
    open(&attr, cpu).map_err(|errno| SysError { cmd: Cmd::MapUpdateElem, errno })
}

const PERF_TYPE_TRACEPOINT: u32 = 2;

/// Opens the tracepoint with tracefs id `id` as a perf event a BPF program can be linked to
/// (`BPF_PERF_EVENT`). The program then runs on every CPU; the event is opened on CPU 0
/// only because perf wants one.
pub fn perf_event_open_tracepoint(id: u64) -> Result<OwnedFd, Errno> {
    let attr = PerfEventAttr {
        kind: PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: id,
        sample_period: 1,
        wakeup_events: 1,
        ..PerfEventAttr::default()
    };
    open(&attr, 0)
}

/// Opens a kprobe on `symbol` through the kprobe PMU whose perf type is `pmu_type` (read from
/// `/sys/bus/event_source/devices/kprobe/type`), for every task on CPU 0.
pub fn perf_event_open_kprobe(pmu_type: u32, symbol: &std::ffi::CStr) -> Result<OwnedFd, Errno> {
    let attr = PerfEventAttr {
        kind: pmu_type,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        // config1 carries the address of the symbol's name (kprobe_func); config2 the offset.
        config1: symbol.as_ptr() as u64,
        sample_period: 1,
        wakeup_events: 1,
        ..PerfEventAttr::default()
    };
    // `symbol` outlives the call: the kernel copies the name during perf_event_open.
    open(&attr, 0)
}

/// A uprobe to open through the uprobe PMU (`/sys/bus/event_source/devices/uprobe`).
#[derive(Clone, Copy, Debug)]
pub struct UprobeEvent<'a> {
    /// The PMU's perf type.
    pub pmu_type: u32,
    /// `config`: the return-probe bit and the reference counter offset, placed where the
    /// PMU's format says.
    pub config: u64,
    /// The binary.
    pub path: &'a std::ffi::CStr,
    /// File offset of the probed instruction.
    pub offset: u64,
    /// Only this process, or every process (`None`).
    pub pid: Option<u32>,
}

/// Opens a uprobe as a perf event a BPF program can be linked to. For every process it is
/// opened on CPU 0 (perf wants a CPU; the program still runs wherever the probe is hit).
pub fn perf_event_open_uprobe(event: &UprobeEvent<'_>) -> Result<OwnedFd, Errno> {
    let attr = PerfEventAttr {
        kind: event.pmu_type,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: event.config,
        // config1 carries the address of the path (uprobe_path); config2 the offset.
        config1: event.path.as_ptr() as u64,
        config2: event.offset,
        sample_period: 1,
        wakeup_events: 1,
        ..PerfEventAttr::default()
    };
    let pid = event.pid.and_then(|p| libc::pid_t::try_from(p).ok()).ok_or(Errno::EINVAL);
    // `path` outlives the call: the kernel resolves it during perf_event_open.
    match event.pid {
        Some(_) => open_for(&attr, pid?, -1),
        None => open_for(&attr, -1, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_is_the_v8_size() {
        assert_eq!(std::mem::size_of::<PerfEventAttr>(), 136);
        assert_eq!(std::mem::offset_of!(PerfEventAttr, wakeup_events), 48);
        assert_eq!(std::mem::offset_of!(PerfEventAttr, sig_data), 120);
    }
}
