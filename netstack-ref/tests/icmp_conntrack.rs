//! ICMP under conntrack, with BPF_PROG_TEST_RUN: a query's reply passes a default-deny as part
//! of the connection its request opened, a request in the other direction never does (Cilium
//! advisory GHSA-c66w-hq56-4q97), and an ICMP error passes only when the header it quotes is a
//! tracked connection's — for IPv4 and IPv6, whichever side sends it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ebpf_core::program::TestRun;
use ebpf_test_support::{require_kernel, PinDir};
use netstack_ref::datapath::{EndpointConfig, EndpointDatapath, Ipcache};
use netstack_ref::identity::{pod_security_labels, Labels};
use netstack_ref::manifest::{self, Resource};
use netstack_ref::policy::api::Cidr;
use netstack_ref::policy::{resolve, PolicyMapState, Universe};
use netstack_ref::traffic::frame::frame;

const ME4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const PEER4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const ROUTER4: Ipv4Addr = Ipv4Addr::new(10, 9, 9, 9);
const ME6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
const PEER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const PASS: u32 = 0;
const DROP: u32 = 2;
const UDP: u8 = 17;

fn labels(app: &str) -> Labels {
    pod_security_labels([("app", app)], "shop", [], "default")
}

/// The endpoint (app=web) under a policy of `sections` (YAML under `spec:`), its peer at
/// identity 257 on both families.
struct Scene {
    _pins: PinDir,
    datapath: EndpointDatapath,
}

impl Scene {
    fn new(name: &str, sections: &str) -> Scene {
        let pins = PinDir::new(name).expect("bpffs");
        let config = EndpointConfig { ipv6: Some(ME6), ..EndpointConfig::detached(1, 256, ME4) };
        let datapath = EndpointDatapath::load(&config, pins.path()).expect("endpoint object loads");
        let ipcache = Ipcache::open(pins.path()).unwrap();
        for (addr, id) in [(IpAddr::V4(ME4), 256), (IpAddr::V6(ME6), 256), (PEER4.into(), 257), (PEER6.into(), 257)] {
            ipcache.upsert(&Cidr::new(addr, if addr.is_ipv4() { 32 } else { 128 }).unwrap(), id).unwrap();
        }
        let text = format!(
            "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: web, namespace: shop}}\nspec:\n  \
             endpointSelector: {{matchLabels: {{app: web}}}}\n{sections}"
        );
        let policies: Vec<_> = manifest::parse(Path::new("web.yaml"), &text)
            .unwrap()
            .into_iter()
            .filter_map(|r| if let Resource::Policy(p) = r { Some(p) } else { None })
            .collect();
        let universe = Universe::new(Labels::default(), [(256, labels("web")), (257, labels("peer"))], []);
        let state = resolve(&policies, &labels("web"), &universe);
        datapath.apply_policy(&PolicyMapState::default(), &state).unwrap();
        Scene { _pins: pins, datapath }
    }

    /// A frame the endpoint sends (its egress, `from_container`).
    fn sent(&self, frame: &[u8]) -> u32 {
        self.run(self.datapath.loaded().unwrap().progs().from_container(), frame)
    }

    /// A frame sent to the endpoint (its ingress, `to_container`).
    fn received(&self, frame: &[u8]) -> u32 {
        self.run(self.datapath.loaded().unwrap().progs().to_container(), frame)
    }

    fn run(&self, program: &ebpf_core::Program, frame: &[u8]) -> u32 {
        program.test_run(&TestRun::with_data(frame)).unwrap().retval
    }
}

/// An ICMP(v6) message of `icmp_type` with identifier `id`.
fn icmp(src: IpAddr, dst: IpAddr, icmp_type: u8, id: u16) -> Vec<u8> {
    frame(src, dst, if src.is_ipv4() { 1 } else { 58 }, id, icmp_type as u16)
}

/// An ICMP(v6) error of `icmp_type` from `src` to `dst` quoting `quoted` (a frame from
/// [`frame`]): its IP header and the first 8 bytes after it.
fn error(src: IpAddr, dst: IpAddr, icmp_type: u8, quoted: &[u8]) -> Vec<u8> {
    let mut out = icmp(src, dst, icmp_type, 0);
    let ip_len = if src.is_ipv4() { 20 } else { 40 };
    out.extend_from_slice(&quoted[14..14 + ip_len + 8]);
    let payload = (out.len() - 14 - ip_len) as u16;
    if src.is_ipv4() {
        out[16..18].copy_from_slice(&(payload + 20).to_be_bytes());
    } else {
        out[18..20].copy_from_slice(&payload.to_be_bytes());
    }
    out
}

const INGRESS_DEFAULT_DENY: &str = "  ingress:\n  - {}\n";

