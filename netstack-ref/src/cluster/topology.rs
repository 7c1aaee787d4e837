//! Nodes on one machine: each node a network namespace joined to an underlay bridge (in a
//! namespace of its own), with its underlay address, pod CIDR, state and pin directories and
//! its own agent process; a client namespace on the underlay for north-south traffic; an etcd
//! on loopback when asked. What was made is recorded in `<state>/cluster.json`, and `down`
//! removes it — also after a crash, from the record or, without one, by the names' prefix.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::os::unix::process::CommandExt;

use serde::{Deserialize, Serialize};

use super::kvstore::KvError;
pub use super::kvstore::KvStore;
use super::routing::Routing;
use crate::agent::netns::{self, PlumbingError};
use crate::agent::rtnl::Rtnl;

/// What went wrong bringing a cluster up or down.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Namespaces, links, addresses or routes.
    #[error("cluster {cluster}: {source}")]
    Plumbing {
        /// The cluster.
        cluster: String,
        /// What failed.
        source: PlumbingError,
    },
    /// Files of the state directory, or a process to start.
    #[error("cluster {cluster}: {operation} {}: {source}", path.display())]
    Io {
        /// The cluster.
        cluster: String,
        /// What was being done.
        operation: &'static str,
        /// The file or program.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A cluster of this name is up already.
    #[error("cluster {0} is up already (netstack cluster down first)")]
    Exists(String),
    /// Its kvstore.
    #[error("cluster {cluster}: {source}")]
    Kvstore {
        /// The cluster.
        cluster: String,
        /// What failed.
        source: KvError,
    },
    /// Removing what a node's agent made (`agent reset`) left something behind.
    #[error("cluster {cluster}: node {}: remove what its agent made: {source}", node.display())]
    Reset {
        /// The cluster.
        cluster: String,
        /// The node's state directory.
        node: PathBuf,
        /// What failed.
        #[source]
        source: Box<crate::agent::AgentError>,
    },
    /// A request the command line cannot satisfy.
    #[error("cluster {cluster}: {reason}")]
    Invalid {
        /// The cluster.
        cluster: String,
        /// Why.
        reason: String,
    },
}

/// One node as brought up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Node name (`node1`).
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its underlay address.
    pub underlay: Ipv4Addr,
    /// Its pod CIDR.
    pub pod_cidr: String,
    /// Its agent's state directory.
    pub state_dir: PathBuf,
    /// Its agent's process id, while running.
    pub agent_pid: Option<u32>,
}

/// A cluster as brought up: what `down` removes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// Cluster name: the prefix of everything it made.
    pub name: String,
    /// How pod traffic crosses nodes.
    pub routing: Routing,
    /// The underlay's namespace (holds the bridge).
    pub underlay_netns: String,
    /// The client namespace, on the underlay.
    pub client_netns: String,
    /// The client's underlay address.
    pub client_address: Ipv4Addr,
    /// The nodes.
    pub nodes: Vec<NodeRecord>,
    /// The etcd started for it, in the underlay namespace: (client URL, process id, data
    /// directory).
    pub etcd: Option<(String, u32, PathBuf)>,
    /// The `netstack` binary its agents run.
    #[serde(default)]
    pub agent_binary: PathBuf,
    /// The manifests directory its agents watch.
    #[serde(default)]
    pub manifests: Option<PathBuf>,
    /// Whether its agents read their resources from the kvstore (`netstack cluster apply`)
    /// instead of the manifests directory.
    #[serde(default)]
    pub kvstore_resources: bool,
    /// How its agents encrypt pod traffic between nodes (`wireguard`, `wireguard-strict`).
    #[serde(default)]
    pub encryption: Option<String>,
    /// Which WireGuard its agents run.
    #[serde(default)]
    pub wireguard_backend: crate::encryption::node::BackendChoice,
}

/// The underlay: 192.168.100.0/24; the client at .2, node i at .(10 + i).
const UNDERLAY_PREFIX: u8 = 24;
/// The underlay's MTU: room for VXLAN's 50 bytes around a pod's 1500 (and for jumbo frames).
const UNDERLAY_MTU: u32 = 9000;

fn underlay_address(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 100, host)
}

