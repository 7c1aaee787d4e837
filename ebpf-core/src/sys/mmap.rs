use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use super::{Errno, SysError};

/// A shared memory mapping of a kernel object (a ring buffer's pages, an mmapable array),
/// unmapped on drop. Access goes through checked methods: bounds and alignment are verified,
/// so no caller needs `unsafe`.
#[derive(Debug)]
pub struct MmapRegion {
    ptr: NonNull<u8>,
    len: usize,
    writable: bool,
}

// SAFETY: the region is plain shared memory; all access is through atomics or through byte
// slices of data the kernel has finished writing (see the methods' contracts).
unsafe impl Send for MmapRegion {}
// SAFETY: as above; `&MmapRegion` only hands out atomics and read-only views.
unsafe impl Sync for MmapRegion {}

/// The system page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

impl MmapRegion {
    /// Maps `len` bytes of `fd` at `offset` (page aligned), shared; writable when asked.
    pub fn map(fd: BorrowedFd<'_>, len: usize, offset: usize, writable: bool) -> Result<MmapRegion, SysError> {
        let cmd = super::Cmd::ObjGetInfoByFd; // reported with the errno; mmap has no bpf command
        if len == 0 || offset % page_size() != 0 {
            return Err(SysError { cmd, errno: Errno::EINVAL });
        }
        let prot = if writable { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
        // SAFETY: a fresh mapping chosen by the kernel (null hint), of a live fd; the result is
        // checked for MAP_FAILED before use and owned by the returned value.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd.as_raw_fd(), offset as libc::off_t)
        };
        if ptr == libc::MAP_FAILED {
            return Err(SysError { cmd, errno: Errno::last() });
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(SysError { cmd, errno: Errno::EINVAL })?;
        Ok(MmapRegion { ptr, len, writable })
    }

    /// Maps `len` bytes of `fd` from offset 0, shared and writable, at `address` when one is
    /// given (an arena whose programs see it at the address they were built for); a mapping
    /// already there is never replaced (`MAP_FIXED_NOREPLACE`: EEXIST instead).
    pub fn map_at(fd: BorrowedFd<'_>, len: usize, address: Option<u64>) -> Result<MmapRegion, SysError> {
        let cmd = super::Cmd::ObjGetInfoByFd; // reported with the errno; mmap has no bpf command
        let Some(address) = address else { return Self::map(fd, len, 0, true) };
        if len == 0 || address % page_size() as u64 != 0 {
            return Err(SysError { cmd, errno: Errno::EINVAL });
        }
        let flags = libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE;
        // SAFETY: MAP_FIXED_NOREPLACE maps only where nothing is mapped (the kernel refuses with
        // EEXIST otherwise), so no memory this process uses is replaced; the fd is live; the
        // result is checked for MAP_FAILED and for the address asked before it is used, and
        // the mapping is owned (unmapped on drop) by the returned value.
        let ptr = unsafe {
            libc::mmap(address as *mut libc::c_void, len, libc::PROT_READ | libc::PROT_WRITE, flags, fd.as_raw_fd(), 0)
        };
        if ptr == libc::MAP_FAILED {
            return Err(SysError { cmd, errno: Errno::last() });
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(SysError { cmd, errno: Errno::EINVAL })?;
        let region = MmapRegion { ptr, len, writable: true };
        // Kernels before 4.17 take the flag as a hint and may map elsewhere.
        if region.address() != address {
            return Err(SysError { cmd, errno: Errno::EEXIST });
        }
        Ok(region)
    }

    /// Where it is mapped in this process.
    pub fn address(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty region (never: mapping zero bytes is refused).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when mapped writable.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The 64-bit word at `offset` as an atomic shared with the kernel; `None` when out of
    /// bounds or misaligned. Private: stores must go through `store_u64`, which checks the
    /// mapping is writable.
    #[inline]
    fn atomic_u64(&self, offset: usize) -> Option<&AtomicU64> {
        if offset % 8 != 0 || offset.checked_add(8)? > self.len {
            return None;
        }
        // SAFETY: in bounds and 8-aligned (mappings are page aligned); AtomicU64 has the layout
        // of u64; the mapping lives as long as `&self`. Only `store_u64` writes through it, and
        // only to writable mappings.
        Some(unsafe { &*self.ptr.as_ptr().add(offset).cast::<AtomicU64>() })
    }

    /// The 64-bit word at `offset`, read with acquire ordering.
    #[inline]
    pub fn load_u64_acquire(&self, offset: usize) -> Option<u64> {
        self.atomic_u64(offset).map(|w| w.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Stores `value` at `offset` with release ordering; `false` (and nothing written) for a
    /// read-only region or a bad offset.
    #[inline]
    pub fn store_u64(&self, offset: usize, value: u64) -> bool {
        match self.atomic_u64(offset) {
            Some(word) if self.writable => {
                word.store(value, std::sync::atomic::Ordering::Release);
                true
            }
            _ => false,
        }
    }

    /// The 32-bit word at `offset`, read atomically with acquire ordering (ring-buffer record
    /// headers, which the kernel updates to commit a record).
    #[inline]
    pub fn load_u32_acquire(&self, offset: usize) -> Option<u32> {
        if offset % 4 != 0 || offset.checked_add(4)? > self.len {
            return None;
        }
        // SAFETY: in bounds and 4-aligned; AtomicU32 has the layout of u32; the mapping lives
        // as long as `&self`.
        let word = unsafe { &*self.ptr.as_ptr().add(offset).cast::<std::sync::atomic::AtomicU32>() };
        Some(word.load(std::sync::atomic::Ordering::Acquire))
    }

    /// The data area of a `BPF_MAP_TYPE_RINGBUF` inside this region: `size` bytes (a power of
    /// two, at least 8) at `offset`, mapped twice in a row so a record that wraps reads as one
    /// slice. Checked here once, so reading a record costs no bounds check beyond its length's.
    /// `None` when the two copies do not fit the region or `offset` is not 8-aligned.
    pub fn ring_data(&self, offset: usize, size: usize) -> Option<RingData<'_>> {
        let fits = offset.checked_add(size.checked_mul(2)?)? <= self.len;
        if !fits || offset % 8 != 0 || !size.is_power_of_two() || size < 8 {
            return None;
        }
        // SAFETY: offset is within the mapping (checked above).
        let base = unsafe { self.ptr.as_ptr().add(offset) };
        Some(RingData { base, mask: size as u64 - 1, _region: std::marker::PhantomData })
    }

    /// Stores the 32-bit word at `offset` with release ordering (ring-buffer record headers:
    /// the store that commits a record). Writable regions only; `false` otherwise.
    #[inline]
    pub fn store_u32_release(&self, offset: usize, value: u32) -> bool {
        if !self.writable || offset % 4 != 0 || offset.checked_add(4).is_none_or(|end| end > self.len) {
            return false;
        }
        // SAFETY: in bounds, 4-aligned, writable; AtomicU32 has the layout of u32; the mapping
        // lives as long as `&self`.
        let word = unsafe { &*self.ptr.as_ptr().add(offset).cast::<std::sync::atomic::AtomicU32>() };
        word.store(value, std::sync::atomic::Ordering::Release);
        true
    }

    /// `len` bytes at `offset`, for data the kernel has committed and will not touch until
    /// the consumer moves past it (a ring-buffer record whose header has been read with
    /// acquire ordering and was not busy). `None` when out of bounds.
    #[inline]
    pub fn committed_bytes(&self, offset: usize, len: usize) -> Option<&[u8]> {
        if offset.checked_add(len)? > self.len {
            return None;
        }
        // SAFETY: in bounds; the mapping lives as long as `&self`; by this method's contract
        // the kernel does not write these bytes while the slice is in use.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset), len) })
    }
}

impl MmapRegion {
    /// Copies `out.len()` bytes from `offset` (8-byte aligned) with relaxed 64-bit atomic
    /// loads: memory that programs write concurrently is read without a data race (each word
    /// is whole; the value as a whole may mix two updates, as with any lock-free read).
    /// The words touched must lie inside the region. `false` when they do not.
    pub fn read_words(&self, offset: usize, out: &mut [u8]) -> bool {
        let words = out.len().div_ceil(8);
        if offset % 8 != 0 || offset.checked_add(words * 8).is_none_or(|end| end > self.len) {
            return false;
        }
        for (i, chunk) in out.chunks_mut(8).enumerate() {
            let word = self.atomic_u64(offset + 8 * i).map_or(0, |w| w.load(std::sync::atomic::Ordering::Relaxed));
            chunk.copy_from_slice(&word.to_ne_bytes()[..chunk.len()]);
        }
        true
    }

    /// Writes `data` at `offset` (8-byte aligned) with relaxed 64-bit atomic stores; a
    /// partial last word is zero-filled. Writable regions only; `false` otherwise.
    pub fn write_words(&self, offset: usize, data: &[u8]) -> bool {
        let words = data.len().div_ceil(8);
        if !self.writable || offset % 8 != 0 || offset.checked_add(words * 8).is_none_or(|end| end > self.len) {
            return false;
        }
        for (i, chunk) in data.chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            if let Some(w) = self.atomic_u64(offset + 8 * i) {
                w.store(u64::from_ne_bytes(word), std::sync::atomic::Ordering::Relaxed);
            }
        }
        true
    }
}

/// A value of 1, 2, 4 or 8 bytes at a naturally aligned offset moves as one atomic access;
/// anything else byte by byte (each byte atomic).
fn value_width(offset: usize, len: usize) -> usize {
    match len {
        1 | 2 | 4 | 8 if offset % len == 0 => len,
        _ => 1,
    }
}

/// The atomic integer types a region hands out references to.
trait SharedAtomic {}
impl SharedAtomic for std::sync::atomic::AtomicU8 {}
impl SharedAtomic for std::sync::atomic::AtomicU16 {}
impl SharedAtomic for std::sync::atomic::AtomicU32 {}
impl SharedAtomic for std::sync::atomic::AtomicU64 {}

impl MmapRegion {
    /// The atomic at `offset`, when it lies inside the region and is aligned for `A`.
    fn shared<A: SharedAtomic>(&self, offset: usize) -> Option<&A> {
        let size = std::mem::size_of::<A>();
        if offset % std::mem::align_of::<A>() != 0 || offset.checked_add(size)? > self.len {
            return None;
        }
        // SAFETY: in bounds and aligned for A (checked; mappings are page aligned); A is an
        // atomic integer (SharedAtomic is implemented for nothing else), valid for any bit
        // pattern and safe to share with the kernel; the mapping lives as long as `&self`.
        Some(unsafe { &*self.ptr.as_ptr().add(offset).cast::<A>() })
    }

    /// Copies the value at `offset` into `out` without a data race against programs writing it
    /// (see `value_width`); `false` when out of bounds.
    pub fn read_value(&self, offset: usize, out: &mut [u8]) -> bool {
        use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
        if offset.checked_add(out.len()).is_none_or(|end| end > self.len) {
            return false;
        }
        let width = value_width(offset, out.len());
        for (i, chunk) in out.chunks_mut(width).enumerate() {
            let at = offset + i * width;
            let read = match width {
                8 => self.shared::<AtomicU64>(at).map(|a| a.load(Relaxed).to_ne_bytes().to_vec()),
                4 => self.shared::<AtomicU32>(at).map(|a| a.load(Relaxed).to_ne_bytes().to_vec()),
                2 => self.shared::<AtomicU16>(at).map(|a| a.load(Relaxed).to_ne_bytes().to_vec()),
                _ => self.shared::<AtomicU8>(at).map(|a| vec![a.load(Relaxed)]),
            };
            match read {
                Some(bytes) => chunk.copy_from_slice(&bytes),
                None => return false,
            }
        }
        true
    }

    /// Writes `data` at `offset` like [`MmapRegion::read_value`] reads; writable regions only.
    pub fn write_value(&self, offset: usize, data: &[u8]) -> bool {
        use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
        if !self.writable || offset.checked_add(data.len()).is_none_or(|end| end > self.len) {
            return false;
        }
        let width = value_width(offset, data.len());
        for (i, chunk) in data.chunks(width).enumerate() {
            let at = offset + i * width;
            let stored = match width {
                8 => self
                    .shared::<AtomicU64>(at)
                    .map(|a| a.store(u64::from_ne_bytes(chunk.try_into().expect("8")), Relaxed)),
                4 => self
                    .shared::<AtomicU32>(at)
                    .map(|a| a.store(u32::from_ne_bytes(chunk.try_into().expect("4")), Relaxed)),
                2 => self
                    .shared::<AtomicU16>(at)
                    .map(|a| a.store(u16::from_ne_bytes(chunk.try_into().expect("2")), Relaxed)),
                _ => self.shared::<AtomicU8>(at).map(|a| a.store(chunk[0], Relaxed)),
            };
            if stored.is_none() {
                return false;
            }
        }
        true
    }
}

impl Drop for MmapRegion {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned and nothing borrows the region any
        // more (drop takes it by value).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// A ring buffer's double-mapped data area (see [`MmapRegion::ring_data`]).
#[derive(Clone, Copy, Debug)]
pub struct RingData<'a> {
    base: *mut u8,
    mask: u64,
    _region: std::marker::PhantomData<&'a MmapRegion>,
}

impl<'a> RingData<'a> {
    /// The header word of the record at ring position `position` (rounded down to 8 bytes),
    /// read with acquire ordering: the kernel's busy bit (31), discard bit (30) and length.
    #[inline]
    pub fn header(&self, position: u64) -> u32 {
        let offset = (position & self.mask & !7) as usize;
        // SAFETY: offset + 4 <= size <= the mapped data area (checked in ring_data); 8-aligned
        // because base is; AtomicU32 has the layout of u32; the mapping outlives 'a.
        let word = unsafe { &*self.base.add(offset).cast::<std::sync::atomic::AtomicU32>() };
        word.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The `len` data bytes of the committed record at `position`, whose header said so (an
    /// acquire load by [`header`](Self::header) that saw the busy bit clear); `None` when `len`
    /// exceeds the ring (a header no kernel writes).
    #[inline]
    pub fn record(&self, position: u64, len: u32) -> Option<&'a [u8]> {
        if u64::from(len) > self.mask {
            return None;
        }
        let offset = (position & self.mask & !7) as usize;
        // SAFETY: offset < size and 8 + len <= size, so the bytes lie within the two copies of
        // the data area (checked in ring_data); the kernel does not write a committed record
        // again until the consumer position passes it; the mapping outlives 'a.
        Some(unsafe { std::slice::from_raw_parts(self.base.add(offset + 8), len as usize) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};

    /// A writable mapping of a fresh memfd (no kernel BPF object needed for bounds logic).
    fn region(len: usize) -> MmapRegion {
        // SAFETY: memfd_create with a valid C string; the result is checked before use.
        let fd = unsafe { libc::memfd_create(c"ring_data_test".as_ptr(), 0) };
        assert!(fd >= 0, "memfd_create");
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ftruncate on our own fd.
        assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) }, 0);
        MmapRegion::map(fd.as_fd(), len, 0, true).unwrap()
    }

    #[test]
    fn ring_data_is_checked_once_and_records_by_their_length() {
        let page = page_size();
        let region = region(3 * page);
        assert!(region.ring_data(page, page).is_some());
        assert!(region.ring_data(page, 2 * page).is_none(), "two copies must fit");
        assert!(region.ring_data(page + 4, 8).is_none(), "8-aligned");
        assert!(region.ring_data(page, 24).is_none(), "a power of two");
        let data = region.ring_data(page, page).unwrap();
        assert!(region.store_u32_release(page + 16, 5));
        assert_eq!(data.header(16), 5);
        assert_eq!(data.header(page as u64 + 16), 5, "positions wrap around the ring");
        assert_eq!(data.record(16, 5).map(<[u8]>::len), Some(5));
        assert!(data.record(16, page as u32).is_none(), "longer than the ring");
    }
}