#[test]
fn an_echo_request_reusing_an_identifier_is_not_a_reply() {
    let Some(_root) = require_kernel() else { return };
    let s = Scene::new("icmpreq", INGRESS_DEFAULT_DENY);
    for (me, peer, request, reply) in [(ME4.into(), PEER4.into(), 8, 0), (ME6.into(), PEER6.into(), 128, 129)] {
        let (me, peer): (IpAddr, IpAddr) = (me, peer);
        assert_eq!(s.sent(&icmp(me, peer, request, 666)), PASS, "{me}: our echo request (egress is open)");
        assert_eq!(s.received(&icmp(peer, me, reply, 666)), PASS, "{me}: its reply");
        assert_eq!(s.received(&icmp(peer, me, request, 666)), DROP, "{me}: a request with the same identifier");
        assert_eq!(s.received(&icmp(peer, me, request, 667)), DROP, "{me}: a request with a fresh identifier");
        assert_eq!(s.received(&icmp(peer, me, reply, 668)), DROP, "{me}: a reply to nothing");
    }
    // A reply answers only its own kind of query: a timestamp request is not answered by an
    // echo reply with its identifier, but by a timestamp reply.
    assert_eq!(s.sent(&icmp(ME4.into(), PEER4.into(), 13, 77)), PASS, "timestamp request");
    assert_eq!(s.received(&icmp(PEER4.into(), ME4.into(), 0, 77)), DROP, "echo reply with its identifier");
    assert_eq!(s.received(&icmp(PEER4.into(), ME4.into(), 14, 77)), PASS, "timestamp reply");
    // Messages that are neither queries nor errors open nothing: the same type coming back is
    // decided by policy (router advertisement, 9).
    assert_eq!(s.sent(&icmp(ME4.into(), PEER4.into(), 9, 0)), PASS);
    assert_eq!(s.received(&icmp(PEER4.into(), ME4.into(), 9, 0)), DROP);
}

#[test]
fn an_icmp_error_passes_only_when_it_quotes_a_tracked_connection() {
    let Some(_root) = require_kernel() else { return };
    let s = Scene::new("icmperr", INGRESS_DEFAULT_DENY);
    for (me, peer, unreachable) in [(IpAddr::V4(ME4), IpAddr::V4(PEER4), 3), (ME6.into(), PEER6.into(), 1)] {
        let ours = frame(me, peer, UDP, 5000, 53);
        assert_eq!(s.sent(&ours), PASS, "{me}: our UDP flow");
        assert_eq!(s.received(&error(peer, me, unreachable, &ours)), PASS, "{me}: an error about it");
        let other = frame(me, peer, UDP, 5001, 53);
        assert_eq!(
            s.received(&error(peer, me, unreachable, &other)),
            DROP,
            "{me}: an error quoting an untracked tuple"
        );
        let turned = frame(peer, me, UDP, 53, 5000);
        assert_eq!(
            s.received(&error(peer, me, unreachable, &turned)),
            DROP,
            "{me}: an error quoting it the wrong way round"
        );
    }
    // From a router on the path (time exceeded), about our echo request.
    let echo = icmp(ME4.into(), PEER4.into(), 8, 4242);
    assert_eq!(s.sent(&echo), PASS);
    assert_eq!(s.received(&error(ROUTER4.into(), ME4.into(), 11, &echo)), PASS, "time exceeded about our echo");
    let forged = icmp(ME4.into(), PEER4.into(), 8, 4243);
    assert_eq!(s.received(&error(ROUTER4.into(), ME4.into(), 11, &forged)), DROP, "about an echo we never sent");
}

#[test]
fn an_error_the_endpoint_sends_about_a_reply_it_received_is_related() {
    let Some(_root) = require_kernel() else { return };
    // Egress allows only UDP/53 out: the endpoint's port-unreachable about a late reply must
    // pass as related, not by policy.
    let s = Scene::new(
        "icmpout",
        "  egress:\n  - toPorts: [{ports: [{port: \"53\", protocol: UDP}]}]\n  ingress:\n  - {}\n",
    );
    for (me, peer, unreachable) in [(IpAddr::V4(ME4), IpAddr::V4(PEER4), 3), (ME6.into(), PEER6.into(), 1)] {
        assert_eq!(s.sent(&frame(me, peer, UDP, 6000, 53)), PASS, "{me}: our query");
        let reply = frame(peer, me, UDP, 53, 6000);
        assert_eq!(s.received(&reply), PASS, "{me}: its reply");
        assert_eq!(s.sent(&error(me, peer, unreachable, &reply)), PASS, "{me}: our error about the reply");
        let stray = frame(peer, me, UDP, 53, 6001);
        assert_eq!(s.sent(&error(me, peer, unreachable, &stray)), DROP, "{me}: our error about an untracked packet");
    }
}
