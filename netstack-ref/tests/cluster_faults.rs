//! Faults in a 3-node cluster (tunnel routing, etcd), with real traffic: etcd away for 30 s, an
//! agent killed, an agent restarted. The datapath keeps its last state throughout; the cluster
//! converges once the fault is gone.

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use ebpf_test_support::{eventually, require_etcd, require_kernel, unique_name};
use netstack_ref::agent::netns;
use netstack_ref::cluster::topology;
use support::cluster::*;

const PORT: u16 = 7000;

fn pod(name: &str, app: &str, node: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: shop\n  labels:\n    app: {app}\n\
         spec:\n  nodeName: {node}\n"
    )
}

/// Serves an echo on PORT in namespace `at`: every connection, in a thread of its own.
fn echo_server(at: &str) {
    let listener = netns::run_in(at, || TcpListener::bind(("0.0.0.0", PORT)).unwrap()).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 64];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// A TCP connection from namespace `from` to `to`:PORT, once one can be made (within 30 s).
fn connect(from: &str, to: Ipv4Addr) -> TcpStream {
    let from = from.to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt =
            netns::run_in(&from, move || TcpStream::connect_timeout(&(to, PORT).into(), Duration::from_secs(1)))
                .unwrap();
        match attempt {
            Ok(stream) => {
                stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                return stream;
            }
            Err(e) if Instant::now() > deadline => panic!("connect to {to}:{PORT}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Whether the connection still carries a round trip.
fn echoes(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4];
    stream.write_all(b"ping").is_ok() && stream.read_exact(&mut buf).is_ok() && &buf == b"ping"
}

fn names(out: std::process::Output, field: &str) -> Vec<String> {
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut names: Vec<String> =
        rows.as_array().into_iter().flatten().filter_map(|r| r[field].as_str().map(str::to_owned)).collect();
    names.sort();
    names
}

fn node_names(state_dir: &Path) -> Vec<String> {
    names(netstack(&["node", "list", "--state-dir", state_dir.to_str().unwrap(), "-o", "json"]), "name")
}

fn ipcache_prefixes(state_dir: &Path) -> Vec<String> {
    names(netstack(&["bpf", "ipcache", "list", "--state-dir", state_dir.to_str().unwrap(), "-o", "json"]), "prefix")
}

fn kvstore_connected(state_dir: &Path) -> bool {
    let out = netstack(&["status", "--state-dir", state_dir.to_str().unwrap(), "-o", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    status["kvstore"]["connected"] == true
}

fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
}

/// Resumes a stopped etcd on drop, so a failing test still brings its cluster down.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0 as i32), nix::sys::signal::Signal::SIGCONT);
    }
}

#[test]
fn the_datapath_outlives_etcd_and_agents_and_identities_outlive_restarts() {
    let Some(_root) = require_kernel() else { return };
    let Some(()) = require_etcd() else { return };
    let name = unique_name("cf").replace('_', "");
    let state_dir = std::env::temp_dir().join(unique_name("clusterf"));
    let _cluster = Cluster { name: name.clone(), state_dir: state_dir.clone() };
    // Inside the cluster's state directory: `down` removes them with it.
    let manifests = state_dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let policy = "---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: server-from-clients\n  \
                  namespace: shop\nspec:\n  endpointSelector:\n    matchLabels:\n      app: server\n  ingress:\n  \
                  - fromEndpoints:\n    - matchLabels:\n        app: client\n    toPorts:\n    - ports:\n      \
                  - port: \"7000\"\n        protocol: TCP\n";
    std::fs::write(
        manifests.join("shop.yaml"),
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n{}{}{}{policy}",
            pod("client", "client", "node1"),
            pod("server", "server", "node2"),
            pod("bystander", "client", "node3"),
        ),
    )
    .unwrap();
    let state = state_dir.to_str().unwrap();
    let record = cluster_up(&name, state, &["--routing", "tunnel", "--manifests", manifests.to_str().unwrap()]);
    let (node1, node2, node3) = (&record.nodes[0], &record.nodes[1], &record.nodes[2]);
    let ready =
        |state_dir: &Path, pod: &str| eventually(Duration::from_secs(30), || endpoint(state_dir, pod).is_some());
    assert!(ready(&node1.state_dir, "shop/client"));
    assert!(ready(&node2.state_dir, "shop/server"));
    assert!(ready(&node3.state_dir, "shop/bystander"));
    let row = |state_dir: &Path, pod: &str| endpoint(state_dir, pod).unwrap();
    let (client, server, bystander) = (
        row(&node1.state_dir, "shop/client"),
        row(&node2.state_dir, "shop/server"),
        row(&node3.state_dir, "shop/bystander"),
    );
    let ns = |row: &serde_json::Value| row["netns"].as_str().unwrap().to_owned();
    let server_ip: Ipv4Addr = server["ipv4"].as_str().unwrap().parse().unwrap();
    let client_prefix = format!("{}/32", client["ipv4"].as_str().unwrap());
    echo_server(&ns(&server));
    let mut from_client = connect(&ns(&client), server_ip);
    assert!(echoes(&mut from_client), "client on node1 ↔ server on node2");

    // etcd away for 30 s: the connection carries on; a pod created meanwhile waits for its
    // identity and gets it once etcd is back.
    let (_, etcd_pid, _) = record.etcd.clone().unwrap();
    signal(etcd_pid, nix::sys::signal::Signal::SIGSTOP);
    let resume = Resume(etcd_pid);
    let away = Instant::now();
    std::fs::write(
        manifests.join("late.yaml"),
        format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n{}", pod("late", "late", "node1")),
    )
    .unwrap();
    let mut saw_disconnected = false;
    while away.elapsed() < Duration::from_secs(30) {
        assert!(echoes(&mut from_client), "the connection survives etcd's absence ({:?} in)", away.elapsed());
        saw_disconnected |= !kvstore_connected(&node1.state_dir);
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(saw_disconnected, "node1 noticed etcd was away");
    assert!(endpoint(&node1.state_dir, "shop/late").is_none(), "no identity, no endpoint, while etcd is away");
    drop(resume);
    assert!(
        eventually(Duration::from_secs(60), || endpoint(&node1.state_dir, "shop/late").is_some()),
        "the pod created while etcd was away gets its identity once it is back"
    );
    let late = row(&node1.state_dir, "shop/late");
    assert!(late["identity"].as_u64().unwrap() >= 256);
    assert!(echoes(&mut from_client), "the connection survives etcd's return (and the others' reconnecting)");
    assert!(eventually(Duration::from_secs(60), || kvstore_connected(&node1.state_dir)));

    // node1's agent killed: node3 ↔ node2 traffic carries on, node1's own datapath too, and
    // node1 leaves the others' node lists when its lease ends, their ipcaches a grace later
    // (netstack_ref::cluster::lingering).
    let mut from_bystander = connect(&ns(&bystander), server_ip);
    assert!(echoes(&mut from_bystander));
    // Listed again since etcd's return, or still lingering from before.
    let client_known = || ipcache_prefixes(&node2.state_dir).contains(&client_prefix);
    assert!(
        eventually(Duration::from_secs(10), client_known),
        "node2's ipcache lacks node1's client {client_prefix}: {}\n{}",
        String::from_utf8_lossy(
            &netstack(&["bpf", "ipcache", "list", "--state-dir", node2.state_dir.to_str().unwrap()]).stdout
        ),
        std::fs::read_to_string(node2.state_dir.join("agent.log")).unwrap_or_default()
    );
    signal(node1.agent_pid.unwrap(), nix::sys::signal::Signal::SIGKILL);
    assert!(echoes(&mut from_bystander) && echoes(&mut from_client), "a dead agent stops no traffic");
    assert!(
        eventually(Duration::from_secs(30), || !node_names(&node2.state_dir).contains(&"node1".to_owned())),
        "{:?}",
        node_names(&node2.state_dir)
    );
    // Its entries linger in the datapath for the grace that covers etcd outages, then go.
    assert!(eventually(Duration::from_secs(30), || !ipcache_prefixes(&node2.state_dir).contains(&client_prefix)));
    assert!(echoes(&mut from_bystander), "node2 ↔ node3 untouched by node1 leaving");
    let mut again = connect(&ns(&bystander), server_ip);
    assert!(echoes(&mut again), "and new connections between them too");
    assert_eq!(node_names(&node3.state_dir), ["node2", "node3"]);

    // node1 restarted: it adopts its pinned datapath, keeps its identities and comes back.
    topology::restart_agent(&state_dir, "node1").unwrap();
    assert!(eventually(Duration::from_secs(30), || node_names(&node2.state_dir) == ["node1", "node2", "node3"]));
    assert!(eventually(Duration::from_secs(30), || ipcache_prefixes(&node2.state_dir).contains(&client_prefix)));
    assert_eq!(row(&node1.state_dir, "shop/client")["identity"], client["identity"], "the client keeps its identity");
    assert_eq!(row(&node1.state_dir, "shop/late")["identity"], late["identity"], "and so does the late pod");
    let mut reconnected = connect(&ns(&client), server_ip);
    assert!(echoes(&mut reconnected), "node1's pods reach node2 again");
}
