//! Whether the kernel has WireGuard: its generic netlink family `wireguard` resolves (the
//! controller's CTRL_CMD_GETFAMILY answers with the family, or ENOENT). What the agent's choice
//! of backend rests on, and what `netstack encryption status` reports.

use netlink_sys::protocols::NETLINK_GENERIC;
use netlink_sys::Socket;

/// The generic netlink controller's message type, command and attribute (linux/genetlink.h).
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;

/// WireGuard's generic netlink family name.
pub const WIREGUARD_FAMILY: &str = "wireguard";

/// A CTRL_CMD_GETFAMILY request for `family`: netlink header, generic header, one attribute.
fn get_family(family: &str) -> Vec<u8> {
    let name_len = family.len() + 1;
    let attr_len = 4 + name_len;
    let padded = (attr_len + 3) & !3;
    let total = 16 + 4 + padded;
    let mut message = Vec::with_capacity(total);
    message.extend((total as u32).to_ne_bytes());
    message.extend(GENL_ID_CTRL.to_ne_bytes());
    message.extend(NLM_F_REQUEST.to_ne_bytes());
    message.extend(1u32.to_ne_bytes()); // sequence
    message.extend(0u32.to_ne_bytes()); // port: the kernel's
    message.extend([CTRL_CMD_GETFAMILY, 1, 0, 0]); // command, version, reserved
    message.extend((attr_len as u16).to_ne_bytes());
    message.extend(CTRL_ATTR_FAMILY_NAME.to_ne_bytes());
    message.extend(family.as_bytes());
    message.resize(total, 0);
    message
}

/// Whether the generic netlink family `family` exists (an answer that is not an error), or why
/// the question could not be asked.
pub fn family_exists(family: &str) -> std::io::Result<bool> {
    let mut socket = Socket::new(NETLINK_GENERIC)?;
    socket.bind_auto()?;
    socket.send(&get_family(family), 0)?;
    let mut reply = Vec::with_capacity(8192);
    socket.recv(&mut reply, 0)?;
    let kind = reply.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    if kind != Some(NLMSG_ERROR) {
        return Ok(true);
    }
    let code = reply.get(16..20).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match -code {
        0 => Ok(true),
        libc::ENOENT => Ok(false),
        other => Err(std::io::Error::from_raw_os_error(other)),
    }
}

/// Whether this kernel has WireGuard.
pub fn kernel_has_wireguard() -> std::io::Result<bool> {
    family_exists(WIREGUARD_FAMILY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_laid_out_as_the_controller_reads_it() {
        let m = get_family("wireguard");
        assert_eq!(m.len(), 16 + 4 + 16, "a 14-byte attribute padded to 16");
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize, m.len());
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), GENL_ID_CTRL);
        assert_eq!(m[16], CTRL_CMD_GETFAMILY);
        assert_eq!(u16::from_ne_bytes(m[20..22].try_into().unwrap()), 14);
        assert_eq!(&m[24..34], b"wireguard\0");
    }

    #[test]
    fn the_controller_knows_itself_and_not_a_made_up_family() {
        // Any kernel with generic netlink has its controller, `nlctrl`.
        assert!(family_exists("nlctrl").unwrap());
        // (Family names are at most 15 bytes: a longer one is refused, EINVAL.)
        assert!(!family_exists("nsnofamily").unwrap());
        // Built in or loaded, the module shows in sysfs: the probe agrees with it.
        let module = std::path::Path::new("/sys/module/wireguard").exists();
        assert_eq!(kernel_has_wireguard().unwrap(), module);
    }
}
