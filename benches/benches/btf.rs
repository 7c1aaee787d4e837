//! Kernel BTF: a full parse of vmlinux beside libbpf's `btf__new`, and the lazy CO-RE path
//! (index the raw bytes, resolve one `struct sk_buff` field) beside libbpf's equivalent work
//! (`btf__new` and a lookup of `sk_buff` by name).
// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ebpf_btf::core::resolve;
use ebpf_btf::{Btf, BtfExt, CoreReloKind};
use object::{Object, ObjectSection};

const FIXTURE: &[u8] = include_bytes!("../../bpf-programs/out/btf/core_relocs.o");

#[global_allocator]
static ALLOCATOR: benches::CountingAllocator = benches::CountingAllocator;

fn local_relo() -> (Btf, ebpf_btf::CoreRelo) {
    let data = FIXTURE.to_vec();
    let elf = object::File::parse(&*data).expect("fixture ELF");
    let section = |name: &str| elf.section_by_name(name).expect("section").data().expect("data").to_vec();
    let btf = Btf::parse(section(".BTF")).expect("local BTF");
    let ext = BtfExt::parse(&section(".BTF.ext"), &btf).expect("local BTF.ext");
    let relo = ext
        .core_relos
        .iter()
        .flat_map(|s| s.records.iter())
        .find(|r| {
            r.kind == CoreReloKind::FieldByteOffset && btf.type_by_id(r.type_id).is_some_and(|t| t.name() == "sk_buff")
        })
        .copied()
        .expect("an sk_buff field relocation");
    (btf, relo)
}

/// libbpf's parse of the same bytes: `btf__new` then `btf__free`.
fn libbpf_parse(raw: &[u8], find: Option<&std::ffi::CStr>) -> i32 {
    // SAFETY: btf__new copies `raw` (valid for raw.len() bytes) and returns an owned object or
    // an error pointer; the object is freed exactly once below and not used after.
    unsafe {
        let btf = libbpf_sys::btf__new(raw.as_ptr().cast(), raw.len() as u32);
        if libbpf_sys::libbpf_get_error(btf.cast()) != 0 {
            panic!("libbpf refused vmlinux BTF");
        }
        let found =
            find.map_or(0, |name| libbpf_sys::btf__find_by_name_kind(btf, name.as_ptr(), libbpf_sys::BTF_KIND_STRUCT));
        libbpf_sys::btf__free(btf);
        found
    }
}

fn vmlinux(c: &mut Criterion) {
    let Ok(raw) = std::fs::read("/sys/kernel/btf/vmlinux") else {
        eprintln!("SKIPPED: no /sys/kernel/btf/vmlinux");
        return;
    };
    // Shared, not copied, by our parses; libbpf's btf__new copies it on every call.
    let raw = bytes::Bytes::from(raw);
    let (local, relo) = local_relo();
    let lazy_once = || {
        let target = Btf::parse_lazy(raw.clone()).expect("lazy vmlinux");
        resolve(&local, &relo, &[&target]).expect("sk_buff relocation")
    };
    let fixup = lazy_once();
    let (peak, _) = benches::peak_allocation(lazy_once);
    let peak = peak + raw.len(); // the blob itself, which the lazy path shares rather than copies
    let (full_peak, _) = benches::peak_allocation(|| {
        let btf = Btf::parse(raw.clone()).expect("vmlinux");
        btf.ids_by_name("sk_buff").len()
    });
    eprintln!(
        "vmlinux BTF {} bytes: lazy CO-RE path peak heap {:.2} MiB beyond the blob copy ({:.2} MiB in all), \
         sk_buff field offset {} → {}; full parse and one lookup by name, peak {:.2} MiB",
        raw.len(),
        (peak.saturating_sub(raw.len())) as f64 / (1 << 20) as f64,
        peak as f64 / (1 << 20) as f64,
        fixup.local_value,
        fixup.target_value,
        full_peak as f64 / (1 << 20) as f64,
    );

    // From nothing: read the file, index it, resolve the relocation (what a first CO-RE load
    // of a process pays; the kernel's own BTF is then kept or released by the caller).
    let from_nothing = || {
        let target = Btf::parse_lazy(std::fs::read("/sys/kernel/btf/vmlinux").expect("read")).expect("lazy vmlinux");
        resolve(&local, &relo, &[&target]).expect("sk_buff relocation")
    };
    let (from_nothing_peak, _) = benches::peak_allocation(from_nothing);
    eprintln!(
        "CO-RE of one sk_buff field from nothing: peak heap {:.2} MiB (the file's {:.2} MiB included)",
        from_nothing_peak as f64 / (1 << 20) as f64,
        raw.len() as f64 / (1 << 20) as f64
    );

    let mut group = c.benchmark_group("btf_vmlinux");
    group.sample_size(30);
    group.bench_function("ours_core_sk_buff_from_nothing", |b| b.iter(from_nothing));
    group.bench_function("ours_full_parse", |b| b.iter(|| Btf::parse(black_box(raw.clone())).expect("parse")));
    group.bench_function("libbpf_btf_new", |b| b.iter(|| libbpf_parse(black_box(&raw), None)));
    group.bench_function("ours_lazy_core_sk_buff_cold", |b| b.iter(lazy_once));
    let warm = Btf::parse_lazy(raw.clone()).expect("lazy vmlinux");
    group.bench_function("ours_lazy_core_sk_buff_warm_index", |b| {
        b.iter(|| resolve(&local, &relo, &[black_box(&warm)]).expect("sk_buff relocation"))
    });
    group.bench_function("libbpf_btf_new_find_sk_buff", |b| b.iter(|| libbpf_parse(black_box(&raw), Some(c"sk_buff"))));
    group.finish();
}

criterion_group!(benches, vmlinux);
criterion_main!(benches);
