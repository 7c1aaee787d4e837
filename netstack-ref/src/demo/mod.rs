//! `netstack demo`: one node in a network namespace of its own, a real agent process, four pods
//! in two namespaces, the policies of `examples/demo/`, and a table of which connections pass,
//! which are dropped and why. Everything it makes is removed at the end, also on failure.
//! `netstack demo --nodes 3` runs the same scene on a cluster ([`cluster`]).

pub mod cluster;
pub mod observe;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::agent::api::{call, Request};
use crate::agent::netns::{self, PlumbingError};
use crate::agent::{reset, AgentConfig};
use crate::file_error::FileError;
use crate::traffic::probe::{self, Outcome, Probe};

/// The demo's manifests, embedded so the binary runs anywhere.
pub const MANIFESTS: [(&str, &str); 7] = [
    ("00-namespaces.yaml", include_str!("../../examples/demo/00-namespaces.yaml")),
    ("01-pods.yaml", include_str!("../../examples/demo/01-pods.yaml")),
    ("10-cnp-backend.yaml", include_str!("../../examples/demo/10-cnp-backend.yaml")),
    ("11-cnp-db.yaml", include_str!("../../examples/demo/11-cnp-db.yaml")),
    ("20-ccnp-monitoring.yaml", include_str!("../../examples/demo/20-ccnp-monitoring.yaml")),
    ("30-service-backend.yaml", include_str!("../../examples/demo/30-service-backend.yaml")),
    ("31-service-storefront.yaml", include_str!("../../examples/demo/31-service-storefront.yaml")),
];

/// The backend's service (`30-service-backend.yaml`).
pub const BACKEND_SERVICE: (&str, Ipv4Addr) = ("svc shop/backend", Ipv4Addr::new(10, 96, 0, 20));

/// (from pod, through the backend's service, probe, expected to pass, what decides).
pub const SERVICE_CONNECTIONS: [(&str, Probe, bool, &str); 2] = [
    ("shop/frontend", Probe::Tcp(8080), true, "ClusterIP → shop/backend; CNP backend-from-frontend"),
    ("shop/db", Probe::Tcp(8080), false, "ClusterIP → shop/backend; its policy still decides"),
];

/// (from pod, to pod, probe, expected to pass, which policy decides).
pub const CONNECTIONS: [(&str, &str, Probe, bool, &str); 8] = [
    ("shop/frontend", "shop/backend", Probe::Tcp(8080), true, "CNP backend-from-frontend"),
    ("shop/frontend", "shop/backend", Probe::Icmp, true, "CNP backend-from-frontend (icmps)"),
    ("shop/frontend", "shop/backend", Probe::Udp(8080), false, "only TCP/8080 and echo allowed"),
    ("shop/backend", "shop/db", Probe::Tcp(5432), true, "CNP db-from-backend"),
    ("shop/frontend", "shop/db", Probe::Tcp(5432), false, "db allows only the backend"),
    ("ops/monitor", "shop/backend", Probe::Tcp(9090), true, "CCNP monitoring"),
    ("ops/monitor", "shop/db", Probe::Tcp(9090), false, "CCNP deny rule wins over its allow"),
    ("shop/backend", "ops/monitor", Probe::Tcp(9090), false, "monitor: only ops/monitor on 9090"),
];

/// Everything the demo made, removed on drop.
struct Scene {
    node: String,
    config: AgentConfig,
    agent: Option<Child>,
}

impl Drop for Scene {
    fn drop(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Err(e) = reset(&self.config) {
            eprintln!("demo cleanup: {e}");
        }
        let _ = netns::delete(&self.node);
        let _ = std::fs::remove_dir_all(&self.config.state_dir);
    }
}

