//! Established flows under BPF_PROG_TEST_RUN: the per-CPU flow cache in front of conntrack
//! passes them without a policy lookup, every packet ends up counted in its conntrack entry
//! (within a quarter second, or at once when the cache slot goes to another flow), and deleting
//! conntrack entries ends cached flows at once — their next packet meets policy again.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use ebpf_core::program::TestRun;
use ebpf_test_support::{require_kernel, PinDir};
use netstack_ref::datapath::abi::{ct_closing, ct_entry, drop_reason, verdict_slot, FLOW_CACHE_BITS};
use netstack_ref::datapath::{Conntrack, CtLifetimes, EndpointConfig, EndpointDatapath, Ipcache, JiffiesClock};
use netstack_ref::identity::{pod_security_labels, Labels};
use netstack_ref::manifest::{self, Resource};
use netstack_ref::policy::api::Cidr;
use netstack_ref::policy::{resolve, Direction, Policy, PolicyMapState, Universe};
use netstack_ref::traffic::frame::frame;

const ENDPOINT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const TCP: u8 = 6;
const PASS: u32 = 0;
const DROP: u32 = 2;
/// Longer than the datapath's confirmation interval (CONFIG_HZ / 4 jiffies).
const PAST_REFRESH: Duration = Duration::from_millis(400);

fn labels(app: &str) -> Labels {
    pod_security_labels([("app", app)], "shop", [], "default")
}

