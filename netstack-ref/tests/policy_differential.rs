//! The policy model and the datapath agree on every verdict.
//!
//! Each case is a random scene — pods in two namespaces, one to three CiliumNetworkPolicy or
//! CiliumClusterwideNetworkPolicy documents written as YAML, and one packet of a new flow
//! between the endpoint and a pod, the host or a world address. The YAML goes through the same
//! decoder, identity allocation, resolver and map writes as the agent; the packet goes through
//! the endpoint programs under BPF_PROG_TEST_RUN; the verdict (and the drop reason counted) must
//! be the model's. A failure shrinks to a small scene and prints it as YAML.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ebpf_core::program::TestRun;
use ebpf_test_support::{require_kernel, PinDir};
use netstack_ref::datapath::abi::{drop_reason, reason_name, verdict_slot};
use netstack_ref::datapath::{Conntrack, EndpointConfig, EndpointDatapath, Ipcache};
use netstack_ref::identity::{pod_security_labels, IdentityAllocator, Labels, ReservedIdentity, FIRST_LOCAL_IDENTITY};
use netstack_ref::manifest::{self, Resource};
use netstack_ref::policy::api::Cidr;
use netstack_ref::policy::model::{self, Peer, Verdict};
use netstack_ref::policy::{resolve, Direction, Policy, PolicyMapState, Universe};
use netstack_ref::traffic::frame::frame;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::cell::RefCell;

const ENDPOINT_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const ENDPOINT_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 255, 254);
const NAMESPACES: [&str; 2] = ["shop", "ops"];
const APPS: [&str; 3] = ["web", "db", "api"];
const WORLD: [&str; 7] =
    ["192.168.1.5", "192.168.1.200", "192.168.2.7", "8.8.8.8", "10.2.3.4", "2001:db8::1", "2001:db9::5"];
const CIDRS: [&str; 7] =
    ["192.168.0.0/16", "192.168.1.0/24", "8.8.8.8/32", "10.0.0.0/8", "0.0.0.0/0", "2001:db8::/32", "192.168.1.128/25"];
const ENTITIES: [&str; 6] = ["all", "world", "world-ipv4", "cluster", "host", "world-ipv6"];

#[derive(Clone, Debug)]
struct PodSpec {
    namespace: usize,
    app: usize,
    tier: Option<bool>,
}

impl PodSpec {
    fn labels(&self) -> Labels {
        let mut own = vec![("app", APPS[self.app])];
        if let Some(front) = self.tier {
            own.push(("tier", if front { "front" } else { "back" }));
        }
        let ns = NAMESPACES[self.namespace];
        let team = if self.namespace == 0 { "red" } else { "blue" };
        pod_security_labels(own, ns, [("team", team)], "default")
    }
}

fn pod_spec() -> impl Strategy<Value = PodSpec> {
    (0..2usize, 0..3usize, proptest::option::of(any::<bool>())).prop_map(|(namespace, app, tier)| PodSpec {
        namespace,
        app,
        tier,
    })
}

/// A selector written as YAML lines at `indent`.
fn selector() -> impl Strategy<Value = Vec<String>> {
    let label = prop_oneof![
        (0..3usize).prop_map(|a| format!("app: {}", APPS[a])),
        any::<bool>().prop_map(|f| format!("tier: {}", if f { "front" } else { "back" })),
        (0..2usize).prop_map(|n| format!("k8s:io.kubernetes.pod.namespace: {}", NAMESPACES[n])),
        (0..2usize).prop_map(|n| format!("io.cilium.k8s.namespace.labels.team: {}", ["red", "blue"][n])),
    ];
    let expression = prop_oneof![
        (0..3usize).prop_map(|a| format!("{{key: app, operator: In, values: [{}]}}", APPS[a])),
        (0..3usize).prop_map(|a| format!("{{key: app, operator: NotIn, values: [{}, api]}}", APPS[a])),
        Just("{key: tier, operator: Exists}".to_string()),
        Just("{key: tier, operator: DoesNotExist}".to_string()),
    ];
    (proptest::collection::vec(label, 0..3), proptest::option::of(expression)).prop_map(|(labels, expr)| {
        let mut out = Vec::new();
        if !labels.is_empty() {
            out.push("matchLabels:".to_string());
            out.extend(labels.into_iter().map(|l| format!("  {l}")));
        }
        if let Some(e) = expr {
            out.push("matchExpressions:".to_string());
            out.push(format!("  - {e}"));
        }
        if out.is_empty() {
            out.push("{}".to_string());
        }
        out
    })
}

