//! The agent with real traffic between pods: policy changes take effect for new connections
//! without breaking established ones, deleting the last policy restores default-allow, and an
//! agent restart (a crash here: SIGKILL) keeps connections flowing, while a change made while
//! it was down takes effect when it starts.

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use ebpf_test_support::require_kernel;
use netstack_ref::agent::api::{call, Request};
use netstack_ref::agent::netns;
use netstack_ref::demo::wait_for_endpoints;
use netstack_ref::policy::AllowLocalhost;
use netstack_ref::traffic::probe::{self, Probe};
use support::Node;

const PODS: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: t, labels: {app: client}}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: server, namespace: t, labels: {app: server}}\n";

const ONLY_PORT_80: &str = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: web-only, namespace: t}\n\
spec:\n  endpointSelector: {matchLabels: {app: server}}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: client}}]\n    \
toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n";

/// A TCP connection held open between two pods; `ping` checks a byte goes each way.
struct Established {
    client: TcpStream,
}

impl Established {
    fn open(from: &str, to: &str, to_ip: Ipv4Addr, port: u16) -> Established {
        let (tx, rx) = mpsc::channel();
        let to = to.to_string();
        std::thread::spawn(move || {
            netns::run_in(&to, move || {
                let listener = TcpListener::bind(("0.0.0.0", port)).unwrap();
                tx.send(()).unwrap();
                let (mut s, _) = listener.accept().unwrap();
                let mut b = [0u8; 1];
                while s.read_exact(&mut b).is_ok() && s.write_all(&b).is_ok() {}
            })
            .unwrap();
        });
        rx.recv_timeout(Duration::from_secs(2)).unwrap();
        let client = netns::run_in(from, move || {
            TcpStream::connect_timeout(&SocketAddrV4::new(to_ip, port).into(), Duration::from_secs(2))
        })
        .unwrap()
        .expect("connect while allowed");
        client.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        Established { client }
    }

    fn ping(&mut self) -> bool {
        let mut b = [42u8];
        self.client.write_all(&b).is_ok() && self.client.read_exact(&mut b).is_ok() && b[0] == 42
    }
}

#[test]
fn policy_changes_restarts_and_downtime_keep_traffic_as_the_policy_says() {
    let Some(_root) = require_kernel() else { return };
    let mut node = Node::new("nsn", AllowLocalhost::Always, &[("pods.yaml", PODS)]);
    let manifests = node.manifests.clone();
    node.start();
    let list = wait_for_endpoints(&node.config.socket(), 2, Duration::from_secs(30)).unwrap();
    let pod = |name: &str| {
        let e = list.as_array().unwrap().iter().find(|e| e["pod"] == format!("t/{name}")).unwrap();
        (e["netns"].as_str().unwrap().to_string(), e["ipv4"].as_str().unwrap().parse::<Ipv4Addr>().unwrap())
    };
    let ((client, _), (server, server_ip)) = (pod("client"), pod("server"));
    let t = Duration::from_millis(600);
    let passes = |p: Probe| probe::run(&client, &server, server_ip, p, t).passed();

    // No policy: default allow, every protocol.
    assert!(passes(Probe::Tcp(80)) && passes(Probe::Tcp(7000)) && passes(Probe::Udp(53)) && passes(Probe::Icmp));
    let mut long_lived = Established::open(&client, &server, server_ip, 7001);
    assert!(long_lived.ping());

    // A policy allowing only TCP/80: new connections elsewhere are dropped, the established
    // one (allowed when it started) keeps flowing by conntrack.
    std::fs::write(manifests.join("policy.yaml"), ONLY_PORT_80).unwrap();
    node.wait_policies(1);
    assert!(passes(Probe::Tcp(80)), "allowed port");
    assert!(!passes(Probe::Tcp(7000)), "new connection to a port the policy does not allow");
    assert!(!passes(Probe::Udp(53)) && !passes(Probe::Icmp), "UDP and ICMP are not allowed");
    assert!(long_lived.ping(), "established connection survives the policy change");

    // A broken edit is refused; the previous version stays in force.
    std::fs::write(manifests.join("policy.yaml"), ONLY_PORT_80.replace("TCP", "TPC")).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let status = call(&node.config.socket(), &Request::Status).unwrap();
    // The CLI reads the same JSON into the typed struct the agent wrote it from.
    let typed: netstack_ref::agent::api_types::Status = serde_json::from_value(status.clone()).unwrap();
    assert_eq!((typed.endpoints, typed.policies, typed.allow_localhost.as_str()), (2, 1, "always"));
    let errors = status["errors"].to_string();
    assert!(errors.contains("policy.yaml:8: spec.ingress[0].toPorts[0].ports[0].protocol"), "{errors}");
    // Conntrack garbage collection has run (on the first pass of the agent's loop) and found
    // nothing idle for long: the live connections are still there.
    let gc = &status["conntrackGc"];
    assert!(gc["error"].is_null() && gc["runs"].as_u64() >= Some(1) && gc["removed"] == 0, "{gc}");
    assert!(passes(Probe::Tcp(80)) && !passes(Probe::Tcp(7000)), "the previous policy is still in force");
    std::fs::write(manifests.join("policy.yaml"), ONLY_PORT_80).unwrap();

    // The agent crashes: the pinned datapath keeps enforcing, connections keep flowing.
    node.kill();
    assert!(long_lived.ping(), "established connection survives the agent's death");
    assert!(passes(Probe::Tcp(80)) && !passes(Probe::Tcp(7000)), "policy enforced without an agent");

    // Deleting the last policy while the agent is down takes effect when it starts: default allow.
    std::fs::remove_file(manifests.join("policy.yaml")).unwrap();
    node.start();
    wait_for_endpoints(&node.config.socket(), 2, Duration::from_secs(30)).unwrap();
    node.wait_policies(0);
    let after = call(&node.config.socket(), &Request::EndpointList).unwrap();
    assert_eq!(after, list, "the restarted agent adopted the same endpoints, addresses and identities");
    assert!(passes(Probe::Tcp(7000)) && passes(Probe::Udp(53)) && passes(Probe::Icmp), "default allow again");
    assert!(long_lived.ping(), "established connection survives the restart");

    // A stop (SIGTERM) ends the agent between two syncs, at once and cleanly; the datapath
    // stays, as after a crash.
    let (status, took) = node.terminate().expect("the agent ends when asked");
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(long_lived.ping() && passes(Probe::Tcp(7000)), "the datapath outlives a stopped agent");
}
