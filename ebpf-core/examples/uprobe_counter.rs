//! Counts calls of a user-space function per process with a uprobe
//! (`bpf-programs/examples/uprobe_counter.c`): the function is found by name in a binary or a
//! shared library (`libc.so.6`), optionally for one process only.
//!
//! `cargo run -p ebpf-core --example uprobe_counter -- BINARY FUNCTION [SECONDS] [PID]` (as
//! root), e.g. `libc.so.6 getpid 5`.

use std::error::Error;
use std::time::Duration;

use ebpf_core::link::{Uprobe, UprobeOptions};
use ebpf_core::object::{Collection, CollectionSpec};
use ebpf_core::LoadOptions;

const OBJECT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../bpf-programs/out/examples/uprobe_counter.o");

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: uprobe_counter BINARY FUNCTION [SECONDS] [PID]";
    let binary = args.next().ok_or(usage)?;
    let function = args.next().ok_or(usage)?;
    let seconds: u64 = args.next().map_or(Ok(5), |s| s.parse())?;
    let pid: Option<u32> = args.next().map(|p| p.parse()).transpose()?;

    let spec = CollectionSpec::from_elf(&std::fs::read(OBJECT)?)?;
    let collection = Collection::load(spec, &LoadOptions::default())?;
    let options = UprobeOptions { pid, ..UprobeOptions::default() };
    let _probe = Uprobe::attach(collection.program("uprobe_counter")?, &binary, &function, &options)?;
    println!("counting calls of {function} in {binary} for {seconds} s");
    let calls = collection.map("calls")?;
    for second in 1..=seconds {
        std::thread::sleep(Duration::from_secs(1));
        let mut line = Vec::new();
        let (mut key, mut next) = (None::<[u8; 4]>, [0u8; 4]);
        while calls.next_key(key.as_ref().map(|k| &k[..]), &mut next)? {
            if let Some(value) = calls.get(&next)? {
                line.push(format!("pid {}: {}", u32::from_ne_bytes(next), u64::from_ne_bytes(value[..8].try_into()?)));
            }
            key = Some(next);
        }
        println!("{second:>3} s: {}", if line.is_empty() { "no calls yet".to_owned() } else { line.join(", ") });
    }
    Ok(())
}
