//! The crate's error type: every error names the operation, the object and the errno.

use std::fmt;
use std::path::PathBuf;

use crate::insn::{AsmError, DecodeError};
use crate::sys::{errno_name, BtfLoadError, Cmd, Errno, SysError};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `bpf(2)` call failed. `operation` says what was being done to which object.
    #[error("{operation}: {}{}", errno_name(*errno), hint(*cmd, *errno))]
    Syscall {
        /// For example `update map "policy" (hash, 16384 entries)`.
        operation: String,
        /// The command that failed.
        cmd: Cmd,
        /// What the kernel said.
        errno: Errno,
    },
    /// A system call other than `bpf(2)` failed (setsockopt, perf_event_open, netlink).
    #[error("{operation}: {}", errno_name(*errno))]
    Os {
        /// What was being done, to which object.
        operation: String,
        /// What the kernel said.
        errno: Errno,
    },
    /// The verifier rejected a program; the whole log is inside.
    #[error(transparent)]
    Verifier(Box<VerifierError>),
    /// A buffer or value whose size does not match the object it is used with.
    #[error("{operation}: {what} is {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// The operation.
        operation: String,
        /// What was the wrong size (`key`, `value`, …).
        what: &'static str,
        /// Bytes given.
        actual: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// A program refers to a map by name, and no map of that name was bound.
    #[error("program \"{program}\": instruction {index} refers to map \"{map}\", which was never bound")]
    UnboundMap {
        /// The program.
        program: String,
        /// The map name.
        map: String,
        /// Instruction index of the reference.
        index: usize,
    },
    /// A spec that cannot be loaded as it stands.
    #[error("{object}: {reason}")]
    InvalidSpec {
        /// The object (`program "x"`, `map "y"`).
        object: String,
        /// Why.
        reason: String,
    },
    /// Assembling failed.
    #[error(transparent)]
    Asm(#[from] AsmError),
    /// Instruction bytes did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// An object file or collection spec that cannot be read or edited as asked.
    #[error(transparent)]
    Object(#[from] crate::object::ObjectError),
    /// The kernel rejected a BTF blob.
    #[error("load BTF: {0}")]
    BtfLoad(#[from] BtfLoadError),
    /// Reading or writing a file failed.
    #[error("{operation} {}: {source}", path.display())]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps a failed syscall with what was being done.
    pub fn syscall(operation: impl Into<String>, error: SysError) -> Error {
        Error::Syscall { operation: operation.into(), cmd: error.cmd, errno: error.errno }
    }

    /// The errno behind this error, if the kernel gave one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Syscall { errno, .. } | Error::Os { errno, .. } => Some(*errno),
            Error::Verifier(v) => Some(v.errno),
            Error::BtfLoad(e) => Some(e.error.errno),
            Error::Io { source, .. } => source.raw_os_error().map(Errno),
            _ => None,
        }
    }
}

/// Whether this process's effective capabilities include CAP_BPF (39) or CAP_SYS_ADMIN (21):
/// an EPERM then is the kernel's policy, not a missing privilege. Read when an error is shown.
fn has_bpf_capability() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_BPF: u32 = 39;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    effective & (1 << CAP_SYS_ADMIN | 1 << CAP_BPF) != 0
}

