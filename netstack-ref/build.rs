//! Generates the datapath objects' skeletons (types, constants, typed maps and programs) from
//! their BTF: C (`bpf-programs/netstack/abi.h`) is the one definition of what the agent shares
//! with the datapath.

fn main() {
    for name in ["endpoint", "overlay", "sock_lb", "nodeport"] {
        if let Err(e) = ebpf_gen::build::skeleton(format!("../bpf-programs/out/netstack/{name}.o"), name) {
            panic!("{name} skeleton: {e}");
        }
    }
}