fn policy_state(section: &str) -> PolicyMapState {
    let text = format!(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: web, namespace: shop}}\nspec:\n  \
         endpointSelector: {{matchLabels: {{app: web}}}}\n  {section}:\n  - fromEndpoints: [{{matchLabels: {{app: client}}}}]\n    \
         toPorts: [{{ports: [{{port: \"80\", protocol: TCP}}]}}]\n"
    );
    let policies: Vec<Policy> = manifest::parse(Path::new("web.yaml"), &text)
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            Resource::Policy(p) => Some(p),
            _ => None,
        })
        .collect();
    let universe = Universe::new(Labels::default(), [(256, labels("web")), (257, labels("client"))], []);
    resolve(&policies, &labels("web"), &universe)
}

/// One endpoint whose ingress policy allows TCP 80 from the client; the test thread stays on
/// one CPU, so every packet meets the same flow cache.
struct Scene {
    pins: PinDir,
    datapath: EndpointDatapath,
    conntrack: Conntrack,
    policy: PolicyMapState,
}

impl Scene {
    fn new(name: &str) -> Scene {
        let mut cpu = nix::sched::CpuSet::new();
        cpu.set(0).unwrap();
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpu).unwrap();
        let pins = PinDir::new(name).expect("bpffs");
        let datapath = EndpointDatapath::load(&EndpointConfig::detached(1, 256, ENDPOINT), pins.path())
            .expect("endpoint object loads");
        let ipcache = Ipcache::open(pins.path()).unwrap();
        ipcache.upsert(&Cidr::new(IpAddr::V4(ENDPOINT), 32).unwrap(), 256).unwrap();
        ipcache.upsert(&Cidr::new(IpAddr::V4(CLIENT), 32).unwrap(), 257).unwrap();
        let policy = policy_state("ingress");
        datapath.apply_policy(&PolicyMapState::default(), &policy).unwrap();
        let conntrack = Conntrack::open(pins.path()).unwrap();
        Scene { pins, datapath, conntrack, policy }
    }

    fn send(&self, to_container: bool, frame: &[u8]) -> u32 {
        let progs = self.datapath.loaded().unwrap().progs();
        let program = if to_container { progs.to_container() } else { progs.from_container() };
        program.test_run(&TestRun::with_data(frame)).unwrap().retval
    }

    /// Client → endpoint on port 80 from `sport`: what `to_container` sees.
    fn request(&self, sport: u16) -> u32 {
        self.send(true, &frame(CLIENT.into(), ENDPOINT.into(), TCP, sport, 80))
    }

    /// Endpoint → client, the reply of `request(sport)`: what `from_container` sees.
    fn reply(&self, sport: u16) -> u32 {
        self.send(false, &frame(ENDPOINT.into(), CLIENT.into(), TCP, 80, sport))
    }

    fn entry(&self, sport: u16) -> ct_entry {
        let entries = self.conntrack.entries().unwrap();
        let found: Vec<_> =
            entries.iter().filter(|(k, _)| k.sport == sport.to_be() && k.dport == 80u16.to_be()).collect();
        assert_eq!(found.len(), 1, "one conntrack entry for client port {sport}: {entries:?}");
        found[0].1
    }

    fn forwarded(&self, direction: Direction) -> u64 {
        self.verdict(direction, drop_reason::REASON_FORWARDED)
    }

    fn verdict(&self, direction: Direction, reason: drop_reason) -> u64 {
        let array = self.datapath.loaded().unwrap().maps().verdicts().unwrap();
        array.get(&verdict_slot(direction, reason)).unwrap().unwrap().iter().map(|v| v.packets).sum()
    }
}

/// The datapath's slot index of a client → endpoint packet (endpoint.c, flow_slot_at): the
/// words as the program loads them from the packet, on this little-endian machine.
fn slot_of_request(sport: u16) -> u32 {
    let word = |a: Ipv4Addr| u32::from_le_bytes(a.octets());
    let port = |p: u16| u16::from_le_bytes(p.to_be_bytes()) as u32;
    let ports = (port(sport) << 16) | port(80);
    (word(CLIENT) ^ word(ENDPOINT) ^ ports ^ TCP as u32).wrapping_mul(0x9e37_79b1) >> (32 - FLOW_CACHE_BITS)
}

#[test]
fn cached_packets_reach_their_conntrack_entry() {
    let Some(_root) = require_kernel() else { return };
    let scene = Scene::new("ct_counts");

    assert_eq!(scene.request(40000), PASS, "the first packet is allowed by policy");
    assert_eq!(scene.entry(40000).packets, 1);
    for _ in 0..10 {
        assert_eq!(scene.request(40000), PASS);
    }
    // The second packet confirmed the flow in conntrack and took a cache slot; the nine after
    // it passed on the slot and are not in the entry yet.
    assert_eq!(scene.entry(40000).packets, 2);
    assert_eq!(scene.forwarded(Direction::Ingress), 11, "every packet is counted as forwarded at once");
    std::thread::sleep(PAST_REFRESH);
    assert_eq!(scene.request(40000), PASS);
    assert_eq!(scene.entry(40000).packets, 12, "a stale slot is confirmed again, carrying its packets");

    for _ in 0..6 {
        assert_eq!(scene.reply(40000), PASS, "replies pass");
    }
    std::thread::sleep(PAST_REFRESH);
    assert_eq!(scene.reply(40000), PASS);
    let entry = scene.entry(40000);
    assert_eq!((entry.packets, entry.reply_packets), (12, 7), "replies are counted as replies");
    assert_eq!(scene.forwarded(Direction::Egress), 7);
}

#[test]
fn a_slot_taken_by_another_flow_hands_its_packets_over() {
    let Some(_root) = require_kernel() else { return };
    let scene = Scene::new("ct_collide");
    let cache = scene.datapath.loaded().unwrap().maps().flow_cache_map();
    assert_eq!(cache.max_entries(), 1 << FLOW_CACHE_BITS, "the generated constant and the map agree on the cache size");
    let first = 40000;
    let second = (40001..u16::MAX).find(|&p| slot_of_request(p) == slot_of_request(first)).unwrap();

    for _ in 0..5 {
        assert_eq!(scene.request(first), PASS);
    }
    assert_eq!(scene.entry(first).packets, 2, "three packets wait in the slot");
    assert_eq!(scene.request(second), PASS, "a new flow is decided by policy, not by the slot");
    assert_eq!(scene.request(second), PASS);
    assert_eq!(scene.entry(first).packets, 5, "the second flow took the slot and flushed the first's packets");
    assert_eq!(scene.request(first), PASS, "the first flow is still established");
    assert_eq!(scene.entry(first).packets, 6);
}

#[test]
fn deleting_conntrack_entries_ends_cached_flows_at_once() {
    let Some(_root) = require_kernel() else { return };
    let scene = Scene::new("ct_epoch");
    for _ in 0..3 {
        assert_eq!(scene.request(40000), PASS);
    }
    // Deny the client: the established flow keeps passing, as established flows do.
    let deny = policy_state("ingressDeny");
    scene.datapath.apply_policy(&scene.policy, &deny).unwrap();
    assert_eq!(scene.request(40000), PASS, "an established flow survives a policy change");
    assert_eq!(scene.verdict(Direction::Ingress, drop_reason::REASON_POLICY_DENY), 0);

    assert_eq!(scene.conntrack.clear().unwrap(), 1);
    assert_eq!(scene.request(40000), DROP, "without its conntrack entry the flow meets the deny");
    assert_eq!(scene.verdict(Direction::Ingress, drop_reason::REASON_POLICY_DENY), 1);
    assert!(scene.conntrack.entries().unwrap().is_empty(), "a denied packet is not tracked");
}

#[test]
fn an_endpoints_connections_can_be_forgotten_alone() {
    let Some(_root) = require_kernel() else { return };
    let scene = Scene::new("ct_forget");
    let other_ip = Ipv4Addr::new(10, 1, 0, 5);
    let other = EndpointDatapath::load(&EndpointConfig::detached(2, 256, other_ip), scene.pins.path())
        .expect("second endpoint loads");
    other.apply_policy(&PolicyMapState::default(), &scene.policy).unwrap();
    assert_eq!(scene.request(40000), PASS);
    let to_other = frame(CLIENT.into(), other_ip.into(), TCP, 40000, 80);
    let to_other_container = other.loaded().unwrap().progs().to_container();
    assert_eq!(to_other_container.test_run(&TestRun::with_data(&to_other)).unwrap().retval, PASS);
    assert_eq!(scene.conntrack.entries().unwrap().len(), 2);

    // What the agent does when it removes endpoint 1.
    assert_eq!(scene.conntrack.remove_where(|k, _| k.endpoint_id == 1).unwrap().removed, 1);
    let left = scene.conntrack.entries().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0.endpoint_id, 2, "endpoint 2's connection stays");
}

