//! The reference stack's hot paths.
//!
//! - Per-packet cost of the endpoint program (`to_container`, ingress policy) under
//!   BPF_PROG_TEST_RUN, as the kernel times it: a new allowed flow (conntrack miss, tail call to
//!   the policy stage, ipcache and policy lookups, conntrack insert), an established flow
//!   (a flow-cache hit, as every packet of a busy flow but one a quarter second is) and a
//!   denied flow (policy stage, drop), beside an empty sched_cls program.
//!   Target: established ≤ 2× empty.
//! - The cross-node path beside the local one, under BPF_PROG_TEST_RUN, kernel-timed, for an
//!   established UDP flow: local = the sender's `from_container` + the receiver's
//!   `to_container`; tunnel = the sender's `from_container` (a flow-cache hit that also sets
//!   the tunnel key and redirects to the VXLAN device) + the receiver's `to_container` (its
//!   peer's identity from the mark `from_overlay` sets). `from_overlay` itself is not in it: a
//!   test run gives a packet no tunnel metadata, so it would only time its refusal. The
//!   kernel's VXLAN encapsulation is not BPF and not in it either. Target: tunnel ≤ 1.5× local.
//!   Beside them `from_host`, what the node's own packets to other nodes' pods pass.
//! - North-south services (`nodeport.c`'s `from_external`) under BPF_PROG_TEST_RUN, kernel-timed,
//!   one run per call (the program rewrites the packet, and a repeated run would see its own
//!   output): an established flow to a NodePort whose backend is local (conntrack hit,
//!   destination rewritten, reply translation refreshed), one whose backend is another node's
//!   (conntrack hit, SNAT, into the tunnel), and a packet for no service (what everything else
//!   arriving on the device pays); beside an empty XDP and an empty sched_cls program run the
//!   same way. Target: NodePort forwarding ≤ 3× the empty XDP program.
//! - Policy resolution: 1 000 rules over 1 000 identities into one endpoint's policy map.
//!   Target: under 50 ms.
// criterion_group! generates undocumented items.
#![allow(missing_docs)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use benches::can_use_bpf;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ebpf_core::insn::{Assembler, Reg};
use ebpf_core::program::TestRun;
use ebpf_core::{Program, ProgramSpec, ProgramType};
use netstack_ref::datapath::events::{set_aggregation, Aggregation};
use netstack_ref::datapath::node_config::set_wireguard_ifindex;
use netstack_ref::datapath::overlay::skeleton::OpenOverlay;
use netstack_ref::datapath::{Conntrack, Encrypt, EndpointConfig, EndpointDatapath, Ipcache, IpcacheTarget};
use netstack_ref::identity::{pod_security_labels, Labels};
use netstack_ref::manifest::{self, Resource};
use netstack_ref::policy::api::Cidr;
use netstack_ref::policy::{resolve, Policy, Universe};
use netstack_ref::traffic::frame::frame;

const ENDPOINT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const ALLOWED_PEER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const DENIED_PEER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);

