use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::attr::{MapBatchAttr, MapCreateAttr, MapElemAttr, SingleFdAttr};
use super::{bpf_fd, fd_u32, mut_ptr, possible_cpus, ptr, raw_bpf, Cmd, Errno, SysError, SysResult};

/// Inputs of `BPF_MAP_CREATE`.
#[derive(Clone, Debug, Default)]
pub struct MapCreate<'a> {
    /// `enum bpf_map_type` value.
    pub map_type: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Capacity.
    pub max_entries: u32,
    /// `BPF_F_*` map flags.
    pub map_flags: u32,
    /// Name shown by introspection (truncated to 15 characters).
    pub name: &'a str,
    /// Inner map template, for maps of maps.
    pub inner_map: Option<BorrowedFd<'a>>,
    /// NUMA node, when `BPF_F_NUMA_NODE` is set.
    pub numa_node: u32,
    /// BTF object describing key and value.
    pub btf: Option<BorrowedFd<'a>>,
    /// BTF type id of the key.
    pub btf_key_type_id: u32,
    /// BTF type id of the value.
    pub btf_value_type_id: u32,
    /// vmlinux BTF type id of the value (struct_ops).
    pub btf_vmlinux_value_type_id: u32,
    /// Type-specific extra (bloom filter hash count, arena address).
    pub map_extra: u64,
}

/// An owned map file descriptor together with the sizes the kernel reads and writes through it.
///
/// The sizes come from the kernel (the create call that made the map, or its info), so the
/// element functions can check every buffer before handing it over.
#[derive(Debug)]
pub struct MapFd {
    fd: OwnedFd,
    key_size: u32,
    value_size: u32,
    value_stride: usize,
}

/// Map types whose values are stored once per possible CPU.
fn is_per_cpu(map_type: u32) -> bool {
    // PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH, PERCPU_CGROUP_STORAGE
    matches!(map_type, 5 | 6 | 10 | 21)
}

impl MapFd {
    /// Wraps a map fd whose type and sizes were read from the kernel.
    pub(crate) fn from_parts(fd: OwnedFd, map_type: u32, key_size: u32, value_size: u32) -> SysResult<MapFd> {
        let value_stride = if is_per_cpu(map_type) {
            let cpus = possible_cpus().map_err(|_| SysError { cmd: Cmd::ObjGetInfoByFd, errno: Errno::ENODEV })?;
            (value_size as usize).next_multiple_of(8) * cpus
        } else {
            value_size as usize
        };
        Ok(MapFd { fd, key_size, value_size, value_stride })
    }

    /// Takes ownership of a map fd and reads its sizes from the kernel.
    pub fn from_owned(fd: OwnedFd) -> SysResult<MapFd> {
        let info = super::map_info(fd.as_fd())?;
        Self::from_parts(fd, info.map_type, info.key_size, info.value_size)
    }

    /// The same sizes over another fd of the same map (a duplicate).
    pub(crate) fn with_fd(&self, fd: OwnedFd) -> MapFd {
        MapFd { fd, ..*self }
    }

    /// Key size in bytes.
    pub fn key_size(&self) -> u32 {
        self.key_size
    }

    /// Value size in bytes, as declared.
    pub fn value_size(&self) -> u32 {
        self.value_size
    }

    /// Bytes one element's value occupies in a user buffer: the value size, or for per-CPU
    /// maps the value size rounded up to 8 times the number of possible CPUs.
    pub fn value_stride(&self) -> usize {
        self.value_stride
    }

    fn check(&self, cmd: Cmd, key: Option<usize>, value: Option<usize>) -> SysResult<()> {
        let key_ok = key.is_none_or(|k| k == self.key_size as usize);
        let value_ok = value.is_none_or(|v| v == self.value_stride);
        if key_ok && value_ok {
            Ok(())
        } else {
            Err(SysError { cmd, errno: Errno::EINVAL })
        }
    }

    fn raw(&self) -> u32 {
        fd_u32(self.fd.as_fd())
    }
}

impl AsFd for MapFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `BPF_MAP_CREATE`.
pub fn map_create(spec: &MapCreate<'_>) -> SysResult<MapFd> {
    let mut attr = MapCreateAttr {
        map_type: spec.map_type,
        key_size: spec.key_size,
        value_size: spec.value_size,
        max_entries: spec.max_entries,
        map_flags: spec.map_flags,
        inner_map_fd: spec.inner_map.map_or(0, fd_u32),
        numa_node: spec.numa_node,
        map_name: super::object_name(spec.name),
        btf_fd: spec.btf.map_or(0, fd_u32),
        btf_key_type_id: spec.btf_key_type_id,
        btf_value_type_id: spec.btf_value_type_id,
        btf_vmlinux_value_type_id: spec.btf_vmlinux_value_type_id,
        map_extra: spec.map_extra,
        ..Default::default()
    };
    let fd = bpf_fd(Cmd::MapCreate, &mut attr)?;
    MapFd::from_parts(fd, spec.map_type, spec.key_size, spec.value_size)
}

