use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::spec::ProgramSpec;
use super::ProgramInfo;
use crate::error::{Error, Result, VerifierError};
use crate::insn::{self, Instruction, RawInsn};
use crate::sys::{self, Errno, ProgLoad, SysError};
use crate::types::ProgramType;
use crate::SharedStr;

bitflags::bitflags! {
    /// Verifier log detail (`log_level`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct LogLevel: u32 {
        /// Level 1: the states at branches, and the error.
        const BRANCHES = 1;
        /// Level 2: the state after every instruction.
        const INSTRUCTIONS = 2;
        /// Statistics: processed instructions, states, time.
        const STATS = 4;
    }
}

/// How a program is loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Verifier log to collect even on success. Empty (the default) collects a log only when
    /// the verifier rejects the program, at level 1.
    pub log_level: LogLevel,
    /// First log buffer size; it grows to whatever the kernel says the whole log needs.
    pub initial_log_size: usize,
    /// Where a collection load pins (and finds) maps declared `pinning: by name`.
    pub pin_dir: Option<PathBuf>,
    /// When a collection load gives the kernel the object's BTF.
    pub btf: BtfPolicy,
    /// The running kernel's BTF for CO-RE, kfuncs and attach targets (from
    /// [`read_kernel_btf`](super::read_kernel_btf)), so the caller decides how long it lives;
    /// `None` uses the process's copy ([`kernel_btf`](super::kernel_btf)).
    pub kernel_btf: Option<KernelBtf>,
}

/// The kernel's BTF handed to loads (compared by identity, not by contents).
#[derive(Clone, Debug)]
pub struct KernelBtf(pub std::sync::Arc<ebpf_btf::Btf>);

impl PartialEq for KernelBtf {
    fn eq(&self, other: &KernelBtf) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for KernelBtf {}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            log_level: LogLevel::empty(),
            initial_log_size: 64 * 1024,
            pin_dir: None,
            btf: BtfPolicy::Auto,
            kernel_btf: None,
        }
    }
}

impl LoadOptions {
    /// Options that keep the verifier log at `level` even when the load succeeds.
    pub fn with_log(level: LogLevel) -> LoadOptions {
        LoadOptions { log_level: level, ..LoadOptions::default() }
    }

    /// The same options with a BTF policy.
    pub fn btf(mut self, policy: BtfPolicy) -> LoadOptions {
        self.btf = policy;
        self
    }

    /// The same options with the kernel BTF loads resolve against.
    pub fn kernel_btf(mut self, btf: std::sync::Arc<ebpf_btf::Btf>) -> LoadOptions {
        self.kernel_btf = Some(KernelBtf(btf));
        self
    }

    /// The same options with a pin directory for maps pinned by name.
    pub fn pin_dir(mut self, dir: impl Into<PathBuf>) -> LoadOptions {
        self.pin_dir = Some(dir.into());
        self
    }
}

/// Where a program load gets its BTF from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum BtfSource<'a> {
    /// Load the spec's own blob.
    Own,
    /// Already loaded (a collection's, shared by its programs).
    Shared(BorrowedFd<'a>),
    /// Load the program without BTF (no func or line info).
    Without,
}

/// When a collection load gives the kernel the object's BTF.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BtfPolicy {
    /// Only when something needs it: subprograms or callbacks (func info), map values with
    /// kernel-managed fields (spin locks, timers, kptrs, …), struct_ops and freplace programs,
    /// or a verifier log asked for in the options. A program the verifier rejects is loaded
    /// again with BTF, so its log shows the C source lines. Saves a `BTF_LOAD` and the
    /// kernel's func/line info checks: about a quarter of a small program's load time.
    #[default]
    Auto,
    /// Always, as libbpf does: `bpftool prog dump` shows source lines and `bpftool map dump`
    /// prints typed values.
    Always,
    /// Never (kernels without BTF; loads fail if something needs it).
    Never,
}

/// The kernel's limit on a log buffer (`UINT_MAX >> 2`).
const MAX_LOG_SIZE: usize = (u32::MAX >> 2) as usize;

/// A loaded program. Dropping it closes the fd; the kernel unloads the program when nothing
/// else (a link, a pin, a prog array) holds it.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
    name: SharedStr,
    program_type: Option<ProgramType>,
    verifier_log: Option<String>,
}

/// A program with its user-space work done (kernel-specific fixups, encoding, map fds),
/// waiting only for `BPF_PROG_LOAD`. A collection readies every
/// program before loading any, so its loads run back to back: each JIT'd program makes the
/// kernel switch page tables to patch text, which flushes this process's TLB, so user-space
/// work between two loads runs cold.
pub(crate) struct ReadyProgram<'s> {
    spec: &'s ProgramSpec,
    prepared: super::prepare::Prepared,
}

