use std::sync::atomic::{AtomicU32, Ordering};
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
    /// Lookups by name served by scanning, before the index is worth building.
    scans: AtomicU32,
}

/// Lookups by name that scan (the string section for the name, then the type records for its
/// offsets) before the name index is built: a scan reads both sections once, in order, where
/// building the index touches a table entry per type at random — for the few lookups of a
/// cold CO-RE relocation, the scans cost less than the index would.
const SCANS_BEFORE_INDEX: u32 = 4;

/// Type ids by name, for lookups without a map of owned strings: a chained hash table keyed
/// by the first eight bytes of each essential name (the name up to any `___flavor` suffix).
/// Building it costs one short read per type and no sort — a kernel's 140 000 types index in
/// a fraction of the time a whole-name hash and a sort took — and a lookup confirms each
/// candidate by comparing names (names sharing their first eight bytes share a chain).
#[derive(Debug, Default)]
pub(crate) struct NameIndex {
    /// Per bucket, 1 + the index in `entries` of its first entry (0: empty).
    heads: Vec<u32>,
    /// `(key, id, 1 + index of the next entry of the bucket or 0)`.
    entries: Vec<(u32, u32, u32)>,
}

impl NameIndex {
    fn build(keys: impl ExactSizeIterator<Item = (u32, u32)>) -> NameIndex {
        let buckets = (keys.len() * 2).next_power_of_two().max(16);
        let mut index = NameIndex { heads: vec![0; buckets], entries: Vec::with_capacity(keys.len()) };
        for (key, id) in keys {
            let bucket = key as usize & (buckets - 1);
            index.entries.push((key, id, index.heads[bucket]));
            index.heads[bucket] = index.entries.len() as u32;
        }
        index
    }

    /// Ids whose key is `key`, most recently added first.
    fn ids(&self, key: u32) -> impl Iterator<Item = u32> + '_ {
        let mut next = if self.heads.is_empty() { 0 } else { self.heads[key as usize & (self.heads.len() - 1)] };
        std::iter::from_fn(move || loop {
            let (entry_key, id, following) = *self.entries.get(next.checked_sub(1)? as usize)?;
            next = following;
            if entry_key == key {
                return Some(id);
            }
        })
    }
}

pub(crate) fn name_hash(name: &str) -> u32 {
    prefix_key(name.as_bytes())
}

