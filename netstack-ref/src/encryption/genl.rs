//! Generic netlink, as much as WireGuard's configuration needs: families resolved by name
//! through the controller, requests made of attributes (nested ones too), and the replies'
//! attributes read back — bounds-checked, so a reply of any shape is an error, never a panic.

use netlink_sys::protocols::NETLINK_GENERIC;
use netlink_sys::Socket;

/// The controller's family id, command and attributes (linux/genetlink.h).
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

/// Netlink's message flags and types (linux/netlink.h).
pub const NLM_F_REQUEST: u16 = 0x1;
/// Multipart message, ended by NLMSG_DONE.
const NLM_F_MULTI: u16 = 0x2;
/// Ask for an acknowledgement.
pub const NLM_F_ACK: u16 = 0x4;
/// Dump: every object, in as many messages as it takes.
pub const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// An attribute's type carries these flags beside its number.
pub const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

const NLMSG_HEADER: usize = 16;
const GENL_HEADER: usize = 4;

/// Why a generic netlink request failed.
#[derive(Debug, thiserror::Error)]
pub enum GenlError {
    /// The socket, or the kernel's answer: an errno.
    #[error("generic netlink: {operation}: {source}")]
    Io {
        /// What was asked.
        operation: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The family is not in this kernel.
    #[error("generic netlink: the kernel has no family `{0}`")]
    NoFamily(String),
    /// A reply that is not laid out as netlink lays out its messages.
    #[error("generic netlink: {operation}: malformed reply: {what}")]
    Malformed {
        /// What was asked.
        operation: String,
        /// What is wrong with it.
        what: &'static str,
    },
}

/// Attributes being written: netlink's type-length-value records, each padded to 4 bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Attributes(Vec<u8>);

impl Attributes {
    /// No attributes yet.
    pub fn new() -> Attributes {
        Attributes::default()
    }

    /// Appends attribute `kind` holding `value`.
    pub fn bytes(&mut self, kind: u16, value: &[u8]) -> &mut Attributes {
        let length = 4 + value.len();
        self.0.extend((length as u16).to_ne_bytes());
        self.0.extend(kind.to_ne_bytes());
        self.0.extend(value);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }

    /// Appends a `u8`.
    pub fn u8(&mut self, kind: u16, value: u8) -> &mut Attributes {
        self.bytes(kind, &[value])
    }

    /// Appends a `u16` (host order, as netlink's integers are).
    pub fn u16(&mut self, kind: u16, value: u16) -> &mut Attributes {
        self.bytes(kind, &value.to_ne_bytes())
    }

    /// Appends a `u32`.
    pub fn u32(&mut self, kind: u16, value: u32) -> &mut Attributes {
        self.bytes(kind, &value.to_ne_bytes())
    }

    /// Appends a NUL-terminated string.
    pub fn string(&mut self, kind: u16, value: &str) -> &mut Attributes {
        let mut terminated = value.as_bytes().to_vec();
        terminated.push(0);
        self.bytes(kind, &terminated)
    }

    /// Appends a nested attribute holding `inner`.
    pub fn nested(&mut self, kind: u16, inner: &Attributes) -> &mut Attributes {
        self.bytes(kind | NLA_F_NESTED, &inner.0)
    }

    /// The encoded records.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// One attribute read from a message: its number (flags taken off) and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// The attribute's number.
    pub kind: u16,
    /// Its value.
    pub value: &'a [u8],
}

impl<'a> Attribute<'a> {
    /// The value as a `u16`, if it is one.
    pub fn as_u16(&self) -> Option<u16> {
        Some(u16::from_ne_bytes(self.value.get(..2)?.try_into().ok()?))
    }

    /// The value as a `u32`, if it is one.
    pub fn as_u32(&self) -> Option<u32> {
        Some(u32::from_ne_bytes(self.value.get(..4)?.try_into().ok()?))
    }

    /// The value as a `u64`, if it is one.
    pub fn as_u64(&self) -> Option<u64> {
        Some(u64::from_ne_bytes(self.value.get(..8)?.try_into().ok()?))
    }

