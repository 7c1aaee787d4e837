use std::os::fd::AsFd;
use std::time::Duration;

use super::load::Program;
use crate::error::{Error, Result};
use crate::sys::{self, Errno, TestRun as SysTestRun};

/// Input of a test run (`BPF_PROG_TEST_RUN`).
#[derive(Clone, Debug, Default)]
pub struct TestRun<'a> {
    /// Packet or other data.
    pub data: &'a [u8],
    /// Context (`__sk_buff`, `xdp_md`, …), if the program type takes one in.
    pub context: Option<&'a [u8]>,
    /// Runs (the duration is their mean); 0 and 1 both mean once.
    pub repeat: u32,
    /// `BPF_F_TEST_*` flags.
    pub flags: u32,
    /// CPU to run on, with `BPF_F_TEST_RUN_ON_CPU`.
    pub cpu: u32,
    /// Room for the output data; by default the input size plus 4 KiB (XDP and tc programs
    /// can grow packets).
    pub data_out_capacity: Option<usize>,
    /// Room for the output context; by default the input context's size.
    pub context_out_capacity: Option<usize>,
}

impl<'a> TestRun<'a> {
    /// One run over `data`.
    pub fn with_data(data: &'a [u8]) -> TestRun<'a> {
        TestRun { data, ..TestRun::default() }
    }
}

/// What a test run returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRunResult {
    /// The program's return value.
    pub retval: u32,
    /// Mean time per run.
    pub duration: Duration,
    /// The data as the program left it.
    pub data: Vec<u8>,
    /// The context as the program left it.
    pub context: Vec<u8>,
}

impl Program {
    /// Runs the program in the kernel over `input`, without attaching it anywhere.
    pub fn test_run(&self, input: &TestRun<'_>) -> Result<TestRunResult> {
        let ctx_in = input.context.unwrap_or(&[]);
        let mut data_out = vec![0u8; input.data_out_capacity.unwrap_or(input.data.len() + 4096)];
        let mut ctx_out = vec![0u8; input.context_out_capacity.unwrap_or(ctx_in.len())];
        let run = SysTestRun {
            data_in: input.data,
            data_out: &mut data_out,
            ctx_in,
            ctx_out: &mut ctx_out,
            repeat: input.repeat,
            flags: input.flags,
            cpu: input.cpu,
            batch_size: 0,
        };
        let output = sys::prog_test_run(self.as_fd(), run).map_err(|e| {
            let operation = if e.errno == Errno::ENOSPC {
                format!("test run of {} (output needs more room than given)", self.describe())
            } else {
                format!("test run of {}", self.describe())
            };
            Error::syscall(operation, e)
        })?;
        data_out.truncate(output.data_size_out as usize);
        ctx_out.truncate(output.ctx_size_out as usize);
        Ok(TestRunResult {
            retval: output.retval,
            duration: Duration::from_nanos(u64::from(output.duration_ns)),
            data: data_out,
            context: ctx_out,
        })
    }
}