/// What `up` is asked for.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Cluster name (a short prefix: namespaces are `<name>-node1`, …).
    pub name: String,
    /// Number of nodes (1 to 32).
    pub nodes: u8,
    /// How pod traffic crosses nodes.
    pub routing: Routing,
    /// Start an etcd on loopback for the nodes.
    pub etcd: bool,
    /// Where the cluster's record and every node's state live.
    pub state_dir: PathBuf,
    /// The `netstack` binary to run agents with.
    pub agent_binary: PathBuf,
    /// A manifests directory every agent watches (each runs the pods scheduled to it by
    /// `spec.nodeName`, and those scheduled nowhere).
    pub manifests: Option<PathBuf>,
    /// Keep the cluster's resources in the kvstore instead: the manifests directory's files
    /// are stored there at start, agents read them from there, `apply` changes them.
    pub kvstore_resources: bool,
    /// Encrypt pod traffic between the nodes (WireGuard), and how.
    pub encryption: Option<crate::encryption::node::EncryptionSettings>,
}

fn record_path(state_dir: &Path) -> PathBuf {
    state_dir.join("cluster.json")
}

impl ClusterRecord {
    /// The record under `state_dir`, if a cluster is up there.
    pub fn load(state_dir: &Path) -> Option<ClusterRecord> {
        serde_json::from_slice(&std::fs::read(record_path(state_dir)).ok()?).ok()
    }

    fn save(&self, state_dir: &Path) -> Result<(), ClusterError> {
        let path = record_path(state_dir);
        std::fs::write(&path, serde_json::to_vec_pretty(self).expect("records serialise"))
            .map_err(|source| ClusterError::Io { cluster: self.name.clone(), operation: "write", path, source })
    }
}

/// Brings a cluster up: the underlay and its bridge, the nodes and the client on it, native
/// routes between pod CIDRs when asked, an etcd when asked, and an agent per node. On any
/// failure what was made so far is removed.
pub fn up(options: &ClusterOptions) -> Result<ClusterRecord, ClusterError> {
    let name = &options.name;
    if !(1..=32).contains(&options.nodes) {
        return Err(ClusterError::Invalid { cluster: name.clone(), reason: "1 to 32 nodes".to_owned() });
    }
    if options.kvstore_resources && !options.etcd {
        let reason = "resources in the kvstore need one (--kvstore etcd)".to_owned();
        return Err(ClusterError::Invalid { cluster: name.clone(), reason });
    }
    if ClusterRecord::load(&options.state_dir).is_some() || netns::exists(&format!("{name}-underlay")) {
        return Err(ClusterError::Exists(name.clone()));
    }
    let io = |operation, path: &Path| {
        let (cluster, path) = (name.clone(), path.to_owned());
        move |source| ClusterError::Io { cluster, operation, path, source }
    };
    std::fs::create_dir_all(&options.state_dir).map_err(io("create", &options.state_dir))?;
    let mut record = ClusterRecord {
        name: name.clone(),
        routing: options.routing,
        underlay_netns: format!("{name}-underlay"),
        client_netns: format!("{name}-client"),
        client_address: underlay_address(2),
        nodes: (1..=options.nodes)
            .map(|i| NodeRecord {
                name: format!("node{i}"),
                netns: format!("{name}-node{i}"),
                underlay: underlay_address(10 + i),
                pod_cidr: format!("10.200.{i}.0/24"),
                state_dir: options.state_dir.join(format!("node{i}")),
                agent_pid: None,
            })
            .collect(),
        etcd: None,
        agent_binary: options.agent_binary.clone(),
        manifests: options.manifests.clone(),
        kvstore_resources: options.kvstore_resources,
        encryption: options.encryption.map(|s| if s.strict { "wireguard-strict" } else { "wireguard" }.to_owned()),
        wireguard_backend: options.encryption.map(|s| s.backend).unwrap_or_default(),
    };
    // Saved first, so `down` after a failure or a crash finds what to remove.
    record.save(&options.state_dir)?;
    let built = build(&mut record, options);
    if let Err(e) = built {
        let _ = down(&options.state_dir, name);
        return Err(e);
    }
    record.save(&options.state_dir)?;
    Ok(record)
}

fn plumbing(cluster: &str) -> impl Fn(PlumbingError) -> ClusterError + '_ {
    move |source| ClusterError::Plumbing { cluster: cluster.to_owned(), source }
}

/// Each node's (and the client's) device on the underlay: where traffic from outside arrives.
pub const UNDERLAY_DEVICE: &str = "underlay0";

