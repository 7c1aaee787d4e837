//! Programs: [`ProgramSpec`] is what to load, as plain data; [`Program`] is a loaded program
//! that owns its fd.

mod ids;
mod load;
mod prepare;
mod spec;
mod test_run;

pub use ids::{btf_ids, link_ids, map_ids, program_ids, ObjectIds};
pub use load::{enable_run_stats, unpin, BtfPolicy, KernelBtf, LoadOptions, LogLevel, Program, RunStats};
pub(crate) use load::{BtfSource, ReadyProgram};
pub(crate) use prepare::kernel_btf_for;
pub use prepare::{kernel_btf, read_kernel_btf, release_kernel_btf};
pub use spec::{CoreRelocation, Instructions, KsymReference, ProgramBtf, ProgramFlags, ProgramSpec};
pub use test_run::{TestRun, TestRunResult};

/// What the kernel reports about a loaded program.
pub type ProgramInfo = crate::sys::ProgInfo;
