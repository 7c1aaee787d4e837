use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::header::{BtfError, BtfHeader};
use crate::kind::BtfKind;
use crate::types::Type;

/// Parsed BTF: the raw blob plus an index of where each type starts.
///
/// Types are decoded on demand from the raw bytes ([`Btf::type_by_id`] returns a [`Type`]
/// view), and names are borrowed from the string section without copying. Parsing is one
/// pass that validates every record — kinds, lengths, name offsets and type references — so
/// the accessors afterwards cannot fail.
///
/// Split BTF (kernel modules) sits on a base: its ids continue the base's and its string
/// offsets past the base's string section refer to its own.
#[derive(Debug)]
pub struct Btf {
    data: Bytes,
    header: BtfHeader,
    little: bool,
    /// Byte offset (in `data`) of each type of this blob; `offsets[0]` is type `first_id`.
    offsets: Vec<u32>,
    first_id: u32,
    base: Option<Arc<Btf>>,
    names: OnceLock<NameIndex>,
}

/// Hashes of type names, sorted, for lookups by name without a map of owned strings.
#[derive(Debug, Default)]
pub(crate) struct NameIndex {
    /// `(hash of the essential name, id)`, sorted: serves exact and essential lookups alike.
    entries: Vec<(u32, u32)>,
}

pub(crate) fn name_hash(name: &str) -> u32 {
    name_hash_bytes(name.as_bytes())
}

