//! The calling thread's namespace's UDP sockets over sock_diag netlink, and destroying one
//! (`SOCK_DESTROY`, `CONFIG_INET_DIAG_DESTROY`): how the agent closes connected UDP sockets whose
//! service backend went away, so an application's next send fails and it reconnects (to another
//! backend) instead of sending into nothing. The kernel's own way (`bpf_sock_destroy` from a
//! socket iterator) needs a tracing program, which not every kernel loads.

use std::net::Ipv4Addr;

use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};

use super::netns::PlumbingError;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const AF_INET: u8 = 2;
const IPPROTO_UDP: u8 = 17;
const HEADER: usize = 16;
/// `struct inet_diag_sockid`: ports, addresses, interface, cookie.
const SOCKID: usize = 48;
/// `struct inet_diag_req_v2`.
const REQUEST: usize = 8 + SOCKID;
/// `struct inet_diag_msg` up to and including its `id`.
const MESSAGE_ID_END: usize = 4 + SOCKID;

/// A UDP socket as sock_diag reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpSocket {
    /// The local address and port.
    pub local: (Ipv4Addr, u16),
    /// The peer it is connected to (unspecified, 0 when not connected).
    pub peer: (Ipv4Addr, u16),
    /// The socket's cookie (what BPF's `bpf_get_socket_cookie` gives).
    pub cookie: u64,
    /// The raw `inet_diag_sockid`, which names it to `SOCK_DESTROY`.
    id: [u8; SOCKID],
}

fn failed(op: &str) -> impl FnOnce(std::io::Error) -> PlumbingError + '_ {
    move |source| PlumbingError::Netlink { op: op.to_owned(), source }
}

fn request(kind: u16, flags: u16, id: &[u8; SOCKID]) -> Vec<u8> {
    let length = (HEADER + REQUEST) as u32;
    let mut out = Vec::with_capacity(length as usize);
    out.extend(length.to_ne_bytes());
    out.extend(kind.to_ne_bytes());
    out.extend(flags.to_ne_bytes());
    out.extend(1u32.to_ne_bytes()); // sequence
    out.extend(0u32.to_ne_bytes()); // port id: the kernel's
    out.extend([AF_INET, IPPROTO_UDP, 0, 0]);
    out.extend(u32::MAX.to_ne_bytes()); // every state
    out.extend(id);
    out
}

fn open() -> Result<Socket, PlumbingError> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(failed("open a sock_diag socket"))?;
    socket.bind_auto().map_err(failed("bind the sock_diag socket"))?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(failed("connect the sock_diag socket"))?;
    Ok(socket)
}

/// Walks the netlink messages in `data`: (type, payload) of each.
fn messages(data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut offset = 0usize;
    std::iter::from_fn(move || {
        let header = data.get(offset..offset + HEADER)?;
        let length = u32::from_ne_bytes(header[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(header[4..6].try_into().ok()?);
        if length < HEADER {
            return None;
        }
        let payload = data.get(offset + HEADER..offset + length)?;
        offset += (length + 3) & !3;
        Some((kind, payload))
    })
}

/// The error code of an `NLMSG_ERROR` payload (0: an ack).
fn error_code(payload: &[u8]) -> i32 {
    payload.get(0..4).map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("four bytes")))
}

/// Every IPv4 UDP socket of the calling thread's namespace.
pub fn udp_sockets() -> Result<Vec<UdpSocket>, PlumbingError> {
    let op = "list UDP sockets";
    let socket = open()?;
    socket.send(&request(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, &[0; SOCKID]), 0).map_err(failed(op))?;
    let mut out = Vec::new();
    loop {
        let (data, _) = socket.recv_from_full().map_err(failed(op))?;
        for (kind, payload) in messages(&data) {
            match kind {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let code = error_code(payload);
                    return Err(PlumbingError::Netlink {
                        op: op.to_owned(),
                        source: std::io::Error::from_raw_os_error(-code),
                    });
                }
                SOCK_DIAG_BY_FAMILY if payload.len() >= MESSAGE_ID_END => {
                    let id: [u8; SOCKID] = payload[4..MESSAGE_ID_END].try_into().expect("sized above");
                    let port = |at: usize| u16::from_be_bytes([id[at], id[at + 1]]);
                    let address = |at: usize| Ipv4Addr::new(id[at], id[at + 1], id[at + 2], id[at + 3]);
                    let cookie_low = u32::from_ne_bytes(id[40..44].try_into().expect("four bytes"));
                    let cookie_high = u32::from_ne_bytes(id[44..48].try_into().expect("four bytes"));
                    out.push(UdpSocket {
                        local: (address(4), port(0)),
                        peer: (address(20), port(2)),
                        cookie: u64::from(cookie_high) << 32 | u64::from(cookie_low),
                        id,
                    });
                }
                _ => {}
            }
        }
    }
}

/// Destroys `socket` (its owner's next call fails with `ECONNABORTED`); `Ok(false)` when it
/// was gone already.
pub fn destroy(socket: &UdpSocket) -> Result<bool, PlumbingError> {
    let op = "destroy a UDP socket";
    let netlink = open()?;
    netlink.send(&request(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, &socket.id), 0).map_err(failed(op))?;
    let (data, _) = netlink.recv_from_full().map_err(failed(op))?;
    for (kind, payload) in messages(&data) {
        if kind == NLMSG_ERROR {
            return match error_code(payload) {
                0 => Ok(true),
                code if -code == libc::ENOENT => Ok(false),
                code => {
                    Err(PlumbingError::Netlink { op: op.to_owned(), source: std::io::Error::from_raw_os_error(-code) })
                }
            };
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_request_is_a_header_and_an_inet_diag_req_v2() {
        let bytes = request(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, &[0; SOCKID]);
        assert_eq!(bytes.len(), 16 + 56);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 72);
        assert_eq!((bytes[16], bytes[17]), (AF_INET, IPPROTO_UDP));
    }

    #[test]
    fn messages_stop_at_a_short_or_truncated_one() {
        let mut data = request(SOCK_DESTROY, NLM_F_REQUEST, &[0; SOCKID]);
        data.extend([8, 0, 0, 0]);
        assert_eq!(messages(&data).count(), 1);
        assert_eq!(messages(&data[..20]).count(), 0);
    }
}