fn block(lines: &[String], indent: usize, first_prefix: &str) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        if i == 0 {
            out += &format!("{pad}{first_prefix}{l}\n");
        } else {
            out += &format!("{pad}{}{l}\n", " ".repeat(first_prefix.len()));
        }
    }
    out
}

/// One peer rule, as YAML list item text at `indent`, for a section of `direction`/`deny`.
fn peer_rule(direction: Direction, deny: bool) -> impl Strategy<Value = String> {
    let p = if direction == Direction::Ingress { "from" } else { "to" };
    let peers = prop_oneof![
        Just(String::new()),
        proptest::collection::vec(selector(), 1..3).prop_map(move |sels| {
            let mut s = format!("{p}Endpoints:\n");
            for sel in sels {
                s += &block(&sel, 2, "- ");
            }
            s
        }),
        proptest::collection::vec((0..CIDRS.len(), proptest::option::of(0..CIDRS.len())), 1..3).prop_map(move |cs| {
            let mut s = format!("{p}CIDRSet:\n");
            for (c, except) in cs {
                s += &format!("- cidr: {}\n", CIDRS[c]);
                let outer = Cidr::parse(CIDRS[c]).unwrap();
                if let Some(e) = except.map(|e| CIDRS[e]).filter(|e| {
                    let inner = Cidr::parse(e).unwrap();
                    outer.covers(&inner) && inner != outer
                }) {
                    s += &format!("  except: [{e}]\n");
                }
            }
            s
        }),
        proptest::collection::vec(0..ENTITIES.len(), 1..3).prop_map(move |es| format!(
            "{p}Entities: [{}]\n",
            es.iter().map(|&e| ENTITIES[e]).collect::<Vec<_>>().join(", ")
        )),
    ];
    let port = prop_oneof![
        (prop::sample::select(vec![80u16, 443, 53, 8080]), prop::sample::select(vec!["TCP", "UDP", "SCTP", "ANY"]))
            .prop_map(|(port, proto)| format!("{{port: \"{port}\", protocol: {proto}}}")),
        prop::sample::select(vec!["TCP", "UDP"])
            .prop_map(|proto| format!("{{port: \"8000\", endPort: 8090, protocol: {proto}}}")),
        Just("{port: \"0\", protocol: ICMP}".to_string()),
        Just("{protocol: VRRP}".to_string()),
        Just("{port: \"0\", protocol: TCP}".to_string()),
    ];
    let ports = proptest::option::of(proptest::collection::vec(port, 1..3));
    let icmps = proptest::option::of(prop::sample::select(vec![(8u8, "IPv4"), (0, "IPv4"), (128, "IPv6")]));
    let requires = if deny { Just(None).boxed() } else { proptest::option::weighted(0.15, selector()).boxed() };
    (peers, ports, icmps, requires).prop_map(move |(peers, ports, icmps, requires)| {
        let mut body = peers;
        // Cilium refuses a rule with both toPorts and icmps.
        if let Some(ports) = ports {
            body += &format!("toPorts:\n- ports: [{}]\n", ports.join(", "));
        } else if let Some((t, family)) = icmps {
            body += &format!("icmps:\n- fields: [{{type: {t}, family: {family}}}]\n");
        }
        if let Some(req) = requires {
            body += &format!("{p}Requires:\n");
            body += &block(&req, 2, "- ");
        }
        if body.is_empty() {
            "- {}\n".to_string()
        } else {
            let lines: Vec<String> = body.lines().map(str::to_string).collect();
            block(&lines, 0, "- ")
        }
    })
}