#[test]
fn garbage_collection_forgets_idle_connections() {
    let Some(_root) = require_kernel() else { return };
    let scene = Scene::new("ct_gc");
    let clock = JiffiesClock::new().expect("jiffies clock");
    let before = clock.now().unwrap();
    assert_eq!(scene.request(40000), PASS);
    std::thread::sleep(Duration::from_millis(200));
    let now = clock.now().unwrap();
    let last_seen = scene.entry(40000).last_seen;
    assert!(before <= last_seen && last_seen < now, "last_seen {last_seen} between {before} and {now}");
    let elapsed = now - before;
    assert!((clock.hz() / 10..=clock.hz()).contains(&elapsed), "200 ms is {elapsed} jiffies at HZ {}", clock.hz());

    let collect =
        |lifetimes: &CtLifetimes| scene.conntrack.collect_garbage(clock.now().unwrap(), clock.hz(), lifetimes);
    let pass = collect(&CtLifetimes::default()).unwrap();
    assert_eq!((pass.removed, pass.kept), (0, 1), "a connection idle for 200 ms stays");
    let short = CtLifetimes { tcp_syn: Duration::ZERO, ..CtLifetimes::default() };
    assert_eq!(collect(&short).unwrap().removed, 1, "a TCP connection without a reply, idle past its lifetime, goes");
    assert!(scene.conntrack.entries().unwrap().is_empty());
    assert_eq!(scene.request(40000), PASS, "its next packet is a new flow, allowed by policy again");
    assert_eq!(scene.entry(40000).packets, 1);
}

/// `frame` with its TCP flags replaced (Ethernet 14 + IPv4 20 + 13).
fn with_tcp_flags(mut frame: Vec<u8>, flags: u8) -> Vec<u8> {
    frame[14 + 20 + 13] = flags;
    frame
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;

#[test]
fn a_tcp_fin_closes_the_connection_and_a_new_syn_meets_policy_again() {
    let Some(_root) = require_kernel() else { return };
    let scene = Scene::new("ct_fin");
    let client = |flags: u8| {
        let f = with_tcp_flags(frame(CLIENT.into(), ENDPOINT.into(), TCP, 40000, 80), flags);
        scene.send(true, &f)
    };
    let server = |flags: u8| {
        let f = with_tcp_flags(frame(ENDPOINT.into(), CLIENT.into(), TCP, 80, 40000), flags);
        scene.send(false, &f)
    };
    assert_eq!((client(SYN), server(SYN | ACK), client(ACK)), (PASS, PASS, PASS));
    for _ in 0..5 {
        assert_eq!(client(ACK), PASS);
    }
    let (key, entry) = scene.conntrack.entries().unwrap()[0];
    assert_eq!(entry.flags, 0);
    assert_eq!(CtLifetimes::default().of(&key, &entry), Duration::from_secs(6 * 3600), "established");

    assert_eq!(client(FIN | ACK), PASS, "a FIN of an allowed connection passes");
    let entry = scene.entry(40000);
    assert!(ct_closing(&entry), "flags {:#x}", entry.flags);
    assert_eq!(entry.packets, 8, "the FIN went to conntrack, carrying the packets the cache passed");
    assert_eq!(CtLifetimes::default().of(&key, &entry), Duration::from_secs(10), "closing");
    assert_eq!(client(ACK), PASS);
    assert_eq!(scene.entry(40000).packets, 9, "a closing connection stays out of the cache");

    // Deny the client: a new SYN on the closed connection's tuple is a new connection.
    scene.datapath.apply_policy(&scene.policy, &policy_state("ingressDeny")).unwrap();
    assert_eq!(server(FIN | ACK), PASS, "the rest of the old connection still passes");
    assert_eq!(client(SYN), DROP, "a new SYN meets the deny");
    assert_eq!(scene.verdict(Direction::Ingress, drop_reason::REASON_POLICY_DENY), 1);
}
