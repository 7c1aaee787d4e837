//! Flows from the datapath, end to end: a node's pods connect as a policy allows and as it
//! denies, and `netstack observe` shows the policy verdicts, the traces of the allowed
//! connection and every drop, with the pods, identities, ports, verdicts and drop reasons,
//! in Hubble's JSON, through hubble observe's filters.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;

use ebpf_test_support::{eventually, require_kernel};
use netstack_ref::agent::netns;
use netstack_ref::policy::AllowLocalhost;
use support::cluster::netstack;
use support::Node;

const SCENE: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: t, labels: {app: client}}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: intruder, namespace: t, labels: {app: intruder}}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {name: server, namespace: t, labels: {app: server}}\n---\n\
apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: server, namespace: t}\nspec:\n  \
endpointSelector: {matchLabels: {app: server}}\n  ingress:\n  - fromEndpoints: [{matchLabels: {app: client}}]\n    \
toPorts: [{ports: [{port: \"8080\", protocol: TCP}]}]\n";

/// `netstack observe ARGS --state-dir DIR -o json`: the flows, parsed.
fn observe(node: &Node, args: &[&str]) -> Vec<serde_json::Value> {
    let state = node.config.state_dir.to_str().unwrap().to_owned();
    let mut all = vec!["observe", "--state-dir", &state, "-o", "json"];
    all.extend_from_slice(args);
    let out = netstack(&all);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("Hubble's JSON, a flow a line"))
        .collect()
}

#[test]
fn verdicts_traces_and_drops_become_flows_observe_filters() {
    let Some(_root) = require_kernel() else { return };
    let mut node = Node::new("nobs", AllowLocalhost::Always, &[("scene.yaml", SCENE)]);
    node.start();
    node.wait_policies(1);
    let pods = node.pods(3);
    let (client, intruder, server) = (&pods["t/client"], &pods["t/intruder"], &pods["t/server"]);
    let listener = netns::run_in(&server.netns, || TcpListener::bind("0.0.0.0:8080").unwrap()).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.write_all(b"hi");
        }
    });
    let to = SocketAddrV4::new(server.ip, 8080);
    let connect = |netns: &str| {
        netns::run_in(netns, move || {
            let mut stream = TcpStream::connect_timeout(&to.into(), Duration::from_millis(500))?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok::<_, std::io::Error>(answer)
        })
        .unwrap()
    };
    assert_eq!(connect(&client.netns).unwrap(), "hi");
    assert!(connect(&intruder.netns).is_err(), "the policy denies the intruder");

    let flows_of = |pod: &str| -> Vec<serde_json::Value> { observe(&node, &["--from-pod", pod, "--last", "1000"]) };
    assert!(eventually(Duration::from_secs(5), || !flows_of("t/intruder").is_empty()), "flows arrive");
    let allowed = flows_of("t/client");
    let verdict = allowed
        .iter()
        .map(|r| &r["flow"])
        .find(|f| f["event_type"]["type"] == 5 && f["traffic_direction"] == "INGRESS")
        .unwrap_or_else(|| panic!("the server's ingress verdict on the client: {allowed:?}"));
    assert_eq!(verdict["verdict"], "FORWARDED");
    assert!(
        allowed.iter().any(|r| r["flow"]["event_type"]["type"] == 5 && r["flow"]["traffic_direction"] == "EGRESS"),
        "and the client's own egress verdict"
    );
    assert_eq!(verdict["policy_match_type"], 2, "L3+L4: identity and port");
    assert_eq!(verdict["source"]["pod_name"], "client");
    assert_eq!(verdict["source"]["namespace"], "t");
    assert_eq!(verdict["destination"]["pod_name"], "server");
    assert!(verdict["destination"]["ID"].as_u64().is_some_and(|id| id > 0), "{verdict}");
    assert_eq!(verdict["IP"]["destination"], server.ip.to_string());
    assert_eq!(verdict["l4"]["TCP"]["destination_port"], 8080);
    assert_eq!(verdict["l4"]["TCP"]["flags"]["SYN"], true);
    assert!(verdict["source"]["labels"].as_array().unwrap().iter().any(|l| l == "k8s:app=client"), "{verdict}");
    assert!(
        allowed.iter().any(|r| r["flow"]["trace_observation_point"] == "TO_ENDPOINT"),
        "the connection's start is traced: {allowed:?}"
    );
    assert!(
        observe(&node, &["--to-pod", "t/client", "--last", "1000"]).iter().any(|r| r["flow"]["is_reply"] == true),
        "and its first reply"
    );

    let denied = flows_of("t/intruder");
    let drop = denied
        .iter()
        .map(|r| &r["flow"])
        .find(|f| f["verdict"] == "DROPPED" && f["event_type"]["type"] == 1)
        .unwrap_or_else(|| panic!("a drop for the intruder: {denied:?}"));
    assert_eq!(drop["drop_reason_desc"], "POLICY_DENIED");
    assert_eq!(drop["drop_reason"], 133);
    assert_eq!(drop["destination"]["pod_name"], "server");
    assert!(denied.len() >= 2, "a retransmitted SYN is dropped again and reported again: {denied:?}");

    // The filters, over what the node saw.
    let drops = observe(&node, &["--verdict", "DROPPED", "--last", "1000"]);
    assert!(!drops.is_empty() && drops.iter().all(|r| r["flow"]["verdict"] == "DROPPED"));
    let not_client = observe(&node, &["--not", "--from-pod", "t/client", "--last", "1000"]);
    assert!(not_client.iter().all(|r| r["flow"]["source"]["pod_name"] != "client"));
    assert_eq!(observe(&node, &["--from-pod", "t/intruder", "--last", "1"]).len(), 1, "--last");
    let reason = observe(&node, &["--drop-reason-desc", "POLICY_DENIED", "-t", "drop", "--last", "1000"]);
    assert!(!reason.is_empty());

    // What status counts: every event read became a flow, none lost.
    let status: netstack_ref::agent::api_types::Status = serde_json::from_slice(
        &netstack(&["status", "--state-dir", node.config.state_dir.to_str().unwrap(), "-o", "json"]).stdout,
    )
    .unwrap();
    let flows = status.flows.expect("flows in status");
    assert!(flows.received >= 5 && flows.stored == flows.received, "{flows:?}");
    assert_eq!((flows.undecodable, flows.lost_in_datapath), (0, 0), "{flows:?}");

    // The compact form reads like hubble's.
    let state = node.config.state_dir.to_str().unwrap().to_owned();
    let out = netstack(&["observe", "--state-dir", &state, "--from-pod", "t/intruder", "--last", "1"]);
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(line.contains("t/intruder:") && line.contains("-> t/server:8080") && line.contains("DROPPED"), "{line}");
}

