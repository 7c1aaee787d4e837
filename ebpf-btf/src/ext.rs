//! `.BTF.ext`: per-section function info, line info and CO-RE relocation records.

use crate::btf::Btf;
use crate::header::{BtfError, BTF_MAGIC};

/// `struct bpf_func_info`: the BTF `FUNC` describing the function that starts at `insn_off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuncInfo {
    /// Byte offset of the function's first instruction in its section.
    pub insn_off: u32,
    /// BTF id of its `FUNC` type.
    pub type_id: u32,
}

/// `struct bpf_line_info`: the source line of the instruction at `insn_off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineInfo {
    /// Byte offset of the instruction in its section.
    pub insn_off: u32,
    /// String offset of the file name.
    pub file_name_off: u32,
    /// String offset of the source line's text.
    pub line_off: u32,
    /// Line number in the upper 22 bits, column in the lower 10.
    pub line_col: u32,
}

impl LineInfo {
    /// Line number.
    pub fn line(&self) -> u32 {
        self.line_col >> 10
    }

    /// Column.
    pub fn column(&self) -> u32 {
        self.line_col & 0x3ff
    }
}

/// What a CO-RE relocation asks for (`enum bpf_core_relo_kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoreReloKind {
    /// Field byte offset.
    FieldByteOffset,
    /// Field byte size.
    FieldByteSize,
    /// Whether the field exists.
    FieldExists,
    /// Whether the field is signed.
    FieldSigned,
    /// Bitfield left shift.
    FieldLshiftU64,
    /// Bitfield right shift.
    FieldRshiftU64,
    /// Type id in the local BTF.
    TypeIdLocal,
    /// Type id in the target BTF.
    TypeIdTarget,
    /// Whether the type exists in the target.
    TypeExists,
    /// Size of the type in the target.
    TypeSize,
    /// Whether an enumerator exists.
    EnumvalExists,
    /// An enumerator's value.
    EnumvalValue,
    /// Whether the type matches (a stricter existence).
    TypeMatches,
}

impl CoreReloKind {
    /// The kind for a raw number.
    /// The kernel's number for it.
    pub fn raw(self) -> u32 {
        (0..=12).find(|&raw| CoreReloKind::from_raw(raw) == Some(self)).expect("every kind has a number")
    }

    /// The kind numbered `raw`.
    pub fn from_raw(raw: u32) -> Option<CoreReloKind> {
        Some(match raw {
            0 => CoreReloKind::FieldByteOffset,
            1 => CoreReloKind::FieldByteSize,
            2 => CoreReloKind::FieldExists,
            3 => CoreReloKind::FieldSigned,
            4 => CoreReloKind::FieldLshiftU64,
            5 => CoreReloKind::FieldRshiftU64,
            6 => CoreReloKind::TypeIdLocal,
            7 => CoreReloKind::TypeIdTarget,
            8 => CoreReloKind::TypeExists,
            9 => CoreReloKind::TypeSize,
            10 => CoreReloKind::EnumvalExists,
            11 => CoreReloKind::EnumvalValue,
            12 => CoreReloKind::TypeMatches,
            _ => return None,
        })
    }

    /// libbpf's name for the kind, as its logs print it.
    pub fn name(self) -> &'static str {
        match self {
            CoreReloKind::FieldByteOffset => "byte_off",
            CoreReloKind::FieldByteSize => "byte_sz",
            CoreReloKind::FieldExists => "field_exists",
            CoreReloKind::FieldSigned => "signed",
            CoreReloKind::FieldLshiftU64 => "lshift_u64",
            CoreReloKind::FieldRshiftU64 => "rshift_u64",
            CoreReloKind::TypeIdLocal => "local_type_id",
            CoreReloKind::TypeIdTarget => "target_type_id",
            CoreReloKind::TypeExists => "type_exists",
            CoreReloKind::TypeSize => "type_size",
            CoreReloKind::EnumvalExists => "enumval_exists",
            CoreReloKind::EnumvalValue => "enumval_value",
            CoreReloKind::TypeMatches => "type_matches",
        }
    }

    /// Field relocations (the access string walks members and array indices).
    pub fn is_field(self) -> bool {
        matches!(
            self,
            CoreReloKind::FieldByteOffset
                | CoreReloKind::FieldByteSize
                | CoreReloKind::FieldExists
                | CoreReloKind::FieldSigned
                | CoreReloKind::FieldLshiftU64
                | CoreReloKind::FieldRshiftU64
        )
    }

    /// Enumerator relocations.
    pub fn is_enumval(self) -> bool {
        matches!(self, CoreReloKind::EnumvalExists | CoreReloKind::EnumvalValue)
    }
}