fn policies(text: &str) -> Vec<Policy> {
    manifest::parse(Path::new("bench.yaml"), text)
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            Resource::Policy(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn labels(app: &str) -> Labels {
    pod_security_labels([("app", app)], "shop", [], "default")
}

fn per_packet(c: &mut Criterion) {
    if !can_use_bpf() {
        return;
    }
    // Removed on drop, also when the benchmark panics.
    let pins = ebpf_test_support::PinDir::new("bench_netstack").expect("bpffs mounted");
    let pin_dir = pins.path();
    let datapath = EndpointDatapath::load(&EndpointConfig::detached(1, 256, ENDPOINT), pin_dir).unwrap();
    let ipcache = Ipcache::open(pin_dir).unwrap();
    let host = |a: Ipv4Addr| Cidr::new(IpAddr::V4(a), 32).unwrap();
    ipcache.upsert(&host(ENDPOINT), 256).unwrap();
    ipcache.upsert(&host(ALLOWED_PEER), 257).unwrap();
    ipcache.upsert(&host(DENIED_PEER), 258).unwrap();
    let universe =
        Universe::new(Labels::default(), [(256, labels("web")), (257, labels("client")), (258, labels("other"))], []);
    let policy = policies(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: web, namespace: shop}\nspec:\n  \
         endpointSelector: {matchLabels: {app: web}}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: client}}]\n    \
         toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n",
    );
    let state = resolve(&policy, &labels("web"), &universe);
    datapath.apply_policy(&Default::default(), &state).unwrap();
    let ct = Conntrack::open(pin_dir).unwrap();

    let program = datapath.loaded().unwrap().progs().to_container();
    let allowed = frame(ALLOWED_PEER.into(), ENDPOINT.into(), 6, 40000, 80);
    let denied = frame(DENIED_PEER.into(), ENDPOINT.into(), 6, 40000, 80);
    let mut asm = Assembler::new();
    asm.mov64_imm(Reg::R0, 0).exit();
    let empty =
        Program::load(&ProgramSpec::from_assembled("bench_empty", ProgramType::SchedCls, asm.finish().unwrap()))
            .unwrap();

    let clear_ct = || {
        ct.clear().unwrap();
    };

    // The flows are what their names say.
    assert_eq!(program.test_run(&TestRun::with_data(&denied)).unwrap().retval, 2, "denied flow is dropped");
    clear_ct();
    assert_eq!(program.test_run(&TestRun::with_data(&allowed)).unwrap().retval, 0, "allowed flow passes");
    assert_eq!(ct.entries().unwrap().len(), 1, "and is tracked");

    let mut group = c.benchmark_group("netstack_per_packet");
    group.bench_function("empty_sched_cls", |b| b.iter_custom(|iters| kernel_time(&empty, &allowed, None, iters)));
    group.bench_function("established_flow", |b| {
        clear_ct();
        kernel_time(program, &allowed, None, 1);
        b.iter_custom(|iters| kernel_time(program, &allowed, None, iters))
    });
    // Aggregation off: every packet is an event, read by a thread as the agent's collector
    // reads them (a full ring would make the figure that of a failed reservation).
    set_aggregation(pin_dir, Aggregation::None).unwrap();
    let reader = EventReader::start(pin_dir);
    group.bench_function("established_flow_aggregation_none", |b| {
        clear_ct();
        kernel_time(program, &allowed, None, 1);
        b.iter_custom(|iters| kernel_time(program, &allowed, None, iters))
    });
    let (read, lost) = reader.stop(pin_dir);
    eprintln!("aggregation none: {read} events read, {lost} lost to a full ring");
    set_aggregation(pin_dir, Aggregation::Medium).unwrap();
    group.bench_function("new_allowed_flow", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                clear_ct();
                total += kernel_time(program, &allowed, None, 1);
            }
            total
        })
    });
    group.bench_function("denied_flow", |b| b.iter_custom(|iters| kernel_time(program, &denied, None, iters)));
    group.finish();
    drop(datapath);
}

/// A thread draining the events ring pinned in a directory, as the agent's flow collector does.
struct EventReader {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl EventReader {
    fn start(pin_dir: &Path) -> EventReader {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let map = ebpf_core::Map::from_pin(pin_dir.join("events")).unwrap();
        let mut ring = ebpf_ringbuf::RingBuf::new(&map).unwrap();
        let done = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut read = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = ring.poll(Duration::from_millis(50), |event| {
                    black_box(event);
                    read += 1;
                });
            }
            read
        });
        EventReader { stop, thread }
    }

    /// Stops it: events read, and events the datapath lost to a full ring.
    fn stop(self, pin_dir: &Path) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let read = self.thread.join().unwrap();
        let lost = ebpf_core::Map::from_pin(pin_dir.join("event_lost"))
            .ok()
            .and_then(|m| ebpf_maps::PerCpuArray::<u64>::try_from(m).ok())
            .and_then(|m| m.get(&0).ok().flatten())
            .map_or(0, |values| values.iter().sum());
        (read, lost)
    }
}

/// The kernel's time for `iters` runs of `program` over `data` (with `context`, an
/// `__sk_buff` prefix, when given).
fn kernel_time(program: &Program, data: &[u8], context: Option<&[u8]>, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let repeat = left.min(1_000_000) as u32;
        let mut run = TestRun::with_data(data);
        run.context = context;
        // The kernel writes the whole __sk_buff back.
        run.context_out_capacity = Some(256);
        run.repeat = repeat;
        total += program.test_run(&run).unwrap().duration * repeat;
        left -= repeat as u64;
    }
    total
}

