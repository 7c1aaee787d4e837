//! Reads one event per program started on the machine from a BPF ring buffer: a tracepoint
//! program (`bpf-programs/examples/ringbuf_events.c`) on `sched/sched_process_exec` writes
//! each one's pid and command name.
//!
//! `cargo run -p ebpf-ringbuf --example ringbuf_events -- [SECONDS]` (as root, with tracefs
//! mounted); start programs meanwhile to see them.

use std::error::Error;
use std::time::{Duration, Instant};

use ebpf_core::link::Tracepoint;
use ebpf_core::object::{Collection, CollectionSpec};
use ebpf_core::LoadOptions;
use ebpf_ringbuf::RingBuf;

const OBJECT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../bpf-programs/out/examples/ringbuf_events.o");

fn main() -> Result<(), Box<dyn Error>> {
    let seconds: u64 = std::env::args().nth(1).map_or(Ok(5), |s| s.parse())?;
    let spec = CollectionSpec::from_elf(&std::fs::read(OBJECT)?)?;
    let collection = Collection::load(spec, &LoadOptions::default())?;
    let _link = Tracepoint::attach(collection.program("exec_events")?, "sched", "sched_process_exec")?;
    let mut ring = RingBuf::new(collection.map("events")?)?;
    println!("programs started in the next {seconds} s:");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        ring.poll(Duration::from_millis(100), |event| {
            // struct exec_event: pid (u32), padding (u32), comm (16 bytes, NUL-padded).
            let pid = u32::from_ne_bytes(event[..4].try_into().expect("4 bytes"));
            let comm = &event[8..24];
            let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
            println!("exec pid {pid} {}", String::from_utf8_lossy(&comm[..end]));
        })?;
    }
    Ok(())
}
