//! Traffic for the demo, the tests and the benchmarks: connectivity probes between namespaces
//! ([`probe`]) and the frames `BPF_PROG_TEST_RUN` is fed ([`frame`]). Neither the agent nor the
//! datapath uses them.

pub mod frame;
pub mod probe;
