//! Attach points beyond XDP, TCX and cgroup sock_addr: socket filters, tracepoints (raw and
//! perf), post_bind4, sk_lookup, sk_msg on a sockhash, tracing programs and iterators, and a
//! pinned link that outlives the process that made it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use ebpf_core::insn::{Assembler, Reg};
use ebpf_core::link::{
    CgroupLink, Iter, Link, RawTracepoint, SkLookup, SockMapProgram, SocketFilter, Tracepoint, Tracing,
};
use ebpf_core::{AttachType, Collection, CollectionSpec, LoadOptions, Program, ProgramSpec, ProgramType, UpdateFlags};
use ebpf_test_support::cgroup::CgroupGuard;
use ebpf_test_support::net::NetNs;
use ebpf_test_support::{eventually, kernel_refuses, require_kernel, require_tracefs, unique_name, PinDir};

fn fixture(dir: &str, name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../bpf-programs/out/{dir}/{name}.o", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// attach_points.o with its constants set; the tracepoint programs count this thread only.
fn attach_points(denied_port: u16, steered_port: u16) -> Collection {
    let mut spec = CollectionSpec::from_elf(&fixture("tests", "attach_points")).unwrap();
    let tid = nix::unistd::gettid().as_raw() as u32;
    spec.variable_mut("TARGET_TID").unwrap().set(tid).unwrap();
    spec.variable_mut("DENIED_PORT").unwrap().set(denied_port).unwrap();
    spec.variable_mut("STEERED_PORT").unwrap().set(steered_port).unwrap();
    Collection::load(spec, &LoadOptions::default()).unwrap()
}

fn received(socket: &UdpSocket) -> usize {
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while socket.recv(&mut buf).is_ok() {
        n += 1;
    }
    n
}

#[test]
fn a_socket_filter_keeps_large_datagrams_and_drops_small_ones() {
    let Some(_root) = require_kernel() else { return };
    let collection = attach_points(0, 0);
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.connect(receiver.local_addr().unwrap()).unwrap();
    SocketFilter::attach(&receiver, collection.program("keep_large").unwrap()).unwrap();
    for _ in 0..10 {
        sender.send(&[0u8; 20]).unwrap(); // 28 bytes with the UDP header: dropped
        sender.send(&[0u8; 200]).unwrap();
    }
    assert_eq!(received(&receiver), 10, "only the large datagrams pass the filter");
    SocketFilter::detach(&receiver).unwrap();
    for _ in 0..5 {
        sender.send(&[0u8; 20]).unwrap();
    }
    assert_eq!(received(&receiver), 5, "without the filter small datagrams arrive");
}

/// getpid(2) `n` times (glibc no longer caches the pid: every call enters the kernel).
fn getpid_syscalls(n: usize) {
    for _ in 0..n {
        std::hint::black_box(nix::unistd::getpid());
    }
}

#[test]
fn raw_and_perf_tracepoints_count_exactly_this_threads_syscalls() {
    let Some(_root) = require_kernel() else { return };
    let collection = attach_points(0, 0);
    let raw = RawTracepoint::attach(collection.program("count_getpid_raw").unwrap(), "sys_enter").unwrap();
    let perf = require_tracefs().map(|()| {
        Tracepoint::attach(collection.program("count_getpid_tp").unwrap(), "syscalls", "sys_enter_getpid").unwrap()
    });
    getpid_syscalls(100);
    assert_eq!(collection.variable("raw_tp_hits").unwrap().get::<u64>().unwrap(), 100);
    if perf.is_some() {
        assert_eq!(collection.variable("tp_hits").unwrap().get::<u64>().unwrap(), 100);
    }
    assert_eq!(raw.info().unwrap().prog_id, collection.program("count_getpid_raw").unwrap().info().unwrap().id);
    drop((raw, perf));
    getpid_syscalls(10);
    assert_eq!(collection.variable("raw_tp_hits").unwrap().get::<u64>().unwrap(), 100, "detached on drop");
}

#[test]
fn post_bind4_makes_bind_to_one_port_fail_with_eperm() {
    let Some(_root) = require_kernel() else { return };
    let denied = 47_000 + (std::process::id() % 1000) as u16;
    let collection = attach_points(denied, 0);
    let mut cgroup = CgroupGuard::new().unwrap();
    let dir = std::fs::File::open(cgroup.path()).unwrap();
    let _link =
        CgroupLink::attach(collection.program("deny_port").unwrap(), &dir, AttachType::CgroupInet4PostBind).unwrap();
    cgroup.enter().unwrap();
    let refused = TcpListener::bind(("127.0.0.1", denied)).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EPERM), "{refused}");
    assert!(TcpListener::bind(("127.0.0.1", 0)).is_ok(), "other ports bind");
}

