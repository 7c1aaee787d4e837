//! Formatting generated code with the toolchain's `rustfmt`.

use std::io::Write;
use std::process::{Command, Stdio};

/// `source` formatted by `rustfmt` (the `RUSTFMT` environment variable, or `rustfmt` on the
/// path, edition 2021); `None` when no rustfmt runs or it refuses the source.
pub fn rustfmt(source: &str) -> Option<String> {
    let program = std::env::var_os("RUSTFMT").unwrap_or_else(|| "rustfmt".into());
    let mut child = Command::new(program)
        .args(["--edition", "2021", "--emit", "stdout", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // A writer thread: rustfmt may fill its stdout pipe before it has read all of stdin.
    let mut stdin = child.stdin.take()?;
    let input = source.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().ok()?;
    writer.join().ok()?.ok()?;
    output.status.success().then(|| String::from_utf8(output.stdout).ok()).flatten()
}
