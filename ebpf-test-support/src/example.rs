//! Running a crate's example binary from its tests (`cargo test` builds the examples into
//! `target/<profile>/examples/`), optionally inside a network namespace, killed on drop.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

use crate::net::NetNs;

/// The path of example `name` of the crate whose test is running.
pub fn example_path(name: &str) -> PathBuf {
    let test = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> → target/<profile>/examples/<name>
    test.parent().and_then(|deps| deps.parent()).expect("target/<profile>").join("examples").join(name)
}

/// A running example: its first line of output says it is attached.
#[derive(Debug)]
pub struct RunningExample {
    child: Option<Child>,
    stdout: BufReader<ChildStdout>,
    first_line: String,
}

impl RunningExample {
    /// Starts example `name` with `args` (inside `netns` when given) and waits for its first
    /// line of output, which it prints once attached.
    pub fn start(name: &str, netns: Option<&NetNs>, args: &[&str]) -> Result<RunningExample, String> {
        let path = example_path(name);
        if !path.exists() {
            return Err(format!("{} is not built (cargo test builds the examples)", path.display()));
        }
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.name()]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let mut child = command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start {}: {e}", path.display()))?;
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut first_line = String::new();
        stdout.read_line(&mut first_line).map_err(|e| e.to_string())?;
        let mut running = RunningExample { child: Some(child), stdout, first_line };
        if running.first_line.is_empty() {
            let status = running.child.take().map(|mut c| c.wait());
            return Err(format!("example {name} exited before attaching: {status:?}"));
        }
        Ok(running)
    }

    /// Its first line of output.
    pub fn first_line(&self) -> &str {
        &self.first_line
    }

    /// Waits for it to exit; its whole output after the first line, or why it failed.
    pub fn finish(mut self) -> Result<String, String> {
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).map_err(|e| e.to_string())?;
        let status = self.child.take().expect("running").wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("example exited with {status}; output:\n{}{rest}", self.first_line));
        }
        Ok(rest)
    }
}

impl Drop for RunningExample {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
