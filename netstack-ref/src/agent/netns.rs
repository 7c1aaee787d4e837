//! Network namespaces, veths, addresses and routes. The plumbing goes through iproute2 (`ip`),
//! as CNI plugins commonly do; only the eBPF work goes through our library.

use std::path::Path;
use std::process::Command;

/// Runs `ip` with `args`; the error carries the command and its stderr.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Whether the named namespace exists (`/run/netns/<name>`).
pub fn exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn open(name: &str) -> Result<std::fs::File, String> {
    std::fs::File::open(Path::new("/run/netns").join(name)).map_err(|e| format!("netns {name}: {e}"))
}

/// Starts `f` on a thread that has entered the named namespace (the caller's stays where it
/// is); join it for `f`'s result.
pub fn spawn_in<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<Result<T, String>>, String> {
    let file = open(name)?;
    let name = name.to_string();
    Ok(std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("enter netns {name}: {e}"))?;
        Ok(f())
    }))
}

/// Runs `f` on a thread that has entered the named namespace and waits for it.
pub fn run_in<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    spawn_in(name, f)?.join().map_err(|_| "netns thread panicked".to_string())?
}

/// Moves the calling process into the named namespace; call before starting threads, which
/// then inherit it.
pub fn enter(name: &str) -> Result<(), String> {
    nix::sched::setns(&open(name)?, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("enter netns {name}: {e}"))
}

/// Sets a sysctl of the calling thread's namespace (`net/ipv4/ip_forward`).
pub fn sysctl(key: &str, value: &str) -> Result<(), String> {
    std::fs::write(Path::new("/proc/sys").join(key), value).map_err(|e| format!("sysctl {key}={value}: {e}"))
}

/// The ifindex and MAC of an interface in the calling thread's namespace (asked of `ip`:
/// sysfs shows the namespace it was mounted in, not the thread's).
pub fn link_info(ifname: &str) -> Result<(u32, [u8; 6]), String> {
    let out =
        Command::new("ip").args(["-j", "link", "show", "dev", ifname]).output().map_err(|e| format!("ip link: {e}"))?;
    if !out.status.success() {
        return Err(format!("ip link show {ifname}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("ip -j link: {e}"))?;
    let link = &links[0];
    let ifindex = link["ifindex"].as_u64().ok_or_else(|| format!("{ifname}: no ifindex"))? as u32;
    let text = link["address"].as_str().ok_or_else(|| format!("{ifname}: no address"))?;
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(text.split(':')) {
        *byte = u8::from_str_radix(part, 16).map_err(|e| format!("{ifname} address: {e}"))?;
    }
    Ok((ifindex, mac))
}