    /// The attributes nested in this one.
    pub fn nested(&self) -> AttributeIter<'a> {
        AttributeIter(self.value)
    }
}

/// The attributes of a buffer, in order; stops at the first record that does not fit.
#[derive(Debug, Clone)]
pub struct AttributeIter<'a>(&'a [u8]);

impl<'a> AttributeIter<'a> {
    /// The attributes laid out in `buffer`.
    pub fn new(buffer: &'a [u8]) -> AttributeIter<'a> {
        AttributeIter(buffer)
    }
}

impl<'a> Iterator for AttributeIter<'a> {
    type Item = Attribute<'a>;

    fn next(&mut self) -> Option<Attribute<'a>> {
        let length = usize::from(u16::from_ne_bytes(self.0.get(..2)?.try_into().ok()?));
        let kind = u16::from_ne_bytes(self.0.get(2..4)?.try_into().ok()?) & NLA_TYPE_MASK;
        if length < 4 {
            self.0 = &[];
            return None;
        }
        let Some(value) = self.0.get(4..length) else {
            self.0 = &[];
            return None;
        };
        self.0 = self.0.get(length.next_multiple_of(4)..).unwrap_or(&[]);
        Some(Attribute { kind, value })
    }
}

/// A request: netlink header, generic header, `attributes`.
fn message(family: u16, flags: u16, sequence: u32, command: u8, version: u8, attributes: &Attributes) -> Vec<u8> {
    let total = NLMSG_HEADER + GENL_HEADER + attributes.as_bytes().len();
    let mut message = Vec::with_capacity(total);
    message.extend((total as u32).to_ne_bytes());
    message.extend(family.to_ne_bytes());
    message.extend(flags.to_ne_bytes());
    message.extend(sequence.to_ne_bytes());
    message.extend(0u32.to_ne_bytes()); // port: the kernel's
    message.extend([command, version, 0, 0]);
    message.extend(attributes.as_bytes());
    message
}

/// A generic netlink socket of the calling thread's namespace.
pub struct Genl {
    socket: Socket,
    sequence: u32,
}

impl std::fmt::Debug for Genl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Genl").field("sequence", &self.sequence).finish()
    }
}

impl Genl {
    /// Opens one.
    pub fn open() -> Result<Genl, GenlError> {
        let io = |source| GenlError::Io { operation: "open a generic netlink socket".into(), source };
        let mut socket = Socket::new(NETLINK_GENERIC).map_err(io)?;
        socket.bind_auto().map_err(io)?;
        Ok(Genl { socket, sequence: 0 })
    }