/// Joins namespace `member` to the underlay bridge: a veth `underlay0` inside it (at
/// `address`, up, with loopback up), its peer `port` a bridge port.
fn join_underlay(underlay: &str, member: &str, port: &str, address: Ipv4Addr) -> Result<(), PlumbingError> {
    let member_ns = netns::open(member)?;
    let port = port.to_owned();
    netns::run_in(underlay, move || -> Result<(), PlumbingError> {
        let mut rtnl = Rtnl::open()?;
        rtnl.add_veth(&port, UNDERLAY_DEVICE, &member_ns)?;
        let (index, _) = rtnl.link(&port)?;
        let (bridge, _) = rtnl.link("br0")?;
        rtnl.set_mtu(index, UNDERLAY_MTU)?;
        rtnl.set_master(index, bridge)?;
        rtnl.set_up(index)
    })??;
    netns::run_in(member, move || -> Result<(), PlumbingError> {
        let mut rtnl = Rtnl::open()?;
        let (lo, _) = rtnl.link("lo")?;
        rtnl.set_up(lo)?;
        let (index, _) = rtnl.link(UNDERLAY_DEVICE)?;
        rtnl.set_mtu(index, UNDERLAY_MTU)?;
        rtnl.add_address(index, address, UNDERLAY_PREFIX)?;
        rtnl.set_up(index)
    })?
}

fn build(record: &mut ClusterRecord, options: &ClusterOptions) -> Result<(), ClusterError> {
    let name = record.name.clone();
    let plumbing = plumbing(&name);
    netns::add(&record.underlay_netns).map_err(&plumbing)?;
    netns::run_in(&record.underlay_netns, || -> Result<(), PlumbingError> {
        let mut rtnl = Rtnl::open()?;
        // Loopback up: etcd there answers its own health checks and our readiness probe.
        let (lo, _) = rtnl.link("lo")?;
        rtnl.set_up(lo)?;
        rtnl.add_bridge("br0")?;
        let (bridge, _) = rtnl.link("br0")?;
        rtnl.add_address(bridge, underlay_address(1), UNDERLAY_PREFIX)?;
        rtnl.set_up(bridge)
    })
    .map_err(&plumbing)?
    .map_err(&plumbing)?;
    netns::add(&record.client_netns).map_err(&plumbing)?;
    join_underlay(&record.underlay_netns, &record.client_netns, "client", record.client_address).map_err(&plumbing)?;
    for node in &record.nodes {
        netns::add(&node.netns).map_err(&plumbing)?;
        join_underlay(&record.underlay_netns, &node.netns, &node.name, node.underlay).map_err(&plumbing)?;
        netns::run_in(&node.netns, || netns::sysctl("net/ipv4/ip_forward", "1"))
            .map_err(&plumbing)?
            .map_err(&plumbing)?;
    }
    if record.routing == Routing::Native {
        for node in &record.nodes {
            let others: Vec<(Ipv4Addr, Ipv4Addr)> = record
                .nodes
                .iter()
                .filter(|o| o.name != node.name)
                .map(|o| {
                    (o.pod_cidr.split('/').next().and_then(|a| a.parse().ok()).expect("planned above"), o.underlay)
                })
                .collect();
            netns::run_in(&node.netns, move || -> Result<(), PlumbingError> {
                let mut rtnl = Rtnl::open()?;
                let (index, _) = rtnl.link(UNDERLAY_DEVICE)?;
                for (pods, via) in others {
                    rtnl.add_route(pods, 24, index, Some(via), false)?;
                }
                Ok(())
            })
            .map_err(&plumbing)?
            .map_err(&plumbing)?;
        }
    }
    if options.etcd {
        record.etcd = Some(start_etcd(&name, &record.underlay_netns, &options.state_dir)?);
        record.save(&options.state_dir)?;
    }
    if let (true, Some(dir)) = (record.kvstore_resources, &record.manifests) {
        let io = |operation, path: &Path| {
            let (cluster, path) = (name.clone(), path.to_owned());
            move |source| ClusterError::Io { cluster, operation, path, source }
        };
        for entry in std::fs::read_dir(dir).map_err(io("read", dir))?.flatten() {
            let path = entry.path();
            if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                let text = std::fs::read_to_string(&path).map_err(io("read", &path))?;
                apply_resource_file(record, &entry.file_name().to_string_lossy(), Some(&text))?;
            }
        }
    }
    for index in 0..record.nodes.len() {
        record.nodes[index].agent_pid = Some(start_agent(record, index)?);
    }
    Ok(())
}

