use std::os::fd::OwnedFd;

/// Runs `f` on a new thread that has unshared its network namespace: a namespace with only a
/// loopback device, which disappears with the thread. Probes can attach there freely.
pub(super) fn in_throwaway_netns<T: Send + 'static>(
    f: impl FnOnce(OwnedFd) -> T + Send + 'static,
) -> Result<T, String> {
    std::thread::Builder::new()
        .name("ebpf-netns-probe".to_owned())
        .spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
            let netns = std::fs::File::open("/proc/thread-self/ns/net")
                .map_err(|e| format!("open /proc/thread-self/ns/net: {e}"))?;
            Ok(f(OwnedFd::from(netns)))
        })
        .map_err(|e| format!("spawn probe thread: {e}"))?
        .join()
        .map_err(|_| "probe thread panicked".to_owned())?
}