fn cross_node(c: &mut Criterion) {
    if !can_use_bpf() {
        return;
    }
    const SENDER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
    const LOCAL_RECEIVER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);
    const REMOTE_RECEIVER: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);
    const REMOTE_NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 12);
    let pins = ebpf_test_support::PinDir::new("bench_cross_node").expect("bpffs mounted");
    let pin_dir = pins.path();
    // The sender sends other nodes' pods' packets into a tunnel device (lo stands in: a test
    // run only reports the redirect).
    let load = |id, identity, ip| {
        let config = EndpointConfig { tunnel_ifindex: 1, ..EndpointConfig::detached(id, identity, ip) };
        EndpointDatapath::load(&config, pin_dir).unwrap()
    };
    let (sender, local_receiver, remote_receiver) =
        (load(1, 256, SENDER), load(2, 257, LOCAL_RECEIVER), load(3, 257, REMOTE_RECEIVER));
    let ipcache = Ipcache::open(pin_dir).unwrap();
    let host = |a: Ipv4Addr| Cidr::new(IpAddr::V4(a), 32).unwrap();
    ipcache.upsert(&host(SENDER), 256).unwrap();
    ipcache.upsert(&host(LOCAL_RECEIVER), 257).unwrap();
    ipcache
        .set(
            &host(REMOTE_RECEIVER),
            IpcacheTarget { identity: 257, tunnel_endpoint: Some(REMOTE_NODE), encrypt: Default::default() },
        )
        .unwrap();
    ipcache.upsert(&host(REMOTE_NODE), 6).unwrap();
    let universe = Universe::new(Labels::default(), [(256, labels("client")), (257, labels("server"))], []);
    let policy = policies(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: server, namespace: shop}\nspec:\n  \
         endpointSelector: {matchLabels: {app: server}}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: client}}]\n    \
         toPorts: [{ports: [{port: \"7000\", protocol: UDP}]}]\n",
    );
    for (datapath, app) in [(&sender, "client"), (&local_receiver, "server"), (&remote_receiver, "server")] {
        datapath.apply_policy(&Default::default(), &resolve(&policy, &labels(app), &universe)).unwrap();
    }
    let mut overlay = OpenOverlay::open().unwrap();
    overlay.set_tunnel_ifindex(1).unwrap();
    let overlay = overlay.load(&ebpf_core::LoadOptions::default().pin_dir(pin_dir)).unwrap();
    let from_host = overlay.progs().from_host();
    let from_container = sender.loaded().unwrap().progs().from_container();
    let to_local = local_receiver.loaded().unwrap().progs().to_container();
    let to_remote = remote_receiver.loaded().unwrap().progs().to_container();
    let local = frame(SENDER.into(), LOCAL_RECEIVER.into(), 17, 40000, 7000);
    let remote = frame(SENDER.into(), REMOTE_RECEIVER.into(), 17, 40000, 7000);
    let host_sent = frame(Ipv4Addr::new(192, 168, 100, 11).into(), REMOTE_RECEIVER.into(), 17, 40000, 7000);
    // The mark a packet from identity 256 carries (from_container and from_overlay set it):
    // __sk_buff's len, pkt_type, mark.
    let mut marked = [0u8; 12];
    marked[8..12].copy_from_slice(&((256u32 << 16) | 0x0F00).to_ne_bytes());

    // Each program does what the path needs, and every flow is established (tracked).
    let ok = |program: &Program, data: &[u8], context: Option<&[u8]>| {
        let mut run = TestRun::with_data(data);
        run.context = context;
        run.context_out_capacity = Some(256);
        program.test_run(&run).unwrap().retval
    };
    assert_eq!(ok(from_container, &local, None), 0, "sender → local receiver allowed out");
    assert_eq!(ok(to_local, &local, None), 0, "and in");
    const TC_ACT_REDIRECT: u32 = 7;
    assert_eq!(ok(from_container, &remote, None), TC_ACT_REDIRECT, "sender → remote receiver: into the tunnel");
    assert_eq!(ok(from_container, &remote, None), TC_ACT_REDIRECT, "established, from the flow cache");
    assert_eq!(ok(from_host, &host_sent, None), TC_ACT_REDIRECT, "the host's packets too");
    assert_eq!(ok(to_remote, &remote, Some(&marked)), 0, "and in by the tunnel's identity");

    let mut group = c.benchmark_group("netstack_cross_node");
    group.bench_function("local_path", |b| {
        b.iter_custom(|iters| {
            kernel_time(from_container, &local, None, iters) + kernel_time(to_local, &local, None, iters)
        })
    });
    group.bench_function("tunnel_path", |b| {
        b.iter_custom(|iters| {
            kernel_time(from_container, &remote, None, iters) + kernel_time(to_remote, &remote, Some(&marked), iters)
        })
    });
    group.bench_function("from_host", |b| b.iter_custom(|iters| kernel_time(from_host, &host_sent, None, iters)));
    group.finish();
}

/// 1 000 identities (pods of 100 apps in 10 namespaces) and 1 000 rules that all select the
/// endpoint, each allowing a few apps on a port or a port range, some clusterwide, some denies.
fn resolution(c: &mut Criterion) {
    let mut identities = Vec::new();
    for i in 0..1000u32 {
        let pod = pod_security_labels(
            [("app", format!("app{}", i % 100).as_str()), ("shard", format!("s{}", i / 100).as_str())],
            &format!("ns{}", i % 10),
            [("team", if i % 2 == 0 { "red" } else { "blue" })],
            "default",
        );
        identities.push((256 + i, pod));
    }
    let endpoint = identities[0].1.clone();
    let mut yaml = String::new();
    for r in 0..1000 {
        let (kind, ns) = if r % 4 == 0 {
            ("CiliumClusterwideNetworkPolicy", String::new())
        } else {
            ("CiliumNetworkPolicy", "  namespace: ns0\n".to_string())
        };
        let section = if r % 10 == 9 { "ingressDeny" } else { "ingress" };
        let ports = if r % 3 == 0 {
            format!("[{{port: \"{}\", endPort: {}, protocol: TCP}}]", 8000 + r, 8000 + r + 37)
        } else {
            format!("[{{port: \"{}\", protocol: TCP}}, {{port: \"{}\", protocol: UDP}}]", 1000 + r, 2000 + r)
        };
        yaml += &format!(
            "---\napiVersion: cilium.io/v2\nkind: {kind}\nmetadata:\n  name: r{r}\n{ns}spec:\n  endpointSelector: {{matchLabels: {{app: app0}}}}\n  {section}:\n  - fromEndpoints:\n    - matchLabels: {{app: app{}}}\n    - matchExpressions: [{{key: shard, operator: In, values: [s{}, s{}]}}]\n    toPorts: [{{ports: {ports}}}]\n",
            (r * 7) % 100,
            r % 10,
            (r + 3) % 10
        );
    }
    let policies = policies(&yaml);
    assert_eq!(policies.len(), 1000);
    let universe = Universe::new(Labels::default(), identities, []);
    let state = resolve(&policies, &endpoint, &universe);
    println!("resolution: 1000 rules over 1000 identities -> {} policy map entries", state.len());
    let mut group = c.benchmark_group("netstack_policy");
    group.sample_size(20);
    group.bench_function("resolve_1000_rules_1000_identities", |b| {
        b.iter(|| black_box(resolve(black_box(&policies), &endpoint, &universe)).len())
    });
    group.finish();
}

fn north_south(c: &mut Criterion) {
    use netstack_ref::datapath::nodeport::skeleton::OpenNodeport;
    use netstack_ref::datapath::sock_lb::{skeleton::OpenSockLb, LbMaps};
    use netstack_ref::manifest::service::{ForwardingMode, L4Protocol, TrafficPolicy};
    use netstack_ref::services::catalog::{Backend, Frontend, FrontendKind};
    use netstack_ref::services::lbmap::LbWriter;
    if !can_use_bpf() {
        return;
    }
    const NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 11);
    const OTHER_NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 12);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 2);
    const LOCAL_POD: Ipv4Addr = Ipv4Addr::new(10, 200, 1, 5);
    const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 5);
    let pins = ebpf_test_support::PinDir::new("bench_north_south").expect("bpffs mounted");
    let pin_dir = pins.path();
    let options = ebpf_core::LoadOptions::default().pin_dir(pin_dir);
    // The socket LB's object makes the maps LbMaps opens (it is not attached here).
    let _sock_lb = OpenSockLb::open().unwrap().load(&options).unwrap();
    let mut open = OpenNodeport::open().unwrap();
    open.set_node_ipv4(u32::from_ne_bytes(NODE.octets())).unwrap();
    open.set_pod_cidr_ipv4(u32::from_ne_bytes([10, 200, 1, 0])).unwrap();
    open.set_pod_cidr_mask(u32::from_ne_bytes([255, 255, 255, 0])).unwrap();
    // lo stands in for the tunnel device: a test run only reports the redirect.
    open.set_tunnel_ifindex(1).unwrap();
    let nodeport = open.load(&options).unwrap();
    let ipcache = Ipcache::open(pin_dir).unwrap();
    let remote = Cidr::new(IpAddr::V4(REMOTE_POD), 32).unwrap();
    ipcache
        .set(&remote, IpcacheTarget { identity: 257, tunnel_endpoint: Some(OTHER_NODE), encrypt: Default::default() })
        .unwrap();
    let service = |name: &str, port: u16, pod: Ipv4Addr| Frontend {
        service: format!("bench/{name}"),
        port_name: String::new(),
        kind: FrontendKind::NodePort,
        address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        port,
        protocol: L4Protocol::Tcp,
        backends: vec![Backend { address: IpAddr::V4(pod), port: 8080, terminating: false, node: None }],
        local_backends: Vec::new(),
        affinity: None,
        external_policy: TrafficPolicy::Cluster,
        internal_policy: TrafficPolicy::Cluster,
        source_ranges: Vec::new(),
        forwarding_mode: ForwardingMode::Default,
    };
    let maps = LbMaps::open(pin_dir).unwrap();
    let frontends = [service("local", 30080, LOCAL_POD), service("remote", 30081, REMOTE_POD)];
    LbWriter::default().sync(&maps, &frontends, &[NODE]).unwrap();

    let program = nodeport.progs().from_external();
    let to_local = frame(CLIENT.into(), NODE.into(), 6, 40000, 30080);
    let to_remote = frame(CLIENT.into(), NODE.into(), 6, 40000, 30081);
    let no_service = frame(CLIENT.into(), NODE.into(), 6, 40000, 22);
    let mut xdp = Assembler::new();
    xdp.mov64_imm(Reg::R0, 2).exit(); // XDP_PASS
    let empty_xdp =
        Program::load(&ProgramSpec::from_assembled("bench_empty_xdp", ProgramType::Xdp, xdp.finish().unwrap()))
            .unwrap();
    let mut tc = Assembler::new();
    tc.mov64_imm(Reg::R0, 0).exit();
    let empty_tc =
        Program::load(&ProgramSpec::from_assembled("bench_empty_tc", ProgramType::SchedCls, tc.finish().unwrap()))
            .unwrap();

    // Each packet takes the path its name says; the first packet of each flow is tracked.
    let once = |program: &Program, data: &[u8]| {
        let mut run = TestRun::with_data(data);
        run.data_out_capacity = Some(data.len() + 64);
        let out = program.test_run(&run).unwrap();
        (out.retval, out.data)
    };
    const TC_ACT_REDIRECT: u32 = 7;
    let (retval, out) = once(program, &to_local);
    assert_eq!(retval, 0, "a local backend: up the stack");
    assert_eq!(&out[30..34], &LOCAL_POD.octets(), "to the pod");
    let (retval, out) = once(program, &to_remote);
    assert_eq!(retval, TC_ACT_REDIRECT, "a remote backend: into the tunnel");
    assert_eq!((&out[26..30], &out[30..34]), (&NODE.octets()[..], &REMOTE_POD.octets()[..]), "SNAT");
    assert_eq!(once(program, &no_service).0, 0, "no service: passed");
    // What follows a handshake: ACKs (a SYN always goes to conntrack, never the flow cache).
    let ack = |mut frame: Vec<u8>| {
        frame[14 + 20 + 13] = 0x10;
        frame
    };
    let (to_local, to_remote) = (ack(to_local), ack(to_remote));
    assert_eq!(once(program, &to_local).0, 0, "established, local");
    assert_eq!(once(program, &to_remote).0, TC_ACT_REDIRECT, "established, remote");

    let mut group = c.benchmark_group("netstack_north_south");
    let each = |program: &Program, data: &[u8], iters: u64| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            total += program.test_run(&TestRun::with_data(data)).unwrap().duration;
        }
        total
    };
    group.bench_function("empty_xdp", |b| b.iter_custom(|iters| each(&empty_xdp, &to_local, iters)));
    group.bench_function("empty_sched_cls", |b| b.iter_custom(|iters| each(&empty_tc, &to_local, iters)));
    group.bench_function("node_port_local_backend", |b| b.iter_custom(|iters| each(program, &to_local, iters)));
    group.bench_function("node_port_remote_backend_snat", |b| b.iter_custom(|iters| each(program, &to_remote, iters)));
    group.bench_function("no_service", |b| b.iter_custom(|iters| each(program, &no_service, iters)));
    group.finish();
}