/// Starts the agent of node `index` of `record` (its log in `agent.log` of the node's state
/// directory) and writes its pid file there; returns its process id.
pub fn start_agent(record: &ClusterRecord, index: usize) -> Result<u32, ClusterError> {
    let node = &record.nodes[index];
    let io = |operation, path: &Path| {
        let (cluster, path) = (record.name.clone(), path.to_owned());
        move |source| ClusterError::Io { cluster, operation, path, source }
    };
    std::fs::create_dir_all(&node.state_dir).map_err(io("create", &node.state_dir))?;
    let log = node.state_dir.join("agent.log");
    let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&log).map_err(io("open", &log))?;
    let stderr = log_file.try_clone().map_err(io("duplicate", &log))?;
    // Its own process group: the agent outlives the command that started it.
    let child = Command::new(&record.agent_binary)
        .arg("agent")
        .arg("--state-dir")
        .arg(&node.state_dir)
        .args(["--netns", &node.netns, "--node-name", &node.name, "--pod-cidr", &node.pod_cidr])
        .args(["--node-address", &node.underlay.to_string(), "--routing", record.routing.name()])
        .args(["--devices", UNDERLAY_DEVICE])
        // Metrics and the service map, served on the machine's loopback (bound before the
        // agent enters its node).
        .args(["--http", "127.0.0.1:0"])
        .args(
            record
                .manifests
                .iter()
                .filter(|_| !record.kvstore_resources)
                .flat_map(|m| [std::ffi::OsStr::new("--manifests"), m.as_os_str()]),
        )
        .args(record.kvstore_resources.then_some("--resources-from-kvstore"))
        .args(record.encryption.is_some().then_some("--enable-wireguard"))
        .args(record.encryption.as_deref().filter(|e| *e == "wireguard-strict").map(|_| "--encryption-strict-mode"))
        .args(
            record
                .encryption
                .as_ref()
                .map(|_| ["--wireguard-backend", record.wireguard_backend.name()])
                .into_iter()
                .flatten(),
        )
        .args(record.etcd.as_ref().map(|(endpoint, _, _)| ["--kvstore", endpoint.as_str()]).into_iter().flatten())
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .map_err(io("start an agent with", &record.agent_binary))?;
    // Beside the record (saved once every agent runs), so a crash in between leaves no agent
    // `down` cannot find.
    let pid_file = node.state_dir.join("agent.pid");
    std::fs::write(&pid_file, child.id().to_string()).map_err(io("write", &pid_file))?;
    Ok(child.id())
}

/// Restarts the agent of node `node` of the cluster recorded under `state_dir`: the running
/// one stopped (SIGTERM, then SIGKILL), a new one started on the same state. The datapath
/// stays pinned throughout; the new agent adopts it.
pub fn restart_agent(state_dir: &Path, node: &str) -> Result<u32, ClusterError> {
    let mut record = ClusterRecord::load(state_dir).ok_or_else(|| ClusterError::Invalid {
        cluster: state_dir.display().to_string(),
        reason: "no cluster is recorded there".to_owned(),
    })?;
    let index = record
        .nodes
        .iter()
        .position(|n| n.name == node)
        .ok_or_else(|| ClusterError::Invalid { cluster: record.name.clone(), reason: format!("no node {node}") })?;
    let pid_file = record.nodes[index].state_dir.join("agent.pid");
    if let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|s| s.trim().parse().ok()) {
        crate::process::stop(pid);
    }
    let pid = start_agent(&record, index)?;
    record.nodes[index].agent_pid = Some(pid);
    record.save(state_dir)?;
    Ok(pid)
}

/// Stores (`Some(text)`) or removes (`None`) the manifest file `name` in the kvstore of the
/// cluster `record` describes, for its agents to read; whether anything changed. The kvstore
/// lives in the underlay, so the call is made from there.
pub fn apply_resource_file(record: &ClusterRecord, name: &str, text: Option<&str>) -> Result<bool, ClusterError> {
    let cluster = record.name.clone();
    let Some((endpoint, _, _)) = record.etcd.clone() else {
        return Err(ClusterError::Invalid { cluster, reason: "it has no kvstore".to_owned() });
    };
    if name.is_empty() || name.contains('/') {
        return Err(ClusterError::Invalid { cluster, reason: format!("{name:?} is not a file name") });
    }
    let (name, text) = (name.to_owned(), text.map(str::to_owned));
    let stored = netns::run_in(&record.underlay_netns, move || {
        let store = KvStore::connect(&[endpoint], "netstack", std::time::Duration::from_secs(5))?;
        match text {
            Some(text) => store.put_resource_file(&name, &text).map(|()| true),
            None => store.delete_resource_file(&name),
        }
    })
    .map_err(plumbing(&cluster))?;
    stored.map_err(|source| ClusterError::Kvstore { cluster, source })
}

/// The kvstore's address: etcd in the underlay namespace, on the bridge, where every node
/// reaches it over its underlay link.
pub fn etcd_endpoint() -> String {
    format!("http://{}:2379", underlay_address(1))
}

