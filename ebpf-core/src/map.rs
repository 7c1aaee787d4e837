//! Maps: [`MapSpec`] describes one as plain data; [`Map`] is a live map that owns its fd.
//!
//! `Map` speaks bytes, checking every buffer against the map's key and value sizes; the
//! `ebpf-maps` crate builds typed views on top of it.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use crate::error::{Error, Result};
use crate::sys::{self, MapCreate, MapFd};
use crate::types::MapType;

bitflags::bitflags! {
    /// `BPF_F_*` flags given when a map is created.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct MapFlags: u32 {
        /// Allocate elements on demand instead of up front.
        const NO_PREALLOC = 1 << 0;
        /// LRU maps: one LRU list per CPU.
        const NO_COMMON_LRU = 1 << 1;
        /// Allocate on the NUMA node given in the spec.
        const NUMA_NODE = 1 << 2;
        /// User space may only read.
        const RDONLY = 1 << 3;
        /// User space may only write.
        const WRONLY = 1 << 4;
        /// Stack-trace maps store build ids.
        const STACK_BUILD_ID = 1 << 5;
        /// Hash seed zero (tests only).
        const ZERO_SEED = 1 << 6;
        /// Programs may only read.
        const RDONLY_PROG = 1 << 7;
        /// Programs may only write.
        const WRONLY_PROG = 1 << 8;
        /// Clone socket-local storage on accept.
        const CLONE = 1 << 9;
        /// The value area can be mmap'ed (arrays, arenas).
        const MMAPABLE = 1 << 10;
        /// Perf event arrays keep elements when the map fd closes.
        const PRESERVE_ELEMS = 1 << 11;
        /// Inner maps of different sizes may be swapped in.
        const INNER_MAP = 1 << 12;
        /// struct_ops maps: registered through a `bpf_link` instead of by a map update
        /// (`.struct_ops.link`), so the implementation can be swapped.
        const LINK = 1 << 13;
    }
}

bitflags::bitflags! {
    /// Flags of an element update.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct UpdateFlags: u64 {
        /// Only if the key is absent (`BPF_NOEXIST`).
        const NO_EXIST = 1;
        /// Only if the key is present (`BPF_EXIST`).
        const EXIST = 2;
        /// Take the value's `bpf_spin_lock` (`BPF_F_LOCK`).
        const LOCK = 4;
    }
}

impl UpdateFlags {
    /// Create or replace (`BPF_ANY`).
    pub const ANY: UpdateFlags = UpdateFlags::empty();
}

/// A map as plain data: what to create. Build one by hand or read it from an object file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapSpec {
    /// Name (the kernel keeps the first 15 characters).
    pub name: String,
    /// Kind of map.
    pub map_type: MapType,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Capacity.
    pub max_entries: u32,
    /// Creation flags.
    pub flags: MapFlags,
    /// NUMA node, used with [`MapFlags::NUMA_NODE`].
    pub numa_node: u32,
    /// Type-specific extra (bloom filter hash count, arena base address).
    pub map_extra: u64,
    /// For maps of maps: the template of the inner maps.
    pub inner: Option<Box<MapSpec>>,
    /// Whether a collection load shares this map through a pin (`LIBBPF_PIN_BY_NAME`).
    pub pinning: Pinning,
    /// What a collection load writes into the map after creating it.
    pub contents: MapContents,
    /// BTF type ids of key and value in the collection's BTF, when the object described them
    /// (the kernel needs them for spin locks, timers and kptrs in values).
    pub btf_types: Option<MapBtfTypes>,
}

/// Whether a map is shared through bpffs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Pinning {
    /// Created fresh for each load.
    #[default]
    None,
    /// Pinned under the load's pin directory by its name; a compatible pin found there is reused.
    ByName,
}