    /// Sends a request and collects the replies' payloads (after the generic header): one for
    /// a plain request, every part of a dump; an acknowledgement alone gives none.
    pub fn request(
        &mut self,
        operation: &str,
        family: u16,
        flags: u16,
        command: u8,
        version: u8,
        attributes: &Attributes,
    ) -> Result<Vec<Vec<u8>>, GenlError> {
        let io = |source| GenlError::Io { operation: operation.to_owned(), source };
        let malformed = |what| GenlError::Malformed { operation: operation.to_owned(), what };
        self.sequence = self.sequence.wrapping_add(1);
        let request = message(family, NLM_F_REQUEST | flags, self.sequence, command, version, attributes);
        self.socket.send(&request, 0).map_err(io)?;
        let mut payloads = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full().map_err(io)?;
            let mut rest = data.as_slice();
            while !rest.is_empty() {
                let header = rest.get(..NLMSG_HEADER).ok_or_else(|| malformed("a short header"))?;
                let length = u32::from_ne_bytes(header[0..4].try_into().expect("four bytes")) as usize;
                let kind = u16::from_ne_bytes(header[4..6].try_into().expect("two bytes"));
                let message_flags = u16::from_ne_bytes(header[6..8].try_into().expect("two bytes"));
                if length < NLMSG_HEADER {
                    return Err(malformed("a length shorter than its header"));
                }
                let body = rest.get(NLMSG_HEADER..length).ok_or_else(|| malformed("a length past the data"))?;
                rest = rest.get(length.next_multiple_of(4)..).unwrap_or(&[]);
                match kind {
                    NLMSG_ERROR => {
                        let code = body.get(..4).ok_or_else(|| malformed("an error without its code"))?;
                        let code = i32::from_ne_bytes(code.try_into().expect("four bytes"));
                        if code == 0 {
                            return Ok(payloads);
                        }
                        return Err(io(std::io::Error::from_raw_os_error(-code)));
                    }
                    NLMSG_DONE => return Ok(payloads),
                    _ => {
                        let payload = body.get(GENL_HEADER..).ok_or_else(|| malformed("no generic header"))?;
                        payloads.push(payload.to_vec());
                        if message_flags & NLM_F_MULTI == 0 && flags & NLM_F_ACK == 0 {
                            return Ok(payloads);
                        }
                    }
                }
            }
        }
    }

    /// The id of generic netlink family `name`.
    pub fn family(&mut self, name: &str) -> Result<u16, GenlError> {
        let operation = format!("resolve family {name}");
        let mut attributes = Attributes::new();
        attributes.string(CTRL_ATTR_FAMILY_NAME, name);
        let replies = match self.request(&operation, GENL_ID_CTRL, 0, CTRL_CMD_GETFAMILY, 1, &attributes) {
            Err(GenlError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                return Err(GenlError::NoFamily(name.to_owned()))
            }
            other => other?,
        };
        replies
            .iter()
            .flat_map(|reply| AttributeIter::new(reply))
            .find(|a| a.kind == CTRL_ATTR_FAMILY_ID)
            .and_then(|a| a.as_u16())
            .ok_or(GenlError::Malformed { operation, what: "no family id" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_laid_out_as_the_kernel_reads_it() {
        let mut attributes = Attributes::new();
        attributes.string(CTRL_ATTR_FAMILY_NAME, "wireguard");
        let m = message(GENL_ID_CTRL, NLM_F_REQUEST, 7, CTRL_CMD_GETFAMILY, 1, &attributes);
        assert_eq!(m.len(), 16 + 4 + 16, "a 14-byte attribute padded to 16");
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize, m.len());
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), GENL_ID_CTRL);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!(m[16], CTRL_CMD_GETFAMILY);
        assert_eq!(u16::from_ne_bytes(m[20..22].try_into().unwrap()), 14);
        assert_eq!(&m[24..34], b"wireguard\0");
    }

    #[test]
    fn nested_attributes_read_back_as_written() {
        let mut inner = Attributes::new();
        inner.u8(3, 24).u16(1, 2).bytes(2, &[10, 0, 0, 0]);
        let mut outer = Attributes::new();
        outer.u32(1, 7).nested(9, &inner).u64_for_test(7, u64::MAX - 1);
        let read: Vec<_> = AttributeIter::new(outer.as_bytes()).collect();
        assert_eq!(read.len(), 3);
        assert_eq!(read[0].as_u32(), Some(7));
        assert_eq!(read[1].kind, 9, "the nested flag is taken off the number");
        let nested: Vec<_> = read[1].nested().collect();
        assert_eq!(nested[0].value, &[24]);
        assert_eq!(nested[1].as_u16(), Some(2));
        assert_eq!(nested[2].value, &[10, 0, 0, 0]);
        assert_eq!(read[2].as_u64(), Some(u64::MAX - 1));
    }

    impl Attributes {
        fn u64_for_test(&mut self, kind: u16, value: u64) -> &mut Attributes {
            self.bytes(kind, &value.to_ne_bytes())
        }
    }

    proptest::proptest! {
        #[test]
        fn reading_attributes_of_any_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            for attribute in AttributeIter::new(&bytes) {
                let _ = (attribute.as_u16(), attribute.as_u32(), attribute.as_u64());
                for inner in attribute.nested() {
                    proptest::prop_assert!(inner.value.len() <= bytes.len());
                }
            }
        }
    }

    #[test]
    fn the_controller_resolves_itself_and_not_a_made_up_family() {
        let mut genl = Genl::open().unwrap();
        assert_eq!(genl.family("nlctrl").unwrap(), GENL_ID_CTRL);
        assert!(matches!(genl.family("nsnofamily"), Err(GenlError::NoFamily(name)) if name == "nsnofamily"));
    }
}
