//! Processes the stack starts and stops by pid (agents, etcd, WireGuard devices).

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Stops process `pid` (SIGTERM, then SIGKILL after two seconds) if it still runs.
pub fn stop(pid: u32) {
    let pid = Pid::from_raw(pid as i32);
    if kill(pid, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        if !runs(pid.as_raw() as u32) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = kill(pid, Signal::SIGKILL);
}

/// Whether process `pid` runs: it exists (a signal 0 reaches it) and is not a zombie waiting
/// for its parent.
pub fn runs(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else { return false };
    kill(Pid::from_raw(raw), None).is_ok() && !is_zombie(raw)
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|rest| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

/// The pid a pid file holds, if it holds one.
pub fn read_pid_file(path: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_child_no_longer_runs() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        assert!(runs(child.id()));
        stop(child.id());
        // A zombie until reaped: not running either way.
        assert!(!runs(child.id()));
        child.wait().unwrap();
        assert!(!runs(u32::MAX), "no such process");
    }
}