fn start_etcd(cluster: &str, underlay: &str, state_dir: &Path) -> Result<(String, u32, PathBuf), ClusterError> {
    let io = |operation, path: &Path, source| ClusterError::Io {
        cluster: cluster.to_owned(),
        operation,
        path: path.to_owned(),
        source,
    };
    let data_dir = state_dir.join("etcd");
    let client = etcd_endpoint();
    let peer = format!("http://{}:2380", underlay_address(1));
    let member = format!("{cluster}-etcd");
    let log_path = state_dir.join("etcd.log");
    let log = std::fs::File::create(&log_path).map_err(|e| io("create", &log_path, e))?;
    let mut command = Command::new("etcd");
    command
        .args(["--name", &member, "--data-dir"])
        .arg(&data_dir)
        .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("{member}={peer}"), "--log-level", "error"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0);
    // Started from a thread inside the underlay namespace: the process is born there.
    let child = netns::run_in(underlay, move || command.spawn())
        .map_err(plumbing(cluster))?
        .map_err(|e| io("start (apt-get install etcd-server)", Path::new("etcd"), e))?;
    let address = underlay_address(1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let listening =
        || netns::run_in(underlay, move || std::net::TcpStream::connect((address, 2379)).is_ok()).unwrap_or(false);
    while !listening() {
        if std::time::Instant::now() > deadline {
            crate::process::stop(child.id());
            return Err(ClusterError::Invalid {
                cluster: cluster.to_owned(),
                reason: "etcd did not start within 20 s".to_owned(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok((client, child.id(), data_dir))
}

/// Brings cluster `name` (recorded under `state_dir`) down: agents stopped and what they made
/// removed, etcd stopped, namespaces deleted, the state directory removed. Works from the
/// record, or without one from the names' prefix (a crash before the record was written).
pub fn down(state_dir: &Path, name: &str) -> Result<(), ClusterError> {
    let record = ClusterRecord::load(state_dir);
    // The record knows the cluster's name; `name` is for a cluster whose record is gone.
    let recorded = record.as_ref().map(|r| r.name.clone());
    let name = recorded.as_deref().unwrap_or(name);
    let mut first_error = None;
    // Agents by their pid files (written as each started), then what each made.
    let node_dirs: Vec<PathBuf> = std::fs::read_dir(state_dir)
        .map(|dir| dir.flatten().map(|e| e.path()).filter(|p| p.join("agent.pid").exists()).collect())
        .unwrap_or_default();
    for dir in &node_dirs {
        if let Some(pid) = crate::process::read_pid_file(&dir.join("agent.pid")) {
            crate::process::stop(pid);
        }
        // Inside the node's namespace, where its host veths and tunnel device are.
        let mut config = crate::agent::AgentConfig::new(dir, None);
        let reset = match record.as_ref().and_then(|r| r.nodes.iter().find(|n| &n.state_dir == dir).map(|n| (r, n))) {
            Some((record, node)) if netns::exists(&node.netns) => {
                config.routing = record.routing;
                netns::run_in(&node.netns, move || crate::agent::reset(&config)).unwrap_or_else(|source| {
                    Err(crate::agent::AgentError::Plumbing { what: "enter the node's namespace", source })
                })
            }
            _ => crate::agent::reset(&config),
        };
        if let Err(e) = reset {
            let node = dir.clone();
            first_error.get_or_insert(ClusterError::Reset { cluster: name.to_owned(), node, source: Box::new(e) });
        }
    }
    // The agents are gone: a WireGuard device one of them was still starting is stopped too.
    for pid in crate::encryption::detached::devices_under(state_dir) {
        crate::process::stop(pid);
    }
    if let Some((_, pid, _)) = record.as_ref().and_then(|r| r.etcd.as_ref()) {
        crate::process::stop(*pid);
    }
    let prefix = format!("{name}-");
    let mut names: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|dir| dir.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.retain(|n| n.starts_with(&prefix));
    for netns_name in names {
        if let Err(e) = netns::delete(&netns_name) {
            first_error.get_or_insert(ClusterError::Plumbing { cluster: name.to_owned(), source: e });
        }
    }
    if state_dir.exists() {
        if let Err(source) = std::fs::remove_dir_all(state_dir) {
            first_error.get_or_insert(ClusterError::Io {
                cluster: name.to_owned(),
                operation: "remove",
                path: state_dir.to_owned(),
                source,
            });
        }
    }
    first_error.map_or(Ok(()), Err)
}