/// Why the demo could not run, or found a connection the policies disagree with.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// It needs root.
    #[error("netstack demo needs root (network namespaces, eBPF)")]
    NotRoot,
    /// bpffs is not mounted and mounting it failed.
    #[error("mount -t bpf bpf /sys/fs/bpf: {0}")]
    Bpffs(#[source] std::io::Error),
    /// `mount` ran and failed.
    #[error("mount -t bpf bpf /sys/fs/bpf: {0}")]
    BpffsMount(std::process::ExitStatus),
    /// A file of the scene.
    #[error(transparent)]
    File(#[from] FileError),
    /// The node's namespace.
    #[error(transparent)]
    Plumbing(#[from] PlumbingError),
    /// The agent process.
    #[error("start the agent {exe}: {source}")]
    Spawn {
        /// The binary.
        exe: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The agent did not bring its endpoints up in time.
    #[error("timed out waiting for {wanted} endpoints: {last}")]
    Timeout {
        /// How many.
        wanted: usize,
        /// The last thing seen.
        last: String,
    },
    /// An endpoint the table names is missing.
    #[error("no endpoint {0}")]
    NoEndpoint(String),
    /// The cluster of `--nodes`.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::topology::ClusterError),
    /// Connections did not behave as the policies say.
    #[error("{0} connection(s) did not behave as the policies say")]
    Surprises(usize),
    /// Encrypting, the nodes did not all become each other's WireGuard peers in time.
    #[error("timed out waiting for the nodes' WireGuard peers: {0}")]
    Peers(String),
}

fn ensure_bpffs() -> Result<(), DemoError> {
    let mounts = std::fs::read_to_string("/proc/mounts").map_err(FileError::at("read", Path::new("/proc/mounts")))?;
    if mounts.lines().any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf") && l.contains(" bpf ")) {
        return Ok(());
    }
    let status = Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]).status().map_err(DemoError::Bpffs)?;
    status.success().then_some(()).ok_or(DemoError::BpffsMount(status))
}

/// Starts an agent process (the `netstack` binary at `exe`) for `config` inside the node
/// namespace `node`.
pub fn spawn_agent(
    exe: &Path,
    config: &AgentConfig,
    node: &str,
    manifests: &Path,
    extra_args: &[&std::ffi::OsStr],
) -> Result<Child, DemoError> {
    Command::new(exe)
        .args(["agent", "--netns", node, "--node-name", node])
        .arg("--state-dir")
        .arg(&config.state_dir)
        .arg("--manifests")
        .arg(manifests)
        .arg("--allow-localhost")
        .arg(config.allow_localhost.name())
        .args(extra_args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| DemoError::Spawn { exe: exe.into(), source })
}

