//! `netstack`: the reference node agent and its CLI.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use netstack_ref::agent::api::{call, ApiError, Request};
use netstack_ref::agent::api_types::{ConntrackGcStatus, Status};
use netstack_ref::agent::sources::KubernetesConfig;
use netstack_ref::agent::{self, sources, AgentConfig};
use netstack_ref::cluster::routing::Routing;
use netstack_ref::file_error::FileError;
use netstack_ref::policy::api::Cidr;
use netstack_ref::policy::AllowLocalhost;

#[derive(Parser)]
#[command(name = "netstack", about = "Reference node agent: endpoints, identities and network policy in eBPF")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct State {
    /// The agent's state directory (its API socket lives there).
    #[arg(long, default_value = "/var/run/netstack")]
    state_dir: PathBuf,
}

/// How a listing command prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    /// Aligned columns.
    Table,
    /// The API's JSON (the typed structs of `agent::api_types`).
    Json,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Brings up nodes on this machine: a network namespace each on an underlay bridge, with
    /// its own agent, state and pin directories, pod CIDR and underlay address, routes to the
    /// other nodes' pod CIDRs, and a client namespace on the underlay.
    Up {
        /// Number of nodes.
        #[arg(long, default_value_t = 3)]
        nodes: u8,
        /// How pods reach other nodes' pods: `native` routes on the underlay, or `tunnel`
        /// (VXLAN, the VNI carrying the source's security identity).
        #[arg(long, value_enum, default_value = "native")]
        routing: Routing,
        /// The cluster's name: the prefix of its namespaces.
        #[arg(long, default_value = "nsc")]
        name: String,
        /// Start an etcd on loopback for the nodes (`etcd`), or none.
        #[arg(long, value_parser = ["etcd", "none"], default_value = "none")]
        kvstore: String,
        /// Where the cluster's record and the nodes' state live.
        #[arg(long, default_value = "/var/run/netstack-cluster")]
        state_dir: PathBuf,
        /// A manifests directory every agent watches; each runs the pods scheduled to it
        /// (`spec.nodeName`) and those scheduled nowhere.
        #[arg(long)]
        manifests: Option<PathBuf>,
        /// Where the agents read resources: the manifests directory (`files`), or the kvstore
        /// (`kvstore`: the directory's files stored there at start; `cluster apply` changes
        /// them).
        #[arg(long, value_parser = ["files", "kvstore"], default_value = "files")]
        resources: String,
        /// Encrypt pod traffic between the nodes: `wireguard` (each agent with
        /// `--enable-wireguard`; `wireguard-strict` adds `--encryption-strict-mode`) or `none`.
        #[arg(long, value_parser = ["none", "wireguard", "wireguard-strict"], default_value = "none")]
        encryption: String,
        /// Which WireGuard the agents run (`--wireguard-backend` of each).
        #[arg(long, value_enum, default_value = "auto")]
        wireguard_backend: netstack_ref::encryption::node::BackendChoice,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Brings the cluster down: agents, what they made, etcd, namespaces, state. Also after a
    /// crash.
    Down {
        /// The cluster's name, when its record is gone (the record names it otherwise).
        #[arg(long, default_value = "nsc")]
        name: String,
        /// Where the cluster's record lives.
        #[arg(long, default_value = "/var/run/netstack-cluster")]
        state_dir: PathBuf,
    },
    /// Validates a manifest file and stores it in the cluster's kvstore, where every agent of a
    /// cluster brought up with `--resources kvstore` reads it.
    Apply {
        /// The file.
        file: PathBuf,
        /// Where the cluster's record lives.
        #[arg(long, default_value = "/var/run/netstack-cluster")]
        state_dir: PathBuf,
    },
    /// Removes a manifest file (by its name) from the cluster's kvstore.
    Delete {
        /// The file's name, as applied.
        name: String,
        /// Where the cluster's record lives.
        #[arg(long, default_value = "/var/run/netstack-cluster")]
        state_dir: PathBuf,
    },
    /// Restarts one node's agent (stopped, started again on the same state): the datapath stays
    /// pinned, and the new agent adopts it.
    Restart {
        /// The node (`node1`).
        #[arg(long)]
        node: String,
        /// Where the cluster's record lives.
        #[arg(long, default_value = "/var/run/netstack-cluster")]
        state_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum EncryptionCommand {
    /// Mode, backend, this node's public key, each peer's last handshake and bytes.
    Status {
        #[command(flatten)]
        state: State,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Makes a new key pair, keeps it, publishes the public key.
    Rotate {
        #[command(flatten)]
        state: State,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Several nodes on this machine.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Runs the node agent.
    Agent {
        #[command(flatten)]
        state: State,
        /// A directory of manifests to watch.
        #[arg(long)]
        manifests: Option<PathBuf>,
        /// Run inside this network namespace (the node), entered before anything else.
        #[arg(long)]
        netns: Option<String>,
        /// The node's name.
        #[arg(long, default_value = "node-1")]
        node_name: String,
        /// The node's pod CIDR.
        #[arg(long, default_value = "10.200.0.0/24")]
        pod_cidr: String,
        /// Whether the node itself may always reach its pods (`always`, Cilium's default in
        /// Kubernetes mode, so kubelet's probes work) or is subject to policy (`policy`).
        #[arg(long, default_value = "always", value_parser = ["always", "policy"])]
        allow_localhost: String,
        /// The cluster's kvstore (`http://192.168.100.1:2379`): nodes and identities shared
        /// with the other agents.
        #[arg(long)]
        kvstore: Option<String>,
        /// Read manifest files kept in the kvstore (`netstack cluster apply`) beside the local
        /// ones.
        #[arg(long, requires = "kvstore")]
        resources_from_kvstore: bool,
        /// The node's underlay address, published in its node entry.
        #[arg(long)]
        node_address: Option<std::net::IpAddr>,
        /// How pods reach other nodes' pods: `native` (routes the underlay provides) or
        /// `tunnel` (a VXLAN device the agent makes, the VNI carrying the source's identity).
        #[arg(long, value_enum, default_value = "native")]
        routing: Routing,
        /// The devices traffic from outside arrives on (comma-separated): the north-south load
        /// balancer (NodePort, ExternalIPs, LoadBalancer) is attached to each. Needs
        /// `--node-address`.
        #[arg(long, value_delimiter = ',')]
        devices: Vec<String>,
        /// How long a cluster identity no node uses stays before the cluster's collector (the
        /// live node first by name) deletes it.
        #[arg(long, default_value_t = 60)]
        identity_gc_grace_seconds: u64,
        /// Serve Prometheus metrics (`/metrics`) and the service map (`/`) over HTTP on this
        /// address (`127.0.0.1:9965`; port 0 picks a free one, which `netstack status` shows).
        /// It is bound before `--netns` is entered, so it serves the namespace the agent was
        /// started in.
        #[arg(long)]
        http: Option<std::net::SocketAddr>,
        /// How much the datapath reports as flows: `medium` (a connection's start, first reply
        /// and end; drops always) or `none` (every packet).
        #[arg(long, value_enum, default_value = "medium")]
        monitor_aggregation: netstack_ref::datapath::events::Aggregation,
        /// Encrypt pods' traffic to other nodes with WireGuard (Cilium's flag): the node's key
        /// is made on first start and published in its kvstore entry; the other nodes that
        /// published theirs are its peers. Needs `--node-address`.
        #[arg(long)]
        enable_wireguard: bool,
        /// With WireGuard: drop pods' packets to a node whose key is not known rather than send
        /// them in clear.
        #[arg(long, requires = "enable_wireguard")]
        encryption_strict_mode: bool,
        /// With WireGuard: the kernel's (`kernel`), userspace on a TUN device (`userspace`), or
        /// the kernel's where the kernel has it (`auto`).
        #[arg(long, value_enum, default_value = "auto", requires = "enable_wireguard")]
        wireguard_backend: netstack_ref::encryption::node::BackendChoice,
        #[command(flatten)]
        kubernetes: KubernetesFlags,
    },
    /// Flows the datapath reported, as `hubble observe` shows them: `--last N` (default 20),
    /// `--first N`, `-f`, `--since`/`--until` (RFC 3339 or `5m`), `-o
    /// compact|dict|json|jsonpb|table`, `--state-dir`, and hubble's filter flags
    /// (`--[from-|to-]pod|namespace|label|ip|service|port|identity`, `-n`, `-l`, `--verdict`,
    /// `--drop-reason-desc`, `-t/--type`, `--protocol`, `--tcp-flags`, `--traffic-direction`,
    /// `--node-name`, `--not`).
    #[command(disable_help_flag = true)]
    Observe {
        /// The options and filters, in any order.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Encryption between nodes: `status` (mode, backend, key, each peer's last handshake
    /// and bytes) and `rotate` (a new key, published; peers switch over without breaking
    /// connections).
    Encryption {
        #[command(subcommand)]
        command: EncryptionCommand,
    },
    /// The cluster's nodes.
    Node {
        #[command(subcommand)]
        command: ListOnly,
    },
    /// Builds a small scene, shows which connections pass and why, removes everything.
    Demo {
        /// Nodes: 1 runs the scene on one node; more bring up a cluster on this machine
        /// (`netstack cluster up`, etcd in the underlay), the pods spread over its nodes.
        #[arg(long, default_value_t = 1)]
        nodes: u8,
        /// How pods reach other nodes' pods, with more than one node.
        #[arg(long, value_enum, default_value = "tunnel")]
        routing: Routing,
        /// Keep the scene up after the table (the service map and metrics pages stay served)
        /// until Ctrl-C.
        #[arg(long)]
        hold: bool,
        /// With more than one node: encrypt pod traffic between them (`wireguard`,
        /// `wireguard-strict`; as `netstack cluster up --encryption`) or not (`none`).
        #[arg(long, value_parser = ["none", "wireguard", "wireguard-strict"], default_value = "none")]
        encryption: String,
    },
    /// Validates a manifest file and hands it to the agent (kept in the state directory).
    Apply {
        #[command(flatten)]
        state: State,
        /// The file.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
    /// Withdraws a file given to `apply` (by the same file name).
    Delete {
        #[command(flatten)]
        state: State,
        /// The file.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
    /// The agent's health, counts and errors.
    Status {
        #[command(flatten)]
        state: State,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Output,
    },
    /// Endpoints.
    Endpoint {
        #[command(subcommand)]
        command: EndpointCommand,
    },
    /// Services: each frontend and its backends.
    Service {
        #[command(subcommand)]
        command: ListOnly,
    },
    /// Identities.
    Identity {
        #[command(subcommand)]
        command: ListOnly,
    },
    /// Policies.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The datapath's view.
    Bpf {
        #[command(subcommand)]
        command: BpfCommand,
    },
    /// Removes everything an agent made (stop it first): endpoints, namespaces, pins.
    Reset {
        #[command(flatten)]
        state: State,
    },
    /// The userspace WireGuard device of a node, in a process of its own: started by the
    /// agent (`--enable-wireguard` without the kernel's), which drives it over
    /// `<state-dir>/wireguard/device.sock`; it outlives the agent until `agent reset`.
    #[command(hide = true)]
    WireguardDevice {
        /// The node's state directory (its key; the socket, pid and log files).
        #[arg(long)]
        state_dir: PathBuf,
        /// The TUN device's name.
        #[arg(long)]
        device: String,
        /// The UDP address to listen on.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// The link datagrams leave by, whatever the routes say.
        #[arg(long)]
        send_through: Option<String>,
    },
}

#[derive(Subcommand)]
enum ListOnly {
    /// Lists them.
    List {
        #[command(flatten)]
        state: State,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Output,
    },
}

#[derive(Subcommand)]
enum EndpointCommand {
    /// Lists them.
    List {
        #[command(flatten)]
        state: State,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Output,
    },
    /// An endpoint's datapath counters: packets and bytes by direction and verdict reason.
    Verdicts {
        #[command(flatten)]
        state: State,
        /// Endpoint id or pod (`namespace/name`).
        endpoint: String,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Output,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Policies in force.
    Get {
        #[command(flatten)]
        state: State,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Output,
    },
    /// Checks files without an agent: exit status 1 and file:line: field: why on the first error.
    /// Fields the Kubernetes API server would prune (a top-level `description`, unknown
    /// `metadata` keys) are warnings.
    Validate {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Refuse fields the API server would prune instead of warning about them.
        #[arg(long)]
        strict: bool,
    },
}

#[derive(Subcommand)]
enum BpfCommand {
    /// Policy maps.
    Policy {
        #[command(subcommand)]
        command: BpfPolicyCommand,
    },
    /// The node's ipcache: which identity an address has, and behind which node it sits.
    Ipcache {
        #[command(subcommand)]
        command: ListOnly,
    },
    /// The load balancer's maps: frontends, their slots and backends.
    Lb {
        #[command(subcommand)]
        command: ListOnly,
    },
}

#[derive(Subcommand)]
enum BpfPolicyCommand {
    /// One endpoint's policy map as the datapath sees it.
    Get {
        #[command(flatten)]
        state: State,
        /// Endpoint id or namespace/pod.
        endpoint: String,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Output,
    },
}

/// `--encryption`'s value (`none`, `wireguard`, `wireguard-strict`) as settings.
fn encryption_settings(
    encryption: &str,
    backend: netstack_ref::encryption::node::BackendChoice,
) -> Option<netstack_ref::encryption::node::EncryptionSettings> {
    use netstack_ref::encryption::node::EncryptionSettings;
    match encryption {
        "wireguard" => Some(EncryptionSettings { strict: false, backend }),
        "wireguard-strict" => Some(EncryptionSettings { strict: true, backend }),
        _ => None,
    }
}

fn cluster(command: ClusterCommand) -> Result<(), CliError> {
    use netstack_ref::cluster::topology::{self, ClusterOptions};
    match command {
        ClusterCommand::Up {
            nodes,
            routing,
            name,
            kvstore,
            state_dir,
            manifests,
            resources,
            encryption,
            wireguard_backend,
            output,
        } => {
            let agent_binary = std::env::current_exe().map_err(CliError::OwnBinary)?;
            let manifests = manifests.map(|m| std::fs::canonicalize(&m).unwrap_or(m));
            let options = ClusterOptions {
                name,
                nodes,
                routing,
                etcd: kvstore == "etcd",
                state_dir,
                agent_binary,
                manifests,
                kvstore_resources: resources == "kvstore",
                encryption: encryption_settings(&encryption, wireguard_backend),
            };
            let record = topology::up(&options)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&record).expect("records serialise")),
                Output::Table => {
                    println!("cluster {}: client {} ({})", record.name, record.client_netns, record.client_address);
                    for node in &record.nodes {
                        println!(
                            "  {}  netns {}  underlay {}  pods {}",
                            node.name, node.netns, node.underlay, node.pod_cidr
                        );
                    }
                    if let Some((endpoint, _, _)) = &record.etcd {
                        println!("  etcd {endpoint}");
                    }
                }
            }
            Ok(())
        }
        ClusterCommand::Down { name, state_dir } => Ok(topology::down(&state_dir, &name)?),
        ClusterCommand::Apply { file, state_dir } => {
            for warning in sources::check(&file)?.warnings {
                eprintln!("warning: {warning}");
            }
            let text = std::fs::read_to_string(&file).map_err(FileError::at("read", &file))?;
            let name = file.file_name().ok_or_else(|| CliError::NoFileName(file.clone()))?.to_string_lossy();
            topology::apply_resource_file(&cluster_record(&state_dir)?, &name, Some(&text))?;
            println!("{name}: stored in the cluster's kvstore");
            Ok(())
        }
        ClusterCommand::Delete { name, state_dir } => {
            match topology::apply_resource_file(&cluster_record(&state_dir)?, &name, None)? {
                true => println!("{name}: removed from the cluster's kvstore"),
                false => println!("{name}: not in the cluster's kvstore"),
            }
            Ok(())
        }
        ClusterCommand::Restart { node, state_dir } => {
            let pid = topology::restart_agent(&state_dir, &node)?;
            println!("{node}: agent restarted (pid {pid})");
            Ok(())
        }
    }
}

fn cluster_record(state_dir: &std::path::Path) -> Result<netstack_ref::cluster::topology::ClusterRecord, CliError> {
    netstack_ref::cluster::topology::ClusterRecord::load(state_dir).ok_or_else(|| CliError::NoCluster(state_dir.into()))
}

/// What the command line reports when a command fails.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Agent(#[from] agent::AgentError),
    #[error("--http {address}: bind: {source}")]
    Http { address: std::net::SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Plumbing(#[from] agent::netns::PlumbingError),
    #[error(transparent)]
    Demo(#[from] netstack_ref::demo::DemoError),
    #[error(transparent)]
    Source(#[from] sources::SourceError),
    #[error(transparent)]
    Manifest(#[from] netstack_ref::manifest::error::ManifestError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("--pod-cidr {0:?} is not a CIDR")]
    PodCidr(String),
    #[error("{0}: a file name is needed")]
    NoFileName(PathBuf),
    #[error(transparent)]
    Cluster(#[from] netstack_ref::cluster::topology::ClusterError),
    #[error("find this program's binary (to run agents with): {0}")]
    OwnBinary(std::io::Error),
    #[error("no cluster is recorded in {} (netstack cluster up)", .0.display())]
    NoCluster(PathBuf),
    #[error("observe: {0}")]
    Observe(#[from] netstack_ref::observe::filter::FilterError),
    #[error("observe: the agent's reply: {0}")]
    ObserveReply(serde_json::Error),
}

/// `netstack observe`: the ring's flows through the filters, then (with `-f`) new ones as they
/// come.
fn observe(args: &[String]) -> Result<(), CliError> {
    use netstack_ref::agent::api::FlowsReply;
    use netstack_ref::observe::command::ObserveOptions;
    use netstack_ref::observe::print::{render, table_header, Format};
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: netstack observe [--state-dir DIR] [--last N | --first N] [-f] [--since T] [--until T] [-o compact|dict|json|jsonpb|table] [FILTERS…]");
        return Ok(());
    }
    let options = ObserveOptions::parse(args)?;
    let socket = options.state_dir.join("agent.sock");
    let fetch = |request: &Request| -> Result<FlowsReply, CliError> {
        serde_json::from_value(call(&socket, request)?).map_err(CliError::ObserveReply)
    };
    let shown = |flow: &netstack_ref::observe::flow::Flow| options.filters.shows(flow) && options.in_time(&flow.time);
    if options.format == Format::Table {
        println!("{}", table_header());
    }
    let reply = fetch(&Request::Flows { number: None, first: options.first.is_some(), since: None })?;
    let matching: Vec<_> = reply.flows.iter().filter(|f| shown(f)).collect();
    let picked: Vec<_> = match (options.first, options.last, options.follow) {
        (Some(n), _, _) => matching.into_iter().take(n).collect(),
        (None, Some(n), _) => matching[matching.len().saturating_sub(n)..].to_vec(),
        (None, None, true) => Vec::new(),
        (None, None, false) => matching[matching.len().saturating_sub(20)..].to_vec(),
    };
    for flow in picked {
        println!("{}", render(flow, options.format));
    }
    if !options.follow {
        return Ok(());
    }
    let mut next = reply.next;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let reply = fetch(&Request::Flows { number: None, first: false, since: Some(next) })?;
        if reply.lost > 0 {
            eprintln!("EVENTS LOST: HUBBLE_RING_BUFFER {}", reply.lost);
        }
        for flow in reply.flows.iter().filter(|f| shown(f)) {
            println!("{}", render(flow, options.format));
        }
        next = reply.next;
    }
}

fn ask(state: &State, request: Request) -> Result<serde_json::Value, ApiError> {
    call(&state.state_dir.join("agent.sock"), &request)
}

fn table(rows: &serde_json::Value, columns: &[(&str, &str)]) {
    let header: Vec<String> = columns.iter().map(|(title, _)| title.to_string()).collect();
    let mut lines = vec![header];
    for row in rows.as_array().into_iter().flatten() {
        lines.push(
            columns
                .iter()
                .map(|(_, field)| match &row[*field] {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => String::new(),
                    serde_json::Value::Array(items) => items
                        .iter()
                        .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(", "),
                    v => v.to_string(),
                })
                .collect(),
        );
    }
    let widths: Vec<usize> =
        (0..columns.len()).map(|i| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0)).collect();
    for line in lines {
        let cells: Vec<String> = line.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
}

fn print(value: serde_json::Value, output: Output, columns: &[(&str, &str)]) {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
    } else {
        table(&value, columns);
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netstack: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Agent {
            state,
            manifests,
            netns,
            node_name,
            pod_cidr,
            allow_localhost,
            kvstore,
            resources_from_kvstore,
            node_address,
            routing,
            devices,
            identity_gc_grace_seconds,
            http,
            monitor_aggregation,
            enable_wireguard,
            encryption_strict_mode,
            wireguard_backend,
            kubernetes,
        } => {
            let cluster = ClusterFlags {
                kvstore,
                resources_from_kvstore,
                node_address,
                routing,
                devices,
                identity_gc_grace: Duration::from_secs(identity_gc_grace_seconds),
                kubernetes: kubernetes.config(),
                http,
                aggregation: monitor_aggregation,
                encryption: enable_wireguard.then_some(netstack_ref::encryption::node::EncryptionSettings {
                    strict: encryption_strict_mode,
                    backend: wireguard_backend,
                }),
            };
            run_agent(state, manifests, netns, node_name, pod_cidr, &allow_localhost, cluster)
        }
        Command::Observe { args } => observe(&args),
        Command::WireguardDevice { state_dir, device, listen, send_through } => {
            let options = netstack_ref::encryption::detached::DeviceOptions { state_dir, device, listen, send_through };
            netstack_ref::encryption::detached::serve(&options)
                .map_err(|e| CliError::Agent(agent::AgentError::Encryption(e)))
        }
        Command::Encryption { command: EncryptionCommand::Status { state, output } } => {
            encryption_status(&state, output)
        }
        Command::Encryption { command: EncryptionCommand::Rotate { state } } => {
            let answer = ask(&state, Request::EncryptionRotate)?;
            println!("new public key {}", answer["publicKey"].as_str().unwrap_or(""));
            Ok(())
        }
        Command::Node { command: ListOnly::List { state, output } } => {
            let columns = [("NAME", "name"), ("ADDRESSES", "addresses"), ("POD CIDR", "pod_cidr")];
            print(ask(&state, Request::NodeList)?, output, &columns);
            Ok(())
        }
        Command::Demo { nodes: 0 | 1, hold, .. } => Ok(netstack_ref::demo::run(hold)?),
        Command::Demo { nodes, routing, hold, encryption } => {
            let encryption = encryption_settings(&encryption, Default::default());
            Ok(netstack_ref::demo::cluster::run(nodes, routing, encryption, hold)?)
        }
        Command::Cluster { command } => cluster(command),
        Command::Apply { state, file } => apply(&state, &file),
        Command::Delete { state, file } => {
            let name = file.file_name().ok_or_else(|| CliError::NoFileName(file.clone()))?;
            let path = state.state_dir.join("applied").join(name);
            std::fs::remove_file(&path).map_err(FileError::at("withdraw (was it applied?)", &file))?;
            let _ = ask(&state, Request::Sync);
            println!("deleted {}", file.display());
            Ok(())
        }
        Command::Status { state, output } => status(&state, output),
        Command::Endpoint { command: EndpointCommand::Verdicts { state, endpoint, output } } => {
            let columns =
                [("DIRECTION", "direction"), ("REASON", "reason"), ("PACKETS", "packets"), ("BYTES", "bytes")];
            print(ask(&state, Request::EndpointVerdicts { endpoint })?, output, &columns);
            Ok(())
        }
        Command::Endpoint { command: EndpointCommand::List { state, output } } => {
            let columns = [
                ("ID", "id"),
                ("POD", "pod"),
                ("IPV4", "ipv4"),
                ("IDENTITY", "identity"),
                ("INTERFACE", "interface"),
                ("POLICY ENTRIES", "policyEntries"),
                ("LABELS", "labels"),
            ];
            print(ask(&state, Request::EndpointList)?, output, &columns);
            Ok(())
        }
        Command::Identity { command: ListOnly::List { state, output } } => {
            print(ask(&state, Request::IdentityList)?, output, &[("IDENTITY", "identity"), ("LABELS", "labels")]);
            Ok(())
        }
        Command::Policy { command: PolicyCommand::Get { state, output } } => {
            let columns = [("KIND", "kind"), ("NAME", "name"), ("RULES", "rules"), ("ENFORCING", "enforcing")];
            print(ask(&state, Request::PolicyGet)?, output, &columns);
            Ok(())
        }
        Command::Policy { command: PolicyCommand::Validate { files, strict } } => validate(&files, strict),
        Command::Bpf { command: BpfCommand::Policy { command: BpfPolicyCommand::Get { state, endpoint, output } } } => {
            let columns = [
                ("DIRECTION", "direction"),
                ("IDENTITY", "identity"),
                ("L4", "l4"),
                ("VERDICT", "verdict"),
                ("PACKETS", "packets"),
            ];
            print(ask(&state, Request::BpfPolicyGet { endpoint })?, output, &columns);
            Ok(())
        }
        Command::Bpf { command: BpfCommand::Ipcache { command: ListOnly::List { state, output } } } => {
            let columns = [
                ("PREFIX", "prefix"),
                ("IDENTITY", "identity"),
                ("TUNNEL ENDPOINT", "tunnelEndpoint"),
                ("ENCRYPT", "encrypt"),
            ];
            print(ask(&state, Request::BpfIpcacheList)?, output, &columns);
            Ok(())
        }
        Command::Bpf { command: BpfCommand::Lb { command: ListOnly::List { state, output } } } => {
            let columns = [
                ("FRONTEND", "frontend"),
                ("SCOPE", "scope"),
                ("REVNAT", "revNatId"),
                ("FLAGS", "flags"),
                ("MAGLEV", "maglev"),
                ("BACKENDS", "backends"),
            ];
            print(ask(&state, Request::BpfLbList)?, output, &columns);
            Ok(())
        }
        Command::Service { command: ListOnly::List { state, output } } => {
            let columns =
                [("SERVICE", "service"), ("TYPE", "type"), ("FRONTEND", "frontend"), ("BACKENDS", "backends")];
            print(ask(&state, Request::ServiceList)?, output, &columns);
            Ok(())
        }
        Command::Reset { state } => {
            let mut config = AgentConfig::new(&state.state_dir, None);
            config.routing = agent::state::Persisted::load(&state.state_dir).map(|p| p.routing).unwrap_or_default();
            Ok(agent::reset(&config)?)
        }
    }
}

/// The agent's cluster flags.
struct ClusterFlags {
    kvstore: Option<String>,
    resources_from_kvstore: bool,
    node_address: Option<std::net::IpAddr>,
    routing: Routing,
    devices: Vec<String>,
    identity_gc_grace: Duration,
    kubernetes: Option<KubernetesConfig>,
    http: Option<std::net::SocketAddr>,
    aggregation: netstack_ref::datapath::events::Aggregation,
    encryption: Option<netstack_ref::encryption::node::EncryptionSettings>,
}

/// Where the agent finds a Kubernetes API server to watch (pods, namespaces, services,
/// endpoint slices, Cilium's policies) beside its files.
#[derive(clap::Args, Debug)]
struct KubernetesFlags {
    /// Watch the Kubernetes API server the kubeconfig names, found as `kubectl` finds it
    /// (`KUBECONFIG`, `~/.kube/config`, the in-cluster service account).
    #[arg(long)]
    kubernetes: bool,
    /// Watch the API server of this kubeconfig (implies `--kubernetes`).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig's context to use (implies `--kubernetes`); default its current one.
    #[arg(long)]
    kube_context: Option<String>,
}

impl KubernetesFlags {
    fn config(self) -> Option<KubernetesConfig> {
        let wanted = self.kubernetes || self.kubeconfig.is_some() || self.kube_context.is_some();
        wanted.then_some(KubernetesConfig { kubeconfig: self.kubeconfig, context: self.kube_context })
    }
}

fn run_agent(
    state: State,
    manifests: Option<PathBuf>,
    netns: Option<String>,
    node_name: String,
    pod_cidr: String,
    allow_localhost: &str,
    cluster: ClusterFlags,
) -> Result<(), CliError> {
    // Bound before the node's namespace is entered: it serves where the agent was started.
    let http = match cluster.http {
        Some(address) => {
            Some(std::net::TcpListener::bind(address).map_err(|source| CliError::Http { address, source })?)
        }
        None => None,
    };
    if let Some(name) = &netns {
        agent::netns::enter(name)?;
        let mut rtnl = agent::rtnl::Rtnl::open()?;
        let (lo, _) = rtnl.link("lo")?;
        rtnl.set_up(lo)?;
    }
    agent::netns::sysctl("net/ipv4/ip_forward", "1")?;
    // Host-side veths carry IPv4 only (pods have no IPv6 yet).
    agent::netns::sysctl("net/ipv6/conf/default/disable_ipv6", "1")?;
    let mut config = AgentConfig::new(&state.state_dir, manifests);
    config.pod_netns_prefix = netns.clone().unwrap_or_else(|| node_name.clone());
    config.node_name = node_name;
    config.pod_cidr = Cidr::parse(&pod_cidr).ok_or(CliError::PodCidr(pod_cidr))?;
    config.allow_localhost = AllowLocalhost::from_name(allow_localhost).unwrap_or_default();
    config.kvstore = cluster.kvstore;
    config.kvstore_resources = cluster.resources_from_kvstore;
    config.node_address = cluster.node_address;
    config.routing = cluster.routing;
    config.devices = cluster.devices;
    config.identity_gc_grace = cluster.identity_gc_grace;
    config.kubernetes = cluster.kubernetes;
    config.aggregation = cluster.aggregation;
    config.encryption = cluster.encryption;
    Ok(agent::run(config, Duration::from_millis(200), http)?)
}

fn print_device_counters(label: &str, counters: &netstack_ref::agent::api_types::DeviceCounters) {
    use netstack_ref::agent::api_types::DeviceCounters;
    match counters {
        DeviceCounters::Counting { device, verdicts } => {
            let rows: Vec<String> = verdicts
                .iter()
                .map(|v| {
                    let direction = if v.direction == netstack_ref::policy::Direction::Ingress { "in" } else { "out" };
                    format!("{direction} {} {} packets", v.reason, v.packets)
                })
                .collect();
            println!("{label:<14} {device}: {}", if rows.is_empty() { "idle".into() } else { rows.join(", ") });
        }
        DeviceCounters::Unavailable { error } => println!("{label:<14} unavailable: {error}"),
    }
}

fn apply(state: &State, file: &std::path::Path) -> Result<(), CliError> {
    for warning in sources::check(file)?.warnings {
        eprintln!("warning: {warning}");
    }
    let dir = state.state_dir.join("applied");
    std::fs::create_dir_all(&dir).map_err(FileError::at("create", &dir))?;
    let name = file.file_name().ok_or_else(|| CliError::NoFileName(file.to_path_buf()))?;
    let tmp = dir.join(".incoming");
    std::fs::copy(file, &tmp).map_err(FileError::at("copy", file))?;
    std::fs::rename(&tmp, dir.join(name)).map_err(FileError::at("rename", &tmp))?;
    match ask(state, Request::Sync) {
        Ok(_) => println!("applied {}", file.display()),
        Err(_) => {
            println!("applied {} (the agent is not running; it takes effect when it starts)", file.display())
        }
    }
    Ok(())
}

fn encryption_status(state: &State, output: Output) -> Result<(), CliError> {
    let answer = ask(state, Request::EncryptionStatus)?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&answer).map_err(ApiError::from)?);
        return Ok(());
    }
    let status: netstack_ref::encryption::node::EncryptionStatus =
        serde_json::from_value(answer).map_err(ApiError::from)?;
    println!(
        "{} ({} backend, device {}{}), public key {}",
        status.mode,
        status.backend,
        status.device,
        if status.strict { ", strict" } else { "" },
        status.public_key
    );
    if !status.backend_reason.is_empty() {
        println!("backend: {} ({})", status.backend, status.backend_reason);
    }
    println!(
        "{:<10} {:<46} {:<22} {:<16} {:>12} {:>12}",
        "PEER", "PUBLIC KEY", "ENDPOINT", "HANDSHAKE", "SENT", "RECEIVED"
    );
    for p in &status.peers {
        let handshake =
            p.last_handshake_millis.map_or("never".to_owned(), |ms| format!("{:.1} s ago", ms as f64 / 1000.0));
        println!(
            "{:<10} {:<46} {:<22} {:<16} {:>12} {:>12}",
            p.name, p.public_key, p.endpoint, handshake, p.tx_bytes, p.rx_bytes
        );
    }
    for node in &status.nodes_without_key {
        println!(
            "{node:<10} (no key published: not a peer{})",
            if status.strict { "; its pods are unreachable" } else { "" }
        );
    }
    if let Some(reason) = &status.peers_unreadable {
        println!("peers: unreadable: {reason}");
    }
    match status.dropped {
        Some(d) => println!(
            "dropped: {} for no peer, {} from unknown senders, {} not allowed, {} invalid",
            d.no_peer, d.unknown_sender, d.not_allowed, d.invalid
        ),
        None => println!("dropped: counted in the link's statistics (ip -s link show {})", status.device),
    }
    Ok(())
}

fn status(state: &State, output: Output) -> Result<(), CliError> {
    let status: Status = serde_json::from_value(ask(state, Request::Status)?).map_err(ApiError::from)?;
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(&status).map_err(ApiError::from)?);
        return Ok(());
    }
    println!("{:<14} {}", "node", status.node);
    println!("{:<14} {}", "podCIDR", status.pod_cidr);
    println!("{:<14} {}", "allowLocalhost", status.allow_localhost);
    println!("{:<14} {}", "endpoints", status.endpoints);
    println!("{:<14} {}", "identities", status.identities);
    println!("{:<14} {}", "policies", status.policies);
    println!("{:<14} {}", "syncs", status.syncs);
    println!("{:<14} {}", "uptimeSeconds", status.uptime_seconds);
    println!("{:<14} {}", "routing", status.routing);
    if let Some(tunnel) = &status.tunnel {
        print_device_counters("tunnel", tunnel);
    }
    if let Some(flows) = &status.flows {
        println!(
            "{:<14} {} stored (ring of {}); events: {} received, {} undecodable, {} lost in the datapath, {} lost \
             to followers; aggregation {}",
            "flows",
            flows.stored,
            flows.capacity,
            flows.received,
            flows.undecodable,
            flows.lost_in_datapath,
            flows.lost_to_followers,
            flows.aggregation
        );
    }
    if let Some(e) = &status.encryption {
        let handshakes = e.peers.iter().filter(|p| p.last_handshake_millis.is_some()).count();
        println!(
            "{:<14} {} ({}{}): {} peers, {} with a handshake",
            "encryption",
            e.mode,
            e.backend,
            if e.strict { ", strict" } else { "" },
            e.peers.len(),
            handshakes
        );
    }
    if let Some(address) = &status.http {
        println!("{:<14} http://{address}/ (service map), http://{address}/metrics", "http");
    }
    for device in &status.north_south {
        print_device_counters("northSouth", device);
    }
    if let Some(kv) = &status.kvstore {
        let state = match (&kv.error, kv.connected) {
            (Some(e), _) => format!("unreachable: {e}"),
            (None, true) => "connected".to_owned(),
            (None, false) => "connecting".to_owned(),
        };
        let synced = kv.last_sync.map(|t| format!(", last sync {t}")).unwrap_or_default();
        println!("{:<14} {} {state}{synced}", "kvstore", kv.endpoint);
    }
    if let Some(kube) = &status.kubernetes {
        println!("{:<14} {}", "kubernetes", kube.server);
        for k in &kube.kinds {
            let state = match (k.absent, k.listed) {
                (true, _) => "not served".to_owned(),
                (false, true) => {
                    format!("{} objects, {} in force, {} lists, {} events", k.objects, k.in_force, k.lists, k.events)
                }
                (false, false) => "listing".to_owned(),
            };
            let error = k.last_error.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default();
            println!("{:<14}   {:<31} {state}{error}", "", k.kind);
        }
    }
    if let Some(services) = &status.services {
        match &services.error {
            Some(e) => println!("{:<14} unavailable: {e}", "services"),
            None => println!(
                "{:<14} {} frontends; sockets: {} translated, {} refused (no backend), {} reversed, {} host binds refused, \
                 {} UDP sockets of gone backends destroyed",
                "services",
                services.frontends,
                services.translated,
                services.refused,
                services.reversed,
                services.binds_refused,
                services.udp_sockets_destroyed
            ),
        }
    }
    match status.conntrack_gc {
        ConntrackGcStatus::Unavailable { error } => println!("{:<14} unavailable: {error}", "conntrackGc"),
        ConntrackGcStatus::Running { runs, removed } => {
            println!("{:<14} {runs} runs, {removed} idle connections removed", "conntrackGc")
        }
    }
    for e in &status.errors {
        println!("error          {e}");
    }
    for w in &status.warnings {
        println!("warning        {w}");
    }
    Ok(())
}

fn validate(files: &[PathBuf], strict: bool) -> Result<(), CliError> {
    for file in files {
        let parsed = netstack_ref::manifest::read(file, strict)?;
        for warning in &parsed.warnings {
            eprintln!("warning: {warning}");
        }
        let mut notes = Vec::new();
        for r in &parsed.resources {
            if let netstack_ref::manifest::Resource::Policy(p) = r {
                for (origin, what) in p.unenforced() {
                    notes.push(format!(
                        "{}:{}: {}: {what} is valid but not enforced yet",
                        file.display(),
                        origin.line,
                        origin.field
                    ));
                }
            }
        }
        println!("{}: valid ({} resources)", file.display(), parsed.resources.len());
        for n in notes {
            println!("  note: {n}");
        }
    }
    Ok(())
}
