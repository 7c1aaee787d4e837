//! `netstack cluster up|down`: nodes on this machine, each a namespace on an underlay bridge
//! with its own agent; etcd on loopback when asked; everything removed by `down`, also after
//! the agents and etcd were killed.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

mod support;

use ebpf_test_support::{eventually, require_etcd, require_kernel, unique_name};
use netstack_ref::agent::netns;
use netstack_ref::cluster::kvstore::KvStore;
use support::cluster::*;

#[test]
fn three_nodes_come_up_talk_on_the_underlay_and_go_down_even_after_a_crash() {
    let Some(_root) = require_kernel() else { return };
    let Some(()) = require_etcd() else { return };
    let name = unique_name("cl").replace('_', "");
    let state_dir = std::env::temp_dir().join(unique_name("cluster"));
    let cluster = Cluster { name: name.clone(), state_dir: state_dir.clone() };
    let state = state_dir.to_str().unwrap();
    let record = cluster_up(&name, state, &[]);
    assert_eq!(record.nodes.len(), 3);
    for namespace in
        [&record.underlay_netns, &record.client_netns].into_iter().chain(record.nodes.iter().map(|n| &n.netns))
    {
        assert!(netns::exists(namespace), "{namespace}");
    }
    let again = netstack(&["cluster", "up", "--name", &name, "--state-dir", state]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is up already"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // The underlay joins nodes and client.
    let (node1, node3) = (&record.nodes[0], &record.nodes[2]);
    let port = 40000 + (std::process::id() % 20000) as u16;
    assert!(udp_reaches(&node1.netns, &node3.netns, node3.underlay, port), "node1 → node3 on the underlay");
    assert!(udp_reaches(&record.client_netns, &node1.netns, node1.underlay, port), "client → node1");
    // Native routing: node1 reaches node3's pods through node3's underlay address.
    let routes =
        netns::run_in(&node1.netns, || std::fs::read_to_string("/proc/thread-self/net/route").unwrap()).unwrap();
    let pods3 = u32::from_ne_bytes(Ipv4Addr::new(10, 200, 3, 0).octets());
    let via3 = u32::from_ne_bytes(node3.underlay.octets());
    assert!(routes.lines().any(|l| l.contains(&format!("{pods3:08X}\t{via3:08X}"))), "{routes}");

    // Each node has its agent, answering on its own state directory.
    let status_of = |state_dir: &PathBuf| -> serde_json::Value {
        let out = netstack(&["status", "--state-dir", state_dir.to_str().unwrap(), "-o", "json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    for node in &record.nodes {
        assert!(
            eventually(Duration::from_secs(30), || status_of(&node.state_dir)["node"] == node.name.as_str()),
            "{}: {}",
            node.name,
            status_of(&node.state_dir)
        );
    }
    // The etcd started for them answers, in the underlay namespace; every agent publishes its
    // node there and lists the others.
    let (endpoint, etcd_pid, _) = record.etcd.clone().unwrap();
    let underlay = record.underlay_netns.clone();
    netns::run_in(&underlay, move || KvStore::connect(&[endpoint], "netstack", Duration::from_secs(5)).map(drop))
        .unwrap()
        .unwrap();
    let node_names = |state_dir: &PathBuf| -> Vec<String> {
        let out = netstack(&["node", "list", "--state-dir", state_dir.to_str().unwrap(), "-o", "json"]);
        let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let mut names: Vec<String> =
            nodes.as_array().into_iter().flatten().filter_map(|n| n["name"].as_str().map(str::to_owned)).collect();
        names.sort();
        names
    };
    assert!(
        eventually(Duration::from_secs(30), || node_names(&record.nodes[1].state_dir) == ["node1", "node2", "node3"]),
        "{:?}",
        node_names(&record.nodes[1].state_dir)
    );
    assert_eq!(status_of(&node1.state_dir)["kvstore"]["connected"], true, "{}", status_of(&node1.state_dir));

    // The same pod labels on two nodes get one identity, agreed through the kvstore.
    let manifest = state_dir.join("pods.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n---\napiVersion: v1\nkind: Pod\n\
         metadata:\n  name: web\n  namespace: shop\n  labels:\n    app: web\n",
    )
    .unwrap();
    let identity_of_web = |state_dir: &PathBuf| -> Option<u64> {
        let out = netstack(&["identity", "list", "--state-dir", state_dir.to_str().unwrap(), "-o", "json"]);
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        rows.as_array()?
            .iter()
            .find(|r| r["labels"].as_str().is_some_and(|l| l.contains("app=web")))
            .and_then(|r| r["identity"].as_u64())
    };
    for node in [&record.nodes[0], &record.nodes[2]] {
        let applied = netstack(&[
            "apply",
            "--state-dir",
            node.state_dir.to_str().unwrap(),
            "--filename",
            manifest.to_str().unwrap(),
        ]);
        assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    }
    assert!(eventually(Duration::from_secs(30), || identity_of_web(&record.nodes[0].state_dir).is_some()));
    assert!(eventually(Duration::from_secs(30), || identity_of_web(&record.nodes[2].state_dir).is_some()));
    let (on1, on3) = (identity_of_web(&record.nodes[0].state_dir), identity_of_web(&record.nodes[2].state_dir));
    assert_eq!(on1, on3, "one identity for the same labels on both nodes");
    assert!(on1.unwrap() >= 256);

    // A crash: every agent and etcd killed; `down` still removes everything.
    let pids: Vec<u32> = record.nodes.iter().filter_map(|n| n.agent_pid).chain([etcd_pid]).collect();
    for &pid in &pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
    }
    let down = netstack(&["cluster", "down", "--name", &name, "--state-dir", state]);
    assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stderr));
    assert!(!state_dir.exists());
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{name}-")))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    drop(cluster);
}

