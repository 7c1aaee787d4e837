//! A TCX ingress classifier (`bpf-programs/examples/tc_classifier.c`) that drops UDP datagrams
//! to one port: the port is a constant set at load, the verdict counters are a global array
//! read through shared memory.
//!
//! `cargo run -p ebpf-core --example tc_classifier -- IFACE PORT [SECONDS]` (as root).

use std::error::Error;
use std::time::Duration;

use ebpf_core::link::{Tcx, TcxAttach};
use ebpf_core::object::{Collection, CollectionSpec};
use ebpf_core::LoadOptions;

const OBJECT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../bpf-programs/out/examples/tc_classifier.o");

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: tc_classifier IFACE PORT [SECONDS]";
    let iface = args.next().ok_or(usage)?;
    let port: u16 = args.next().ok_or(usage)?.parse()?;
    let seconds: u64 = args.next().map_or(Ok(5), |s| s.parse())?;
    let ifindex = nix::net::if_::if_nametoindex(iface.as_str()).map_err(|e| format!("interface {iface}: {e}"))?;

    let mut spec = CollectionSpec::from_elf(&std::fs::read(OBJECT)?)?;
    spec.variable_mut("BLOCKED_PORT")?.set(port)?;
    let collection = Collection::load(spec, &LoadOptions::default())?;
    let _link = Tcx::attach(collection.program("tc_classifier")?, ifindex, TcxAttach::ingress())?;
    println!("dropping UDP to port {port} on {iface} for {seconds} s");
    let verdicts = collection.variable("verdicts")?;
    for second in 1..=seconds {
        std::thread::sleep(Duration::from_secs(1));
        let [passed, dropped] = verdicts.get::<[u64; 2]>()?;
        println!("{second:>3} s: passed {passed}, dropped {dropped}");
    }
    Ok(())
}