fn elem_attr(map: &MapFd, key: u64, value: u64, flags: u64) -> MapElemAttr {
    MapElemAttr { map_fd: map.raw(), _pad: 0, key, value, flags }
}

/// `BPF_MAP_LOOKUP_ELEM`: copies the value for `key` into `value` (`value_stride` bytes).
pub fn map_lookup_elem(map: &MapFd, key: &[u8], value: &mut [u8], flags: u64) -> SysResult<()> {
    map.check(Cmd::MapLookupElem, Some(key.len()), Some(value.len()))?;
    let mut attr = elem_attr(map, ptr(key), mut_ptr(value), flags);
    raw_bpf(Cmd::MapLookupElem, &mut attr).map(drop)
}

/// `BPF_MAP_UPDATE_ELEM` with `BPF_ANY`/`BPF_NOEXIST`/`BPF_EXIST`/`BPF_F_LOCK` flags.
pub fn map_update_elem(map: &MapFd, key: &[u8], value: &[u8], flags: u64) -> SysResult<()> {
    map.check(Cmd::MapUpdateElem, Some(key.len()), Some(value.len()))?;
    let mut attr = elem_attr(map, ptr(key), ptr(value), flags);
    raw_bpf(Cmd::MapUpdateElem, &mut attr).map(drop)
}

/// `BPF_MAP_DELETE_ELEM`.
pub fn map_delete_elem(map: &MapFd, key: &[u8]) -> SysResult<()> {
    map.check(Cmd::MapDeleteElem, Some(key.len()), None)?;
    let mut attr = elem_attr(map, ptr(key), 0, 0);
    raw_bpf(Cmd::MapDeleteElem, &mut attr).map(drop)
}

/// `BPF_MAP_LOOKUP_AND_DELETE_ELEM` (also the pop of queues and stacks, whose key is empty).
pub fn map_lookup_and_delete_elem(map: &MapFd, key: &[u8], value: &mut [u8], flags: u64) -> SysResult<()> {
    map.check(Cmd::MapLookupAndDeleteElem, Some(key.len()), Some(value.len()))?;
    let mut attr = elem_attr(map, ptr(key), mut_ptr(value), flags);
    raw_bpf(Cmd::MapLookupAndDeleteElem, &mut attr).map(drop)
}

