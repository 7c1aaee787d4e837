//! `netstack demo --nodes N`: the demo's scene on a cluster of N nodes on this machine (`netstack
//! cluster up`, etcd in the underlay, VXLAN or native routing): its pods spread over the nodes by
//! `spec.nodeName`, the manifests stored in etcd where every agent reads them, identities agreed
//! through etcd. The
//! table shows which nodes each connection crosses; policy holds by identity across them. The
//! cluster is brought down at the end, also on failure.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{ensure_bpffs, probe_connections, DemoError, DemoPod, MANIFESTS};
use crate::agent::api::{call, Request};
use crate::cluster::routing::Routing;
use crate::cluster::topology::{self, ClusterOptions, ClusterRecord};
use crate::file_error::FileError;

/// The cluster, brought down on drop.
struct Scene {
    name: String,
    state_dir: PathBuf,
}

impl Drop for Scene {
    fn drop(&mut self) {
        if let Err(e) = topology::down(&self.state_dir, &self.name) {
            eprintln!("demo cleanup: {e}");
        }
    }
}

/// `01-pods.yaml` with the pods spread over `nodes` nodes in turn (`spec.nodeName`).
pub fn scheduled_pods(text: &str, nodes: u8) -> String {
    let mut index = 0u32;
    text.split("\n---\n")
        .map(|doc| {
            if !doc.lines().any(|l| l.trim() == "kind: Pod") {
                return doc.to_owned();
            }
            let node = format!("node{}", index % u32::from(nodes.max(1)) + 1);
            index += 1;
            let doc = doc.trim_end_matches('\n');
            match doc.find("\nspec:\n") {
                Some(at) => format!("{}\nspec:\n  nodeName: {node}\n{}", &doc[..at], &doc[at + "\nspec:\n".len()..]),
                None => format!("{doc}\nspec:\n  nodeName: {node}"),
            }
        })
        .collect::<Vec<_>>()
        .join("\n---\n")
        + "\n"
}

/// Every node's endpoints with their identities, once there are `wanted` in all and every node's ipcache knows each
/// of their addresses (so the first probe does not race the kvstore).
fn wait_for_cluster(
    record: &ClusterRecord,
    wanted: usize,
    timeout: Duration,
) -> Result<Vec<(DemoPod, u64)>, DemoError> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("agents not answering");
    while Instant::now() < deadline {
        let mut pods = Vec::new();
        let mut identities = Vec::new();
        for node in &record.nodes {
            let socket = node.state_dir.join("agent.sock");
            let Ok(list) = call(&socket, &Request::EndpointList) else { continue };
            for e in list.as_array().into_iter().flatten() {
                identities.push(e["identity"].as_u64().unwrap_or(0));
                pods.push(DemoPod {
                    name: e["pod"].as_str().unwrap_or("").to_owned(),
                    id: e["id"].as_u64().unwrap_or(0),
                    ipv4: e["ipv4"].as_str().and_then(|a| a.parse().ok()).unwrap_or(Ipv4Addr::UNSPECIFIED),
                    netns: e["netns"].as_str().unwrap_or("").to_owned(),
                    socket: socket.clone(),
                    node: node.name.clone(),
                });
            }
        }
        let known_everywhere = |pod: &DemoPod| {
            record.nodes.iter().all(|node| {
                let rows = call(&node.state_dir.join("agent.sock"), &Request::BpfIpcacheList).unwrap_or_default();
                let prefix = format!("{}/32", pod.ipv4);
                rows.as_array().is_some_and(|r| r.iter().any(|row| row["prefix"] == prefix.as_str()))
            })
        };
        if pods.len() >= wanted && pods.iter().all(known_everywhere) {
            return Ok(pods.into_iter().zip(identities).collect());
        }
        last = format!("{} of {wanted} endpoints up and known to every node", pods.len());
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(DemoError::Timeout { wanted, last })
}

fn print_policy_status(socket: &Path) {
    let rows = call(socket, &Request::PolicyGet).unwrap_or_default();
    println!("\npolicies (enforcing nodes / nodes that have them, aggregated through etcd):");
    for row in rows.as_array().into_iter().flatten() {
        println!(
            "  {:<32} {:<32} {}",
            row["kind"].as_str().unwrap_or(""),
            row["name"].as_str().unwrap_or(""),
            row["enforcing"].as_str().unwrap_or("")
        );
    }
}

