//! Flow events under sustained load, at default settings (medium aggregation, the 4 MiB ring,
//! the agent's flow collector): an endpoint program is handed 10 000 new connections a second
//! for a minute (`NETSTACK_FLOW_LOAD_SECONDS` shortens it), each giving a policy verdict and a
//! trace event; every event produced is received and stored, none lost.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ebpf_core::program::TestRun;
use ebpf_test_support::{eventually, require_kernel, PinDir};
use netstack_ref::agent::flows::{boot_to_wall, FlowCollector};
use netstack_ref::datapath::{EndpointConfig, EndpointDatapath, Ipcache};
use netstack_ref::identity::pod_security_labels;
use netstack_ref::manifest::{self, Resource};
use netstack_ref::observe::decode::{Enrichment, PodInfo};
use netstack_ref::observe::metrics::Metrics;
use netstack_ref::observe::ring::{FlowRing, DEFAULT_CAPACITY};
use netstack_ref::policy::api::Cidr;
use netstack_ref::policy::{resolve, Universe};
use netstack_ref::traffic::frame::frame;

const ENDPOINT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const FLOWS_PER_SECOND: u64 = 10_000;
/// Events each new allowed connection gives at the endpoint's ingress: its policy verdict and
/// the trace of its start.
const EVENTS_PER_FLOW: u64 = 2;

#[test]
fn ten_thousand_new_flows_a_second_for_a_minute_lose_no_event() {
    let Some(_root) = require_kernel() else { return };
    let seconds: u64 = std::env::var("NETSTACK_FLOW_LOAD_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let pins = PinDir::new("flow_load").expect("bpffs mounted");
    let datapath = EndpointDatapath::load(&EndpointConfig::detached(1, 256, ENDPOINT), pins.path()).unwrap();
    let ipcache = Ipcache::open(pins.path()).unwrap();
    ipcache.upsert(&Cidr::new(IpAddr::V4(ENDPOINT), 32).unwrap(), 256).unwrap();
    // The clients: a /16 of identity 257, allowed on TCP/80.
    ipcache.upsert(&Cidr::parse("10.2.0.0/16").unwrap(), 257).unwrap();
    let labels = |app| pod_security_labels([("app", app)], "shop", [], "default");
    let universe = Universe::new(Default::default(), [(256, labels("web")), (257, labels("client"))], []);
    let policy: Vec<_> = manifest::parse(
        Path::new("load.yaml"),
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: web, namespace: shop}\nspec:\n  \
         endpointSelector: {matchLabels: {app: web}}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: client}}]\n    \
         toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n",
    )
    .unwrap()
    .into_iter()
    .filter_map(|r| if let Resource::Policy(p) = r { Some(p) } else { None })
    .collect();
    datapath.apply_policy(&Default::default(), &resolve(&policy, &labels("web"), &universe)).unwrap();

    let ring = Arc::new(FlowRing::new(DEFAULT_CAPACITY).unwrap());
    let metrics = Arc::new(Metrics::new());
    let enrichment = Enrichment {
        node_name: "load".into(),
        boot_to_wall: boot_to_wall(),
        pods: [(
            IpAddr::V4(ENDPOINT),
            PodInfo { endpoint_id: Some(1), namespace: "shop".into(), name: "web".into(), identity: 256 },
        )]
        .into(),
        ..Default::default()
    };
    let collector =
        FlowCollector::start(pins.path().to_path_buf(), Arc::clone(&ring), enrichment, Arc::clone(&metrics));

    let program = datapath.loaded().unwrap().progs().to_container();
    let started = Instant::now();
    let total = FLOWS_PER_SECOND * seconds;
    let mut sent = 0u64;
    // 100 new connections every 10 ms, each from its own client address and port.
    while sent < total {
        let due = started + Duration::from_millis(sent / 100 * 10);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        for i in sent..(sent + 100).min(total) {
            let client = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 2, 0, 0)) + (i / 50_000) as u32 + 1);
            let packet = frame(client.into(), ENDPOINT.into(), 6, 10_000 + (i % 50_000) as u16, 80);
            assert_eq!(program.test_run(&TestRun::with_data(&packet)).unwrap().retval, 0, "connection {i} allowed");
        }
        sent = (sent + 100).min(total);
    }
    let elapsed = started.elapsed();
    let produced = sent * EVENTS_PER_FLOW;
    let caught_up =
        eventually(Duration::from_secs(10), || collector.counters().0 + collector.lost_in_datapath() >= produced);
    let (received, undecodable) = collector.counters();
    let lost = collector.lost_in_datapath();
    eprintln!(
        "{sent} new flows in {:.1} s ({:.0}/s): {produced} events produced, {received} received, {lost} lost in the \
         datapath, {undecodable} undecodable, {} stored",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64(),
        ring.written()
    );
    assert!(caught_up, "the collector caught up: {received} of {produced}");
    assert_eq!(received + lost, produced, "produced = received + counted drops");
    assert_eq!((lost, undecodable), (0, 0), "at default settings nothing is lost");
    assert_eq!(ring.written(), received, "every event stored as a flow");
    assert!(
        elapsed < Duration::from_secs(seconds) + Duration::from_secs(seconds / 10 + 1),
        "the rate held: {elapsed:?}"
    );
}
