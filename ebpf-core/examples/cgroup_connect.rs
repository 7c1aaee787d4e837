//! A cgroup connect4 hook (`bpf-programs/examples/cgroup_connect.c`) that refuses connections
//! to one port for every process in a cgroup v2 directory, and counts the refusals.
//!
//! `cargo run -p ebpf-core --example cgroup_connect -- CGROUP_DIR PORT [SECONDS]` (as root), e.g.
//! `/sys/fs/cgroup/unified/mygroup`; processes in it get EPERM from `connect()` to PORT.

use std::error::Error;
use std::time::Duration;

use ebpf_core::link::CgroupLink;
use ebpf_core::object::{Collection, CollectionSpec};
use ebpf_core::{AttachType, LoadOptions};

const OBJECT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../bpf-programs/out/examples/cgroup_connect.o");

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: cgroup_connect CGROUP_DIR PORT [SECONDS]";
    let cgroup_dir = args.next().ok_or(usage)?;
    let port: u16 = args.next().ok_or(usage)?.parse()?;
    let seconds: u64 = args.next().map_or(Ok(5), |s| s.parse())?;

    let mut spec = CollectionSpec::from_elf(&std::fs::read(OBJECT)?)?;
    spec.variable_mut("DENIED_PORT")?.set(port)?;
    let collection = Collection::load(spec, &LoadOptions::default())?;
    let cgroup = std::fs::File::open(&cgroup_dir).map_err(|e| format!("cgroup {cgroup_dir}: {e}"))?;
    let _link = CgroupLink::attach(collection.program("cgroup_connect")?, &cgroup, AttachType::CgroupInet4Connect)?;
    println!("refusing connections to port {port} from {cgroup_dir} for {seconds} s");
    let refused = collection.variable("refused")?;
    for second in 1..=seconds {
        std::thread::sleep(Duration::from_secs(1));
        println!("{second:>3} s: refused {}", refused.get::<u64>()?);
    }
    Ok(())
}
