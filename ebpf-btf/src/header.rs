/// The magic number that opens every BTF blob, in the blob's own byte order.
pub const BTF_MAGIC: u16 = 0xeb9f;

/// Why a BTF blob could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    /// The blob is shorter than the header it must start with.
    #[error("BTF is {len} bytes, shorter than its {needed}-byte header")]
    Truncated {
        /// Bytes available.
        len: usize,
        /// Bytes the header needs.
        needed: usize,
    },
    /// The first two bytes are not the BTF magic in either byte order.
    #[error("BTF magic is {found:#06x}, expected 0xeb9f")]
    BadMagic {
        /// What the first two bytes read as, little-endian.
        found: u16,
    },
    /// Only version 1 exists.
    #[error("BTF version {0} is not supported (only version 1 exists)")]
    UnsupportedVersion(u8),
    /// A section named by the header lies outside the blob.
    #[error("BTF {section} section ({offset}+{len}) lies outside the {blob_len}-byte blob")]
    SectionOutOfBounds {
        /// `"type"` or `"string"`.
        section: &'static str,
        /// Offset from the end of the header.
        offset: u32,
        /// Section length.
        len: u32,
        /// Total blob length.
        blob_len: usize,
    },
}

/// The fixed header of a `.BTF` blob (`struct btf_header`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BtfHeader {
    /// True when the blob is in the opposite byte order from this machine.
    pub swapped: bool,
    /// Format version; always 1.
    pub version: u8,
    /// Header flags; none are defined.
    pub flags: u8,
    /// Header length; the type and string offsets count from its end.
    pub hdr_len: u32,
    /// Offset of the type section, from the end of the header.
    pub type_off: u32,
    /// Length of the type section in bytes.
    pub type_len: u32,
    /// Offset of the string section, from the end of the header.
    pub str_off: u32,
    /// Length of the string section in bytes.
    pub str_len: u32,
}

impl BtfHeader {
    /// Size of the header this crate writes.
    pub const SIZE: usize = 24;

    /// Reads and bounds-checks the header at the start of `blob`.
    pub fn parse(blob: &[u8]) -> Result<BtfHeader, BtfError> {
        let Some(fixed) = blob.get(..Self::SIZE) else {
            return Err(BtfError::Truncated { len: blob.len(), needed: Self::SIZE });
        };
        let magic_le = u16::from_le_bytes([fixed[0], fixed[1]]);
        let little = match magic_le {
            BTF_MAGIC => true,
            m if m.swap_bytes() == BTF_MAGIC => false,
            found => return Err(BtfError::BadMagic { found }),
        };
        let word = |at: usize| {
            let bytes = [fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]];
            if little {
                u32::from_le_bytes(bytes)
            } else {
                u32::from_be_bytes(bytes)
            }
        };
        let header = BtfHeader {
            swapped: little != cfg!(target_endian = "little"),
            version: fixed[2],
            flags: fixed[3],
            hdr_len: word(4),
            type_off: word(8),
            type_len: word(12),
            str_off: word(16),
            str_len: word(20),
        };
        if header.version != 1 {
            return Err(BtfError::UnsupportedVersion(header.version));
        }
        header.check_section("type", header.type_off, header.type_len, blob.len())?;
        header.check_section("string", header.str_off, header.str_len, blob.len())?;
        Ok(header)
    }

    fn check_section(&self, section: &'static str, offset: u32, len: u32, blob_len: usize) -> Result<(), BtfError> {
        let end = u64::from(self.hdr_len) + u64::from(offset) + u64::from(len);
        if end > blob_len as u64 {
            return Err(BtfError::SectionOutOfBounds { section, offset, len, blob_len });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_short_and_foreign_blobs() {
        assert_eq!(BtfHeader::parse(&[0x9f, 0xeb]), Err(BtfError::Truncated { len: 2, needed: 24 }));
        let mut blob = [0u8; 24];
        blob[0] = 0x7f;
        assert!(matches!(BtfHeader::parse(&blob), Err(BtfError::BadMagic { .. })));
    }

    #[test]
    fn reads_big_endian_headers_as_swapped() {
        let mut blob = vec![0xeb, 0x9f, 1, 0];
        for word in [24u32, 0, 0, 0, 1] {
            blob.extend_from_slice(&word.to_be_bytes());
        }
        blob.push(0);
        let header = BtfHeader::parse(&blob).unwrap();
        assert_eq!(header.swapped, cfg!(target_endian = "little"));
        assert_eq!(header.str_len, 1);
    }

    #[test]
    fn sections_past_the_end_are_rejected() {
        let mut blob = vec![0x9f, 0xeb, 1, 0];
        for word in [24u32, 0, 100, 100, 1] {
            blob.extend_from_slice(&word.to_le_bytes());
        }
        assert!(matches!(BtfHeader::parse(&blob), Err(BtfError::SectionOutOfBounds { section: "type", .. })));
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = BtfHeader::parse(&bytes);
        }
    }
}