/// `struct bpf_core_relo`: one relocation of the instruction at `insn_off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreRelo {
    /// Byte offset of the instruction in its section.
    pub insn_off: u32,
    /// The local (program's) root type.
    pub type_id: u32,
    /// String offset of the access string (`0:1:2`).
    pub access_str_off: u32,
    /// What is asked.
    pub kind: CoreReloKind,
}

/// The records of one ELF section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtSection<T> {
    /// Section name (for example `xdp` or `.text`).
    pub name: String,
    /// Records, in file order.
    pub records: Vec<T>,
}

/// A parsed `.BTF.ext` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BtfExt {
    /// Size of one func info record as written (the kernel wants it back).
    pub func_info_rec_size: u32,
    /// Function info per section.
    pub func_info: Vec<ExtSection<FuncInfo>>,
    /// Size of one line info record as written.
    pub line_info_rec_size: u32,
    /// Line info per section.
    pub line_info: Vec<ExtSection<LineInfo>>,
    /// CO-RE relocations per section.
    pub core_relos: Vec<ExtSection<CoreRelo>>,
}

struct Reader<'a> {
    data: &'a [u8],
    little: bool,
}

impl Reader<'_> {
    fn word(&self, at: usize) -> Result<u32, BtfError> {
        let bytes: [u8; 4] = at
            .checked_add(4)
            .and_then(|end| self.data.get(at..end))
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| BtfError::BadExt(format!("read past the end at byte {at}")))?;
        Ok(if self.little { u32::from_le_bytes(bytes) } else { u32::from_be_bytes(bytes) })
    }
}

impl BtfExt {
    /// Encodes it in this machine's byte order (24 + 8 header bytes, then func info, line
    /// info and CO-RE relocations), section names as string offsets `name_offset` gives (and
    /// records' own offsets as they are).
    pub fn encode(&self, name_offset: &mut dyn FnMut(&str) -> u32) -> Vec<u8> {
        fn block<T>(
            out: &mut Vec<u8>,
            rec_size: u32,
            sections: &[ExtSection<T>],
            name_offset: &mut dyn FnMut(&str) -> u32,
            words: impl Fn(&T) -> Vec<u32>,
        ) {
            out.extend_from_slice(&rec_size.to_ne_bytes());
            for section in sections {
                out.extend_from_slice(&name_offset(&section.name).to_ne_bytes());
                out.extend_from_slice(&(section.records.len() as u32).to_ne_bytes());
                for record in &section.records {
                    for word in words(record) {
                        out.extend_from_slice(&word.to_ne_bytes());
                    }
                }
            }
        }
        let mut func = Vec::new();
        block(&mut func, 8, &self.func_info, name_offset, |f| vec![f.insn_off, f.type_id]);
        let mut line = Vec::new();
        block(&mut line, 16, &self.line_info, name_offset, |l| {
            vec![l.insn_off, l.file_name_off, l.line_off, l.line_col]
        });
        let mut core = Vec::new();
        if !self.core_relos.is_empty() {
            block(&mut core, 16, &self.core_relos, name_offset, |c| {
                vec![c.insn_off, c.type_id, c.access_str_off, c.kind.raw()]
            });
        }
        const HEADER: u32 = 32;
        let mut out = Vec::with_capacity(HEADER as usize + func.len() + line.len() + core.len());
        out.extend_from_slice(&BTF_MAGIC.to_ne_bytes());
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&HEADER.to_ne_bytes());
        let mut offset = 0u32;
        for part in [&func, &line, &core] {
            out.extend_from_slice(&offset.to_ne_bytes());
            out.extend_from_slice(&(part.len() as u32).to_ne_bytes());
            offset += part.len() as u32;
        }
        out.extend_from_slice(&func);
        out.extend_from_slice(&line);
        out.extend_from_slice(&core);
        out
    }

    /// Parses `.BTF.ext` bytes; names resolve through `btf`'s strings.
    pub fn parse(data: &[u8], btf: &Btf) -> Result<BtfExt, BtfError> {
        if data.len() < 24 {
            return Err(BtfError::BadExt(format!("{} bytes is shorter than the 24-byte header", data.len())));
        }
        let little = match u16::from_le_bytes([data[0], data[1]]) {
            BTF_MAGIC => true,
            m if m.swap_bytes() == BTF_MAGIC => false,
            m => return Err(BtfError::BadExt(format!("magic {m:#06x}, expected 0xeb9f"))),
        };
        if data[2] != 1 {
            return Err(BtfError::BadExt(format!("version {} is not supported", data[2])));
        }
        let r = Reader { data, little };
        let hdr_len = r.word(4)? as usize;
        if hdr_len < 24 || hdr_len > data.len() {
            return Err(BtfError::BadExt(format!("header length {hdr_len} is out of range")));
        }
        let section = |off_at: usize| -> Result<Option<(usize, usize)>, BtfError> {
            if off_at + 8 > hdr_len {
                return Ok(None);
            }
            let (off, len) = (r.word(off_at)? as usize, r.word(off_at + 4)? as usize);
            let start = hdr_len.checked_add(off).filter(|s| s.checked_add(len).is_some_and(|e| e <= data.len()));
            match start {
                Some(start) if len > 0 => Ok(Some((start, len))),
                Some(_) => Ok(None),
                None => Err(BtfError::BadExt(format!("section {off}+{len} lies outside {} bytes", data.len()))),
            }
        };
        let mut ext = BtfExt::default();
        if let Some((start, len)) = section(8)? {
            let (rec_size, sections) = parse_info(&r, btf, start, len, 8, |r, at| {
                Ok(FuncInfo { insn_off: r.word(at)?, type_id: r.word(at + 4)? })
            })?;
            ext.func_info_rec_size = rec_size;
            ext.func_info = sections;
        }
        if let Some((start, len)) = section(16)? {
            let (rec_size, sections) = parse_info(&r, btf, start, len, 16, |r, at| {
                Ok(LineInfo {
                    insn_off: r.word(at)?,
                    file_name_off: r.word(at + 4)?,
                    line_off: r.word(at + 8)?,
                    line_col: r.word(at + 12)?,
                })
            })?;
            ext.line_info_rec_size = rec_size;
            ext.line_info = sections;
        }
        if let Some((start, len)) = section(24)? {
            let (_, sections) = parse_info(&r, btf, start, len, 16, |r, at| {
                let raw_kind = r.word(at + 12)?;
                let kind = CoreReloKind::from_raw(raw_kind)
                    .ok_or_else(|| BtfError::BadExt(format!("unknown CO-RE relocation kind {raw_kind}")))?;
                Ok(CoreRelo { insn_off: r.word(at)?, type_id: r.word(at + 4)?, access_str_off: r.word(at + 8)?, kind })
            })?;
            ext.core_relos = sections;
        }
        Ok(ext)
    }
}

