//! Route netlink messages for tc: a request builder and a reply parser with every length
//! checked. Only what tc needs: `tcmsg` requests with (nested) attributes, acks, errors with
//! the kernel's extended-ack message, and dumps.

use crate::sys::{Errno, NetlinkSocket};

pub(super) const RTM_NEWQDISC: u16 = 36;
pub(super) const RTM_DELQDISC: u16 = 37;
pub(super) const RTM_NEWTFILTER: u16 = 44;
pub(super) const RTM_DELTFILTER: u16 = 45;
pub(super) const RTM_GETTFILTER: u16 = 46;

pub(super) const NLM_F_REQUEST: u16 = 0x1;
pub(super) const NLM_F_ACK: u16 = 0x4;
pub(super) const NLM_F_ECHO: u16 = 0x8;
pub(super) const NLM_F_DUMP: u16 = 0x300;
pub(super) const NLM_F_EXCL: u16 = 0x200;
pub(super) const NLM_F_CREATE: u16 = 0x400;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const HEADER: usize = 16;
const TCMSG: usize = 20;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The fixed part of a tc request (`struct tcmsg`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct TcMsg {
    pub ifindex: i32,
    pub handle: u32,
    pub parent: u32,
    pub info: u32,
}

/// A request under construction.
pub(super) struct Request {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Request {
    pub fn new(kind: u16, flags: u16, tc: TcMsg) -> Request {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set in finish()
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
        buf.extend_from_slice(&[0u8; 4]); // family (AF_UNSPEC), padding
        buf.extend_from_slice(&tc.ifindex.to_ne_bytes());
        buf.extend_from_slice(&tc.handle.to_ne_bytes());
        buf.extend_from_slice(&tc.parent.to_ne_bytes());
        buf.extend_from_slice(&tc.info.to_ne_bytes());
        Request { buf, nests: Vec::new() }
    }

    pub fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = 4 + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    pub fn attr_str(&mut self, kind: u16, value: &str) -> &mut Self {
        let mut bytes = value.as_bytes().to_vec();
        bytes.push(0);
        self.attr(kind, &bytes)
    }

    pub fn attr_u32(&mut self, kind: u16, value: u32) -> &mut Self {
        self.attr(kind, &value.to_ne_bytes())
    }

    pub fn begin_nested(&mut self, kind: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    pub fn end_nested(&mut self) -> &mut Self {
        if let Some(start) = self.nests.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn finish(&mut self) -> &[u8] {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        &self.buf
    }
}

/// One reply message: its type and its `tcmsg` and attributes.
#[derive(Clone, Debug)]
pub(super) struct Reply {
    pub kind: u16,
    pub tc: TcMsg,
    pub attrs: Vec<u8>,
}

/// Why a request failed: the errno and, when the kernel gave one, its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct NetlinkError {
    pub errno: Errno,
    pub message: Option<String>,
}

fn word(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn half(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Attributes in `bytes`: (type without flags, payload), stopping at the first malformed one.
pub(super) fn attributes(bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = half(bytes, at)? as usize;
        let kind = half(bytes, at + 2)? & !NLA_F_NESTED;
        let payload = bytes.get(at + 4..at.checked_add(len)?).filter(|_| len >= 4)?;
        at += align4(len).max(4);
        Some((kind, payload))
    })
}

fn error_of(message: &[u8], flags: u16) -> NetlinkError {
    let code = word(message, HEADER).map_or(-libc::EIO, |w| w as i32);
    let errno = Errno(-code);
    // With extended acks the embedded request is cut to its header (NLM_F_CAPPED) and the
    // kernel's message follows as an attribute.
    let capped = flags & 0x100 != 0;
    let embedded_len = if capped { HEADER } else { word(message, HEADER + 4).map_or(HEADER, |l| l as usize) };
    let tlvs = message.get(HEADER + 4 + align4(embedded_len)..).unwrap_or(&[]);
    let text = attributes(tlvs).find(|(k, _)| *k == NLMSGERR_ATTR_MSG).map(|(_, v)| {
        let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
        String::from_utf8_lossy(&v[..end]).into_owned()
    });
    NetlinkError { errno, message: text }
}

/// Sends `request` and collects the replies up to the ack (or the end of a dump).
pub(super) fn transact(socket: &NetlinkSocket, request: &mut Request) -> Result<Vec<Reply>, NetlinkError> {
    let flags = half(&request.buf, 6).unwrap_or(0);
    socket.send(request.finish()).map_err(|errno| NetlinkError { errno, message: None })?;
    let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    let mut replies = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = socket.recv(&mut buf).map_err(|errno| NetlinkError { errno, message: None })?;
        let mut at = 0;
        while at + HEADER <= n {
            let message = &buf[at..n];
            let len = word(message, 0).unwrap_or(0) as usize;
            if len < HEADER || len > message.len() {
                return Err(NetlinkError { errno: Errno::EINVAL, message: Some("malformed netlink reply".into()) });
            }
            let message = &message[..len];
            let kind = half(message, 4).unwrap_or(0);
            let reply_flags = half(message, 6).unwrap_or(0);
            match kind {
                NLMSG_ERROR => {
                    let error = error_of(message, reply_flags);
                    if error.errno.0 != 0 {
                        return Err(error);
                    }
                    if !dump {
                        return Ok(replies);
                    }
                }
                NLMSG_DONE => return Ok(replies),
                _ if len >= HEADER + TCMSG => {
                    let tc = TcMsg {
                        ifindex: word(message, HEADER + 4).unwrap_or(0) as i32,
                        handle: word(message, HEADER + 8).unwrap_or(0),
                        parent: word(message, HEADER + 12).unwrap_or(0),
                        info: word(message, HEADER + 16).unwrap_or(0),
                    };
                    replies.push(Reply { kind, tc, attrs: message[HEADER + TCMSG..].to_vec() });
                }
                _ => {}
            }
            at += align4(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_laid_out_as_the_kernel_reads_them() {
        let mut r = Request::new(RTM_NEWTFILTER, NLM_F_REQUEST, TcMsg { ifindex: 3, handle: 1, parent: 2, info: 4 });
        r.attr_str(1, "bpf").begin_nested(2).attr_u32(6, 9).end_nested();
        let bytes = r.finish().to_vec();
        assert_eq!(word(&bytes, 0), Some(bytes.len() as u32));
        assert_eq!(half(&bytes, 4), Some(RTM_NEWTFILTER));
        assert_eq!(word(&bytes, HEADER + 4), Some(3));
        let attrs: Vec<(u16, Vec<u8>)> = attributes(&bytes[HEADER + TCMSG..]).map(|(k, v)| (k, v.to_vec())).collect();
        assert_eq!(attrs[0], (1, b"bpf\0".to_vec()));
        assert_eq!(attrs[1].0, 2);
        let nested: Vec<(u16, Vec<u8>)> = attributes(&attrs[1].1).map(|(k, v)| (k, v.to_vec())).collect();
        assert_eq!(nested, [(6, 9u32.to_ne_bytes().to_vec())]);
    }

    #[test]
    fn malformed_attributes_end_the_walk_instead_of_reading_past_the_end() {
        assert_eq!(attributes(&[8, 0, 1, 0, 1]).count(), 0, "claims 8 bytes, has 5");
        assert_eq!(attributes(&[2, 0, 1, 0]).count(), 0, "shorter than its own header");
        assert_eq!(attributes(&[]).count(), 0);
    }
}