/// Trace flows of one connection that sends `messages` segments, one every 20 ms, on a node with
/// `--monitor-aggregation aggregation`.
fn traces_of_a_chatty_connection(aggregation: &str, messages: usize) -> usize {
    let mut node = Node::new("nagg", AllowLocalhost::Always, &[("scene.yaml", SCENE)]);
    node.start_with(&["--monitor-aggregation".as_ref(), aggregation.as_ref()]);
    node.wait_policies(1);
    let pods = node.pods(3);
    let (client, server) = (&pods["t/client"], &pods["t/server"]);
    let listener = netns::run_in(&server.netns, || TcpListener::bind("0.0.0.0:8080").unwrap()).unwrap();
    let reader = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut all = Vec::new();
        stream.read_to_end(&mut all).unwrap();
        all.len()
    });
    let to = SocketAddrV4::new(server.ip, 8080);
    netns::run_in(&client.netns, move || {
        let mut stream = TcpStream::connect_timeout(&to.into(), Duration::from_secs(1)).unwrap();
        stream.set_nodelay(true).unwrap();
        for _ in 0..messages {
            stream.write_all(b"0123456789").unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .unwrap();
    assert_eq!(reader.join().unwrap(), messages * 10);
    let status: netstack_ref::agent::api_types::Status = serde_json::from_slice(
        &netstack(&["status", "--state-dir", node.config.state_dir.to_str().unwrap(), "-o", "json"]).stdout,
    )
    .unwrap();
    assert_eq!(status.flows.unwrap().aggregation, aggregation);
    let traces = || {
        observe(&node, &["--from-pod", "t/client", "--to-port", "8080", "-t", "trace", "--last", "4095"])
            .iter()
            .filter(|r| r["flow"]["l4"]["TCP"].is_object())
            .count()
    };
    // Settled: the last FIN's traces are in.
    let mut seen = traces();
    while eventually(Duration::from_millis(500), || traces() > seen) {
        seen = traces();
    }
    seen
}

#[test]
fn medium_aggregation_reports_a_connections_changes_none_every_packet() {
    let Some(_root) = require_kernel() else { return };
    const MESSAGES: usize = 30;
    let medium = traces_of_a_chatty_connection("medium", MESSAGES);
    assert!((2..12).contains(&medium), "medium: its start, first reply and end, not its {MESSAGES} segments: {medium}");
    // Each segment leaves the client and enters the server: traced at both.
    let none = traces_of_a_chatty_connection("none", MESSAGES);
    assert!(none >= 2 * MESSAGES, "none: every packet, at both ends: {none}");
    eprintln!("traces of one connection of {MESSAGES} segments: medium {medium}, none {none}");
}