/// What an errno means for a given command, when there is something useful to add.
fn hint(cmd: Cmd, errno: Errno) -> &'static str {
    match (cmd, errno) {
        (Cmd::MapUpdateElem | Cmd::MapUpdateBatch, Errno::E2BIG) => " — the map is full",
        (Cmd::MapUpdateElem, Errno::EEXIST) => " — the key exists and NO_EXIST was asked",
        (Cmd::MapUpdateElem | Cmd::MapLookupElem | Cmd::MapDeleteElem, Errno::ENOENT) => " — no such key",
        (Cmd::MapUpdateElem, Errno::EPERM) => " — the map is frozen or read-only",
        (_, Errno::EPERM) if has_bpf_capability() => {
            " — refused although this process holds CAP_BPF/CAP_SYS_ADMIN: this kernel does not allow it \
             (lockdown, an LSM or sysctl policy, or the kind is not available)"
        }
        (_, Errno::EPERM) => " — needs CAP_BPF/CAP_SYS_ADMIN (run as root)",
        (Cmd::ObjPin | Cmd::ObjGet, Errno::ENOENT) => " — no such pin (is bpffs mounted at /sys/fs/bpf?)",
        (Cmd::ObjPin, Errno::EEXIST) => " — a pin already exists at that path",
        (Cmd::MapCreate, Errno::EINVAL) => " — the kernel refuses this map type, size or flag combination",
        (Cmd::ProgTestRun, Errno::EOPNOTSUPP) => " — this program type has no test run",
        (Cmd::ProgTestRun, Errno::ENOSPC) => " — the output buffer is too small",
        _ => "",
    }
}

/// A program the verifier rejected, with its whole log.
#[derive(Debug, Clone)]
pub struct VerifierError {
    /// Program name.
    pub program: String,
    /// ELF section it came from, when known.
    pub section: Option<String>,
    /// What the kernel returned (usually `EACCES` or `EINVAL`).
    pub errno: Errno,
    /// The verifier log, whole; empty only when the kernel wrote none.
    pub log: String,
    /// What the loader knows about the rejection that the log cannot say (which CO-RE
    /// relocation an `unknown#195896080` call stands for).
    pub explanation: Option<String>,
}

impl VerifierError {
    /// The last line of the log that says what went wrong, when there is one.
    pub fn summary(&self) -> Option<&str> {
        self.log
            .lines()
            .rev()
            .find(|l| !l.is_empty() && !l.starts_with("processed ") && !l.starts_with("verification time"))
    }
}

impl fmt::Display for VerifierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "load program \"{}\"", self.program)?;
        if let Some(section) = &self.section {
            write!(f, " (section {section})")?;
        }
        write!(f, ": rejected by the verifier ({})", errno_name(self.errno))?;
        if let Some(explanation) = &self.explanation {
            write!(f, "; {explanation}")?;
        }
        if self.log.is_empty() {
            write!(f, "; the kernel wrote no log")
        } else {
            write!(f, "; log follows\n{}", self.log)
        }
    }
}

impl std::error::Error for VerifierError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_errors_read_as_one_actionable_line() {
        let e = Error::syscall(
            "update map \"policy\" (hash, 16384 entries)",
            SysError { cmd: Cmd::MapUpdateElem, errno: Errno::E2BIG },
        );
        assert_eq!(e.to_string(), "update map \"policy\" (hash, 16384 entries): E2BIG — the map is full");
    }

    #[test]
    fn verifier_errors_lead_with_the_program_and_section() {
        let e = VerifierError {
            program: "from_container".into(),
            section: Some("tcx/ingress".into()),
            errno: Errno::EACCES,
            log: "0: R1=ctx()\nR0 !read_ok\nprocessed 1 insns".into(),
            explanation: None,
        };
        let text = e.to_string();
        assert!(text.starts_with(
            "load program \"from_container\" (section tcx/ingress): rejected by the verifier (EACCES); log follows\n"
        ));
        assert_eq!(e.summary(), Some("R0 !read_ok"));
    }

    #[test]
    fn an_eperm_blames_privileges_only_when_they_are_missing() {
        let text = hint(Cmd::MapCreate, Errno::EPERM);
        // Tests run as root in CI: the hint must not tell root to become root.
        if has_bpf_capability() {
            assert!(text.contains("refused although this process holds"), "{text}");
            assert!(!text.contains("run as root"), "{text}");
        } else {
            assert!(text.contains("run as root"), "{text}");
        }
        assert_eq!(hint(Cmd::MapUpdateElem, Errno::EPERM), " — the map is frozen or read-only");
    }
}