/// Initial contents of a map, written when a collection loads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MapContents {
    /// Nothing.
    #[default]
    Empty,
    /// The value of key 0 of a one-element array: a global data section's bytes.
    Data(Vec<u8>),
    /// Prog array slots: (index, program name).
    Programs(Vec<(u32, String)>),
    /// Map-of-maps slots: (index, map name).
    Maps(Vec<(u32, String)>),
    /// A struct_ops map's value, matched with the running kernel's struct at load; registered
    /// by [`Collection::register_struct_ops`](crate::Collection::register_struct_ops).
    StructOps(crate::struct_ops::StructOpsValue),
}

/// BTF ids describing a map's key and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MapBtfTypes {
    /// Key type id (0 for none).
    pub key: u32,
    /// Value type id.
    pub value: u32,
}

impl MapSpec {
    /// A spec with no flags.
    pub fn new(name: &str, map_type: MapType, key_size: u32, value_size: u32, max_entries: u32) -> MapSpec {
        MapSpec {
            name: name.to_owned(),
            map_type,
            key_size,
            value_size,
            max_entries,
            flags: MapFlags::empty(),
            numa_node: 0,
            map_extra: 0,
            inner: None,
            pinning: Pinning::None,
            contents: MapContents::Empty,
            btf_types: None,
        }
    }

    /// The same spec with `flags` set.
    pub fn with_flags(mut self, flags: MapFlags) -> MapSpec {
        self.flags = flags;
        self
    }

    /// A struct_ops map's value, to edit before load (a congestion control's `name`).
    pub fn struct_ops_mut(&mut self) -> Option<&mut crate::struct_ops::StructOpsValue> {
        match &mut self.contents {
            MapContents::StructOps(value) => Some(value),
            _ => None,
        }
    }
}

/// Where a batch walk of a map stands; start with [`BatchCursor::default`].
#[derive(Clone, Debug, Default)]
pub struct BatchCursor {
    input: Vec<u8>,
    out: Vec<u8>,
    started: bool,
    done: bool,
}

impl BatchCursor {
    /// True once the walk has passed the last element.
    pub fn is_done(&self) -> bool {
        self.done
    }
}

/// A live map. Closing (dropping) it releases the map unless something else holds it
/// (a program using it, a pin, another fd).
#[derive(Debug)]
pub struct Map {
    fd: MapFd,
    name: String,
    map_type: Option<MapType>,
    max_entries: u32,
    flags: MapFlags,
}

impl Map {
    /// Creates a map in the kernel. Maps of maps create a throwaway inner map as template.
    /// [`MapSpec::btf_types`] is ignored here: the ids mean something only with their BTF,
    /// which a collection load passes.
    pub fn create(spec: &MapSpec) -> Result<Map> {
        Self::create_with_btf(spec, None)
    }

    /// Creates a map whose key and value are described by `btf` (with [`MapSpec::btf_types`]).
    pub(crate) fn create_with_btf(spec: &MapSpec, btf: Option<BorrowedFd<'_>>) -> Result<Map> {
        Self::create_request(spec, btf, None)
    }

    /// Creates a struct_ops map whose value is the kernel's type `value_type_id` (of
    /// `value_size` bytes); `btf` is the object's, which the kernel insists on.
    pub(crate) fn create_struct_ops(
        spec: &MapSpec,
        btf: BorrowedFd<'_>,
        value_type_id: u32,
        value_size: u32,
    ) -> Result<Map> {
        let kernel_spec = MapSpec { value_size, btf_types: None, ..spec.clone() };
        Self::create_request(&kernel_spec, Some(btf), Some(value_type_id))
    }