#[test]
fn sk_lookup_steers_connections_for_a_port_nobody_listens_on() {
    let Some(_root) = require_kernel() else { return };
    let ns = NetNs::new("sklk").unwrap();
    let steered = 7_777u16;
    let collection = attach_points(0, steered);
    let program = collection.program("steer").unwrap().try_clone().unwrap();
    let sockmap = collection.map("steer_to").unwrap().try_clone().unwrap();
    let netns = format!("/run/netns/{}", ns.name());
    let outcome = ns
        .run(move || -> Result<String, String> {
            let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
            let fd = listener.as_raw_fd() as u64;
            sockmap.update(&0u32.to_ne_bytes(), &fd.to_ne_bytes(), UpdateFlags::ANY).map_err(|e| e.to_string())?;
            let netns = std::fs::File::open(&netns).map_err(|e| e.to_string())?;
            let link = SkLookup::attach(&program, &netns).map_err(|e| e.to_string())?;
            let mut client = TcpStream::connect(("127.0.0.1", steered)).map_err(|e| format!("connect: {e}"))?;
            let (mut server, _) = listener.accept().map_err(|e| e.to_string())?;
            client.write_all(b"steered").map_err(|e| e.to_string())?;
            let mut got = [0u8; 7];
            server.read_exact(&mut got).map_err(|e| e.to_string())?;
            drop(link);
            let refused = || {
                TcpStream::connect(("127.0.0.1", steered)).map(|_| ()).map_err(|e| e.kind())
                    == Err(std::io::ErrorKind::ConnectionRefused)
            };
            if !eventually(Duration::from_secs(2), refused) {
                return Err("after detach the port should refuse connections".to_owned());
            }
            Ok(String::from_utf8_lossy(&got).into_owned())
        })
        .unwrap();
    assert_eq!(outcome.unwrap(), "steered");
}

#[test]
fn an_sk_msg_program_on_a_sockhash_redirects_every_message() {
    let Some(_root) = require_kernel() else { return };
    let collection = attach_points(0, 0);
    let socks = collection.map("msg_socks").unwrap();
    let attached =
        SockMapProgram::attach(socks, collection.program("count_and_redirect").unwrap(), AttachType::SkMsgVerdict)
            .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut sender = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut sender_peer, _) = listener.accept().unwrap();
    let mut target = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (_target_peer, _) = listener.accept().unwrap();
    for (key, socket) in [(1u32, &sender), (2u32, &target)] {
        let fd = socket.as_fd().as_raw_fd() as u64;
        socks.update(&key.to_ne_bytes(), &fd.to_ne_bytes(), UpdateFlags::ANY).unwrap();
    }
    for _ in 0..3 {
        sender.write_all(b"redirect!!").unwrap();
    }
    // What `sender` sends lands in `target`'s own receive queue, not at its peer.
    let mut got = [0u8; 30];
    target.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    target.read_exact(&mut got).unwrap();
    assert_eq!(&got[..10], b"redirect!!");
    assert_eq!(collection.variable("msgs_seen").unwrap().get::<u64>().unwrap(), 3);
    assert_eq!(collection.variable("msg_bytes").unwrap().get::<u64>().unwrap(), 30);
    sender_peer.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    assert!(sender_peer.read(&mut got).is_err(), "nothing reached the sender's peer");
    drop(attached);
}