fn section(name: &'static str, direction: Direction, deny: bool) -> impl Strategy<Value = Option<String>> {
    proptest::option::weighted(0.45, proptest::collection::vec(peer_rule(direction, deny), 1..3))
        .prop_map(move |rules| rules.map(|r| format!("{name}:\n{}", r.concat())))
}

fn rule() -> impl Strategy<Value = String> {
    (
        selector(),
        section("ingress", Direction::Ingress, false),
        section("egress", Direction::Egress, false),
        section("ingressDeny", Direction::Ingress, true),
        section("egressDeny", Direction::Egress, true),
        proptest::option::weighted(0.15, (any::<bool>(), any::<bool>())),
    )
        .prop_map(|(subject, ingress, egress, ingress_deny, egress_deny, default_deny)| {
            // Cilium refuses a rule without any section: such a rule gets an empty ingress.
            let ingress = match (&ingress, &egress, &ingress_deny, &egress_deny) {
                (None, None, None, None) => Some("ingress:\n- {}\n".to_string()),
                _ => ingress,
            };
            let mut s = block(&subject, 0, "endpointSelector: ");
            if subject.len() > 1 || subject[0] != "{}" {
                s = format!("endpointSelector:\n{}", block(&subject, 2, ""));
            }
            for sec in [ingress, egress, ingress_deny, egress_deny].into_iter().flatten() {
                s += &sec;
            }
            if let Some((i, e)) = default_deny {
                s += &format!("enableDefaultDeny: {{ingress: {i}, egress: {e}}}\n");
            }
            s
        })
}

fn policy_doc(index: usize) -> impl Strategy<Value = String> {
    (any::<bool>(), 0..2usize, proptest::collection::vec(rule(), 1..3)).prop_map(move |(clusterwide, ns, rules)| {
        let (kind, meta) = if clusterwide {
            ("CiliumClusterwideNetworkPolicy", format!("metadata:\n  name: p{index}\n"))
        } else {
            ("CiliumNetworkPolicy", format!("metadata:\n  name: p{index}\n  namespace: {}\n", NAMESPACES[ns]))
        };
        let mut s = format!("apiVersion: cilium.io/v2\nkind: {kind}\n{meta}specs:\n");
        for r in rules {
            let lines: Vec<String> = r.lines().map(str::to_string).collect();
            s += &block(&lines, 0, "- ");
        }
        s
    })
}

#[derive(Clone, Debug)]
enum PeerChoice {
    Pod(usize),
    Host,
    World(usize),
}

#[derive(Clone)]
struct Scene {
    endpoint: PodSpec,
    pods: Vec<PodSpec>,
    policies: Vec<String>,
    direction: Direction,
    peer: PeerChoice,
    protocol: u8,
    port: u16,
}

/// Scenes print as the YAML a person would write, so a shrunk failure reads at a glance.
impl std::fmt::Debug for Scene {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "endpoint {ENDPOINT_IP}: {}", self.endpoint.labels())?;
        for (i, pod) in self.pods.iter().enumerate() {
            writeln!(f, "pod {}: {}", pod_ip(i), pod.labels())?;
        }
        for doc in &self.policies {
            writeln!(f, "---\n{}", doc.trim_end())?;
        }
        writeln!(f, "---")?;
        write!(
            f,
            "packet: {:?} peer {:?} protocol {} port/type {}",
            self.direction, self.peer, self.protocol, self.port
        )
    }
}

fn scene() -> impl Strategy<Value = Scene> {
    (
        pod_spec(),
        proptest::collection::vec(pod_spec(), 1..4),
        (0..4usize).prop_flat_map(|n| (0..n).map(policy_doc).collect::<Vec<_>>()),
        prop_oneof![Just(Direction::Ingress), Just(Direction::Egress)],
        prop_oneof![
            (0..3usize).prop_map(PeerChoice::Pod),
            Just(PeerChoice::Host),
            (0..WORLD.len()).prop_map(PeerChoice::World)
        ],
        prop::sample::select(vec![6u8, 17, 132, 1, 112]),
        prop::sample::select(vec![80u16, 443, 53, 8085, 22]),
        prop::sample::select(vec![8u16, 0, 13]),
    )
        .prop_map(|(endpoint, pods, policies, direction, peer, protocol, port, icmp_type)| {
            let peer = match peer {
                PeerChoice::Pod(i) => PeerChoice::Pod(i % pods.len()),
                other => other,
            };
            let port = match protocol {
                1 => icmp_type,
                112 => 0,
                _ => port,
            };
            Scene { endpoint, pods, policies, direction, peer, protocol, port }
        })
}

