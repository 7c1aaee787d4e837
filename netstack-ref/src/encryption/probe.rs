//! Whether the kernel has WireGuard: its generic netlink family `wireguard` resolves. What the
//! agent's choice of backend rests on, and what `netstack encryption status` reports.

use super::genl::{Genl, GenlError};

/// WireGuard's generic netlink family name.
pub const WIREGUARD_FAMILY: &str = "wireguard";

/// Whether the generic netlink family `family` exists, or why the question could not be asked.
pub fn family_exists(family: &str) -> Result<bool, GenlError> {
    match Genl::open()?.family(family) {
        Ok(_) => Ok(true),
        Err(GenlError::NoFamily(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether this kernel has WireGuard.
pub fn kernel_has_wireguard() -> Result<bool, GenlError> {
    family_exists(WIREGUARD_FAMILY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_agrees_with_the_kernel() {
        // Any kernel with generic netlink has its controller, `nlctrl`.
        assert!(family_exists("nlctrl").unwrap());
        assert!(!family_exists("nsnofamily").unwrap());
        // Built in or loaded, the module shows in sysfs: the probe agrees with it.
        let module = std::path::Path::new("/sys/module/wireguard").exists();
        assert_eq!(kernel_has_wireguard().unwrap(), module);
    }
}