    fn create_request(spec: &MapSpec, btf: Option<BorrowedFd<'_>>, vmlinux_value_type_id: Option<u32>) -> Result<Map> {
        let inner = match &spec.inner {
            Some(inner_spec) => Some(Map::create(inner_spec)?),
            None => None,
        };
        let (btf, btf_types) = match (btf, spec.btf_types, vmlinux_value_type_id) {
            (Some(fd), Some(types), _) => (Some(fd), types),
            (Some(fd), None, Some(_)) => (Some(fd), MapBtfTypes { key: 0, value: 0 }),
            _ => (None, MapBtfTypes { key: 0, value: 0 }),
        };
        let request = MapCreate {
            map_type: spec.map_type.raw(),
            key_size: spec.key_size,
            value_size: spec.value_size,
            max_entries: spec.max_entries,
            map_flags: spec.flags.bits(),
            name: &spec.name,
            inner_map: inner.as_ref().map(|m| m.as_fd()),
            numa_node: spec.numa_node,
            map_extra: spec.map_extra,
            btf,
            btf_key_type_id: btf_types.key,
            btf_value_type_id: btf_types.value,
            btf_vmlinux_value_type_id: vmlinux_value_type_id.unwrap_or(0),
        };
        let fd = sys::map_create(&request).map_err(|e| {
            Error::syscall(
                format!(
                    "create map \"{}\" ({}, key {} B, value {} B, {} entries)",
                    spec.name, spec.map_type, spec.key_size, spec.value_size, spec.max_entries
                ),
                e,
            )
        })?;
        Ok(Map {
            fd,
            name: spec.name.clone(),
            map_type: Some(spec.map_type),
            max_entries: spec.max_entries,
            flags: spec.flags,
        })
    }

    fn from_owned(fd: std::os::fd::OwnedFd, what: impl Fn() -> String) -> Result<Map> {
        let info = sys::map_info(fd.as_fd()).map_err(|e| Error::syscall(format!("read info of {}", what()), e))?;
        let fd = MapFd::from_owned(fd).map_err(|e| Error::syscall(format!("open {}", what()), e))?;
        Ok(Map {
            fd,
            name: info.name,
            map_type: MapType::from_raw(info.map_type),
            max_entries: info.max_entries,
            flags: MapFlags::from_bits_retain(info.map_flags),
        })
    }

    /// Opens the map pinned at `path`.
    pub fn from_pin(path: impl AsRef<Path>) -> Result<Map> {
        let path = path.as_ref();
        let fd = sys::obj_get(path, 0).map_err(|e| Error::syscall(format!("open pinned map {}", path.display()), e))?;
        if sys::object_kind(fd.as_fd()) != sys::ObjectKind::Map {
            return Err(Error::InvalidSpec {
                object: format!("pin {}", path.display()),
                reason: "it is not a map".to_owned(),
            });
        }
        Self::from_owned(fd, || format!("pinned map {}", path.display()))
    }

    /// Opens the map with global id `id`.
    pub fn from_id(id: u32) -> Result<Map> {
        let fd = sys::map_fd_by_id(id, 0).map_err(|e| Error::syscall(format!("open map id {id}"), e))?;
        Self::from_owned(fd, || format!("map id {id}"))
    }

    /// Another handle on the same map (the fd is duplicated; no `bpf()` call).
    pub fn try_clone(&self) -> Result<Map> {
        let fd = self.fd.as_fd().try_clone_to_owned().map_err(|source| Error::Io {
            operation: "duplicate map fd",
            path: "<fd>".into(),
            source,
        })?;
        Ok(Map {
            fd: self.fd.with_fd(fd),
            name: self.name.clone(),
            map_type: self.map_type,
            max_entries: self.max_entries,
            flags: self.flags,
        })
    }

    /// Opens the map behind a borrowed fd (the fd is duplicated).
    pub fn from_fd(fd: BorrowedFd<'_>) -> Result<Map> {
        let owned = fd.try_clone_to_owned().map_err(|source| Error::Io {
            operation: "duplicate map fd",
            path: "<fd>".into(),
            source,
        })?;
        Self::from_owned(owned, || "map fd".to_owned())
    }

    /// The same map under the full name its spec gives (the kernel keeps only 15 characters).
    pub(crate) fn named(mut self, name: &str) -> Map {
        self.name = name.to_owned();
        self
    }

    /// Name as given (or as the kernel reports it, for maps opened by pin or id).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Kind of map (`None` for a kind newer than this library).
    pub fn map_type(&self) -> Option<MapType> {
        self.map_type
    }

