//! Open + load of an ELF object: ours beside a raw `BPF_PROG_LOAD` of the same instructions
//! (the floor), libbpf-rs 0.27 (libbpf 1.7) and aya 0.14.0, in one run.
//! `cargo bench -p benches --bench load`.
// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use benches::{can_use_bpf, raw_prog_load};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ebpf_core::object::{Collection, CollectionSpec};
use ebpf_core::LoadOptions;
use object::{Object, ObjectSection, ObjectSymbol};

const ONE: &[u8] = include_bytes!("../../bpf-programs/out/tests/bench_one.o");
const MANY: &[u8] = include_bytes!("../../bpf-programs/out/tests/bench_many.o");

/// (program type, expected attach type, instructions, name) of every program, read once.
fn raw_programs(elf: &[u8]) -> Vec<(u32, u32, Vec<u8>, String)> {
    let spec = CollectionSpec::from_elf(elf).expect("spec");
    let file = object::File::parse(elf).expect("elf");
    spec.programs
        .iter()
        .map(|p| {
            let section = file.section_by_name(p.section.as_deref().expect("section")).expect("section");
            let symbol = file.symbol_by_name(&p.name).expect("function symbol");
            let (start, size) = (symbol.address() as usize, symbol.size() as usize);
            (
                p.program_type.raw(),
                p.expected_attach_type.map_or(0, |t| t.raw()),
                section.data().expect("data")[start..start + size].to_vec(),
                p.name.to_string(),
            )
        })
        .collect()
}

fn aya_load(elf: &[u8]) -> aya::Ebpf {
    use aya::programs::{CgroupSkb, Program, SchedClassifier, SocketFilter, Xdp};
    // Without the kernel's BTF, which these objects do not need (no CO-RE): aya would otherwise
    // read and parse /sys/kernel/btf/vmlinux on every load (~57 ms here), as we would not.
    let mut ebpf = aya::EbpfLoader::new().btf(None).load(elf).expect("aya opens");
    let names: Vec<String> = ebpf.programs().map(|(n, _)| n.to_owned()).collect();
    for name in names {
        match ebpf.program_mut(&name).expect("program") {
            Program::Xdp(p) => Xdp::load(p),
            Program::SchedClassifier(p) => SchedClassifier::load(p),
            Program::SocketFilter(p) => SocketFilter::load(p),
            Program::CgroupSkb(p) => CgroupSkb::load(p),
            other => panic!("no loader for {other:?}"),
        }
        .expect("aya loads");
    }
    ebpf
}

fn bench_object(c: &mut Criterion, group_name: &str, elf: &'static [u8]) {
    let raw = raw_programs(elf);
    let raw_loads = || {
        let fds: Vec<_> =
            raw.iter().map(|(t, a, insns, name)| raw_prog_load(*t, *a, insns, name).expect("raw load")).collect();
        black_box(fds);
    };
    // Open + load: the whole parse, every time (nothing is cached between opens).
    let ours = || {
        let spec = CollectionSpec::from_elf(elf).expect("spec");
        black_box(Collection::load(spec, &LoadOptions::default()).expect("load"));
    };
    let mut group = c.benchmark_group(group_name);
    group.bench_function("raw_syscall", |b| b.iter(raw_loads));
    group.bench_function("ebpf_core", |b| b.iter(ours));
    group.bench_function("libbpf_rs", |b| {
        b.iter(|| {
            let open = libbpf_rs::ObjectBuilder::default().open_memory(elf).expect("open");
            black_box(open.load().expect("libbpf loads"))
        })
    });
    group.bench_function("aya", |b| b.iter(|| black_box(aya_load(elf))));
    // Where a first open goes: the parse alone, hot (back to back, unlike in a load loop).
    group
        .bench_function("ebpf_core_parse_only", |b| b.iter(|| black_box(CollectionSpec::from_elf(elf).expect("spec"))));
    group.finish();
    // Ours beside the raw loads, paired: alternating blocks within each sample, the ratio per
    // sample.
    benches::paired::pair(c, &format!("paired_{group_name}"), raw_loads, ours);
    // A daemon loading one object many times (once per endpoint, say) parses it once: the load
    // of a clone of the parsed spec, paired with the raw loads.
    let parsed = CollectionSpec::from_elf(elf).expect("spec");
    let load_parsed = || {
        black_box(Collection::load(parsed.clone(), &LoadOptions::default()).expect("load"));
    };
    benches::paired::pair(c, &format!("paired_{group_name}_load_parsed"), raw_loads, load_parsed);
}

fn object_loads(c: &mut Criterion) {
    if !can_use_bpf() {
        return;
    }
    bench_object(c, "object_load_one_program", ONE);
    bench_object(c, "object_load_seven_programs", MANY);
}

criterion_group!(benches, object_loads);
criterion_main!(benches);
