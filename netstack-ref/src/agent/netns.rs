//! Network namespaces: made and removed as `ip netns` does (a bind mount under `/run/netns`),
//! entered by threads, and their sysctls. Links, addresses and routes go through route netlink
//! ([`super::rtnl`]); nothing spawns `ip`.

use std::path::Path;

/// What went wrong setting up or using a namespace or link: the operation and its cause.
#[derive(Debug, thiserror::Error)]
pub enum PlumbingError {
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
    /// A route netlink request the kernel refused.
    #[error("{op}: {source}")]
    Netlink {
        /// What was asked (`add veth lxc1234 (peer eth0)`).
        op: String,
        /// The kernel's answer, or the socket's error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel's route netlink answer could not be read.
    #[error("{op}: reading the kernel's answer: {source}")]
    NetlinkReply {
        /// What was asked.
        op: String,
        /// Why the answer did not decode.
        #[source]
        source: netlink_packet_utils::DecodeError,
    },
    /// The thread that ran in a namespace panicked.
    #[error("a thread in netns {name} panicked")]
    Panicked {
        /// The namespace.
        name: String,
    },
}

const NETNS_DIR: &str = "/run/netns";

fn netns_error(op: &'static str, name: &str) -> impl FnOnce(nix::Error) -> PlumbingError {
    let name = name.to_owned();
    move |e| PlumbingError::Netns { op, name, reason: e.to_string() }
}

/// `/run/netns` as `ip netns` leaves it: a shared mount point, so namespaces bound under it
/// show in every mount namespace (and `ip netns` and this module see the same ones).
fn shared_netns_dir() -> Result<(), PlumbingError> {
    use nix::mount::{mount, MsFlags};
    std::fs::create_dir_all(NETNS_DIR).map_err(|e| PlumbingError::Netns {
        op: "create",
        name: NETNS_DIR.into(),
        reason: e.to_string(),
    })?;
    let shared = || mount(None::<&str>, NETNS_DIR, None::<&str>, MsFlags::MS_SHARED | MsFlags::MS_REC, None::<&str>);
    match shared() {
        Err(nix::Error::EINVAL) => {
            mount(Some(NETNS_DIR), NETNS_DIR, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .map_err(netns_error("bind", NETNS_DIR))?;
            shared().map_err(netns_error("share", NETNS_DIR))
        }
        other => other.map_err(netns_error("share", NETNS_DIR)),
    }
}

/// Creates the named namespace (`ip netns add`): a new network namespace, kept alive by a bind
/// mount at `/run/netns/<name>`.
pub fn add(name: &str) -> Result<(), PlumbingError> {
    shared_netns_dir()?;
    let path = Path::new(NETNS_DIR).join(name);
    std::fs::File::create_new(&path).map_err(|e| PlumbingError::Netns {
        op: "create",
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
    let target = path.clone();
    let made = std::thread::spawn(move || -> Result<(), nix::Error> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
    })
    .join()
    .map_err(|_| PlumbingError::Panicked { name: name.to_owned() })?;
    if let Err(e) = made {
        let _ = std::fs::remove_file(&path);
        return Err(netns_error("make", name)(e));
    }
    Ok(())
}

/// Removes the named namespace (`ip netns del`): its interfaces go with it once nothing else
/// holds it.
pub fn delete(name: &str) -> Result<(), PlumbingError> {
    let path = Path::new(NETNS_DIR).join(name);
    match nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
        // Not a mount: a file whose namespace was never bound to it (its maker died between
        // the two steps of `add`). Nothing to unmount; the file goes.
        Err(nix::Error::EINVAL) => {}
        other => other.map_err(netns_error("unmount", name))?,
    }
    std::fs::remove_file(&path).map_err(|e| PlumbingError::Netns {
        op: "remove",
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

/// Whether the named namespace exists (`/run/netns/<name>`).
pub fn exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// The named namespace, open (to enter it, or to move an interface into it).
pub fn open(name: &str) -> Result<std::fs::File, PlumbingError> {
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

/// The ifindex and MAC of an interface in the calling thread's namespace.
pub fn link_info(ifname: &str) -> Result<(u32, [u8; 6]), PlumbingError> {
    super::rtnl::Rtnl::open()?.link(ifname)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_file_its_maker_never_bound_is_deleted_all_the_same() {
        let Some(_root) = ebpf_test_support::require_kernel() else { return };
        shared_netns_dir().unwrap();
        let name = ebpf_test_support::unique_name("nsf");
        let path = Path::new(NETNS_DIR).join(&name);
        std::fs::File::create_new(&path).unwrap();
        assert!(exists(&name));
        delete(&name).unwrap();
        assert!(!exists(&name));
        // A real one still goes the usual way.
        add(&name).unwrap();
        delete(&name).unwrap();
        assert!(!exists(&name));
    }
}