/// The frontend's NodePort services reached from outside the cluster (the client namespace on
/// the underlay): through the pod's own node, and through another node by SNAT and by DSR.
/// Returns how many did not pass.
fn probe_from_outside(record: &ClusterRecord, pods: &[DemoPod]) -> Result<usize, DemoError> {
    use crate::traffic::probe::{self, Outcome, Probe};
    let frontend =
        pods.iter().find(|p| p.name == "shop/frontend").ok_or_else(|| DemoError::NoEndpoint("shop/frontend".into()))?;
    let home = record.nodes.iter().find(|n| n.name == frontend.node);
    let other = record.nodes.iter().find(|n| n.name != frontend.node);
    let (Some(home), Some(other)) = (home, other) else { return Ok(0) };
    println!(
        "
from outside the cluster ({}, on the underlay) to shop/frontend on {} (CNP frontend-from-world):",
        record.client_address, frontend.node
    );
    println!("{:<22} {:<22} {:<16} {:<8} WHY", "TO", "PATH", "TRAFFIC", "RESULT");
    let rows = [
        (home, 30080, format!("client→{}", home.name), "NodePort storefront: the pod's own node, the client kept"),
        (
            other,
            30080,
            format!("client→{}→{}", other.name, home.name),
            "NodePort storefront, SNAT: the reply returns through the entry node",
        ),
        (
            other,
            30081,
            format!("client→{}→{}", other.name, home.name),
            "NodePort storefront-dsr, DSR: the pod's node answers the client itself",
        ),
    ];
    let mut surprises = 0;
    for (node, port, path, why) in rows {
        let probe_kind = Probe::TcpService { port, target_port: 8080 };
        let outcome =
            probe::run(&record.client_netns, &frontend.netns, node.underlay, probe_kind, Duration::from_millis(1500));
        let result = if outcome == Outcome::Connected { "PASS" } else { "DROP" };
        let mark = if outcome == Outcome::Connected { "" } else { "  <-- unexpected" };
        println!(
            "{:<22} {path:<22} {:<16} {result:<8} {why}{mark}",
            format!("{}:{port}", node.underlay),
            probe_kind.to_string()
        );
        surprises += usize::from(outcome != Outcome::Connected);
    }
    println!("north-south counters (in: from outside and SNAT replies; out: replies given the frontend back):");
    for node in &record.nodes {
        let status = call(&node.state_dir.join("agent.sock"), &Request::Status).unwrap_or_default();
        let rows: Vec<String> = status["northSouth"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|d| d["verdicts"].as_array().cloned().unwrap_or_default())
            .map(|v| {
                let direction = if v["direction"] == "ingress" { "in" } else { "out" };
                format!("{direction} {} {}", v["reason"].as_str().unwrap_or(""), v["packets"])
            })
            .collect();
        println!("  {}: {}", node.name, if rows.is_empty() { "idle".to_owned() } else { rows.join(", ") });
    }
    Ok(surprises)
}

fn print_tunnels(record: &ClusterRecord) {
    println!("\ntunnel counters (in: decapsulated and accepted; out: the hosts' own packets):");
    for node in &record.nodes {
        let status = call(&node.state_dir.join("agent.sock"), &Request::Status).unwrap_or_default();
        let rows: Vec<String> = status["tunnel"]["verdicts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                let direction = if v["direction"] == "ingress" { "in" } else { "out" };
                format!("{direction} {} {}", v["reason"].as_str().unwrap_or(""), v["packets"])
            })
            .collect();
        println!("  {}: {}", node.name, if rows.is_empty() { "idle".to_owned() } else { rows.join(", ") });
    }
}