/// Waits until the agent at `socket` reports `endpoints` endpoints.
pub fn wait_for_endpoints(socket: &Path, endpoints: usize, timeout: Duration) -> Result<serde_json::Value, DemoError> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("agent not answering");
    while Instant::now() < deadline {
        match call(socket, &Request::EndpointList) {
            Ok(list) if list.as_array().is_some_and(|l| l.len() >= endpoints) => return Ok(list),
            Ok(list) => last = format!("{} of {endpoints} endpoints ready", list.as_array().map_or(0, |l| l.len())),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Ok(status) = call(socket, &Request::Status) {
        last += &format!("; agent status: {status}");
    }
    Err(DemoError::Timeout { wanted: endpoints, last })
}

fn drops(socket: &Path, endpoint: u64) -> Vec<(String, String, u64)> {
    let rows = call(socket, &Request::EndpointVerdicts { endpoint: endpoint.to_string() }).unwrap_or_default();
    rows.as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["reason"] != "FORWARDED")
        .map(|r| {
            (
                r["direction"].as_str().unwrap_or("").to_string(),
                r["reason"].as_str().unwrap_or("").to_string(),
                r["packets"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// An endpoint as the demo's tables show it.
#[derive(Clone, Debug)]
struct DemoPod {
    name: String,
    id: u64,
    ipv4: Ipv4Addr,
    netns: String,
    /// Its node's agent.
    socket: PathBuf,
    /// Its node.
    node: String,
}

/// Starts the node, its agent and the demo's pods; the scene removes them on drop.
fn start() -> Result<(Scene, Vec<DemoPod>), DemoError> {
    let pid = std::process::id();
    let node = format!("nsdemo{pid}");
    let state_dir = std::env::temp_dir().join(format!("netstack-demo-{pid}"));
    let manifests = state_dir.join("manifests");
    std::fs::create_dir_all(&manifests).map_err(FileError::at("create", &manifests))?;
    let mut scene =
        Scene { node: node.clone(), config: AgentConfig::new(&state_dir, Some(manifests.clone())), agent: None };
    for (name, text) in MANIFESTS {
        let path = manifests.join(name);
        std::fs::write(&path, text).map_err(FileError::at("write", &path))?;
    }
    netns::add(&node)?;
    println!("node {node}: agent starting, state in {}", state_dir.display());
    let exe = std::env::current_exe().map_err(FileError::at("locate", Path::new("the netstack binary")))?;
    let http = ["--http".as_ref(), "127.0.0.1:0".as_ref()];
    scene.agent = Some(spawn_agent(&exe, &scene.config, &node, &manifests, &http)?);
    let list = wait_for_endpoints(&scene.config.socket(), 4, Duration::from_secs(30))?;
    println!("\nendpoints:");
    let mut pods = Vec::new();
    for e in list.as_array().into_iter().flatten() {
        let name = e["pod"].as_str().unwrap_or("").to_string();
        let ipv4: Ipv4Addr = e["ipv4"].as_str().and_then(|a| a.parse().ok()).unwrap_or(Ipv4Addr::UNSPECIFIED);
        let identity = e["identity"].as_u64().unwrap_or(0);
        println!("  {:<14} {:<12} identity {:<5} {}", name, ipv4, identity, e["interface"].as_str().unwrap_or(""));
        let netns = e["netns"].as_str().unwrap_or("").to_string();
        let (socket, node) = (scene.config.socket(), scene.node.clone());
        pods.push(DemoPod { name, id: e["id"].as_u64().unwrap_or(0), ipv4, netns, socket, node });
    }
    Ok((scene, pods))
}

/// Probes every connection of the table; returns how many did not do what the policies say.
/// With `show_nodes`, each row says which nodes the connection crosses.
fn probe_connections(pods: &[DemoPod], show_nodes: bool) -> Result<usize, DemoError> {
    let find = |name: &str| pods.iter().find(|p| p.name == name).ok_or_else(|| DemoError::NoEndpoint(name.into()));
    let nodes_header = if show_nodes { format!("{:<14} ", "NODES") } else { String::new() };
    println!("\n{:<14} {:<16} {nodes_header}{:<11} {:<8} {:<8} WHY", "FROM", "TO", "TRAFFIC", "EXPECTED", "RESULT");
    let mut surprises = 0;
    let through_service = SERVICE_CONNECTIONS
        .iter()
        .map(|&(from, probe, expect, why)| (from, "shop/backend", Some(BACKEND_SERVICE), probe, expect, why));
    let direct = CONNECTIONS.iter().map(|&(from, to, probe, expect, why)| (from, to, None, probe, expect, why));
    for (from, to, service, probe_kind, expect, why) in direct.chain(through_service) {
        let (src, dst) = (find(from)?, find(to)?);
        let (label, address) = service.unwrap_or((to, dst.ipv4));
        let counts = || [src, dst].map(|p| drops(&p.socket, p.id));
        let before = counts();
        let outcome = probe::run(&src.netns, &dst.netns, address, probe_kind, Duration::from_millis(700));
        let after = counts();
        let mut reasons = Vec::new();
        for (i, who) in [from, to].iter().enumerate() {
            for (dir, reason, packets) in &after[i] {
                let was = before[i].iter().find(|(d, r, _)| d == dir && r == reason).map_or(0, |b| b.2);
                if *packets > was {
                    reasons.push(format!("{reason} at {who} {dir}"));
                }
            }
        }
        let result = match &outcome {
            Outcome::Connected => "PASS".to_string(),
            Outcome::TimedOut | Outcome::Refused => "DROP".to_string(),
            Outcome::Failed(e) => format!("ERROR ({e})"),
        };
        let expected = if expect { "PASS" } else { "DROP" };
        let detail = if reasons.is_empty() { why.to_string() } else { format!("{} — {why}", reasons.join(", ")) };
        let mark = if result == expected { "" } else { "  <-- unexpected" };
        let nodes = if show_nodes { format!("{:<14} ", format!("{}→{}", src.node, dst.node)) } else { String::new() };
        println!(
            "{from:<14} {label:<16} {nodes}{:<11} {expected:<8} {result:<8} {detail}{mark}",
            probe_kind.to_string()
        );
        surprises += usize::from(result != expected);
    }
    Ok(surprises)
}

/// Runs the demo (with `hold`, keeping the scene up until Ctrl-C after it); `Err` when
/// anything could not be set up or a connection did not behave as the policies say.
pub fn run(hold: bool) -> Result<(), DemoError> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err(DemoError::NotRoot);
    }
    ensure_bpffs()?;
    let (scene, pods) = start()?;
    let surprises = probe_connections(&pods, false)?;
    println!("\nreplies of allowed connections pass by conntrack; every pod has ingress default deny (the CCNP selects all).");
    observe::print_excerpt(&scene.config.state_dir);
    observe::print_pages(&scene.node, &scene.config.state_dir, hold);
    if hold {
        observe::hold();
    }
    let node = scene.node.clone();
    drop(scene);
    println!("removed node {node}, its pods and pins");
    if surprises > 0 {
        return Err(DemoError::Surprises(surprises));
    }
    Ok(())
}