/// The index key of a name: its first eight bytes up to a NUL or a `___` that starts among
/// them (which ends the essential name), mixed into 32 bits.
fn prefix_key(name: &[u8]) -> u32 {
    let mut word = [0u8; 8];
    let mut len = 0;
    while len < 8 {
        match name.get(len) {
            None | Some(0) => break,
            Some(b'_') if name.get(len + 1) == Some(&b'_') && name.get(len + 2) == Some(&b'_') => break,
            Some(&b) => word[len] = b,
        }
        len += 1;
    }
    let mixed = u64::from_le_bytes(word).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ len as u64;
    (mixed >> 32) as u32 ^ mixed as u32
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
        let mut btf = Btf {
            data,
            header,
            little,
            offsets: Vec::new(),
            first_id,
            base,
            names: OnceLock::new(),
            scans: AtomicU32::new(0),
        };
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
            scans: AtomicU32::new(0),
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
            let strings = &self.data[self.header.str_range()];
            let base_len = self.base.as_ref().map_or(0, |b| b.string_space());
            let named = self.offsets.iter().enumerate().filter_map(|(i, &at)| {
                let name_off = self.word(at as usize);
                (name_off != 0).then(|| {
                    // Names of a split blob may live in its base's strings.
                    let key = match name_off.checked_sub(base_len) {
                        Some(own) => prefix_key(strings.get(own as usize..).unwrap_or_default()),
                        None => prefix_key(self.string_bytes(name_off)),
                    };
                    (key, self.first_id + i as u32)
                })
            });
            let keys: Vec<(u32, u32)> = named.collect();
            NameIndex::build(keys.into_iter())
        })
    }

    /// Ids of this blob's types whose essential name may be `essential` (to be confirmed by
    /// comparing names: keys are shared), in id order.
    fn hashed_essential(&self, essential: &str) -> Vec<u32> {
        let scan = self.base.is_none()
            && self.names.get().is_none()
            && self.scans.fetch_add(1, Ordering::Relaxed) < SCANS_BEFORE_INDEX;
        if scan {
            return self.scan_essential(essential);
        }
        let mut ids: Vec<u32> = self.name_index().ids(name_hash(essential)).collect();
        ids.reverse();
        ids
    }

    /// Ids of the types whose name is `essential` or `essential___…`, by scanning: first the
    /// string section for such names (deduplicated, so usually one), then the records for
    /// types that use them.
    fn scan_essential(&self, essential: &str) -> Vec<u32> {
        let strings = &self.data[self.header.str_range()];
        let wanted = essential.as_bytes();
        // An empty essential name is that of names starting with the flavour separator.
        let pattern = if wanted.is_empty() { &b"___"[..] } else { wanted };
        let offsets: Vec<u32> = memchr::memmem::find_iter(strings, pattern)
            .filter(|&at| {
                let after = &strings[at + wanted.len()..];
                (at == 0 || strings[at - 1] == 0) && (after.first() == Some(&0) || after.starts_with(b"___"))
            })
            .map(|at| at as u32)
            .collect();
        if offsets.is_empty() {
            return Vec::new();
        }
        self.offsets
            .iter()
            .enumerate()
            .filter(|(_, &at)| offsets.contains(&self.word(at as usize)))
            .map(|(i, _)| self.first_id + i as u32)
            .collect()
    }

    /// Ids of the types named `name`, this blob's and then its base's.
    pub fn ids_by_name(&self, name: &str) -> Vec<u32> {
        let mut ids = self.base.as_ref().map_or_else(Vec::new, |b| b.ids_by_name(name));
        let essential = crate::core::essential_name(name);
        ids.extend(self.hashed_essential(essential).into_iter().filter(|&id| self.type_at(id).name() == name));
        ids
    }

    /// Ids of the types whose essential name (the name up to any `___flavor` suffix) is
    /// `essential`, this blob's and then its base's.
    pub fn ids_by_essential_name(&self, essential: &str) -> Vec<u32> {
        let mut ids = self.base.as_ref().map_or_else(Vec::new, |b| b.ids_by_essential_name(essential));
        ids.extend(
            self.hashed_essential(essential)
                .into_iter()
                .filter(|&id| crate::core::essential_name(self.type_at(id).name()) == essential),
        );
        ids
    }

    /// The first type named `name` of kind `kind`.
    pub fn find(&self, name: &str, kind: BtfKind) -> Option<Type<'_>> {
        self.ids_by_name(name).into_iter().filter_map(|id| self.type_by_id(id)).find(|t| t.is(kind))
    }
}

#[cfg(test)]
mod name_lookup_tests {
    use super::*;
    use crate::{BtfBuilder, IntEncoding};
    use proptest::prelude::*;

    fn blob(names: &[String]) -> Bytes {
        let mut b = BtfBuilder::new();
        for name in names {
            b.add_int(name, 4, IntEncoding::Signed);
        }
        Bytes::from(b.encode())
    }

    #[test]
    fn scans_and_the_index_find_flavours_and_nothing_else() {
        let names: Vec<String> = ["sk_buff", "sk_buff___old", "sk_buff_head", "x___sk_buff", "__sk_buff", "sk_buff"]
            .map(String::from)
            .into();
        let btf = Btf::parse(blob(&names)).unwrap();
        for _ in 0..=SCANS_BEFORE_INDEX + 1 {
            assert_eq!(btf.ids_by_essential_name("sk_buff"), vec![1, 2, 6]);
            assert_eq!(btf.ids_by_name("sk_buff"), vec![1, 6]);
            assert_eq!(btf.ids_by_name("x"), Vec::<u32>::new());
        }
        assert!(btf.names.get().is_some(), "past the scans, the index is built");
    }

    proptest! {
        #[test]
        fn scans_answer_as_the_index_does(
            names in proptest::collection::vec("[ab_]{1,6}", 1..24),
            wanted in "[ab_]{1,4}",
        ) {
            let btf = Btf::parse(blob(&names)).unwrap();
            let scanned = (btf.ids_by_essential_name(&wanted), btf.ids_by_name(&wanted));
            btf.name_index();
            let indexed = (btf.ids_by_essential_name(&wanted), btf.ids_by_name(&wanted));
            prop_assert_eq!(scanned, indexed);
        }
    }
}
