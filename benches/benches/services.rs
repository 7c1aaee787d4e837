//! Services: our socket load balancer beside kube-proxy's iptables mode, on this machine.
//!
//! A client namespace and a server namespace joined by a veth pair; the server accepts on
//! 10.250.0.2:8080. N services (N = 1, 1 000, 10 000, 20 000), each a cluster IP on port 80 with
//! that one backend:
//! - iptables: the nat rules kube-proxy's iptables mode writes (KUBE-SERVICES → KUBE-SVC-… →
//!   KUBE-SEP-… DNAT, KUBE-MARK-MASQ), installed with iptables-restore in the client namespace;
//! - ours: the socket LB (`sock_lb.o`) with the same frontends written by `LbWriter`, acting for
//!   the client namespace.
//!
//! Measured: a TCP connect (through the handshake; closed with RST; source ports taken in turn
//! from 20 000, so conntrack neither fills up nor meets a tuple still closing) to the first and
//! to the last service, and beside them a direct connect to the backend; and the time to add one
//! service at N: for iptables a full `iptables-restore` of the nat table as kube-proxy's sync
//! writes it, for ours the writer's per-service update and, beside it, a full sync that finds the
//! new service among N. Targets: ours within 1.2× of its own N=1 latency at
//! every N; one service added in under 1 ms at 20 000; socket-LB connect ≤ 1.1× a direct one.
//! Needs root and iptables (Debian's `iptables` package); without them it prints why and skips.
// criterion_group! generates undocumented items.
#![allow(missing_docs)]

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use benches::can_use_bpf;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use netstack_ref::datapath::sock_lb::{cgroup_root, lb_netns_kind, SockLb};
use netstack_ref::manifest::service::{ForwardingMode, L4Protocol, TrafficPolicy};
use netstack_ref::services::catalog::{Backend, Frontend, FrontendKind};
use netstack_ref::services::lbmap::LbWriter;
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};

const SIZES: [usize; 4] = [1, 1000, 10_000, 20_000];
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 2);
const BACKEND_PORT: u16 = 8080;
/// Source ports taken in turn: a tuple comes back only after 20 000 connects, long after its
/// conntrack entry (and the server's socket) closed, and conntrack never holds more than that.
const CLIENT_PORTS: std::ops::Range<u16> = 40_000..60_000;

static NEXT_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

fn vip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 10)) + i as u32)
}

fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The two namespaces and the server; removed on drop.
struct Scene {
    client: String,
    server: String,
}

impl Scene {
    fn new() -> Option<Scene> {
        let id = std::process::id();
        let scene = Scene { client: format!("svcbc{id}"), server: format!("svcbs{id}") };
        let (c, s) = (scene.client.as_str(), scene.server.as_str());
        let ok = sh(&["ip", "netns", "add", c])
            && sh(&["ip", "netns", "add", s])
            && sh(&["ip", "-n", c, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", s])
            && sh(&["ip", "-n", c, "addr", "add", "10.250.0.1/24", "dev", "eth0"])
            && sh(&["ip", "-n", s, "addr", "add", "10.250.0.2/24", "dev", "eth0"])
            && [c, s].iter().all(|n| sh(&["ip", "-n", n, "link", "set", "eth0", "up"]) && sh(&["ip", "-n", n, "link", "set", "lo", "up"]))
            // Every service address is routed to the server side (iptables DNATs before routing
            // anyway; the socket LB rewrites before it).
            && sh(&["ip", "-n", c, "route", "add", "10.96.0.0/12", "via", "10.250.0.2"]);
        if !ok {
            println!("services bench: cannot build the namespaces (needs root and iproute2)");
            return None;
        }
        let server = scene.server.clone();
        let (ready, up) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            enter(&server);
            let listener = TcpListener::bind((SERVER, BACKEND_PORT)).expect("listen");
            ready.send(()).unwrap();
            for stream in listener.incoming() {
                drop(stream);
            }
        });
        up.recv_timeout(Duration::from_secs(5)).ok()?;
        Some(scene)
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        sh(&["ip", "netns", "del", &self.client]);
        sh(&["ip", "netns", "del", &self.server]);
    }
}

/// Moves the calling thread into namespace `name`.
fn enter(name: &str) {
    let file = std::fs::File::open(format!("/run/netns/{name}")).expect("netns");
    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// One TCP connect from the next client port, through the handshake, closed with RST (no
/// TIME_WAIT).
fn connect(to: Ipv4Addr, port: u16) {
    let turn = NEXT_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % (CLIENT_PORTS.end - CLIENT_PORTS.start);
    let from = CLIENT_PORTS.start + turn;
    let fd = socket::socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).unwrap();
    socket::setsockopt(&fd, sockopt::Linger, &libc::linger { l_onoff: 1, l_linger: 0 }).unwrap();
    socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(SocketAddrV4::new(CLIENT, from))).unwrap();
    socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(SocketAddrV4::new(to, port)))
        .unwrap_or_else(|e| panic!("connect {to}:{port}: {e}"));
}