#[test]
fn pods_on_three_nodes_talk_and_policy_holds_by_identity_natively_routed() {
    three_nodes_with_policy("native", "files");
}

#[test]
fn pods_on_three_nodes_talk_through_the_tunnel_and_spoofed_sources_gain_nothing() {
    three_nodes_with_policy("tunnel", "kvstore");
}

/// `resources`: where the agents read the manifests (`files`: one directory they all watch;
/// `kvstore`: stored in etcd, changed with `netstack cluster apply|delete`).
fn three_nodes_with_policy(routing: &str, resources: &str) {
    let Some(_root) = require_kernel() else { return };
    let Some(()) = require_etcd() else { return };
    let name = unique_name("cx").replace('_', "");
    let state_dir = std::env::temp_dir().join(unique_name("clusterx"));
    let _cluster = Cluster { name: name.clone(), state_dir: state_dir.clone() };
    let state = state_dir.to_str().unwrap();
    // One manifests directory all agents watch: client and intruder scheduled to node1,
    // server to node2, monitor (namespace ops) to node3 (spec.nodeName). The CNP lets only
    // app=client reach app=server on UDP 7000; the CCNP lets ops' monitor reach every
    // app=server, in any namespace, on UDP 9100.
    let pod_in = |namespace: &str, pod: &str, app: &str, node: &str| {
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  namespace: {namespace}\n  labels:\n    \
             app: {app}\nspec:\n  nodeName: {node}\n"
        )
    };
    let pod = |pod: &str, app: &str, node: &str| pod_in("shop", pod, app, node);
    let clusterwide = "---\napiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  \
                       name: monitoring\nspec:\n  endpointSelector:\n    matchLabels:\n      app: server\n  \
                       ingress:\n  - fromEndpoints:\n    - matchLabels:\n        app: monitor\n        \
                       k8s:io.kubernetes.pod.namespace: ops\n    toPorts:\n    - ports:\n      - port: \"9100\"\n        \
                       protocol: UDP\n";
    let policy = "---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: server-from-client\n  \
                  namespace: shop\nspec:\n  endpointSelector:\n    matchLabels:\n      app: server\n  ingress:\n  \
                  - fromEndpoints:\n    - matchLabels:\n        app: client\n    toPorts:\n    - ports:\n      \
                  - port: \"7000\"\n        protocol: UDP\n";
    let all = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n---\napiVersion: v1\nkind: Namespace\n\
         metadata:\n  name: ops\n{}{}{}{}{policy}{clusterwide}",
        pod("client", "client", "node1"),
        pod("intruder", "intruder", "node1"),
        pod("server", "server", "node2"),
        pod_in("ops", "monitor", "monitor", "node3")
    ) + "---\napiVersion: v1\nkind: Service\nmetadata: {name: server, namespace: shop}\n\
          spec:\n  clusterIP: 10.96.0.70\n  selector: {app: server}\n  ports: [{port: 7000, protocol: UDP}]\n---\n\
          apiVersion: v1\nkind: Service\nmetadata: {name: server-local, namespace: shop}\n\
          spec:\n  clusterIP: 10.96.0.71\n  internalTrafficPolicy: Local\n  selector: {app: server}\n  \
          ports: [{port: 7000, protocol: UDP}]\n";
    let manifests = manifests_dir("manifests", "shop.yaml", &all);
    let options = ["--routing", routing, "--manifests", manifests.0.to_str().unwrap(), "--resources", resources];
    let record = cluster_up(&name, state, &options);
    let (node1, node2, node3) = (&record.nodes[0], &record.nodes[1], &record.nodes[2]);
    let ready = |node: &netstack_ref::cluster::topology::NodeRecord, pod: &str| {
        eventually(Duration::from_secs(30), || endpoint(&node.state_dir, pod).is_some())
    };
    let log = |node: &netstack_ref::cluster::topology::NodeRecord| {
        std::fs::read_to_string(node.state_dir.join("agent.log")).unwrap_or_default()
    };
    assert!(
        ready(node1, "shop/client")
            && ready(node1, "shop/intruder")
            && ready(node2, "shop/server")
            && ready(node3, "ops/monitor"),
        "node1:\n{}\nnode2:\n{}\nnode3:\n{}",
        log(node1),
        log(node2),
        log(node3)
    );
    assert!(endpoint(&node1.state_dir, "shop/server").is_none(), "each node runs only the pods scheduled to it");
    let (client, intruder, server) = (
        endpoint(&node1.state_dir, "shop/client").unwrap(),
        endpoint(&node1.state_dir, "shop/intruder").unwrap(),
        endpoint(&node2.state_dir, "shop/server").unwrap(),
    );
    let ip = |row: &serde_json::Value| -> Ipv4Addr { row["ipv4"].as_str().unwrap().parse().unwrap() };
    let (client_ip, server_ip) = (ip(&client), ip(&server));
    let ns = |row: &serde_json::Value| row["netns"].as_str().unwrap().to_owned();

    // node2 learns node1's pods and their identities through the kvstore (its ipcache).
    assert!(
        eventually(Duration::from_secs(30), || udp_reaches(&ns(&client), &ns(&server), server_ip, 7000)),
        "client on node1 reaches server on node2"
    );
    assert!(!udp_reaches(&ns(&intruder), &ns(&server), server_ip, 7000), "intruder is denied by identity");
    assert!(!udp_reaches(&ns(&client), &ns(&server), server_ip, 7001), "only the allowed port");
    assert_ne!(client["identity"], intruder["identity"]);

    // The service on node2's pod, reached from node1 by its cluster IP: the socket LB on node1
    // picks the remote backend, and node2's policy still decides by the sender's identity.
    let cluster_ip = Ipv4Addr::new(10, 96, 0, 70);
    assert!(
        eventually(Duration::from_secs(30), || udp_reaches(&ns(&client), &ns(&server), cluster_ip, 7000)),
        "client on node1 reaches the server through its service"
    );
    assert!(!udp_reaches(&ns(&intruder), &ns(&server), cluster_ip, 7000), "the service is no way around policy");
    // internalTrafficPolicy: Local: only this node's backends, and node1 has none (refused);
    // the same service from node2 reaches its own.
    assert!(!udp_reaches(&ns(&client), &ns(&server), Ipv4Addr::new(10, 96, 0, 71), 7000), "no local backend");
    assert!(
        eventually(Duration::from_secs(10), || udp_reaches(
            node2.netns.as_str(),
            &ns(&server),
            Ipv4Addr::new(10, 96, 0, 71),
            7000
        )),
        "node2's own backend"
    );

    // The cluster-wide policy holds across nodes too: ops' monitor on node3 reaches the server
    // on node2 on its port only, and the client does not gain that port through it.
    let monitor = endpoint(&node3.state_dir, "ops/monitor").unwrap();
    assert!(
        eventually(Duration::from_secs(30), || udp_reaches(&ns(&monitor), &ns(&server), server_ip, 9100)),
        "monitor on node3 reaches server on node2 by the CCNP"
    );
    assert!(!udp_reaches(&ns(&monitor), &ns(&server), server_ip, 7000), "the CCNP allows 9100 only");
    assert!(!udp_reaches(&ns(&client), &ns(&server), server_ip, 9100), "the CNP allows the client 7000 only");

    // Both nodes enforce the policy; the collector (node1) aggregated their statuses.
    let policy_row = |state_dir: &std::path::Path| -> serde_json::Value {
        let out = netstack(&["policy", "get", "--state-dir", state_dir.to_str().unwrap(), "-o", "json"]);
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        rows.as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == "shop/server-from-client").cloned())
            .unwrap_or_default()
    };
    assert!(
        eventually(Duration::from_secs(30), || policy_row(&node2.state_dir)["enforcing"] == "3/3"),
        "{}",
        policy_row(&node2.state_dir)
    );
    let row = policy_row(&node2.state_dir);
    assert_eq!(row["nodes"]["node2"]["endpoints"], 1, "{row}");
    assert_eq!(row["nodes"]["node1"]["endpoints"], 0, "{row}");
    assert_eq!(row["nodes"]["node1"]["revision"], row["nodes"]["node2"]["revision"], "{row}");

    // A pod cannot send as another: its own endpoint drops what it sends from another address.
    let spoofed = ipv4_udp(client_ip, server_ip, 7000, b"spoofed");
    let before = verdict_count(&node1.state_dir, "shop/intruder", "egress", "INVALID_SOURCE_IP");
    assert!(!arrives(&ns(&server), 7000, || send_raw(&ns(&intruder), spoofed.clone())), "intruder as client");
    assert!(verdict_count(&node1.state_dir, "shop/intruder", "egress", "INVALID_SOURCE_IP") > before);

    if resources == "kvstore" {
        // A policy stored in etcd reaches every node; removed, it goes everywhere.
        let extra = manifests.0.join("extra.yaml");
        std::fs::write(&extra, policy.replace("server-from-client", "extra").replace("7000", "7001")).unwrap();
        let applied = netstack(&["cluster", "apply", extra.to_str().unwrap(), "--state-dir", state]);
        assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
        assert!(
            eventually(Duration::from_secs(20), || udp_reaches(&ns(&client), &ns(&server), server_ip, 7001)),
            "the applied policy allows 7001"
        );
        let deleted = netstack(&["cluster", "delete", "extra.yaml", "--state-dir", state]);
        assert!(deleted.status.success(), "{}", String::from_utf8_lossy(&deleted.stderr));
        assert!(
            eventually(Duration::from_secs(20), || !udp_reaches(&ns(&client), &ns(&server), server_ip, 7001)),
            "removed from the kvstore, the policy goes"
        );
        let broken = manifests.0.join("broken.yaml");
        std::fs::write(&broken, policy.replace("UDP", "UPD")).unwrap();
        let refused = netstack(&["cluster", "apply", broken.to_str().unwrap(), "--state-dir", state]);
        assert!(!refused.status.success(), "a file that does not validate is not stored");
        assert!(String::from_utf8_lossy(&refused.stderr).contains("broken.yaml"), "{refused:?}");
    }

    if routing == "tunnel" {
        let status = netstack(&["status", "--state-dir", node2.state_dir.to_str().unwrap(), "-o", "json"]);
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        assert_eq!(status["routing"], "tunnel", "{status}");
        assert!(tunnel_count(&node2.state_dir, "ingress", "FORWARDED") > 0, "the client's datagram came through it");

        // node1 itself reaches node2's pods through its host device (from_host), as remote-node:
        // which the server's policy does not allow.
        let (host_sent, denied) = (
            tunnel_count(&node1.state_dir, "egress", "FORWARDED"),
            verdict_count(&node2.state_dir, "shop/server", "ingress", "POLICY_DENIED"),
        );
        assert!(!udp_reaches(&node1.netns, &ns(&server), server_ip, 7000), "node1's host is not a client");
        assert!(tunnel_count(&node1.state_dir, "egress", "FORWARDED") > host_sent, "sent by from_host");
        assert!(verdict_count(&node2.state_dir, "shop/server", "ingress", "POLICY_DENIED") > denied);

        // From outside the cluster, straight to node2 on the underlay, claiming the client's
        // address: node2 knows that address lives behind the tunnel, so the packet is world.
        netns::run_in(&record.client_netns, {
            let via = node2.underlay;
            move || {
                let mut rtnl = netstack_ref::agent::rtnl::Rtnl::open().unwrap();
                let (index, _) = rtnl.link("underlay0").unwrap();
                rtnl.add_route(Ipv4Addr::new(10, 200, 2, 0), 24, index, Some(via), false).unwrap();
            }
        })
        .unwrap();
        let denied = verdict_count(&node2.state_dir, "shop/server", "ingress", "POLICY_DENIED");
        assert!(
            !arrives(&ns(&server), 7000, || send_raw(&record.client_netns, spoofed.clone())),
            "an unencapsulated packet claiming a tunnelled address"
        );
        assert!(
            verdict_count(&node2.state_dir, "shop/server", "ingress", "POLICY_DENIED") > denied,
            "decided by policy as world (not lost before the endpoint)"
        );

        // Encapsulated, with the client's identity as VNI, from a sender that is no node.
        let client_identity = client["identity"].as_u64().unwrap() as u32;
        let unknown = tunnel_count(&node2.state_dir, "ingress", "UNKNOWN_SENDER");
        let forged = vxlan(client_identity, &spoofed);
        let to = (node2.underlay, netstack_ref::cluster::routing::VXLAN_PORT);
        assert!(
            !arrives(&ns(&server), 7000, || {
                netns::run_in(&record.client_netns, move || {
                    UdpSocket::bind("0.0.0.0:0").unwrap().send_to(&forged, to).unwrap()
                })
                .unwrap();
            }),
            "a VXLAN packet from outside the cluster"
        );
        assert!(tunnel_count(&node2.state_dir, "ingress", "UNKNOWN_SENDER") > unknown);
    }
}
