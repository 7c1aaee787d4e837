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
    raw_elem(1, map, &key.to_ne_bytes(), (value as *mut u64).cast())
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

/// Counts heap bytes in use, so benchmarks can report peak memory of an operation. Only a
/// benchmark that reports memory installs it (`#[global_allocator]`): its two atomic updates per
/// allocation would tax every allocating operation the other benchmarks time.
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

/// Runs `f` and returns the peak heap bytes it used beyond what was in use before, and its result
/// (with [`CountingAllocator`] installed as the global allocator; zero otherwise).
pub fn peak_allocation<T>(f: impl FnOnce() -> T) -> (usize, T) {
    use std::sync::atomic::Ordering::Relaxed;
    let before = IN_USE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let result = f();
    (PEAK.load(Relaxed) - before, result)
}

/// One element command (`BPF_MAP_LOOKUP_ELEM` = 1, `BPF_MAP_UPDATE_ELEM` = 2) with nothing
/// around it. `value` must be as large as the kernel reads or writes (per-CPU maps: the padded
/// value size times the possible CPUs).
fn raw_elem(cmd: libc::c_long, map: BorrowedFd<'_>, key: &[u8], value: *mut u8) -> bool {
    let mut attr =
        ElemAttr { map_fd: map.as_raw_fd() as u32, pad: 0, key: key.as_ptr() as u64, value: value as u64, flags: 0 };
    // SAFETY: attr is a fully initialised repr(C) struct; key and value point at buffers sized
    // by the callers for what this map's key and value take.
    let ret = unsafe {
        libc::syscall(libc::SYS_bpf, cmd, &mut attr as *mut ElemAttr, std::mem::size_of::<ElemAttr>() as u32)
    };
    ret == 0
}

/// `BPF_MAP_UPDATE_ELEM` with nothing around it: the floor for updates.
pub fn raw_update(map: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> bool {
    // The kernel only reads the value for an update.
    raw_elem(2, map, key, value.as_ptr().cast_mut())
}

/// `BPF_MAP_LOOKUP_ELEM` for any key/value sizes: the floor for per-CPU and LPM lookups.
pub fn raw_lookup_bytes(map: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> bool {
    raw_elem(1, map, key, value.as_mut_ptr())
}

/// A hand-written BPF ring buffer reader over raw mmap: the floor for ring-buffer drains.
pub struct RawRing {
    consumer: *mut u8,
    producer: *mut u8,
    page: usize,
    size: usize,
}

impl RawRing {
    /// Maps the ring of `fd` (`size` data bytes).
    pub fn new(fd: BorrowedFd<'_>, size: usize) -> RawRing {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // SAFETY: fresh shared mappings of a live ring-buffer fd, at the offsets and lengths the
        // kernel defines for it; checked for MAP_FAILED below.
        let (consumer, producer) = unsafe {
            (
                libc::mmap(
                    std::ptr::null_mut(),
                    page,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd.as_raw_fd(),
                    0,
                ),
                libc::mmap(
                    std::ptr::null_mut(),
                    page + 2 * size,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    fd.as_raw_fd(),
                    page as i64,
                ),
            )
        };
        assert!(consumer != libc::MAP_FAILED && producer != libc::MAP_FAILED, "mmap ring");
        RawRing { consumer: consumer.cast(), producer: producer.cast(), page, size }
    }

    /// Drains every committed record, calling `f` with its length; returns the count.
    pub fn drain(&mut self, mut f: impl FnMut(usize)) -> usize {
        use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
        // SAFETY: both positions are 8-aligned words at the start of their mapped pages.
        let (cons, prod) = unsafe { (&*(self.consumer as *const AtomicU64), &*(self.producer as *const AtomicU64)) };
        let mut c = cons.load(Ordering::Acquire);
        let mut n = 0;
        loop {
            let p = prod.load(Ordering::Acquire);
            if c >= p {
                break;
            }
            // SAFETY: the header lies in the double-mapped data area, 8-aligned.
            let header =
                unsafe { &*(self.producer.add(self.page + (c as usize & (self.size - 1))) as *const AtomicU32) }
                    .load(Ordering::Acquire);
            if header & (1 << 31) != 0 {
                break;
            }
            let len = (header & !(3 << 30)) as usize;
            if header & (1 << 30) == 0 {
                f(len);
                n += 1;
            }
            c += ((len + 8 + 7) & !7) as u64;
            cons.store(c, Ordering::Release);
        }
        n
    }
}

impl Drop for RawRing {
    fn drop(&mut self) {
        // SAFETY: exactly the mappings made in `new`.
        unsafe {
            libc::munmap(self.consumer.cast(), self.page);
            libc::munmap(self.producer.cast(), self.page + 2 * self.size);
        }
    }
}

/// `struct bpf_attr` for the batch commands.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// A whole-map walk with `BPF_MAP_LOOKUP_BATCH` and nothing around it, `chunk` elements per
/// call into caller buffers (u32 keys, u64 values): the batch floor. Returns elements read.
pub fn raw_batch_walk(map: BorrowedFd<'_>, chunk: usize, keys: &mut [u32], values: &mut [u64]) -> usize {
    let (mut cursor_in, mut cursor_out) = ([0u8; 8], [0u8; 8]);
    let mut first = true;
    let mut total = 0;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { cursor_in.as_ptr() as u64 },
            out_batch: cursor_out.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk.min(keys.len()).min(values.len()) as u32,
            map_fd: map.as_raw_fd() as u32,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: the key and value buffers hold at least `count` u32 keys and u64 values (the
        // map's sizes), the cursors are 8 bytes (a hash map's batch token is 4).
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                24 as libc::c_long,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>() as u32,
            )
        };
        total += attr.count as usize;
        if ret != 0 {
            return total; // ENOENT: the walk is over
        }
        cursor_in = cursor_out;
        first = false;
    }
}

