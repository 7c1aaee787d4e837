//! USDT against the real kernel: a C program with a `<sys/sdt.h>` probe (tests/usdt_target.c,
//! built here with the system's compiler) is probed by bpf-programs/tests/usdt_args.c, which
//! reads the probe's arguments — in registers, in memory and constant — through
//! include/usdt.h; the probe's semaphore is raised only while attached.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use ebpf_core::link::{Usdt, UsdtOptions, UsdtSpecs, USDT_SPECS_MAP};
use ebpf_core::object::{Collection, CollectionSpec};
use ebpf_core::usdt::{read_probes, UsdtLocation};
use ebpf_core::LoadOptions;
use ebpf_test_support::{require_file, require_kernel, unique_name};

/// Where Debian's systemtap-sdt-dev puts the header.
const SDT_HEADER: &str = "/usr/include/x86_64-linux-gnu/sys/sdt.h";

/// The target program, built into a directory removed on drop; killed on drop.
struct Target {
    dir: PathBuf,
    child: Option<Child>,
    input: Option<ChildStdin>,
    output: Option<BufReader<ChildStdout>>,
}

impl Drop for Target {
    fn drop(&mut self) {
        drop(self.input.take());
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Target {
    fn build() -> Target {
        let dir = std::env::temp_dir().join(unique_name("usdt"));
        std::fs::create_dir_all(&dir).unwrap();
        let target = Target { dir, child: None, input: None, output: None };
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/usdt_target.c");
        let built = Command::new("cc").args(["-O1", "-o"]).arg(target.binary()).arg(source).output().unwrap();
        assert!(built.status.success(), "cc: {}", String::from_utf8_lossy(&built.stderr));
        target
    }

    fn binary(&self) -> PathBuf {
        self.dir.join("usdt_target")
    }

    fn start(&mut self) -> u32 {
        let mut child = Command::new(self.binary()).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        self.input = child.stdin.take();
        self.output = child.stdout.take().map(BufReader::new);
        let pid = child.id();
        self.child = Some(child);
        pid
    }

    /// Fires the probe three times; returns the semaphore's value the program saw.
    fn fire(&mut self) -> u32 {
        writeln!(self.input.as_mut().unwrap(), "go").unwrap();
        let mut line = String::new();
        self.output.as_mut().unwrap().read_line(&mut line).unwrap();
        line.trim().parse().unwrap()
    }
}

fn available() -> Option<()> {
    require_file(SDT_HEADER, "<sys/sdt.h> (apt-get install systemtap-sdt-dev)")
}

#[test]
fn notes_of_a_real_binary_give_the_site_semaphore_and_arguments() {
    let Some(()) = available() else { return };
    let target = Target::build();
    let probes = read_probes(&std::fs::read(target.binary()).unwrap()).unwrap();
    let tick = probes.iter().find(|p| p.provider == "netstack" && p.name == "tick").unwrap();
    assert_ne!(tick.semaphore, 0);
    assert_eq!(tick.args.len(), 4);
    assert_eq!(tick.args[2].location, UsdtLocation::Constant(42));
}

#[test]
fn a_usdt_probe_reads_its_arguments_and_raises_its_semaphore() {
    let Some(_root) = require_kernel() else { return };
    let Some(()) = available() else { return };
    let mut target = Target::build();
    let pid = target.start();
    assert_eq!(target.fire(), 0, "no semaphore before attaching");

    let path = format!("{}/../bpf-programs/out/tests/usdt_args.o", env!("CARGO_MANIFEST_DIR"));
    let spec = CollectionSpec::from_elf(&std::fs::read(&path).unwrap()).unwrap();
    let collection = Collection::load(spec, &LoadOptions::default()).unwrap();
    let specs = UsdtSpecs::new(collection.map(USDT_SPECS_MAP).unwrap()).unwrap();
    let program = collection.program("read_args").unwrap();
    let options = UsdtOptions { pid: Some(pid), cookie: 0xabc };
    let binary = target.binary().to_str().unwrap().to_owned();
    let usdt = Usdt::attach(program, &specs, &binary, "netstack", "tick", &options).unwrap();
    assert_eq!(usdt.sites(), 1);

    assert!(target.fire() >= 1, "the semaphore is raised while attached");
    let read = |name: &str| collection.variable(name).unwrap().get_bytes().unwrap();
    let number = |bytes: &[u8]| i64::from_ne_bytes(bytes.try_into().unwrap());
    assert_eq!(number(&read("hits")), 3);
    assert_eq!(number(&read("arg_count")), 4);
    let args: Vec<i64> = read("args").chunks(8).map(number).collect();
    // The last firing: i = 2 (a register), -2000 (a register), 42 (a constant), -9 (memory).
    assert_eq!(args, vec![2, -2000, 42, -9]);
    assert_eq!(number(&read("cookie")), 0xabc);

    let err = Usdt::attach(program, &specs, &binary, "netstack", "no_such_probe", &options).unwrap_err();
    assert!(err.to_string().contains("no such probe"), "{err}");

    drop(usdt);
    let mut semaphore = target.fire();
    for _ in 0..100 {
        if semaphore == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        semaphore = target.fire();
    }
    assert_eq!(semaphore, 0, "detaching lowers the semaphore");
    let hits = number(&read("hits"));
    target.fire();
    assert_eq!(number(&read("hits")), hits, "detached: nothing more is read");
}
