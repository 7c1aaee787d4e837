/// The magic number that opens every BTF blob, in the blob's own byte order.
pub const BTF_MAGIC: u16 = 0xeb9f;

/// Why BTF could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
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
    /// The string section does not start with the empty string or end with a NUL.
    #[error("BTF string section is malformed: {0}")]
    BadStrings(&'static str),
    /// A type record runs past the end of the type section.
    #[error("BTF type [{id}] at byte {offset} runs past the end of the type section")]
    TypeTruncated {
        /// Id the type would have had.
        id: u32,
        /// Its byte offset in the type section.
        offset: usize,
    },
    /// A kind number no BTF kind has.
    #[error("BTF type [{id}] has unknown kind {kind}")]
    UnknownKind {
        /// Type id.
        id: u32,
        /// Raw kind number.
        kind: u8,
    },
    /// A name offset past the string section.
    #[error("BTF type [{id}]: name offset {offset} is outside the string section")]
    BadNameOffset {
        /// Type id.
        id: u32,
        /// The offset.
        offset: u32,
    },
    /// A reference to a type id that does not exist.
    #[error("BTF type [{id}] refers to type [{target}], but the last type is [{last}]")]
    BadTypeReference {
        /// Type id.
        id: u32,
        /// The missing id.
        target: u32,
        /// The last valid id.
        last: u32,
    },
    /// A `.BTF.ext` blob that is malformed.
    #[error("BTF.ext: {0}")]
    BadExt(String),
    /// Reading a BTF file failed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong (an I/O error or a parse error).
        message: String,
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

    /// Byte range of the type section within the blob.
    pub fn type_range(&self) -> std::ops::Range<usize> {
        let start = self.hdr_len as usize + self.type_off as usize;
        start..start + self.type_len as usize
    }

    /// Byte range of the string section within the blob.
    pub fn str_range(&self) -> std::ops::Range<usize> {
        let start = self.hdr_len as usize + self.str_off as usize;
        start..start + self.str_len as usize
    }

    fn check_section(&self, section: &'static str, offset: u32, len: u32, blob_len: usize) -> Result<(), BtfError> {
        let end = u64::from(self.hdr_len) + u64::from(offset) + u64::from(len);
        if u64::from(self.hdr_len) < Self::SIZE as u64 || end > blob_len as u64 {
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
