//! Counts the packets an interface receives, per IP protocol: an XDP program
//! (`bpf-programs/examples/xdp_counter.c`) fills a per-CPU array this example reads every
//! second through a typed view.
//!
//! `cargo run -p ebpf-maps --example xdp_counter -- IFACE [SECONDS]` (as root; 5 s by default).

use std::error::Error;
use std::time::Duration;

use ebpf_core::link::{Xdp, XdpMode};
use ebpf_core::object::{Collection, CollectionSpec};
use ebpf_core::LoadOptions;
use ebpf_maps::PerCpuArray;

const OBJECT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../bpf-programs/out/examples/xdp_counter.o");

fn protocol_name(protocol: u32) -> String {
    match protocol {
        1 => "icmp".to_owned(),
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        255 => "not ipv4".to_owned(),
        other => format!("ip proto {other}"),
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let iface = args.next().ok_or("usage: xdp_counter IFACE [SECONDS]")?;
    let seconds: u64 = args.next().map_or(Ok(5), |s| s.parse())?;
    let ifindex = nix::net::if_::if_nametoindex(iface.as_str()).map_err(|e| format!("interface {iface}: {e}"))?;

    let spec = CollectionSpec::from_elf(&std::fs::read(OBJECT)?)?;
    let collection = Collection::load(spec, &LoadOptions::default())?;
    let _link = Xdp::attach(collection.program("xdp_counter")?, ifindex, XdpMode::Any)?;
    let packets: PerCpuArray<u64> = PerCpuArray::try_from(collection.map("packets")?)?;
    println!("counting packets on {iface} for {seconds} s");
    for second in 1..=seconds {
        std::thread::sleep(Duration::from_secs(1));
        let mut line = Vec::new();
        for protocol in 0..256u32 {
            let total: u64 = packets.get(&protocol)?.map_or(0, |per_cpu| per_cpu.iter().sum());
            if total > 0 {
                line.push(format!("{} {total}", protocol_name(protocol)));
            }
        }
        println!("{second:>3} s: {}", if line.is_empty() { "nothing yet".to_owned() } else { line.join(", ") });
    }
    Ok(())
}