fn parse_info<T>(
    r: &Reader<'_>,
    btf: &Btf,
    start: usize,
    len: usize,
    min_rec_size: usize,
    read: impl Fn(&Reader<'_>, usize) -> Result<T, BtfError>,
) -> Result<(u32, Vec<ExtSection<T>>), BtfError> {
    let end = start + len;
    let rec_size = r.word(start)? as usize;
    if rec_size < min_rec_size || rec_size % 4 != 0 {
        return Err(BtfError::BadExt(format!("record size {rec_size} is invalid (at least {min_rec_size})")));
    }
    let mut at = start + 4;
    let mut sections = Vec::new();
    while at < end {
        let name_off = r.word(at)?;
        let count = r.word(at + 4)? as usize;
        at += 8;
        let bytes = count
            .checked_mul(rec_size)
            .filter(|b| at.checked_add(*b).is_some_and(|e| e <= end))
            .ok_or_else(|| BtfError::BadExt(format!("{count} records of {rec_size} bytes overrun the section")))?;
        let name = btf.string(name_off);
        if name.is_empty() {
            return Err(BtfError::BadExt(format!("section name offset {name_off} names nothing")));
        }
        let records = (0..count).map(|i| read(r, at + i * rec_size)).collect::<Result<Vec<_>, _>>()?;
        sections.push(ExtSection { name: name.to_owned(), records });
        at += bytes;
    }
    Ok((rec_size as u32, sections))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::{Object, ObjectSection};

    #[test]
    fn encoding_gives_back_what_was_parsed() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../bpf-programs/out/tests/core_kernel.o");
        let bytes = std::fs::read(path).unwrap();
        let elf = object::File::parse(&*bytes).unwrap();
        let section = |name: &str| elf.section_by_name(name).unwrap().data().unwrap().to_vec();
        let raw_btf = section(".BTF");
        let btf = Btf::parse(raw_btf.clone()).unwrap();
        let ext = BtfExt::parse(&section(".BTF.ext"), &btf).unwrap();
        assert!(!ext.core_relos.is_empty() && !ext.line_info.is_empty());
        // Section names by their offset in the object's own string table.
        let strings = &raw_btf[btf.header().str_range()];
        let mut name_offset = |name: &str| {
            let wanted = [name.as_bytes(), &[0]].concat();
            (0..strings.len())
                .find(|&at| (at == 0 || strings[at - 1] == 0) && strings[at..].starts_with(&wanted))
                .unwrap() as u32
        };
        let again = BtfExt::parse(&ext.encode(&mut name_offset), &btf).unwrap();
        assert_eq!(again, ext);
    }
}
