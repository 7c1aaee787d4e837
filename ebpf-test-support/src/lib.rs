//! Helpers shared by the workspace's kernel-facing tests.
//!
//! ```
//! use ebpf_test_support::require_kernel;
//!
//! let Some(_root) = require_kernel() else { return }; // skips without root
//! // ... create maps, load programs ...
//! ```

pub mod cgroup;
pub mod etcd;
pub mod example;
pub mod net;

use std::sync::atomic::{AtomicU32, Ordering};

/// Proof that the test may use `bpf(2)` (the process runs as root).
#[derive(Debug)]
pub struct KernelAccess(());

/// The environment variable that turns a skip into a failure.
pub const REQUIRE_KERNEL_ENV: &str = "EBPF_REQUIRE_KERNEL";

/// `Some` when the test can talk to the kernel. Without root, prints why and returns `None`
/// (the test then returns early) — unless `EBPF_REQUIRE_KERNEL=1`, where it panics, so CI
/// never mistakes a skip for a pass.
pub fn require_kernel() -> Option<KernelAccess> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return Some(KernelAccess(()));
    }
    skip_or_fail(&format!("needs root for bpf(2) (running as uid {euid})"));
    None
}

fn skip_or_fail(reason: &str) {
    if std::env::var(REQUIRE_KERNEL_ENV).is_ok_and(|v| v == "1") {
        panic!("{REQUIRE_KERNEL_ENV}=1 but this test cannot run: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
}

/// `/sys/fs/bpf` when it is a bpffs mount. Otherwise prints why and returns `None`, or
/// panics under `EBPF_REQUIRE_KERNEL=1`.
pub fn bpffs_dir() -> Option<std::path::PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mounted = mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        fields.nth(1) == Some("/sys/fs/bpf") && fields.next() == Some("bpf")
    });
    if mounted {
        return Some("/sys/fs/bpf".into());
    }
    skip_or_fail("bpffs is not mounted at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)");
    None
}

/// A name unique to this process and call, for kernel objects, pins and namespaces that
/// tests running in parallel must not share. At most 15 characters, so it fits kernel names.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id() % 100_000;
    let prefix: String = prefix.chars().take(4).collect();
    format!("{prefix}_{pid}_{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_fit_kernel_object_names() {
        let a = unique_name("testmap");
        let b = unique_name("testmap");
        assert_ne!(a, b);
        assert!(a.len() <= 15, "{a}");
    }
}

/// A directory of its own on bpffs for a test's pins; removed with everything in it on drop,
/// even when the test panics.
#[derive(Debug)]
pub struct PinDir {
    path: std::path::PathBuf,
}

impl PinDir {
    /// Creates `/sys/fs/bpf/<unique name>`; `None` (skip, or panic under
    /// `EBPF_REQUIRE_KERNEL=1`) when bpffs is not mounted.
    pub fn new(prefix: &str) -> Option<PinDir> {
        let path = bpffs_dir()?.join(unique_name(prefix));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        Some(PinDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        // bpffs removes a pin with unlink and a directory with rmdir, as any file system.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `Some(())` when tracefs is mounted (tracepoint ids live there); otherwise prints why and
/// returns `None`, or panics under `EBPF_REQUIRE_KERNEL=1`.
pub fn require_tracefs() -> Option<()> {
    let mounted = ["/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"]
        .iter()
        .any(|p| std::path::Path::new(p).is_dir());
    if mounted {
        return Some(());
    }
    skip_or_fail("tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)");
    None
}

/// For tests of features the running kernel refuses (tracing programs where the kernel
/// answers EPERM): prints plainly what could not be exercised, so the gap is visible in the
/// test output rather than hidden in a pass.
pub fn kernel_refuses(what: &str, why: &str) {
    eprintln!("NOT EXERCISED on this kernel: {what} ({why})");
}

/// `Some(())` when the command-line tool `name` runs (`name version`), for tests that compare
/// us with it; otherwise prints why and returns `None`, or panics under `EBPF_REQUIRE_KERNEL=1`.
pub fn require_tool(name: &str) -> Option<()> {
    if std::process::Command::new(name).arg("version").output().is_ok() {
        return Some(());
    }
    skip_or_fail(&format!("{name} is not installed"));
    None
}

/// `Some(())` when an executable `name` is on `PATH` (found, not run: for programs such as
/// browsers and servers that a trial run would start); otherwise prints why and returns `None`,
/// or panics under `EBPF_REQUIRE_KERNEL=1`.
pub fn require_executable(name: &str, package: &str) -> Option<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| dir.join(name).is_file()) {
        return Some(());
    }
    skip_or_fail(&format!("{name} is not installed (Debian's {package})"));
    None
}

/// `Some(())` when `etcd` (Debian's etcd-server) is installed; otherwise prints why and returns
/// `None`, or panics under `EBPF_REQUIRE_KERNEL=1` (CI installs it).
pub fn require_etcd() -> Option<()> {
    if std::process::Command::new("etcd").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Some(());
    }
    skip_or_fail("etcd is not installed (apt-get install etcd-server)");
    None
}

/// `Some(())` when the file at `path` exists (a header a test compiles against, …);
/// otherwise prints `what` is missing and how to get it, and returns `None`, or panics under
/// `EBPF_REQUIRE_KERNEL=1`.
pub fn require_file(path: &str, what: &str) -> Option<()> {
    if std::path::Path::new(path).exists() {
        return Some(());
    }
    skip_or_fail(&format!("{what} is missing ({path})"));
    None
}

/// Polls `condition` every 10 ms for up to `timeout`; true as soon as it holds.
///
/// For what the kernel does when the last reference to an object closes (a dropped link
/// detaching): a process another test thread is spawning holds a copy of every descriptor until
/// it execs, so "dropped" is "detached within milliseconds", not "detached at once".
pub fn eventually(timeout: std::time::Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
