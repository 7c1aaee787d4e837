//! Network namespaces, veths, addresses and routes. The plumbing goes through iproute2 (`ip`),
//! as CNI plugins commonly do; only the eBPF work goes through our library.

use std::path::Path;
use std::process::Command;

/// What went wrong setting up or using a namespace or link: the operation and its cause.
#[derive(Debug, thiserror::Error)]
pub enum PlumbingError {
    /// `ip` (or another tool) could not be started.
    #[error("{command}: cannot run: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A command ran and failed.
    #[error("{command}: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A namespace could not be opened or entered.
    #[error("{op} netns {name}: {reason}")]
    Netns {
        /// `open` or `enter`.
        op: &'static str,
        /// The namespace.
        name: String,
        /// The system's error.
        reason: String,
    },
    /// A sysctl could not be set.
    #[error("sysctl {key}={value}: {source}")]
    Sysctl {
        /// The key (`net/ipv4/ip_forward`).
        key: String,
        /// The value written.
        value: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An interface's details could not be read.
    #[error("link {ifname}: {reason}")]
    Link {
        /// The interface.
        ifname: String,
        /// What is missing or malformed.
        reason: String,
    },
    /// The thread that ran in a namespace panicked.
    #[error("a thread in netns {name} panicked")]
    Panicked {
        /// The namespace.
        name: String,
    },
}

fn run(program: &str, args: &[&str]) -> Result<std::process::Output, PlumbingError> {
    let command = || format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| PlumbingError::Spawn { command: command(), source })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(PlumbingError::Command { command: command(), stderr: String::from_utf8_lossy(&out.stderr).trim().into() })
    }
}

/// Runs `ip` with `args`; the error carries the command and its stderr.
pub fn ip(args: &[&str]) -> Result<(), PlumbingError> {
    run("ip", args).map(|_| ())
}

/// Whether the named namespace exists (`/run/netns/<name>`).
pub fn exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn open(name: &str) -> Result<std::fs::File, PlumbingError> {
    std::fs::File::open(Path::new("/run/netns").join(name)).map_err(|e| PlumbingError::Netns {
        op: "open",
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

fn setns(file: &std::fs::File, name: &str) -> Result<(), PlumbingError> {
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| PlumbingError::Netns {
        op: "enter",
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

/// Starts `f` on a thread that has entered the named namespace (the caller's stays where it
/// is); join it for `f`'s result.
pub fn spawn_in<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<Result<T, PlumbingError>>, PlumbingError> {
    let file = open(name)?;
    let name = name.to_string();
    Ok(std::thread::spawn(move || {
        setns(&file, &name)?;
        Ok(f())
    }))
}

/// Runs `f` on a thread that has entered the named namespace and waits for it.
pub fn run_in<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T, PlumbingError> {
    join(name, spawn_in(name, f)?)
}

/// Waits for a thread [`spawn_in`] started.
pub fn join<T>(name: &str, handle: std::thread::JoinHandle<Result<T, PlumbingError>>) -> Result<T, PlumbingError> {
    handle.join().map_err(|_| PlumbingError::Panicked { name: name.to_owned() })?
}

/// Moves the calling process into the named namespace; call before starting threads, which
/// then inherit it.
pub fn enter(name: &str) -> Result<(), PlumbingError> {
    setns(&open(name)?, name)
}

/// Sets a sysctl of the calling thread's namespace (`net/ipv4/ip_forward`).
pub fn sysctl(key: &str, value: &str) -> Result<(), PlumbingError> {
    std::fs::write(Path::new("/proc/sys").join(key), value).map_err(|source| PlumbingError::Sysctl {
        key: key.to_owned(),
        value: value.to_owned(),
        source,
    })
}

/// The ifindex and MAC of an interface in the calling thread's namespace (asked of `ip`:
/// sysfs shows the namespace it was mounted in, not the thread's).
pub fn link_info(ifname: &str) -> Result<(u32, [u8; 6]), PlumbingError> {
    let out = run("ip", &["-j", "link", "show", "dev", ifname])?;
    let bad = |reason: String| PlumbingError::Link { ifname: ifname.to_owned(), reason };
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| bad(format!("ip -j link: {e}")))?;
    let link = &links[0];
    let ifindex = link["ifindex"].as_u64().ok_or_else(|| bad("no ifindex".into()))? as u32;
    let text = link["address"].as_str().ok_or_else(|| bad("no address".into()))?;
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(text.split(':')) {
        *byte = u8::from_str_radix(part, 16).map_err(|e| bad(format!("address {text}: {e}")))?;
    }
    Ok((ifindex, mac))
}