/// kube-proxy's iptables-mode nat table for `n` services (its full-sync form).
fn kube_proxy_rules(n: usize) -> String {
    let mut t = String::with_capacity(n * 600);
    t.push_str(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n",
    );
    t.push_str(":KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n");
    for i in 0..n {
        t.push_str(&format!(":KUBE-SVC-{i:016X} - [0:0]\n:KUBE-SEP-{i:016X} - [0:0]\n"));
    }
    t.push_str("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n");
    t.push_str("-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n");
    t.push_str("-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n");
    t.push_str("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n");
    t.push_str("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n");
    t.push_str("-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n");
    t.push_str("-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n");
    for i in 0..n {
        let v = vip(i);
        t.push_str(&format!(
            "-A KUBE-SERVICES -d {v}/32 -p tcp -m comment --comment \"bench/svc{i}:http cluster IP\" -m tcp --dport 80 -j KUBE-SVC-{i:016X}\n\
             -A KUBE-SVC-{i:016X} -m comment --comment \"bench/svc{i}:http -> {SERVER}:{BACKEND_PORT}\" -j KUBE-SEP-{i:016X}\n\
             -A KUBE-SEP-{i:016X} -s {SERVER}/32 -m comment --comment \"bench/svc{i}:http\" -j KUBE-MARK-MASQ\n\
             -A KUBE-SEP-{i:016X} -p tcp -m comment --comment \"bench/svc{i}:http\" -m tcp -j DNAT --to-destination {SERVER}:{BACKEND_PORT}\n"
        ));
    }
    t.push_str("COMMIT\n");
    t
}

fn iptables_restore(netns: &str, rules: &str) -> Duration {
    let started = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, "iptables-restore"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("iptables-restore");
    child.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "iptables-restore failed");
    started.elapsed()
}

fn frontends(n: usize) -> Vec<Frontend> {
    let backend = Backend { address: IpAddr::V4(SERVER), port: BACKEND_PORT, terminating: false, node: None };
    (0..n)
        .map(|i| Frontend {
            service: format!("bench/svc{i}"),
            port_name: "http".into(),
            kind: FrontendKind::ClusterIp,
            address: IpAddr::V4(vip(i)),
            port: 80,
            protocol: L4Protocol::Tcp,
            backends: vec![backend.clone()],
            local_backends: vec![backend.clone()],
            affinity: None,
            external_policy: TrafficPolicy::Cluster,
            internal_policy: TrafficPolicy::Cluster,
            source_ranges: Vec::new(),
            forwarding_mode: ForwardingMode::Default,
        })
        .collect()
}

fn services(c: &mut Criterion) {
    if !can_use_bpf() {
        return;
    }
    if !sh(&["iptables-restore", "--version"]) {
        println!("services bench: iptables-restore not found (apt-get install iptables); skipped");
        return;
    }
    let Some(root) = cgroup_root() else {
        println!("services bench: no cgroup v2 mount; skipped");
        return;
    };
    let Some(scene) = Scene::new() else { return };
    let home = std::fs::File::open("/proc/self/ns/net").unwrap();

    // kube-proxy's iptables mode.
    let mut group = c.benchmark_group("services_iptables");
    group.sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
    for n in SIZES {
        iptables_restore(&scene.client, &kube_proxy_rules(n));
        enter(&scene.client);
        group.bench_with_input(BenchmarkId::new("connect_first", n), &n, |b, _| b.iter(|| connect(vip(0), 80)));
        group.bench_with_input(BenchmarkId::new("connect_last", n), &n, |b, &n| b.iter(|| connect(vip(n - 1), 80)));
        nix::sched::setns(home.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    }
    group.finish();
    let mut group = c.benchmark_group("services_iptables_add_one");
    group.sample_size(10).warm_up_time(Duration::from_millis(1));
    for n in SIZES {
        let rules = kube_proxy_rules(n + 1);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| (0..iters).map(|_| iptables_restore(&scene.client, &rules)).sum())
        });
    }
    group.finish();
    // The client namespace without iptables rules for ours (and for the direct connect).
    iptables_restore(&scene.client, "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n");

    // Ours.
    let pins = std::path::PathBuf::from(format!("/sys/fs/bpf/bench_services_{}", std::process::id()));
    std::fs::create_dir_all(&pins).unwrap();
    let lb = SockLb::attach(&pins, &root).expect("attach the socket LB");
    enter(&scene.client);
    let cookie = ebpf_core::netns::cookie(&std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
    lb.maps.netns.insert(&cookie, &(lb_netns_kind::LB_NETNS_POD.0 as u8), ebpf_maps::UpdateFlags::ANY).unwrap();
    let mut writer = LbWriter::default();
    let mut group = c.benchmark_group("services_socket_lb");
    group.sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
    group.bench_function("connect_direct", |b| b.iter(|| connect(SERVER, BACKEND_PORT)));
    for n in SIZES {
        writer.sync(&lb.maps, &frontends(n), &[]).unwrap();
        group.bench_with_input(BenchmarkId::new("connect_first", n), &n, |b, _| b.iter(|| connect(vip(0), 80)));
        group.bench_with_input(BenchmarkId::new("connect_last", n), &n, |b, &n| b.iter(|| connect(vip(n - 1), 80)));
    }
    group.finish();
    // Adding one service: the writer's per-service update (what an agent that knows which
    // service changed does), and beside it a full sync that finds the one new service among N.
    let mut group = c.benchmark_group("services_socket_lb_add_one");
    group.sample_size(20).warm_up_time(Duration::from_millis(100));
    for n in SIZES {
        let (base, more) = (frontends(n), frontends(n + 1));
        let new = &more[n..];
        writer.sync(&lb.maps, &base, &[]).unwrap();
        group.bench_with_input(BenchmarkId::new("service", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    writer.sync_service(&lb.maps, &new[0].service, new, &[]).unwrap();
                    total += started.elapsed();
                    writer.sync_service(&lb.maps, &new[0].service, &[], &[]).unwrap();
                }
                total
            })
        });
        group.bench_with_input(BenchmarkId::new("full_sync", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let started = Instant::now();
                    writer.sync(&lb.maps, &more, &[]).unwrap();
                    total += started.elapsed();
                    writer.sync(&lb.maps, &base, &[]).unwrap();
                }
                total
            })
        });
    }
    group.finish();
    nix::sched::setns(home.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    drop(lb);
    let _ = std::fs::remove_dir_all(&pins);
    drop(scene);
}

criterion_group!(benches, services);
criterion_main!(benches);