/// `BPF_MAP_GET_NEXT_KEY`: the key after `key` (or the first key when `key` is `None`).
/// Returns `false` at the end of the map.
pub fn map_get_next_key(map: &MapFd, key: Option<&[u8]>, next_key: &mut [u8]) -> SysResult<bool> {
    map.check(Cmd::MapGetNextKey, key.map(<[u8]>::len), None)?;
    if next_key.len() != map.key_size as usize {
        return Err(SysError { cmd: Cmd::MapGetNextKey, errno: Errno::EINVAL });
    }
    let mut attr = elem_attr(map, key.map_or(0, ptr), mut_ptr(next_key), 0);
    match raw_bpf(Cmd::MapGetNextKey, &mut attr) {
        Ok(_) => Ok(true),
        Err(SysError { errno: Errno::ENOENT, .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `BPF_MAP_FREEZE`: user space may no longer write the map.
pub fn map_freeze(map: &MapFd) -> SysResult<()> {
    let mut attr = SingleFdAttr { value: map.raw(), _pad: 0 };
    raw_bpf(Cmd::MapFreeze, &mut attr).map(drop)
}

/// The outcome of a batch call: how many elements were processed, and whether the map has
/// no more elements past the cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Elements processed.
    pub count: u32,
    /// True when the kernel reported the end of the map (`ENOENT`).
    pub done: bool,
}

/// Bytes a batch cursor needs: hash maps use a 4-byte bucket index, arrays a key.
fn cursor_len(map: &MapFd) -> usize {
    (map.key_size as usize).max(8)
}

fn batch_buffers_fit(map: &MapFd, count: usize, keys: usize, values: Option<usize>) -> bool {
    keys >= count * map.key_size as usize && values.is_none_or(|v| v >= count * map.value_stride)
}

#[allow(clippy::too_many_arguments)]
fn lookup_batch_cmd(
    cmd: Cmd,
    map: &MapFd,
    in_cursor: Option<&[u8]>,
    out_cursor: &mut [u8],
    keys: &mut [u8],
    values: &mut [u8],
    count: u32,
    elem_flags: u64,
) -> SysResult<BatchOutcome> {
    let cursor_ok = out_cursor.len() >= cursor_len(map) && in_cursor.is_none_or(|c| c.len() >= cursor_len(map));
    if !cursor_ok || !batch_buffers_fit(map, count as usize, keys.len(), Some(values.len())) {
        return Err(SysError { cmd, errno: Errno::EINVAL });
    }
    let mut attr = MapBatchAttr {
        in_batch: in_cursor.map_or(0, ptr),
        out_batch: mut_ptr(out_cursor),
        keys: mut_ptr(keys),
        values: mut_ptr(values),
        count,
        map_fd: map.raw(),
        elem_flags,
        flags: 0,
    };
    match raw_bpf(cmd, &mut attr) {
        Ok(_) => Ok(BatchOutcome { count: attr.count, done: false }),
        Err(SysError { errno: Errno::ENOENT, .. }) => Ok(BatchOutcome { count: attr.count, done: true }),
        Err(e) => Err(e),
    }
}

/// `BPF_MAP_LOOKUP_BATCH`: up to `count` elements after the cursor `in_cursor` (`None` starts
/// at the beginning) into `keys`/`values`; the next cursor is written to `out_cursor`
/// (at least `max(key_size, 8)` bytes).
#[allow(clippy::too_many_arguments)]
pub fn map_lookup_batch(
    map: &MapFd,
    in_cursor: Option<&[u8]>,
    out_cursor: &mut [u8],
    keys: &mut [u8],
    values: &mut [u8],
    count: u32,
    elem_flags: u64,
) -> SysResult<BatchOutcome> {
    lookup_batch_cmd(Cmd::MapLookupBatch, map, in_cursor, out_cursor, keys, values, count, elem_flags)
}

/// `BPF_MAP_LOOKUP_AND_DELETE_BATCH`: as [`map_lookup_batch`], deleting what it returns.
#[allow(clippy::too_many_arguments)]
pub fn map_lookup_and_delete_batch(
    map: &MapFd,
    in_cursor: Option<&[u8]>,
    out_cursor: &mut [u8],
    keys: &mut [u8],
    values: &mut [u8],
    count: u32,
    elem_flags: u64,
) -> SysResult<BatchOutcome> {
    lookup_batch_cmd(Cmd::MapLookupAndDeleteBatch, map, in_cursor, out_cursor, keys, values, count, elem_flags)
}

/// The writing batch commands: update (keys and values) and delete (keys only).
fn write_batch(
    cmd: Cmd,
    map: &MapFd,
    keys: &[u8],
    values: Option<&[u8]>,
    count: u32,
    elem_flags: u64,
) -> Result<BatchOutcome, (SysError, u32)> {
    if !batch_buffers_fit(map, count as usize, keys.len(), values.map(<[u8]>::len)) {
        return Err((SysError { cmd, errno: Errno::EINVAL }, 0));
    }
    let mut attr = MapBatchAttr {
        keys: ptr(keys),
        values: values.map_or(0, ptr),
        count,
        map_fd: map.raw(),
        elem_flags,
        ..Default::default()
    };
    match raw_bpf(cmd, &mut attr) {
        Ok(_) => Ok(BatchOutcome { count: attr.count, done: true }),
        Err(e) => Err((e, attr.count)),
    }
}

/// `BPF_MAP_UPDATE_BATCH`: writes `count` key/value pairs; on error, also how many were
/// written before it.
pub fn map_update_batch(
    map: &MapFd,
    keys: &[u8],
    values: &[u8],
    count: u32,
    elem_flags: u64,
) -> Result<BatchOutcome, (SysError, u32)> {
    write_batch(Cmd::MapUpdateBatch, map, keys, Some(values), count, elem_flags)
}

/// `BPF_MAP_DELETE_BATCH`: deletes `count` keys; on error, also how many were deleted.
pub fn map_delete_batch(
    map: &MapFd,
    keys: &[u8],
    count: u32,
    elem_flags: u64,
) -> Result<BatchOutcome, (SysError, u32)> {
    write_batch(Cmd::MapDeleteBatch, map, keys, None, count, elem_flags)
}
