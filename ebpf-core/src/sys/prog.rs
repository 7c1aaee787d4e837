use std::ffi::CStr;
use std::os::fd::{BorrowedFd, OwnedFd};

use super::attr::{ProgBindMapAttr, ProgLoadAttr, SingleFdAttr, TestRunAttr};
use super::{bpf_fd, fd_u32, mut_ptr, ptr, raw_bpf, Cmd, Errno, SysError, SysResult};
use crate::insn::RawInsn;

/// Inputs of `BPF_PROG_LOAD`.
#[derive(Clone, Debug)]
pub struct ProgLoad<'a> {
    /// `enum bpf_prog_type` value.
    pub prog_type: u32,
    /// `enum bpf_attach_type` value the program is verified for.
    pub expected_attach_type: u32,
    /// The instructions.
    pub insns: &'a [RawInsn],
    /// License string; GPL-only helpers need a GPL-compatible one.
    pub license: &'a CStr,
    /// Name shown by introspection (truncated to 15 characters).
    pub name: &'a str,
    /// `BPF_F_*` program flags.
    pub prog_flags: u32,
    /// Kernel version (only kprobes of old kernels check it).
    pub kern_version: u32,
    /// Interface for device-bound/offloaded programs.
    pub prog_ifindex: u32,
    /// BTF object with the program's func and line info.
    pub prog_btf: Option<BorrowedFd<'a>>,
    /// `bpf_func_info` records and their size.
    pub func_info: (&'a [u8], u32),
    /// `bpf_line_info` records and their size.
    pub line_info: (&'a [u8], u32),
    /// BTF id of the attach target (tracing, LSM, struct_ops, ext).
    pub attach_btf_id: u32,
    /// Program to extend (freplace) or BTF object of the target (module BTF).
    pub attach_fd: Option<BorrowedFd<'a>>,
    /// Map and BTF fds referred to by index from the instructions.
    pub fd_array: &'a [i32],
}

impl<'a> ProgLoad<'a> {
    /// A load of `insns` as `prog_type` under `license`, with everything else unset.
    pub fn new(prog_type: u32, insns: &'a [RawInsn], license: &'a CStr) -> ProgLoad<'a> {
        ProgLoad {
            prog_type,
            expected_attach_type: 0,
            insns,
            license,
            name: "",
            prog_flags: 0,
            kern_version: 0,
            prog_ifindex: 0,
            prog_btf: None,
            func_info: (&[], 0),
            line_info: (&[], 0),
            attach_btf_id: 0,
            attach_fd: None,
            fd_array: &[],
        }
    }
}

/// What `BPF_PROG_LOAD` returned, and how long the verifier log wanted to be.
#[derive(Debug)]
pub struct ProgLoadOutcome {
    /// The program fd, or the error.
    pub result: SysResult<OwnedFd>,
    /// Bytes the whole log needs including its NUL (kernel 6.4+; 0 when unknown).
    pub log_true_size: u32,
}

/// `BPF_PROG_LOAD`. With `log` set, the verifier writes its log at the given level into the
/// buffer (the kernel never writes past its length).
pub fn prog_load(load: &ProgLoad<'_>, log: Option<(&mut [u8], u32)>) -> ProgLoadOutcome {
    let (log_buf, log_size, log_level) = match log {
        Some((buf, level)) if !buf.is_empty() => {
            let size = u32::try_from(buf.len()).unwrap_or(u32::MAX);
            (mut_ptr(buf), size, level)
        }
        _ => (0, 0, 0),
    };
    let (func_info, func_info_rec_size) = load.func_info;
    let (line_info, line_info_rec_size) = load.line_info;
    let count = |bytes: &[u8], rec: u32| {
        if rec == 0 {
            0
        } else {
            (bytes.len() / rec as usize) as u32
        }
    };
    let mut attr = ProgLoadAttr {
        prog_type: load.prog_type,
        insn_cnt: load.insns.len() as u32,
        insns: ptr(load.insns),
        license: load.license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        kern_version: load.kern_version,
        prog_flags: load.prog_flags,
        prog_name: super::object_name(load.name),
        prog_ifindex: load.prog_ifindex,
        expected_attach_type: load.expected_attach_type,
        prog_btf_fd: load.prog_btf.map_or(0, fd_u32),
        func_info_rec_size,
        func_info: ptr(func_info),
        func_info_cnt: count(func_info, func_info_rec_size),
        line_info_rec_size,
        line_info: ptr(line_info),
        line_info_cnt: count(line_info, line_info_rec_size),
        attach_btf_id: load.attach_btf_id,
        attach_prog_fd: load.attach_fd.map_or(0, fd_u32),
        fd_array: ptr(load.fd_array),
        ..Default::default()
    };
    // The verifier can fail transiently with EAGAIN under memory pressure; libbpf retries too.
    let mut result = bpf_fd(Cmd::ProgLoad, &mut attr);
    for _ in 0..4 {
        match result {
            Err(SysError { errno: Errno::EAGAIN, .. }) => result = bpf_fd(Cmd::ProgLoad, &mut attr),
            _ => break,
        }
    }
    ProgLoadOutcome { result, log_true_size: attr.log_true_size }
}