    /// Key size in bytes.
    pub fn key_size(&self) -> usize {
        self.fd.key_size() as usize
    }

    /// Value size in bytes.
    pub fn value_size(&self) -> usize {
        self.fd.value_size() as usize
    }

    /// Bytes of one value in a user buffer (per-CPU maps: one 8-byte aligned slot per CPU).
    pub fn value_stride(&self) -> usize {
        self.fd.value_stride()
    }

    /// Capacity.
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }

    /// Creation flags.
    pub fn flags(&self) -> MapFlags {
        self.flags
    }

    /// What the kernel reports about this map.
    pub fn info(&self) -> Result<sys::MapInfo> {
        sys::map_info(self.as_fd()).map_err(|e| Error::syscall(format!("read info of {}", self.describe()), e))
    }

    /// `map "name" (type, N entries)`, as errors name it.
    pub fn describe(&self) -> String {
        let kind = self.map_type.map_or("unknown type", |t| t.name());
        format!("map \"{}\" ({kind}, {} entries)", self.name, self.max_entries)
    }

    // Inlined, with the error built out of line: the check sits on every map operation.
    #[inline]
    fn check(&self, operation: &str, what: &'static str, actual: usize, expected: usize) -> Result<()> {
        if actual == expected {
            Ok(())
        } else {
            Err(self.size_mismatch(operation, what, actual, expected))
        }
    }

    #[cold]
    #[inline(never)]
    fn failed(&self, operation: &str, error: sys::SysError) -> Error {
        Error::syscall(format!("{operation} {}", self.describe()), error)
    }

    #[cold]
    #[inline(never)]
    fn size_mismatch(&self, operation: &str, what: &'static str, actual: usize, expected: usize) -> Error {
        Error::SizeMismatch { operation: format!("{operation} {}", self.describe()), what, actual, expected }
    }

    /// Copies the value for `key` into `value`; `false` when the key is absent.
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> Result<bool> {
        self.check("lookup in", "key", key.len(), self.key_size())?;
        self.check("lookup in", "value buffer", value.len(), self.value_stride())?;
        match sys::map_lookup_elem(&self.fd, key, value, 0) {
            Ok(()) => Ok(true),
            Err(e) if e.errno == sys::Errno::ENOENT => Ok(false),
            Err(e) => Err(self.failed("lookup in", e)),
        }
    }

    /// The value for `key`, if present.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let mut value = vec![0u8; self.value_stride()];
        Ok(self.lookup(key, &mut value)?.then_some(value))
    }

    /// Inserts or replaces, as `flags` allow.
    pub fn update(&self, key: &[u8], value: &[u8], flags: UpdateFlags) -> Result<()> {
        self.check("update", "key", key.len(), self.key_size())?;
        self.check("update", "value", value.len(), self.value_stride())?;
        sys::map_update_elem(&self.fd, key, value, flags.bits()).map_err(|e| self.failed("update", e))
    }

    /// Removes `key`; `false` when it was absent.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        self.check("delete from", "key", key.len(), self.key_size())?;
        match sys::map_delete_elem(&self.fd, key) {
            Ok(()) => Ok(true),
            Err(e) if e.errno == sys::Errno::ENOENT => Ok(false),
            Err(e) => Err(self.failed("delete from", e)),
        }
    }

    /// Looks up and removes `key` in one step (for queues and stacks, `key` is empty: pop).
    pub fn take(&self, key: &[u8], value: &mut [u8]) -> Result<bool> {
        self.check("take from", "key", key.len(), self.key_size())?;
        self.check("take from", "value buffer", value.len(), self.value_stride())?;
        match sys::map_lookup_and_delete_elem(&self.fd, key, value, 0) {
            Ok(()) => Ok(true),
            Err(e) if e.errno == sys::Errno::ENOENT => Ok(false),
            Err(e) => Err(self.failed("take from", e)),
        }
    }

    /// Writes the key after `key` (or the first key) into `next`; `false` at the end.
    pub fn next_key(&self, key: Option<&[u8]>, next: &mut [u8]) -> Result<bool> {
        if let Some(key) = key {
            self.check("iterate", "key", key.len(), self.key_size())?;
        }
        self.check("iterate", "key buffer", next.len(), self.key_size())?;
        sys::map_get_next_key(&self.fd, key, next).map_err(|e| self.failed("iterate", e))
    }

    /// Makes the map read-only for user space from now on.
    pub fn freeze(&self) -> Result<()> {
        sys::map_freeze(&self.fd).map_err(|e| Error::syscall(format!("freeze {}", self.describe()), e))
    }

    /// Pins the map at `path` on a bpffs mount.
    pub fn pin(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        sys::obj_pin(self.as_fd(), path)
            .map_err(|e| Error::syscall(format!("pin {} at {}", self.describe(), path.display()), e))
    }

    /// Reads up to `keys.len() / key_size` elements after `cursor` into `keys` and `values`
    /// (`BPF_MAP_LOOKUP_BATCH`); returns how many. A hash map walk stays consistent while other
    /// writers delete: no element is returned twice and the walk ends.
    pub fn lookup_batch(&self, cursor: &mut BatchCursor, keys: &mut [u8], values: &mut [u8]) -> Result<usize> {
        self.batch_read(sys::Cmd::MapLookupBatch, cursor, keys, values)
    }

    /// As [`Map::lookup_batch`], deleting what it returns (`BPF_MAP_LOOKUP_AND_DELETE_BATCH`).
    pub fn lookup_and_delete_batch(
        &self,
        cursor: &mut BatchCursor,
        keys: &mut [u8],
        values: &mut [u8],
    ) -> Result<usize> {
        self.batch_read(sys::Cmd::MapLookupAndDeleteBatch, cursor, keys, values)
    }

    fn batch_read(&self, cmd: sys::Cmd, cursor: &mut BatchCursor, keys: &mut [u8], values: &mut [u8]) -> Result<usize> {
        let key_size = self.key_size().max(1);
        let count = keys.len() / key_size;
        self.check("batch read from", "values buffer", values.len(), count * self.value_stride())?;
        if cursor.done {
            return Ok(0);
        }
        cursor.out.resize(self.key_size().max(8), 0);
        let input = cursor.started.then_some(cursor.input.as_slice());
        let f = if cmd == sys::Cmd::MapLookupBatch { sys::map_lookup_batch } else { sys::map_lookup_and_delete_batch };
        let outcome = f(&self.fd, input, &mut cursor.out, keys, values, count as u32, 0)
            .map_err(|e| Error::syscall(format!("batch read from {}", self.describe()), e))?;
        cursor.started = true;
        cursor.done = outcome.done;
        std::mem::swap(&mut cursor.input, &mut cursor.out);
        Ok(outcome.count as usize)
    }

    /// Writes `keys.len() / key_size` pairs in one call (`BPF_MAP_UPDATE_BATCH`).
    pub fn update_batch(&self, keys: &[u8], values: &[u8], flags: UpdateFlags) -> Result<usize> {
        let count = keys.len() / self.key_size().max(1);
        self.check("batch update", "values", values.len(), count * self.value_stride())?;
        sys::map_update_batch(&self.fd, keys, values, count as u32, flags.bits())
            .map(|o| o.count as usize)
            .map_err(|(e, done)| Error::syscall(format!("batch update {} (after {done} elements)", self.describe()), e))
    }

    /// Deletes `keys.len() / key_size` keys in one call (`BPF_MAP_DELETE_BATCH`).
    pub fn delete_batch(&self, keys: &[u8]) -> Result<usize> {
        let count = keys.len() / self.key_size().max(1);
        sys::map_delete_batch(&self.fd, keys, count as u32, 0).map(|o| o.count as usize).map_err(|(e, done)| {
            Error::syscall(format!("batch delete from {} (after {done} elements)", self.describe()), e)
        })
    }
}

impl AsFd for Map {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