fn pod_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, 0, 10 + i as u8)
}

struct Harness {
    _pins: PinDir,
    datapath: EndpointDatapath,
    ipcache: Ipcache,
    shared: std::path::PathBuf,
    state: PolicyMapState,
    ipcache_entries: Vec<Cidr>,
}

impl Harness {
    fn new(pins: PinDir) -> Harness {
        let shared = pins.path().to_path_buf();
        let config = EndpointConfig { ipv6: Some(ENDPOINT_IP6), ..EndpointConfig::detached(7, 0, ENDPOINT_IP) };
        let datapath = EndpointDatapath::load(&config, &shared).expect("endpoint object loads");
        let ipcache = Ipcache::open(&shared).unwrap();
        Harness {
            _pins: pins,
            datapath,
            ipcache,
            shared,
            state: PolicyMapState::default(),
            ipcache_entries: Vec::new(),
        }
    }

    fn count(&self, direction: Direction, reason: drop_reason) -> u64 {
        let array = self.datapath.loaded().unwrap().maps().verdicts().unwrap();
        let values = array.get(&verdict_slot(direction, reason)).unwrap().unwrap();
        values.iter().map(|v| v.packets).sum()
    }

    fn run(&mut self, scene: &Scene) -> Result<(), TestCaseError> {
        let mut policies: Vec<Policy> = Vec::new();
        for (i, doc) in scene.policies.iter().enumerate() {
            let parsed = manifest::parse(Path::new(&format!("p{i}.yaml")), doc)
                .map_err(|e| TestCaseError::fail(format!("generated YAML refused: {e}\n{doc}")))?;
            for r in parsed {
                if let Resource::Policy(p) = r {
                    policies.push(p);
                }
            }
        }
        let mut ids = IdentityAllocator::new();
        let endpoint_labels = scene.endpoint.labels();
        let mut endpoints = vec![(ids.allocate(&endpoint_labels).get(), endpoint_labels.clone())];
        let mut ipcache: Vec<(Cidr, u32)> =
            vec![(Cidr::parse(&HOST_IP.to_string()).unwrap(), ReservedIdentity::Host.id())];
        ipcache.push((Cidr::parse(&ENDPOINT_IP.to_string()).unwrap(), endpoints[0].0));
        for (i, pod) in scene.pods.iter().enumerate() {
            let labels = pod.labels();
            let id = ids.allocate(&labels).get();
            endpoints.push((id, labels));
            ipcache.push((Cidr::parse(&pod_ip(i).to_string()).unwrap(), id));
        }
        let cidrs: BTreeSet<Cidr> = policies.iter().flat_map(|p| p.cidrs()).collect();
        let cidr_ids: Vec<(u32, Cidr)> =
            cidrs.iter().enumerate().map(|(i, c)| (FIRST_LOCAL_IDENTITY + i as u32, *c)).collect();
        for (id, c) in &cidr_ids {
            ipcache.push((*c, *id));
        }
        let node_labels = Labels::from_pairs([("kubernetes.io/hostname", "node-1")]);
        let universe = Universe::new(node_labels.clone(), endpoints.clone(), cidr_ids.clone());

        let state = resolve(&policies, &endpoint_labels, &universe);
        self.datapath.apply_policy(&self.state, &state).unwrap();
        self.state = state;
        for old in self.ipcache_entries.drain(..) {
            self.ipcache.remove(&old).unwrap();
        }
        for (c, id) in &ipcache {
            self.ipcache.upsert(c, *id).unwrap();
        }
        self.ipcache_entries = ipcache.iter().map(|(c, _)| *c).collect();

        let (peer, peer_ip): (Peer, IpAddr) = match scene.peer {
            PeerChoice::Pod(i) => (Peer::Pod(scene.pods[i].labels()), pod_ip(i).into()),
            PeerChoice::Host => (Peer::Host, HOST_IP.into()),
            PeerChoice::World(i) => {
                let a: IpAddr = WORLD[i].parse().unwrap();
                (Peer::World(a), a)
            }
        };
        let protocol = if peer_ip.is_ipv6() && scene.protocol == 1 { 58 } else { scene.protocol };
        let port = if protocol == 58 && scene.port == 8 { 128 } else { scene.port };
        let me: IpAddr = if peer_ip.is_ipv6() { ENDPOINT_IP6.into() } else { ENDPOINT_IP.into() };
        let expected = model::verdict(
            &policies,
            &endpoint_labels,
            &peer,
            model::Packet { direction: scene.direction, protocol, port },
            &node_labels,
            true,
        );
        let progs = self.datapath.loaded().unwrap().progs();
        let (src, dst, program) = match scene.direction {
            Direction::Egress => (me, peer_ip, progs.from_container()),
            Direction::Ingress => (peer_ip, me, progs.to_container()),
        };
        let (want_ret, reason) = match expected {
            Verdict::Allowed => (0, drop_reason::REASON_FORWARDED),
            Verdict::NotAllowed => (2, drop_reason::REASON_POLICY_DENIED),
            Verdict::Denied => (2, drop_reason::REASON_POLICY_DENY),
        };
        let before = self.count(scene.direction, reason);
        let data = frame(src, dst, protocol, 40000, port);
        let result = program.test_run(&TestRun::with_data(&data)).unwrap();
        let after = self.count(scene.direction, reason);
        // Every case is a new flow: forget what this one left in conntrack.
        Conntrack::open(&self.shared).unwrap().clear().unwrap();
        prop_assert_eq!(
            (result.retval, after - before),
            (want_ret, 1),
            "model says {:?} ({}) for {:?} {:?} proto {} port {}\npolicy map:\n{}",
            expected,
            reason_name(reason),
            scene.direction,
            peer_ip,
            protocol,
            port,
            self.state.iter().map(|(k, v)| format!("  {k:?} {v:?}\n")).collect::<String>()
        );
        Ok(())
    }
}