/// Inputs of `BPF_PROG_TEST_RUN`.
#[derive(Debug)]
pub struct TestRun<'a> {
    /// Packet (or other) data fed to the program.
    pub data_in: &'a [u8],
    /// Where the data as the program left it goes; empty for none.
    pub data_out: &'a mut [u8],
    /// Context fed to the program (for example a `__sk_buff` or `xdp_md`).
    pub ctx_in: &'a [u8],
    /// Where the context as the program left it goes; empty for none.
    pub ctx_out: &'a mut [u8],
    /// How many times to run (the duration is the mean).
    pub repeat: u32,
    /// `BPF_F_TEST_*` flags.
    pub flags: u32,
    /// CPU to run on, with `BPF_F_TEST_RUN_ON_CPU`.
    pub cpu: u32,
    /// XDP live-frames batch size.
    pub batch_size: u32,
}

/// What `BPF_PROG_TEST_RUN` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestRunOutput {
    /// The program's return value.
    pub retval: u32,
    /// Mean run time in nanoseconds.
    pub duration_ns: u32,
    /// Bytes of output data (may exceed the buffer when it was too small).
    pub data_size_out: u32,
    /// Bytes of output context.
    pub ctx_size_out: u32,
}

/// `BPF_PROG_TEST_RUN`.
pub fn prog_test_run(prog: BorrowedFd<'_>, run: TestRun<'_>) -> SysResult<TestRunOutput> {
    let mut attr = TestRunAttr {
        prog_fd: fd_u32(prog),
        data_size_in: run.data_in.len() as u32,
        data_size_out: run.data_out.len() as u32,
        data_in: ptr(run.data_in),
        // A null pointer keeps the kernel from copying out at all; a zero size with a
        // non-null pointer would let it write the whole output.
        data_out: mut_ptr(run.data_out),
        repeat: run.repeat,
        ctx_size_in: run.ctx_in.len() as u32,
        ctx_size_out: run.ctx_out.len() as u32,
        ctx_in: ptr(run.ctx_in),
        ctx_out: mut_ptr(run.ctx_out),
        flags: run.flags,
        cpu: run.cpu,
        batch_size: run.batch_size,
        ..Default::default()
    };
    raw_bpf(Cmd::ProgTestRun, &mut attr)?;
    Ok(TestRunOutput {
        retval: attr.retval,
        duration_ns: attr.duration,
        data_size_out: attr.data_size_out,
        ctx_size_out: attr.ctx_size_out,
    })
}

/// `BPF_ENABLE_STATS` for `BPF_STATS_RUN_TIME` (type 0): run counts and times are collected
/// for as long as the returned fd is open.
pub fn enable_stats(stats_type: u32) -> SysResult<OwnedFd> {
    let mut attr = SingleFdAttr { value: stats_type, _pad: 0 };
    bpf_fd(Cmd::EnableStats, &mut attr)
}

/// `BPF_PROG_BIND_MAP`: keeps `map` alive for as long as `prog` is.
pub fn prog_bind_map(prog: BorrowedFd<'_>, map: BorrowedFd<'_>) -> SysResult<()> {
    let mut attr = ProgBindMapAttr { prog_fd: fd_u32(prog), map_fd: fd_u32(map), flags: 0, _pad: 0 };
    raw_bpf(Cmd::ProgBindMap, &mut attr).map(drop)
}
