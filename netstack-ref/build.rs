//! Generates the endpoint object's skeleton (types, constants, typed maps and programs) from its
//! BTF: C (`bpf-programs/netstack/abi.h`) is the one definition of what the agent shares with
//! the datapath.

fn main() {
    if let Err(e) = ebpf_gen::build::skeleton("../bpf-programs/out/netstack/endpoint.o", "endpoint") {
        panic!("endpoint skeleton: {e}");
    }
}
