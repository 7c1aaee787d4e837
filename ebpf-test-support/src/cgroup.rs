//! A cgroup v2 child for tests: the test process moves in, and out again on drop.

use std::path::{Path, PathBuf};

use crate::{eventually, unique_name};

/// Where the cgroup v2 hierarchy is mounted on the machines here.
pub const CGROUP2_ROOT: &str = "/sys/fs/cgroup/unified";

/// A child cgroup of the process's own cgroup v2 group; removed on drop, after the process
/// has been moved back where it was.
#[derive(Debug)]
pub struct CgroupGuard {
    path: PathBuf,
    home: PathBuf,
    entered: bool,
}

fn own_cgroup() -> Result<PathBuf, String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let relative = text.lines().find_map(|l| l.strip_prefix("0::")).ok_or("no cgroup v2 entry in /proc/self/cgroup")?;
    Ok(Path::new(CGROUP2_ROOT).join(relative.trim_start_matches('/')))
}

impl CgroupGuard {
    /// Creates a uniquely named child of this process's cgroup.
    pub fn new() -> Result<CgroupGuard, String> {
        let home = own_cgroup()?;
        let path = home.join(unique_name("cg"));
        std::fs::create_dir(&path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
        Ok(CgroupGuard { path, home, entered: false })
    }

    /// The cgroup's directory (open it to attach programs).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves this whole process into the cgroup (until drop).
    pub fn enter(&mut self) -> Result<(), String> {
        let procs = self.path.join("cgroup.procs");
        std::fs::write(&procs, std::process::id().to_string())
            .map_err(|e| format!("write {}: {e}", procs.display()))?;
        self.entered = true;
        Ok(())
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if self.entered {
            let _ = std::fs::write(self.home.join("cgroup.procs"), std::process::id().to_string());
        }
        // Moving in took the whole process, so a child another test thread spawned meanwhile
        // (a `ping`, an `ip`) may still sit in the group: rmdir says EBUSY until it exits.
        eventually(std::time::Duration::from_secs(5), || {
            std::fs::remove_dir(&self.path).map_or_else(|e| e.raw_os_error() != Some(libc::EBUSY), |()| true)
        });
    }
}