impl<'s> ReadyProgram<'s> {
    /// Readies `spec`, its map references bound to the fds `map_fd` gives by name, its raw
    /// instructions appended to `raw` (what [`ReadyProgram::load`] is then given).
    pub(crate) fn new(
        spec: &'s ProgramSpec,
        map_fd: &dyn Fn(&str) -> Option<i32>,
        raw: &mut Vec<RawInsn>,
        options: &LoadOptions,
    ) -> Result<ReadyProgram<'s>> {
        let kernel = options.kernel_btf.as_ref().map(|k| &k.0);
        let prepared = super::prepare::prepare(spec, map_fd, raw, kernel)?;
        Ok(ReadyProgram { spec, prepared })
    }

    /// Its `BPF_PROG_LOAD` request (`raw`: the buffer it was readied into), with the BTF
    /// object `btf` for its func and line info.
    fn request<'r>(&'r self, raw: &'r [RawInsn], btf: Option<BorrowedFd<'r>>) -> ProgLoad<'r> {
        let spec = self.spec;
        let insns = match &self.prepared.raw {
            Some(range) => &raw[range.clone()],
            None => spec.instructions.encoded(),
        };
        let mut request = ProgLoad::new(spec.program_type.raw(), insns, &spec.license);
        request.name = &spec.name;
        request.expected_attach_type =
            self.prepared.expected_attach_type.unwrap_or_else(|| spec.expected_attach_type.map_or(0, |t| t.raw()));
        request.kern_version = spec.kernel_version;
        request.prog_flags = spec.flags.bits();
        request.attach_btf_id = self.prepared.attach_btf_id.unwrap_or(0);
        if let (Some(info), Some(fd)) = (&spec.btf, btf) {
            request.prog_btf = Some(fd);
            request.func_info = (&info.func_info[..], info.func_info_rec_size);
            request.line_info = (&info.line_info[..], info.line_info_rec_size);
        }
        request
    }

    /// Loads it (`raw`: the buffer it was readied into): the program fd, and the verifier log
    /// when one was kept.
    pub(crate) fn load(
        &self,
        raw: &[RawInsn],
        options: &LoadOptions,
        btf: BtfSource<'_>,
    ) -> Result<(OwnedFd, Option<String>)> {
        let own_btf = match (&self.spec.btf, btf) {
            (Some(blob), BtfSource::Own) => Some(sys::btf_load(&blob.blob)?),
            _ => None,
        };
        let btf_fd = match btf {
            BtfSource::Shared(fd) => Some(fd),
            BtfSource::Own => own_btf.as_ref().map(|fd| fd.as_fd()),
            BtfSource::Without => None,
        };
        let request = self.request(raw, btf_fd);
        if options.log_level.is_empty() {
            match sys::prog_load(&request, None).result {
                Ok(fd) => Ok((fd, None)),
                // Rejected: load again with a log to say why.
                Err(first) => match load_with_log(&request, LogLevel::BRANCHES, options.initial_log_size) {
                    (Ok(fd), log) => Ok((fd, Some(log))),
                    (Err(e), log) => {
                        Err(rejection(self.spec, if log.is_empty() { first } else { e }, log, &self.prepared.poisoned))
                    }
                },
            }
        } else {
            match load_with_log(&request, options.log_level, options.initial_log_size) {
                (Ok(fd), log) => Ok((fd, Some(log))),
                (Err(e), log) => Err(rejection(self.spec, e, log, &self.prepared.poisoned)),
            }
        }
    }

    /// The handle on the program a load of it gave (the log kept only when the options asked
    /// for one).
    pub(crate) fn loaded(&self, fd: OwnedFd, log: Option<String>, options: &LoadOptions) -> Program {
        Program {
            fd,
            name: self.spec.name.clone(),
            program_type: Some(self.spec.program_type),
            verifier_log: log.filter(|_| !options.log_level.is_empty()),
        }
    }
}