fn name_hash_bytes(name: &[u8]) -> u32 {
    // FNV-1a: fast for short identifiers and needs no state; collisions are resolved by
    // comparing names.
    let mut hash = 0x811c_9dc5u32;
    for &byte in name {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The bytes of a name up to any `___flavor` suffix (a plain byte scan: names are short, and a
/// substring searcher's setup would dominate).
pub(crate) fn essential_bytes(name: &[u8]) -> &[u8] {
    match name.windows(3).position(|w| w == b"___") {
        Some(at) => &name[..at],
        None => name,
    }
}

/// Bytes of extra data that follow the 12-byte common part of a type record.
pub(crate) fn extra_len(kind: BtfKind, vlen: usize) -> usize {
    match kind {
        BtfKind::Int | BtfKind::Var | BtfKind::DeclTag => 4,
        BtfKind::Array => 12,
        BtfKind::Struct | BtfKind::Union | BtfKind::Datasec | BtfKind::Enum64 => 12 * vlen,
        BtfKind::Enum | BtfKind::FuncProto => 8 * vlen,
        _ => 0,
    }
}

impl Btf {
    /// Parses a standalone `.BTF` blob (an object file's, or vmlinux's). The bytes are kept,
    /// not copied: a `Vec<u8>` or a shared [`Bytes`] buffer both move in for free.
    pub fn parse(data: impl Into<Bytes>) -> Result<Btf, BtfError> {
        Self::parse_inner(data.into(), None)
    }

    /// Parses split BTF (a kernel module's) on top of `base`.
    pub fn parse_split(data: impl Into<Bytes>, base: Arc<Btf>) -> Result<Btf, BtfError> {
        Self::parse_inner(data.into(), Some(base))
    }

    /// Parses for lookups only (CO-RE against the kernel's BTF): records are indexed and
    /// bounds checked, but type references are not validated up front — a dangling one reads
    /// as an absent type. The name index is built on the first lookup by name.
    pub fn parse_lazy(data: impl Into<Bytes>) -> Result<Btf, BtfError> {
        Self::parse_unchecked(data.into(), None)
    }

    fn parse_inner(data: Bytes, base: Option<Arc<Btf>>) -> Result<Btf, BtfError> {
        let btf = Self::parse_unchecked(data, base)?;
        btf.check_references()?;
        Ok(btf)
    }

    fn parse_unchecked(data: Bytes, base: Option<Arc<Btf>>) -> Result<Btf, BtfError> {
        let header = BtfHeader::parse(&data)?;
        let little = header.swapped != cfg!(target_endian = "little");
        let strings = &data[header.str_range()];
        if base.is_none() && strings.first() != Some(&0) {
            return Err(BtfError::BadStrings("it must start with the empty string"));
        }
        if !strings.is_empty() && strings.last() != Some(&0) {
            return Err(BtfError::BadStrings("its last string is not NUL-terminated"));
        }
        let first_id = base.as_ref().map_or(1, |b| b.last_id() + 1);
        let mut btf = Btf { data, header, little, offsets: Vec::new(), first_id, base, names: OnceLock::new() };
        btf.index_types()?;
        Ok(btf)
    }

    fn index_types(&mut self) -> Result<(), BtfError> {
        let range = self.header.type_range();
        let types = &self.data[range.clone()];
        let str_total = self.string_space();
        let little = self.little;
        let read = |at: usize| -> u32 {
            let bytes: [u8; 4] = types[at..at + 4].try_into().expect("4 bytes");
            if little {
                u32::from_le_bytes(bytes)
            } else {
                u32::from_be_bytes(bytes)
            }
        };
        // Records are at least 12 bytes and usually about 20: a close first guess of the count.
        let mut offsets = Vec::with_capacity(types.len() / 20 + 16);
        let mut at = 0usize;
        while at < types.len() {
            let id = self.first_id + offsets.len() as u32;
            if at + 12 > types.len() {
                return Err(BtfError::TypeTruncated { id, offset: at });
            }
            let name_off = read(at);
            let info = read(at + 4);
            let raw_kind = ((info >> 24) & 0x1f) as u8;
            let kind = BtfKind::from_raw(raw_kind).ok_or(BtfError::UnknownKind { id, kind: raw_kind })?;
            if name_off >= str_total {
                return Err(BtfError::BadNameOffset { id, offset: name_off });
            }
            let end = at + 12 + extra_len(kind, (info & 0xffff) as usize);
            if end > types.len() {
                return Err(BtfError::TypeTruncated { id, offset: at });
            }
            offsets.push((range.start + at) as u32);
            at = end;
        }
        self.offsets = offsets;
        Ok(())
    }

    fn check_references(&self) -> Result<(), BtfError> {
        let last = self.last_id();
        for (i, &at) in self.offsets.iter().enumerate() {
            let id = self.first_id + i as u32;
            let at = at as usize;
            let info = self.word(at + 4);
            let kind = BtfKind::from_raw(((info >> 24) & 0x1f) as u8).expect("kinds were checked when indexing");
            let vlen = (info & 0xffff) as usize;
            let bad = |target: u32| BtfError::BadTypeReference { id, target, last };
            // Where this record keeps type ids: (first byte, stride, count). A prototype's return
            // type sits in its type word, like every other kind that refers by it.
            if kind.refers_by_type_word() {
                let target = self.word(at + 8);
                if target > last {
                    return Err(bad(target));
                }
            }
            let (first, stride, count) = match kind {
                BtfKind::Array => (12, 4, 2),
                BtfKind::Struct | BtfKind::Union => (16, 12, vlen),
                BtfKind::Datasec => (12, 12, vlen),
                BtfKind::FuncProto => (16, 8, vlen),
                _ => (0, 0, 0),
            };
            for n in 0..count {
                let target = self.word(at + first + n * stride);
                if target > last {
                    return Err(bad(target));
                }
            }
        }
        Ok(())
    }

    /// Bytes of string space visible to this blob (the base's strings, then its own).
    pub(crate) fn string_space(&self) -> u32 {
        self.base.as_ref().map_or(0, |b| b.string_space()) + self.header.str_len
    }

    /// Byte offset in the blob of type `id`, when `id` is one of this blob's own types.
    pub(crate) fn own_type_offset(&self, id: u32) -> Option<usize> {
        let index = id.checked_sub(self.first_id)? as usize;
        self.offsets.get(index).map(|&at| at as usize)
    }

    /// The same index over `data`, bytes of identical layout (a patched copy).
    pub(crate) fn with_bytes(&self, data: Bytes) -> Btf {
        debug_assert_eq!(data.len(), self.data.len());
        Btf {
            data,
            header: self.header,
            little: self.little,
            offsets: self.offsets.clone(),
            first_id: self.first_id,
            base: self.base.clone(),
            names: OnceLock::new(),
        }
    }

    /// True when the blob is little-endian.
    pub fn is_little_endian(&self) -> bool {
        self.little
    }

    /// The raw blob as a shared buffer (a reference count, not a copy).
    pub fn shared_bytes(&self) -> Bytes {
        self.data.clone()
    }

    /// The raw blob.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// The header.
    pub fn header(&self) -> &BtfHeader {
        &self.header
    }

    /// The base this split BTF sits on.
    pub fn base(&self) -> Option<&Arc<Btf>> {
        self.base.as_ref()
    }

    /// Id of this blob's first type (1, or one past the base's last).
    pub fn first_id(&self) -> u32 {
        self.first_id
    }

    /// Id of the last type (base included); 0 for BTF with no types.
    pub fn last_id(&self) -> u32 {
        self.first_id + self.offsets.len() as u32 - 1
    }

    /// Number of types in this blob (not counting a base's).
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// True when this blob holds no types.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    pub(crate) fn word(&self, at: usize) -> u32 {
        let bytes: [u8; 4] = self.data[at..at + 4].try_into().expect("4 bytes");
        if self.little {
            u32::from_le_bytes(bytes)
        } else {
            u32::from_be_bytes(bytes)
        }
    }

    /// The string at `offset` (base strings first for split BTF); empty when not valid UTF-8.
    pub fn string(&self, offset: u32) -> &str {
        std::str::from_utf8(self.string_bytes(offset)).unwrap_or("")
    }

    /// The raw bytes of the string at `offset`, without UTF-8 validation.
    fn string_bytes(&self, offset: u32) -> &[u8] {
        if let Some(base) = &self.base {
            let base_len = base.string_space();
            if offset < base_len {
                return base.string_bytes(offset);
            }
            return self.own_string_bytes(offset - base_len);
        }
        self.own_string_bytes(offset)
    }

    fn own_string_bytes(&self, offset: u32) -> &[u8] {
        let strings = &self.data[self.header.str_range()];
        let Some(tail) = strings.get(offset as usize..) else { return &[] };
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        &tail[..end]
    }

    /// The type with id `id` (in this blob or its base). Id 0 is `void`.
    pub fn type_by_id(&self, id: u32) -> Option<Type<'_>> {
        if id == 0 {
            return Some(Type::void(self));
        }
        if id < self.first_id {
            return self.base.as_ref().and_then(|b| b.type_by_id(id));
        }
        (id <= self.last_id()).then(|| self.type_at(id))
    }

    /// Type `id`, known to be in this blob.
    fn type_at(&self, id: u32) -> Type<'_> {
        let at = self.offsets[(id - self.first_id) as usize] as usize;
        Type::decode(self, id, at)
    }

    /// Every type of this blob (not its base), in id order.
    pub fn types(&self) -> impl Iterator<Item = Type<'_>> + '_ {
        (self.first_id..self.first_id + self.offsets.len() as u32).map(|id| self.type_at(id))
    }

    pub(crate) fn name_index(&self) -> &NameIndex {
        self.names.get_or_init(|| {
            let mut entries = Vec::with_capacity(self.len());
            for (i, &at) in self.offsets.iter().enumerate() {
                let name_off = self.word(at as usize);
                if name_off != 0 {
                    let hash = name_hash_bytes(essential_bytes(self.string_bytes(name_off)));
                    entries.push((hash, self.first_id + i as u32));
                }
            }
            entries.sort_unstable();
            NameIndex { entries }
        })
    }

    /// Ids of this blob's types whose essential name hashes like `essential` (to be confirmed
    /// by comparing names: hashes collide).
    fn hashed_essential(&self, essential: &str) -> impl Iterator<Item = u32> + '_ {
        let hash = name_hash(essential);
        let entries = &self.name_index().entries;
        let start = entries.partition_point(|&(h, _)| h < hash);
        entries[start..].iter().take_while(move |&&(h, _)| h == hash).map(|&(_, id)| id)
    }

    /// Ids of the types named `name`, this blob's and then its base's.
    pub fn ids_by_name(&self, name: &str) -> Vec<u32> {
        let mut ids = self.base.as_ref().map_or_else(Vec::new, |b| b.ids_by_name(name));
        let essential = crate::core::essential_name(name);
        ids.extend(self.hashed_essential(essential).filter(|&id| self.type_at(id).name() == name));
        ids
    }

    /// Ids of the types whose essential name (the name up to any `___flavor` suffix) is
    /// `essential`, this blob's and then its base's.
    pub fn ids_by_essential_name(&self, essential: &str) -> Vec<u32> {
        let mut ids = self.base.as_ref().map_or_else(Vec::new, |b| b.ids_by_essential_name(essential));
        ids.extend(
            self.hashed_essential(essential)
                .filter(|&id| crate::core::essential_name(self.type_at(id).name()) == essential),
        );
        ids
    }

    /// The first type named `name` of kind `kind`.
    pub fn find(&self, name: &str, kind: BtfKind) -> Option<Type<'_>> {
        self.ids_by_name(name).into_iter().filter_map(|id| self.type_by_id(id)).find(|t| t.is(kind))
    }
}