#[test]
fn model_and_datapath_agree_on_every_verdict() {
    let Some(_root) = require_kernel() else { return };
    let pins = PinDir::new("differential").expect("bpffs");
    let harness = RefCell::new(Harness::new(pins));
    let cases = std::env::var("DIFFERENTIAL_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(5000);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let result = runner.run(&scene(), |scene| harness.borrow_mut().run(&scene));
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn generated_scenes_cover_every_verdict() {
    // Guards the generator: a differential test whose cases all allow proves little.
    let mut runner = TestRunner::deterministic();
    let mut seen = BTreeSet::new();
    for _ in 0..2000 {
        let scene = scene().new_tree(&mut runner).unwrap().current();
        let mut policies = Vec::new();
        for doc in &scene.policies {
            for r in manifest::parse(Path::new("g.yaml"), doc).unwrap() {
                if let Resource::Policy(p) = r {
                    policies.push(p);
                }
            }
        }
        let peer = match scene.peer {
            PeerChoice::Pod(i) => Peer::Pod(scene.pods[i].labels()),
            PeerChoice::Host => Peer::Host,
            PeerChoice::World(i) => Peer::World(WORLD[i].parse().unwrap()),
        };
        let packet = model::Packet { direction: scene.direction, protocol: scene.protocol, port: scene.port };
        let node = Labels::from_pairs([("kubernetes.io/hostname", "node-1")]);
        seen.insert(format!("{:?}", model::verdict(&policies, &scene.endpoint.labels(), &peer, packet, &node, true)));
    }
    assert_eq!(seen.len(), 3, "verdicts seen: {seen:?}");
}
