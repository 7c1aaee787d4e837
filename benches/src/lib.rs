//! Shared pieces of the benchmarks: the raw-syscall floor every library operation is measured
//! against.

use std::os::fd::{AsRawFd, BorrowedFd};

/// `struct bpf_attr` for element commands, as the kernel lays it out.
#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `BPF_MAP_LOOKUP_ELEM` with nothing around it: no size checks, no error mapping. The floor.
/// Returns whether the key was found.
pub fn raw_lookup(map: BorrowedFd<'_>, key: &u32, value: &mut u64) -> bool {
    let mut attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        pad: 0,
        key: key as *const u32 as u64,
        value: value as *mut u64 as u64,
        flags: 0,
    };
    // SAFETY: attr is a fully initialised repr(C) struct; key points at 4 readable bytes and
    // value at 8 writable bytes, which is what a u32 → u64 map reads and writes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            1 as libc::c_long,
            &mut attr as *mut ElemAttr,
            std::mem::size_of::<ElemAttr>() as u32,
        )
    };
    ret == 0
}

/// True when the benchmarks can use `bpf(2)`; otherwise says why on stderr.
pub fn can_use_bpf() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("SKIPPED: map benchmarks need root for bpf(2)");
    }
    root
}

/// Counts heap bytes in use, so benchmarks can report peak memory of an operation.
pub struct CountingAllocator;

static IN_USE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static PEAK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are only
// bookkeeping and never affect what is returned.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use std::sync::atomic::Ordering::Relaxed;
        let now = IN_USE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(now, Relaxed);
        // SAFETY: forwarded with the caller's layout, which GlobalAlloc's contract makes valid.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        IN_USE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `f` and returns the peak heap bytes it used beyond what was in use before, and its result.
pub fn peak_allocation<T>(f: impl FnOnce() -> T) -> (usize, T) {
    use std::sync::atomic::Ordering::Relaxed;
    let before = IN_USE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let result = f();
    (PEAK.load(Relaxed) - before, result)
}