#[test]
fn tracing_programs_and_iterators_attach_where_the_kernel_allows_them() {
    let Some(_root) = require_kernel() else { return };
    let spec = CollectionSpec::from_elf(&fixture("tracing", "tracing_links")).unwrap();
    let tp_btf = spec.program("count_sys_enter_btf").unwrap();
    assert_eq!((tp_btf.program_type, tp_btf.attach_to.as_deref()), (ProgramType::Tracing, Some("sys_enter")));
    assert_eq!(spec.program("list_maps").unwrap().expected_attach_type, Some(AttachType::TraceIter));
    match Collection::load(spec, &LoadOptions::default()) {
        Err(e) if e.errno() == Some(ebpf_core::Errno::EPERM) => {
            kernel_refuses("tp_btf and iter/bpf_map attach and read", "tracing program loads answer EPERM");
        }
        Err(e) => panic!("{e}"),
        Ok(collection) => {
            let link =
                Tracing::attach(collection.program("count_sys_enter_btf").unwrap(), AttachType::TraceRawTp, 0).unwrap();
            getpid_syscalls(10);
            assert!(collection.variable("tp_btf_hits").unwrap().get::<u64>().unwrap() >= 10);
            drop(link);
            let iter = Iter::attach(collection.program("list_maps").unwrap(), &[]).unwrap();
            let mut text = String::new();
            iter.open().unwrap().read_to_string(&mut text).unwrap();
            assert!(text.lines().count() >= 2, "every map is listed: {text}");
            let tasks = Iter::attach(collection.program("list_tasks").unwrap(), &[]).unwrap();
            let mut text = String::new();
            tasks.open().unwrap().read_to_string(&mut text).unwrap();
            let me = format!("{0} {0}", std::process::id());
            assert!(text.lines().any(|l| l == me), "this process's main thread is listed");
        }
    }
}

/// cgroup_skb egress: allow everything.
fn allow_all() -> Program {
    let mut asm = Assembler::new();
    asm.mov64_imm(Reg::R0, 1).exit();
    let spec = ProgramSpec::from_assembled(&unique_name("allow"), ProgramType::CgroupSkb, asm.finish().unwrap())
        .with_attach_type(AttachType::CgroupInetEgress);
    Program::load(&spec).unwrap()
}

const CHILD_ENV: &str = "EBPF_TEST_PIN_LINK";

/// Run by the test below in a child process: attach to a cgroup, pin the link, exit.
#[test]
fn child_attaches_and_pins_a_link() {
    let Ok(job) = std::env::var(CHILD_ENV) else { return };
    let (cgroup, pin) = job.split_once('|').unwrap();
    let dir = std::fs::File::open(cgroup).unwrap();
    let link = CgroupLink::attach(&allow_all(), &dir, AttachType::CgroupInetEgress).unwrap();
    link.pin(pin).unwrap();
}

#[test]
fn a_pinned_link_outlives_the_process_that_made_it() {
    let Some(_root) = require_kernel() else { return };
    let Some(pins) = PinDir::new("lnkpin") else { return };
    let cgroup = CgroupGuard::new().unwrap();
    let pin = pins.path().join("egress");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_attaches_and_pins_a_link", "--test-threads=1"])
        .env(CHILD_ENV, format!("{}|{}", cgroup.path().display(), pin.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let dir = std::fs::File::open(cgroup.path()).unwrap();
    let attached = || ebpf_core::link::query(&dir, AttachType::CgroupInetEgress).unwrap();
    assert_eq!(attached().prog_ids.len(), 1, "the child is gone, its pinned link still attaches the program");
    let link = Link::from_pin(&pin).unwrap();
    assert_eq!(link.info().unwrap().prog_id, attached().prog_ids[0]);
    ebpf_core::program::unpin(&pin).unwrap();
    drop(link);
    assert!(eventually(Duration::from_secs(2), || attached().prog_ids.is_empty()), "unpinned and closed: detached");
}
