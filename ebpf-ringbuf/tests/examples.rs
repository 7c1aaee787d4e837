//! The crate's runnable example (`ebpf-ringbuf/examples/ringbuf_events.rs`), run as a user
//! would run it: programs started meanwhile show up in its output.

use ebpf_test_support::example::RunningExample;
use ebpf_test_support::{require_kernel, require_tracefs, unique_name};

#[test]
fn ringbuf_events_prints_the_programs_started() {
    let Some(_root) = require_kernel() else { return };
    let Some(()) = require_tracefs() else { return };
    let example = RunningExample::start("ringbuf_events", None, &["2"]).unwrap();
    // A program with a name of its own: a copy of `true`.
    let dir = std::env::temp_dir().join(unique_name("rbex"));
    std::fs::create_dir_all(&dir).unwrap();
    let name = unique_name("extrue");
    let program = dir.join(&name);
    std::fs::copy("/bin/true", &program).unwrap();
    let status = std::process::Command::new(&program).status();
    let output = example.finish();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(status.unwrap().success());
    let output = output.unwrap();
    assert!(output.lines().any(|l| l.starts_with("exec pid ") && l.ends_with(&name)), "{name} not in:\n{output}");
}
