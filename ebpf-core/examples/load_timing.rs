//! Scratch timing of the parts of an object load.
use ebpf_core::object::{Collection, CollectionSpec};
use ebpf_core::LoadOptions;
use std::time::Instant;

fn main() {
    let elf = std::fs::read("bpf-programs/out/tests/bench_one.o").unwrap();
    let n = 2000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(CollectionSpec::from_elf(&elf).unwrap());
    }
    println!("from_elf: {:?}", t.elapsed() / n);
    let spec = CollectionSpec::from_elf(&elf).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(ebpf_core::sys::btf_load(spec.btf.as_ref().unwrap()).unwrap());
    }
    println!("btf_load: {:?}", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(Collection::load(spec.clone(), &LoadOptions::default()).unwrap());
    }
    println!("collection load: {:?}", t.elapsed() / n);
    let mut nobtf = spec.clone();
    nobtf.btf = None;
    nobtf.programs[0].btf = None;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(Collection::load(nobtf.clone(), &LoadOptions::default()).unwrap());
    }
    println!("collection load without BTF: {:?}", t.elapsed() / n);
    let mut noline = spec.clone();
    noline.programs[0].btf.as_mut().unwrap().line_info.clear();
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(Collection::load(noline.clone(), &LoadOptions::default()).unwrap());
    }
    println!("collection load without line info: {:?}", t.elapsed() / n);
    println!(
        "btf bytes {} line records {}",
        spec.btf.as_ref().unwrap().len(),
        spec.programs[0].btf.as_ref().unwrap().line_info.len() / 16
    );
}