fn log_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl Program {
    /// Loads `spec` with default options.
    pub fn load(spec: &ProgramSpec) -> Result<Program> {
        Self::load_with(spec, &LoadOptions::default())
    }

    /// Loads `spec`. A verifier rejection comes back as [`Error::Verifier`] with the whole log.
    /// CO-RE relocations, kernel symbols and BTF attach targets are resolved against the running
    /// kernel first.
    pub fn load_with(spec: &ProgramSpec, options: &LoadOptions) -> Result<Program> {
        let mut raw = Vec::new();
        let ready = ReadyProgram::new(spec, &|_| None, &mut raw, options)?;
        let (fd, log) = ready.load(&raw, options, BtfSource::Own)?;
        Ok(ready.loaded(fd, log, options))
    }

    /// Opens the program pinned at `path`.
    pub fn from_pin(path: impl AsRef<Path>) -> Result<Program> {
        let path = path.as_ref();
        let fd =
            sys::obj_get(path, 0).map_err(|e| Error::syscall(format!("open pinned program {}", path.display()), e))?;
        if sys::object_kind(fd.as_fd()) != sys::ObjectKind::Program {
            return Err(Error::InvalidSpec {
                object: format!("pin {}", path.display()),
                reason: "it is not a program".to_owned(),
            });
        }
        Self::from_owned(fd, &format!("pinned program {}", path.display()))
    }

    /// Opens the program with global id `id`.
    pub fn from_id(id: u32) -> Result<Program> {
        let fd = sys::prog_fd_by_id(id).map_err(|e| Error::syscall(format!("open program id {id}"), e))?;
        Self::from_owned(fd, &format!("program id {id}"))
    }

    fn from_owned(fd: OwnedFd, what: &str) -> Result<Program> {
        let info = sys::prog_info(fd.as_fd()).map_err(|e| Error::syscall(format!("read info of {what}"), e))?;
        Ok(Program {
            fd,
            name: info.name.into(),
            program_type: ProgramType::from_raw(info.prog_type),
            verifier_log: None,
        })
    }

    /// Another handle on the same program (the fd is duplicated; no `bpf()` call).
    pub fn try_clone(&self) -> Result<Program> {
        let fd = self.fd.try_clone().map_err(|source| Error::Io {
            operation: "duplicate program fd",
            path: "<fd>".into(),
            source,
        })?;
        Ok(Program { fd, name: self.name.clone(), program_type: self.program_type, verifier_log: None })
    }

    /// Name as loaded.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Kind of program (`None` for a kind newer than this library).
    pub fn program_type(&self) -> Option<ProgramType> {
        self.program_type
    }

    /// The verifier log of a successful load, when [`LoadOptions::log_level`] asked for one.
    pub fn verifier_log(&self) -> Option<&str> {
        self.verifier_log.as_deref()
    }

    /// What the kernel reports about this program.
    pub fn info(&self) -> Result<ProgramInfo> {
        sys::prog_info(self.as_fd()).map_err(|e| Error::syscall(format!("read info of program \"{}\"", self.name), e))
    }

    /// The program as the kernel runs it, after verification and rewriting.
    pub fn translated(&self) -> Result<Vec<Instruction>> {
        let bytes = sys::prog_xlated(self.as_fd())
            .map_err(|e| Error::syscall(format!("read instructions of program \"{}\"", self.name), e))?;
        Ok(insn::decode_bytes(&bytes)?)
    }

    /// The program's machine code as the JIT wrote it, with where each of its functions sits
    /// in the kernel (empty code for an interpreted program).
    pub fn jited(&self) -> Result<crate::info::JitedImage> {
        sys::prog_jited(self.as_fd())
            .map_err(|e| Error::syscall(format!("read the JIT'd code of program \"{}\"", self.name), e))
    }

    /// Pins the program at `path` on a bpffs mount.
    pub fn pin(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        sys::obj_pin(self.as_fd(), path)
            .map_err(|e| Error::syscall(format!("pin program \"{}\" at {}", self.name, path.display()), e))
    }

    pub(super) fn describe(&self) -> String {
        format!("program \"{}\"", self.name)
    }
}

impl AsFd for Program {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Loads with a log at `level`, growing the buffer until the whole log fits.
fn load_with_log(request: &ProgLoad<'_>, level: LogLevel, initial: usize) -> (Result<OwnedFd, SysError>, String) {
    let mut size = initial.clamp(4096, MAX_LOG_SIZE);
    loop {
        let mut buf = vec![0u8; size];
        let outcome = sys::prog_load(request, Some((&mut buf, level.bits())));
        let needed = outcome.log_true_size as usize;
        match outcome.result {
            // ENOSPC means the log did not fit (even when the program itself verified).
            Err(SysError { errno: Errno::ENOSPC, .. }) if size < MAX_LOG_SIZE => {
                size = if needed > size { needed } else { size.saturating_mul(4) }.min(MAX_LOG_SIZE);
            }
            result => return (result, log_text(&buf)),
        }
    }
}

fn rejection(spec: &ProgramSpec, error: SysError, log: String, poisoned: &[(usize, String)]) -> Error {
    if log.is_empty() && !matches!(error.errno, Errno::EACCES | Errno::EINVAL) {
        return Error::syscall(format!("load program \"{}\" ({})", spec.name, spec.program_type), error);
    }
    // A poisoned CO-RE relocation reads as an unknown helper call: say which one it was.
    let explanation = super::prepare::poisoned_slot_in_log(&log)
        .and_then(|slot| poisoned.iter().find(|(s, _)| *s == slot))
        .map(|(slot, what)| format!("instruction {slot}: CO-RE relocation {what}"));
    Error::Verifier(Box::new(VerifierError {
        program: spec.name.to_string(),
        section: spec.section.as_deref().map(str::to_owned),
        errno: error.errno,
        log,
        explanation,
    }))
}

/// Removes a pin (of any object) from bpffs.
pub fn unpin(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    std::fs::remove_file(path).map_err(|source| Error::Io { operation: "unpin", path: path.to_owned(), source })
}

/// Run-time statistics collection; the kernel counts program runs and time while this lives.
#[derive(Debug)]
pub struct RunStats {
    _fd: OwnedFd,
}

/// Turns on run counting for every program (`BPF_ENABLE_STATS`), until the guard drops.
pub fn enable_run_stats() -> Result<RunStats> {
    let fd = sys::enable_stats(0).map_err(|e| Error::syscall("enable run-time stats", e))?;
    Ok(RunStats { _fd: fd })
}