/// The WireGuard steering on a natively routed node: a pod's established flow to another
/// node's pod in clear (the node does not encrypt) beside one the ipcache sends through the
/// WireGuard device (lo stands in: a test run only reports the redirect).
fn encryption(c: &mut Criterion) {
    if !can_use_bpf() {
        return;
    }
    const SENDER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
    const IN_CLEAR: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);
    const ENCRYPTED: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 2);
    let pins = ebpf_test_support::PinDir::new("bench_encryption").expect("bpffs mounted");
    let pin_dir = pins.path();
    let sender = EndpointDatapath::load(&EndpointConfig::detached(1, 256, SENDER), pin_dir).unwrap();
    let ipcache = Ipcache::open(pin_dir).unwrap();
    let host = |a: Ipv4Addr| Cidr::new(IpAddr::V4(a), 32).unwrap();
    ipcache.upsert(&host(SENDER), 256).unwrap();
    ipcache.upsert(&host(IN_CLEAR), 257).unwrap();
    let wireguard = IpcacheTarget { identity: 258, tunnel_endpoint: None, encrypt: Encrypt::WireGuard };
    ipcache.set(&host(ENCRYPTED), wireguard).unwrap();
    set_wireguard_ifindex(pin_dir, 1).unwrap();
    // No policy selects the sender: everything may leave.
    let universe = Universe::new(Labels::default(), [(256, labels("client"))], []);
    sender.apply_policy(&Default::default(), &resolve(&[], &labels("client"), &universe)).unwrap();
    let from_container = sender.loaded().unwrap().progs().from_container();
    let in_clear = frame(SENDER.into(), IN_CLEAR.into(), 17, 40000, 7000);
    let encrypted = frame(SENDER.into(), ENCRYPTED.into(), 17, 40000, 7000);
    let retval = |data: &[u8]| from_container.test_run(&TestRun::with_data(data)).unwrap().retval;
    const TC_ACT_REDIRECT: u32 = 7;
    for _ in 0..2 {
        // The second time from the flow cache.
        assert_eq!(retval(&in_clear), 0, "in clear: to the stack");
        assert_eq!(retval(&encrypted), TC_ACT_REDIRECT, "encrypted: into the WireGuard device");
    }
    let mut asm = Assembler::new();
    asm.mov64_imm(Reg::R0, 0).exit();
    let empty =
        Program::load(&ProgramSpec::from_assembled("bench_empty", ProgramType::SchedCls, asm.finish().unwrap()))
            .unwrap();
    let mut group = c.benchmark_group("netstack_encryption");
    group.bench_function("empty_sched_cls", |b| b.iter_custom(|iters| kernel_time(&empty, &in_clear, None, iters)));
    group.bench_function("established_in_clear", |b| {
        b.iter_custom(|iters| kernel_time(from_container, &in_clear, None, iters))
    });
    group.bench_function("established_into_wireguard", |b| {
        b.iter_custom(|iters| kernel_time(from_container, &encrypted, None, iters))
    });
    group.finish();
    drop(sender);
}

criterion_group!(benches, per_packet, cross_node, north_south, encryption, resolution);
criterion_main!(benches);