/// The head of `union bpf_attr` for `BPF_PROG_LOAD`, up to `expected_attach_type`.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `BPF_PROG_LOAD` of ready instructions with nothing around it: no BTF, no log, no checks.
/// The floor an object loader is measured against.
pub fn raw_prog_load(
    prog_type: u32,
    expected_attach_type: u32,
    insns: &[u8],
    name: &str,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let mut prog_name = [0u8; 16];
    let n = name.len().min(15);
    prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: (insns.len() / 8) as u32,
        insns: insns.as_ptr() as u64,
        license: c"GPL".as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name,
        prog_ifindex: 0,
        expected_attach_type,
    };
    // SAFETY: attr is a repr(C) prefix of bpf_attr (the kernel zero-extends the rest); insns and
    // the license point at live buffers of the lengths given.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            5 as libc::c_long, // BPF_PROG_LOAD
            &mut attr as *mut ProgLoadAttr as *mut libc::c_void,
            std::mem::size_of::<ProgLoadAttr>() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a successful BPF_PROG_LOAD returns a new fd nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Paired measurement: two operations timed in alternating blocks within each sample, so both
/// see the same cache, frequency and host state, and the per-sample ratio is reported.
pub mod paired {
    use criterion::Criterion;
    use std::time::{Duration, Instant};

    /// Calls per side per block.
    pub const BLOCK: u64 = 16;

    fn timed(n: u64, f: &mut impl FnMut()) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        start.elapsed()
    }

    /// Runs `raw` and `ours` alternately, `BLOCK` calls at a time and each going first every other
    /// block, `iters` calls each; returns the time spent in `raw` and in `ours`.
    pub fn interleaved(iters: u64, mut raw: impl FnMut(), mut ours: impl FnMut()) -> (Duration, Duration) {
        let (mut raw_time, mut ours_time) = (Duration::ZERO, Duration::ZERO);
        let (mut left, mut raw_first) = (iters, true);
        while left > 0 {
            let n = left.min(BLOCK);
            if raw_first {
                raw_time += timed(n, &mut raw);
                ours_time += timed(n, &mut ours);
            } else {
                ours_time += timed(n, &mut ours);
                raw_time += timed(n, &mut raw);
            }
            raw_first = !raw_first;
            left -= n;
        }
        (raw_time, ours_time)
    }

    /// A criterion group `name` with a `raw_syscall` and an `ours` function, both running the
    /// interleaved loop and reporting their own half; then prints the median of the per-sample
    /// ratio ours / raw, the paired figure.
    pub fn pair(c: &mut Criterion, name: &str, mut raw: impl FnMut(), mut ours: impl FnMut()) {
        let mut ratios = Vec::new();
        let mut group = c.benchmark_group(name);
        group.bench_function("raw_syscall", |b| b.iter_custom(|iters| interleaved(iters, &mut raw, &mut ours).0));
        group.bench_function("ours", |b| {
            b.iter_custom(|iters| {
                let (raw_time, ours_time) = interleaved(iters, &mut raw, &mut ours);
                ratios.push(ours_time.as_secs_f64() / raw_time.as_secs_f64());
                ours_time
            })
        });
        group.finish();
        // The two medians above come from different samples; the ratio within each sample is the
        // paired figure.
        if ratios.is_empty() {
            return; // filtered out
        }
        ratios.sort_by(f64::total_cmp);
        let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q) as usize];
        eprintln!(
            "{name}: ours / raw per sample: median {:.3}x (quartiles {:.3}x..{:.3}x, {} samples)",
            at(0.5),
            at(0.25),
            at(0.75),
            ratios.len()
        );
    }
}

/// Maps the map benchmarks share, made and filled the same way wherever they are measured.
pub mod fixtures {
    use ebpf_core::{Map, MapFlags, MapSpec, MapType, UpdateFlags};

    /// A `u32 → u64` hash map of `keys` entries, key `k` holding `k`, filled by batches.
    pub fn hash_u32_u64(name: &str, keys: u32) -> (Map, ebpf_maps::HashMap<u32, u64>) {
        let map = Map::create(&MapSpec::new(name, MapType::Hash, 4, 8, keys)).expect("hash map");
        let typed = ebpf_maps::HashMap::try_from(map.try_clone().expect("dup")).expect("typed");
        for chunk in (0..keys).collect::<Vec<_>>().chunks(100_000) {
            let values: Vec<u64> = chunk.iter().map(|&k| u64::from(k)).collect();
            typed.insert_batch(chunk, &values, UpdateFlags::ANY).expect("fill");
        }
        (map, typed)
    }

    /// An IPv4 LPM trie holding the 256 prefixes `10.i.0.0/16 → i`.
    pub fn lpm_ipv4(name: &str) -> (Map, ebpf_maps::LpmTrie<[u8; 4], u32>) {
        let spec = MapSpec::new(name, MapType::LpmTrie, 8, 4, 1024).with_flags(MapFlags::NO_PREALLOC);
        let map = Map::create(&spec).expect("lpm");
        let typed = ebpf_maps::LpmTrie::try_from(map.try_clone().expect("dup")).expect("typed");
        for i in 0..=255u8 {
            typed.insert(&[10, i, 0, 0], 16, &u32::from(i), UpdateFlags::ANY).expect("insert");
        }
        (map, typed)
    }
}