/// Encrypting: waits until every node has the others as WireGuard peers.
fn wait_for_peers(record: &ClusterRecord, timeout: Duration) -> Result<(), DemoError> {
    let deadline = Instant::now() + timeout;
    let wanted = record.nodes.len() - 1;
    loop {
        let missing: Vec<String> = record
            .nodes
            .iter()
            .filter_map(|node| {
                let status = call(&node.state_dir.join("agent.sock"), &Request::EncryptionStatus).unwrap_or_default();
                let peers = status["peers"].as_array().map_or(0, Vec::len);
                (peers < wanted).then(|| format!("{} has {peers} of {wanted}", node.name))
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(DemoError::Peers(missing.join(", ")));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Encrypting: each node's WireGuard backend and its peers' handshakes and bytes, after the
/// demo's traffic.
fn print_encryption(record: &ClusterRecord) {
    for (at, node) in record.nodes.iter().enumerate() {
        let status = call(&node.state_dir.join("agent.sock"), &Request::EncryptionStatus).unwrap_or_default();
        if at == 0 {
            println!(
                "\nWireGuard between the nodes ({} backend: {}{}):",
                status["backend"].as_str().unwrap_or("?"),
                status["backend_reason"].as_str().unwrap_or(""),
                if status["strict"] == true { "; strict: no pod packet to a node without a key" } else { "" }
            );
        }
        let peers: Vec<String> = status["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let handshake = p["last_handshake_millis"]
                    .as_u64()
                    .map_or("no handshake".to_owned(), |ms| format!("handshake {:.1} s ago", ms as f64 / 1000.0));
                format!(
                    "{} ({handshake}, {} B out, {} B in)",
                    p["name"].as_str().unwrap_or("?"),
                    p["tx_bytes"],
                    p["rx_bytes"]
                )
            })
            .collect();
        println!("  {}: key {}  peers {}", node.name, status["public_key"].as_str().unwrap_or("?"), peers.join(", "));
    }
}

/// Runs the demo on `nodes` nodes with `routing` (and `encryption` between them); `Err` when
/// anything could not be set up or a connection did not behave as the policies say.
pub fn run(
    nodes: u8,
    routing: Routing,
    encryption: Option<crate::encryption::node::EncryptionSettings>,
    hold: bool,
) -> Result<(), DemoError> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err(DemoError::NotRoot);
    }
    ensure_bpffs()?;
    let pid = std::process::id();
    let state_dir = std::env::temp_dir().join(format!("netstack-demo-cluster-{pid}"));
    let manifests = state_dir.join("manifests");
    std::fs::create_dir_all(&manifests).map_err(FileError::at("create", &manifests))?;
    for (name, text) in MANIFESTS {
        let path = manifests.join(name);
        let text = if name == "01-pods.yaml" { scheduled_pods(text, nodes) } else { text.to_owned() };
        std::fs::write(&path, text).map_err(FileError::at("write", &path))?;
    }
    let options = ClusterOptions {
        name: format!("nsd{}", pid % 100_000),
        nodes,
        routing,
        etcd: true,
        state_dir: state_dir.clone(),
        agent_binary: std::env::current_exe().map_err(FileError::at("locate", Path::new("the netstack binary")))?,
        manifests: Some(manifests),
        kvstore_resources: true,
        encryption,
    };
    println!(
        "cluster {}: {nodes} nodes, {} routing{}, etcd in the underlay holding the manifests every agent reads; \
         state in {}",
        options.name,
        routing.name(),
        if encryption.is_some() { ", pod traffic between nodes encrypted (WireGuard)" } else { "" },
        state_dir.display()
    );
    let scene = Scene { name: options.name.clone(), state_dir };
    let record = topology::up(&options)?;
    for node in &record.nodes {
        println!("  {}  underlay {}  pods {}", node.name, node.underlay, node.pod_cidr);
    }
    let endpoints = wait_for_cluster(&record, 4, Duration::from_secs(60))?;
    println!("\nendpoints (security identities agreed through etcd):");
    for (p, identity) in &endpoints {
        println!("  {:<14} {:<6} {:<12} identity {identity}", p.name, p.node, p.ipv4);
    }
    let pods: Vec<DemoPod> = endpoints.into_iter().map(|(pod, _)| pod).collect();
    if encryption.is_some() {
        wait_for_peers(&record, Duration::from_secs(30))?;
    }
    let mut surprises = probe_connections(&pods, true)?;
    surprises += probe_from_outside(&record, &pods)?;
    print_policy_status(&record.nodes[0].state_dir.join("agent.sock"));
    if routing == Routing::Tunnel {
        print_tunnels(&record);
    }
    if encryption.is_some() {
        print_encryption(&record);
    }
    // The backend's node sees most of the demo's decisions.
    let backend_node = pods.iter().find(|p| p.name == "shop/backend").map_or("node1", |p| p.node.as_str());
    if let Some(node) = record.nodes.iter().find(|n| n.name == backend_node) {
        super::observe::print_excerpt(&node.state_dir);
    }
    println!();
    for node in &record.nodes {
        super::observe::print_pages(&node.name, &node.state_dir, hold);
    }
    if hold {
        super::observe::hold();
    }
    drop(scene);
    println!("\nremoved cluster {} (nodes, pods, agents, etcd, pins)", record.name);
    if surprises > 0 {
        return Err(DemoError::Surprises(surprises));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_are_spread_over_the_nodes_in_turn() {
        let text = super::super::MANIFESTS[1].1;
        let scheduled = scheduled_pods(text, 3);
        let resources = crate::manifest::parse(Path::new("01-pods.yaml"), &scheduled).unwrap();
        let placed: Vec<(String, Option<String>)> = resources
            .into_iter()
            .filter_map(|r| match r {
                crate::manifest::Resource::Pod(p) => Some((p.name, p.node_name)),
                _ => None,
            })
            .collect();
        let node = |n: &str| Some(n.to_owned());
        assert_eq!(
            placed,
            [
                ("frontend".to_owned(), node("node1")),
                ("backend".to_owned(), node("node2")),
                ("db".to_owned(), node("node3")),
                ("monitor".to_owned(), node("node1"))
            ]
        );
        assert!(scheduled.contains("serviceAccountName: prometheus"), "an existing spec keeps its fields");
    }
}
