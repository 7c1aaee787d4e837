//! The node agent: reads desired state (namespaces, pods, policies) from YAML, makes each pod an
//! endpoint, allocates identities, keeps the ipcache, resolves policy per endpoint and writes
//! only what changed into its policy map. Everything the datapath needs is pinned, so a restart
//! (or a crash) leaves traffic flowing; the next agent adopts the pins and re-syncs.

pub mod api;
pub mod api_types;
pub mod endpoint;
pub mod flows;
pub mod http;
pub mod netns;
pub mod rtnl;
pub mod sock_diag;
pub mod sources;
pub mod state;
pub mod steps;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::agent::rtnl::Rtnl;
use crate::cluster::kvstore::{IpcacheEntry, KvError, NodeEntry};
use crate::cluster::lingering::Lingering;
use crate::cluster::membership::Membership;
use crate::cluster::routing::{Routing, Tunnel, TunnelError};
use crate::datapath::{Conntrack, CtLifetimes, DatapathError, EndpointDatapath, Ipcache, IpcacheTarget, JiffiesClock};
use crate::identity::{CidrIdentities, IdentityAllocator, Labels, ReservedIdentity};
use crate::manifest::Pod;
use crate::policy::api::Cidr;
use crate::policy::{AllowLocalhost, Policy, PolicyMapState};
use endpoint::{EndpointError, EndpointRecord};
use sources::{KubernetesConfig, KubernetesSource, ResourceSource, Sources};
use state::{Persisted, StateError};

/// What stops the agent, or one of its steps: the operation, the object and the cause.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Its state or pin directory cannot be made.
    #[error("create {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Its state file.
    #[error(transparent)]
    State(#[from] StateError),
    /// The node's shared maps (ipcache, conntrack).
    #[error("{what}: {source}")]
    Datapath {
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: DatapathError,
    },
    /// An endpoint.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// No address is left for a new pod.
    #[error("pod CIDR {0} is full")]
    PodCidrFull(Cidr),
    /// Pods get IPv4 addresses.
    #[error("pod CIDR {0} is not IPv4")]
    PodCidrNotIpv4(Cidr),
    /// The local API.
    #[error(transparent)]
    Api(#[from] api::ApiError),
    /// Links of the node's namespace.
    #[error("{what}: {source}")]
    Plumbing {
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: crate::agent::netns::PlumbingError,
    },
    /// External devices need the node's IPv4 address.
    #[error("--devices {}: the north-south load balancer needs the node's IPv4 address (--node-address)", .0.join(","))]
    DevicesWithoutAddress(Vec<String>),
    /// The API server's thread ended.
    #[error("the API server stopped")]
    ApiStopped,
    /// The tunnel to the other nodes.
    #[error(transparent)]
    Tunnel(#[from] TunnelError),
    /// The Kubernetes source.
    #[error(transparent)]
    Kubernetes(#[from] sources::kubernetes::KubernetesError),
    /// The HTTP server.
    #[error(transparent)]
    Http(#[from] http::HttpError),
    /// Encryption between nodes.
    #[error(transparent)]
    Encryption(#[from] crate::encryption::node::EncryptionError),
}

/// How an agent is set up.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Persistent state: `state.json`, `applied/`, `agent.sock`.
    pub state_dir: PathBuf,
    /// A directory of manifests to watch.
    pub manifests: Option<PathBuf>,
    /// A Kubernetes API server to watch, beside the files.
    pub kubernetes: Option<KubernetesConfig>,
    /// Whether to read manifest files kept in the kvstore (`resources/`), beside the local ones.
    pub kvstore_resources: bool,
    /// The node's name (its `kubernetes.io/hostname` label).
    pub node_name: String,
    /// The node's pod CIDR (IPv4); its first address is the pods' gateway.
    pub pod_cidr: Cidr,
    /// Where the datapath is pinned.
    pub bpffs: PathBuf,
    /// Whether the host may always reach the node's pods (`--allow-localhost`).
    pub allow_localhost: AllowLocalhost,
    /// The cluster's kvstore (etcd URL): nodes and identities shared with the other agents.
    pub kvstore: Option<String>,
    /// The node's underlay address, published in its node entry.
    pub node_address: Option<IpAddr>,
    /// How pod traffic reaches other nodes' pods: routes someone else set up (native), or the
    /// agent's own VXLAN tunnel.
    pub routing: Routing,
    /// The devices traffic from outside the cluster arrives on (Cilium's `--devices`): the
    /// north-south load balancer (NodePort, ExternalIPs, LoadBalancer) sits on each.
    pub devices: Vec<String>,
    /// How long a cluster identity no node references stays before this agent, when it is the
    /// cluster's collector, deletes it.
    pub identity_gc_grace: Duration,
    /// Encrypt pods' traffic to other nodes (WireGuard), and how.
    pub encryption: Option<crate::encryption::node::EncryptionSettings>,
    /// How much the datapath reports (`--monitor-aggregation`).
    pub aggregation: crate::datapath::events::Aggregation,
    /// What pods' network namespaces are named after (`<prefix>-<namespace>-<pod>`): the node's
    /// name, or the node's own namespace when it is one (so two clusters on one machine, both
    /// with a `node1`, keep their pods apart).
    pub pod_netns_prefix: String,
}

impl AgentConfig {
    /// Defaults: node `node-1`, pod CIDR 10.200.0.0/24, pins under `/sys/fs/bpf/netstack_<hash>`
    /// of the state directory (so the same state directory finds the same pins).
    pub fn new(state_dir: impl Into<PathBuf>, manifests: Option<PathBuf>) -> AgentConfig {
        let state_dir = state_dir.into();
        let bpffs = default_bpffs(&state_dir);
        AgentConfig {
            state_dir,
            manifests,
            kubernetes: None,
            kvstore_resources: false,
            node_name: "node-1".into(),
            pod_cidr: Cidr::parse("10.200.0.0/24").expect("valid"),
            bpffs,
            allow_localhost: AllowLocalhost::Always,
            kvstore: None,
            node_address: None,
            routing: Routing::Native,
            devices: Vec::new(),
            pod_netns_prefix: "node-1".into(),
            identity_gc_grace: Duration::from_secs(60),
            aggregation: Default::default(),
            encryption: None,
        }
    }

    /// The pods' gateway: the pod CIDR's first address.
    pub fn router(&self) -> Ipv4Addr {
        match self.pod_cidr.addr {
            IpAddr::V4(a) => Ipv4Addr::from(u32::from(a) + 1),
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        }
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.state_dir.join("agent.sock")
    }

    /// Where `netstack apply` leaves files.
    pub fn applied_dir(&self) -> PathBuf {
        self.state_dir.join("applied")
    }
}

/// `/sys/fs/bpf/netstack_<hash of the state directory's absolute path>`.
pub fn default_bpffs(state_dir: &Path) -> PathBuf {
    let abs = std::fs::canonicalize(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
    let hash =
        abs.to_string_lossy().bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    PathBuf::from(format!("/sys/fs/bpf/netstack_{hash:016x}"))
}

/// A live endpoint.
#[derive(Debug)]
pub struct LiveEndpoint {
    /// Its persisted record.
    pub record: EndpointRecord,
    /// The pod it stands for.
    pub pod: Pod,
    /// Security labels.
    pub labels: Labels,
    /// Security identity.
    pub identity: u32,
    /// The datapath.
    pub datapath: EndpointDatapath,
    /// The policy map's contents as last written.
    pub policy: PolicyMapState,
}

/// The agent's state: what it made and what it last wrote. The reconcile's steps live in
/// [`steps`].
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    sources: Sources,
    persisted: Persisted,
    identities: IdentityAllocator,
    endpoints: BTreeMap<String, LiveEndpoint>,
    ipcache: Ipcache,
    ipcache_state: BTreeMap<Cidr, IpcacheTarget>,
    cidr_ids: CidrIdentities,
    policies: Vec<Policy>,
    errors: Vec<String>,
    started: Instant,
    syncs: u64,
    last_sync: Option<(Duration, usize, usize)>,
    conntrack_gc: ConntrackGc,
    /// Membership of the cluster, when the agent has a kvstore; and when it was last tended.
    cluster: Option<Membership>,
    cluster_tended: Option<Instant>,
    /// The other nodes' pods (address → identity and node) as the kvstore last gave them:
    /// written to this node's ipcache, so policy sees a remote pod's identity (and, in tunnel
    /// mode, the tunnel finds its node).
    remote_endpoints: Lingering<IpAddr, IpcacheEntry>,
    /// The other nodes, as the kvstore last gave them: their addresses are remote-node in the
    /// ipcache, their pod CIDRs routed into the tunnel.
    remote_nodes: Lingering<String, NodeEntry>,
    /// The tunnel, in tunnel mode.
    tunnel: Option<Tunnel>,
    /// How this node enforces each policy, as of the latest sync (published to the kvstore).
    policy_enforcement: BTreeMap<String, crate::cluster::policy_status::NodePolicyStatus>,
    /// Each policy's status across the cluster, as the kvstore last gave it.
    policy_status: BTreeMap<String, crate::cluster::policy_status::PolicyStatus>,
    /// The labels of the identities of other nodes' pods: policy selects remote pods by them.
    remote_identities: BTreeMap<u32, Labels>,
    /// Services: the catalog and the socket load balancer.
    services: crate::services::node::NodeServices,
    /// Flows from the datapath's events.
    flows: flows::FlowCollector,
    /// The HTTP server (metrics, service map), once started.
    http: Option<http::HttpServer>,
    /// Encryption between nodes, when on.
    encryption: Option<crate::encryption::node::NodeEncryption>,
}

/// How often the agent checks its kvstore connection (and reconnects with a backoff).
pub const CLUSTER_TEND_INTERVAL: Duration = Duration::from_secs(2);

/// How often the agent forgets idle connections.
pub const CONNTRACK_GC_INTERVAL: Duration = Duration::from_secs(30);

/// Conntrack garbage collection: its clock (none when the kernel's jiffies cannot be read, which
/// `status` reports) and what it has done.
#[derive(Debug)]
struct ConntrackGc {
    clock: Result<JiffiesClock, DatapathError>,
    lifetimes: CtLifetimes,
    last_run: Option<Instant>,
    runs: u64,
    removed: u64,
    /// Connections left after the latest run, and the table's capacity.
    live: Option<(usize, f64)>,
}

/// The north-south LB's view of each of `config.devices`: a device needs the node's IPv4
/// address (the source of SNAT flows).
fn north_south_devices(
    config: &AgentConfig,
    tunnel_ifindex: Option<u32>,
) -> Result<Vec<crate::datapath::nodeport::NodeportConfig>, AgentError> {
    if config.devices.is_empty() {
        return Ok(Vec::new());
    }
    let Some(IpAddr::V4(node_address)) = config.node_address else {
        return Err(AgentError::DevicesWithoutAddress(config.devices.clone()));
    };
    let plumbing = |e| AgentError::Plumbing { what: "find the external devices", source: e };
    let mut rtnl = Rtnl::open().map_err(plumbing)?;
    config
        .devices
        .iter()
        .map(|name| {
            let (device, _) = rtnl.link(name).map_err(plumbing)?;
            Ok(crate::datapath::nodeport::NodeportConfig {
                device_name: name.clone(),
                device,
                node_address,
                pod_cidr: config.pod_cidr,
                tunnel_ifindex,
            })
        })
        .collect()
}

fn create_dir(path: PathBuf) -> Result<(), AgentError> {
    std::fs::create_dir_all(&path).map_err(|source| AgentError::Directory { path, source })
}

impl Agent {
    /// Opens the state directory and the node's shared maps; adopts nothing yet (that happens
    /// in the first [`sync`](Self::sync)).
    pub fn new(config: AgentConfig) -> Result<Agent, AgentError> {
        create_dir(config.applied_dir())?;
        create_dir(config.bpffs.join("endpoints"))?;
        let mut persisted = Persisted::load(&config.state_dir)?;
        persisted.routing = config.routing;
        let datapath = |what| move |source| AgentError::Datapath { what, source };
        let ipcache = Ipcache::open(&config.bpffs).map_err(datapath("open the ipcache"))?;
        crate::datapath::events::set_aggregation(&config.bpffs, config.aggregation)
            .map_err(datapath("set the monitor aggregation"))?;
        // What the previous agent wrote is what the datapath has now.
        let ipcache_state = ipcache.entries().map_err(datapath("read the ipcache"))?.into_iter().collect();
        let tunnel = match config.routing {
            Routing::Tunnel => Some(Tunnel::open(&config.bpffs)?),
            Routing::Native => None,
        };
        let external = north_south_devices(&config, tunnel.as_ref().map(Tunnel::ifindex))?;
        // The agent is the netstack binary, which also runs the userspace WireGuard device.
        let netstack_binary = std::env::current_exe()
            .map_err(|source| AgentError::Directory { path: PathBuf::from("/proc/self/exe"), source })?;
        let encryption = config
            .encryption
            .map(|settings| {
                crate::encryption::node::NodeEncryption::start(
                    &netstack_binary,
                    &config.state_dir,
                    &config.bpffs,
                    config.node_address,
                    tunnel.is_some(),
                    settings,
                )
            })
            .transpose()?;
        let kubernetes = config.kubernetes.as_ref().map(KubernetesSource::start).transpose()?;
        let kvstore_resources = match (&config.kvstore, config.kvstore_resources) {
            (Some(endpoint), true) => Some(sources::KvstoreSource::new(endpoint)),
            _ => None,
        };
        let mut dirs = vec![config.applied_dir()];
        dirs.extend(config.manifests.clone());
        let cluster = config.kvstore.as_deref().map(|endpoint| {
            Membership::new(
                endpoint,
                NodeEntry {
                    name: config.node_name.clone(),
                    addresses: config.node_address.into_iter().collect(),
                    pod_cidr: config.pod_cidr.to_string(),
                    encryption_key: encryption.as_ref().map(|e| e.public_key()),
                },
            )
        });
        Ok(Agent {
            cluster,
            cluster_tended: None,
            remote_endpoints: Lingering::new(crate::cluster::lingering::GRACE),
            remote_identities: BTreeMap::new(),
            remote_nodes: Lingering::new(crate::cluster::lingering::GRACE),
            tunnel,
            policy_enforcement: BTreeMap::new(),
            policy_status: BTreeMap::new(),
            sources: Sources::new(dirs, kvstore_resources, kubernetes),
            services: crate::services::node::NodeServices::start(&config.bpffs, &external),
            flows: flows::FlowCollector::start(
                config.bpffs.clone(),
                std::sync::Arc::new(
                    crate::observe::ring::FlowRing::new(crate::observe::ring::DEFAULT_CAPACITY)
                        .expect("a valid capacity"),
                ),
                crate::observe::decode::Enrichment {
                    node_name: config.node_name.clone(),
                    boot_to_wall: flows::boot_to_wall(),
                    ..Default::default()
                },
                std::sync::Arc::new(crate::observe::metrics::Metrics::new()),
            ),
            http: None,
            encryption,
            config,
            persisted,
            identities: IdentityAllocator::new(),
            endpoints: BTreeMap::new(),
            ipcache,
            ipcache_state,
            cidr_ids: CidrIdentities::default(),
            policies: Vec::new(),
            errors: Vec::new(),
            started: Instant::now(),
            syncs: 0,
            last_sync: None,
            conntrack_gc: ConntrackGc {
                clock: JiffiesClock::new(),
                lifetimes: CtLifetimes::default(),
                last_run: None,
                runs: 0,
                removed: 0,
                live: None,
            },
        })
    }

    /// Forgets connections idle past their lifetime (Cilium's defaults: established TCP 6 h,
    /// TCP without a reply 60 s, TCP after FIN/RST 10 s, the rest 60 s), the endpoints' and the
    /// north-south LB's, when
    /// [`CONNTRACK_GC_INTERVAL`] has passed since the last run. Returns how many were removed.
    pub fn collect_conntrack(&mut self) -> Result<usize, AgentError> {
        let gc = &mut self.conntrack_gc;
        if gc.last_run.is_some_and(|t| t.elapsed() < CONNTRACK_GC_INTERVAL) {
            return Ok(0);
        }
        gc.last_run = Some(Instant::now());
        let failed = |source| AgentError::Datapath { what: "conntrack garbage collection", source };
        let clock = match &gc.clock {
            Ok(clock) => clock,
            // Reported by status; nothing to collect with.
            Err(_) => return Ok(0),
        };
        // The north-south LB's tables, once it made them.
        let mut removed = match crate::datapath::nodeport::NorthSouthTables::open(&self.config.bpffs) {
            Some(tables) => tables.collect_garbage(crate::datapath::nodeport::boot_seconds()).map_err(failed)?,
            None => 0,
        };
        // No endpoint has pinned conntrack yet: nothing to collect.
        let Ok(conntrack) = Conntrack::open(&self.config.bpffs) else { return Ok(removed) };
        let now = clock.now().map_err(failed)?;
        let pass = conntrack.collect_garbage(now, clock.hz(), &gc.lifetimes).map_err(failed)?;
        removed += pass.removed;
        gc.live = Some((pass.kept, conntrack.capacity()));
        gc.runs += 1;
        gc.removed += removed as u64;
        Ok(removed)
    }

    /// The configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Re-reads changed files and, when anything changed (or `force`), brings endpoints,
    /// identities, the ipcache and policy maps to the desired state.
    pub fn sync(&mut self, force: bool) -> bool {
        if !self.sources.refresh() && !force {
            return false;
        }
        if let Err(why) = self.sources.ready() {
            self.errors = vec![format!("{why}; the datapath keeps its state until then")];
            return true;
        }
        let started = Instant::now();
        self.errors = self.sources.errors();
        if let Some(cluster) = &self.cluster {
            if let Some(e) = cluster.health().error {
                self.errors.push(format!("kvstore (the datapath keeps its last state): {e}"));
            }
        }
        let (written, removed) = self.reconcile();
        self.syncs += 1;
        self.last_sync = Some((started.elapsed(), written, removed));
        if let Err(e) = self.persisted.save(&self.config.state_dir) {
            self.errors.push(e.to_string());
        }
        self.flows.metrics().health.store(Arc::new(self.health()));
        true
    }

    /// What `/metrics` says of the agent: endpoints, identities by kind, how full the node's
    /// maps are, the latest sync's errors.
    fn health(&self) -> crate::observe::metrics::AgentHealth {
        let count = |n: usize| n as u64;
        let mut map_pressure = vec![("ipcache".to_owned(), self.ipcache_state.len() as f64 / self.ipcache.capacity())];
        let policy_capacity = crate::datapath::policy_map_capacity();
        if let Some(fullest) = self.endpoints.values().map(|l| l.policy.len()).max() {
            map_pressure.push(("policy".to_owned(), fullest as f64 / policy_capacity));
        }
        if let Some((live, capacity)) = self.conntrack_gc.live {
            map_pressure.push(("conntrack".to_owned(), live as f64 / capacity));
        }
        crate::observe::metrics::AgentHealth {
            endpoints: count(self.endpoints.len()),
            identities: vec![
                ("reserved", count(ReservedIdentity::ALL.iter().filter(|r| r.id() != 0).count())),
                ("local", count(self.identities.iter().count())),
                ("remote", count(self.remote_identities.len())),
                ("cidr", count(self.cidr_ids.iter().count())),
            ],
            map_pressure,
            sync_errors: count(self.errors.len()),
            syncs: self.syncs,
            kvstore_connected: self.cluster.as_ref().map(|c| c.health().connected),
        }
    }

    /// Checks the kvstore connection every [`CLUSTER_TEND_INTERVAL`], reconnecting with a
    /// backoff; publishes this node's pods and reads the other nodes'. True when the caller
    /// should sync again: the kvstore came back (pods waiting for a cluster identity get
    /// one) or other nodes' pods changed (the ipcache follows).
    pub fn tend_cluster(&mut self) -> bool {
        let Some(cluster) = &mut self.cluster else { return false };
        if self.cluster_tended.is_some_and(|t| t.elapsed() < CLUSTER_TEND_INTERVAL) {
            return false;
        }
        self.cluster_tended = Some(Instant::now());
        let was = cluster.health().connected;
        if !cluster.ensure() {
            return false;
        }
        let local: BTreeMap<IpAddr, (u32, String)> =
            self.endpoints.values().map(|l| (IpAddr::V4(l.record.ipv4), (l.identity, l.record.pod.clone()))).collect();
        cluster.publish_endpoints(&local);
        let now = Instant::now();
        let listed = cluster.remote_endpoints();
        let remote_changed = match listed.map(|remote| self.remote_endpoints.update(remote, now)) {
            Some(true) => {
                let ids: std::collections::BTreeSet<u32> =
                    self.remote_endpoints.entries().map(|(_, e)| e.identity).collect();
                self.remote_identities.retain(|id, _| ids.contains(id));
                for id in ids {
                    if let std::collections::btree_map::Entry::Vacant(slot) = self.remote_identities.entry(id) {
                        if let Some(labels) = cluster.identity_labels(id) {
                            slot.insert(labels);
                        }
                    }
                }
                true
            }
            _ => false,
        };
        cluster.publish_policy_statuses(&self.policy_enforcement);
        if let Some(statuses) = cluster.policy_statuses() {
            self.policy_status = statuses;
        }
        for id in cluster.collect_identities(self.config.identity_gc_grace) {
            eprintln!("netstack agent: collected identity {id}: no node uses it");
        }
        let own = self.config.node_name.as_str();
        let nodes_changed = match cluster.nodes() {
            Ok(nodes) => {
                let others = nodes.into_iter().filter(|n| n.name != own).map(|n| (n.name.clone(), n)).collect();
                self.remote_nodes.update(others, now)
            }
            Err(_) => false,
        };
        if nodes_changed {
            self.sync_tunnel_routes();
            self.sync_encryption_peers();
        }
        !was || remote_changed || nodes_changed
    }

    /// Routes the other nodes' pod CIDRs into the tunnel (in tunnel mode).
    fn sync_tunnel_routes(&mut self) {
        let Some(tunnel) = &mut self.tunnel else { return };
        let cidrs = self.remote_nodes.entries().filter_map(|(_, n)| Cidr::parse(&n.pod_cidr)).collect();
        if let Err(e) = tunnel.sync_routes(&cidrs) {
            self.errors.push(e.to_string());
        }
    }

    /// Rotates the node's encryption key and publishes the new public key; returns it.
    pub fn rotate_encryption_key(&mut self) -> Result<String, AgentError> {
        let Some(encryption) = &mut self.encryption else {
            return Err(AgentError::Encryption(crate::encryption::node::EncryptionError::Off));
        };
        let public = encryption.rotate(&self.config.state_dir)?;
        if let Some(cluster) = &mut self.cluster {
            let mut node = cluster.node().clone();
            node.encryption_key = Some(public.clone());
            cluster.update_node(node);
        }
        Ok(public)
    }

    /// Encryption's status, when on.
    pub fn encryption_status(&self) -> Option<crate::encryption::node::EncryptionStatus> {
        self.encryption.as_ref().map(crate::encryption::node::NodeEncryption::status)
    }

    /// Makes the other nodes that published a key the WireGuard device's peers.
    fn sync_encryption_peers(&mut self) {
        let Some(encryption) = &mut self.encryption else { return };
        if let Err(e) = encryption.sync_peers(self.remote_nodes.entries().map(|(_, n)| n)) {
            self.errors.push(e.to_string());
        }
    }

    /// The cluster's nodes, from the kvstore.
    pub fn nodes(&mut self) -> Result<Vec<NodeEntry>, KvError> {
        match &mut self.cluster {
            Some(cluster) => cluster.nodes(),
            None => Err(KvError::Unavailable {
                operation: "list nodes".to_owned(),
                reason: "this agent has no kvstore (netstack agent --kvstore URL)".to_owned(),
            }),
        }
    }

    /// Live endpoints by pod key.
    pub fn endpoints(&self) -> &BTreeMap<String, LiveEndpoint> {
        &self.endpoints
    }

    /// The node's services.
    pub fn services(&self) -> &crate::services::node::NodeServices {
        &self.services
    }

    fn services_status(&self) -> api_types::ServicesStatus {
        let frontends = self.services.frontends().len();
        let outcomes = self
            .services
            .datapath()
            .map_err(ToString::to_string)
            .and_then(|lb| lb.maps.outcomes().map_err(|e| e.to_string()));
        let (counts, error) = match outcomes {
            Ok(counts) => (counts, None),
            Err(e) => ([0; 4], Some(e)),
        };
        api_types::ServicesStatus {
            frontends,
            translated: counts[0],
            refused: counts[1],
            reversed: counts[2],
            binds_refused: counts[3],
            udp_sockets_destroyed: self.services.udp_sockets_destroyed(),
            error,
        }
    }

    /// Policies in force.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Each policy's status across the cluster (empty without a kvstore), by policy key.
    pub fn policy_status(&self) -> &BTreeMap<String, crate::cluster::policy_status::PolicyStatus> {
        &self.policy_status
    }

    /// How this node enforces each policy, by policy key.
    pub fn policy_enforcement(&self) -> &BTreeMap<String, crate::cluster::policy_status::NodePolicyStatus> {
        &self.policy_enforcement
    }

    /// Problems of the latest sync (refused files, failed endpoints).
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// The flow collector.
    pub fn flows(&self) -> &flows::FlowCollector {
        &self.flows
    }

    /// Serves metrics and the service map on `listener` (until the agent is dropped).
    pub fn serve_http(&mut self, listener: std::net::TcpListener) -> Result<std::net::SocketAddr, AgentError> {
        let server =
            http::HttpServer::start(listener, Arc::clone(self.flows.ring()), Arc::clone(self.flows.metrics()))?;
        let address = server.address();
        self.http = Some(server);
        Ok(address)
    }

    /// What flows are enriched with now: pods by address, identities' labels (Hubble's
    /// `source:key=value`), the ipcache, service frontends.
    fn enrichment(&self) -> crate::observe::decode::Enrichment {
        use crate::observe::decode::{Enrichment, PodInfo};
        let hubble_labels = |labels: &Labels| -> Vec<String> {
            labels
                .iter()
                .map(|(k, v)| {
                    let key = if k.contains(':') { k.to_owned() } else { format!("k8s:{k}") };
                    if v.is_empty() {
                        key
                    } else {
                        format!("{key}={v}")
                    }
                })
                .collect()
        };
        let mut labels: BTreeMap<u32, Vec<String>> =
            ReservedIdentity::ALL.iter().map(|r| (r.id(), hubble_labels(&r.labels()))).collect();
        labels.extend(self.identities.iter().map(|(id, l)| (id, hubble_labels(l))));
        labels.extend(self.remote_identities.iter().map(|(id, l)| (*id, hubble_labels(l))));
        labels.extend(self.cidr_ids.iter().map(|(c, id)| (id, vec![format!("cidr:{c}"), "reserved:world".to_owned()])));
        let split = |pod: &str| {
            let (namespace, name) = pod.split_once('/').unwrap_or(("", pod));
            (namespace.to_owned(), name.to_owned())
        };
        let mut pods: BTreeMap<IpAddr, PodInfo> = self
            .remote_endpoints
            .entries()
            .filter_map(|(ip, e)| {
                let (namespace, name) = split(e.pod.as_deref()?);
                Some((*ip, PodInfo { endpoint_id: None, namespace, name, identity: e.identity }))
            })
            .collect();
        for (key, l) in &self.endpoints {
            let (namespace, name) = split(key);
            let info = PodInfo { endpoint_id: Some(l.record.id), namespace, name, identity: l.identity };
            pods.insert(IpAddr::V4(l.record.ipv4), info);
        }
        // A node port's frontend is every address of the node.
        let node_addresses: Vec<IpAddr> =
            self.config.node_address.into_iter().chain([IpAddr::V4(Ipv4Addr::LOCALHOST)]).collect();
        let services = self
            .services
            .frontends()
            .iter()
            .flat_map(|f| {
                let addresses = if f.address.is_unspecified() { node_addresses.clone() } else { vec![f.address] };
                let (namespace, name) = split(&f.service);
                addresses
                    .into_iter()
                    .map(move |a| ((a, f.port, f.protocol.number()), (namespace.clone(), name.clone())))
            })
            .collect();
        Enrichment {
            node_name: self.config.node_name.clone(),
            boot_to_wall: flows::boot_to_wall(),
            pods,
            labels: labels.into_iter().map(|(id, l)| (id, l.into())).collect(),
            ipcache: self.ipcache_state.iter().map(|(c, t)| (*c, t.identity)).collect(),
            services,
            interfaces: BTreeMap::new(),
            netns: self
                .services
                .netns_cookies()
                .iter()
                .filter_map(|(name, cookie)| match name {
                    None => Some((*cookie, None)),
                    Some(name) => self
                        .endpoints
                        .values()
                        .find(|l| &l.record.netns == name)
                        .map(|l| (*cookie, Some(IpAddr::V4(l.record.ipv4)))),
                })
                .collect(),
        }
    }

    /// Every identity in use: reserved ones, pods' and CIDR ones, with labels.
    pub fn identities(&self) -> Vec<(u32, String)> {
        let mut out: Vec<(u32, String)> =
            ReservedIdentity::ALL.iter().filter(|r| r.id() != 0).map(|r| (r.id(), r.labels().to_string())).collect();
        out.extend(self.identities.iter().map(|(id, l)| (id, l.to_string())));
        out.extend(self.cidr_ids.iter().map(|(c, id)| (id, format!("cidr:{c},reserved:world"))));
        out
    }

    /// The ipcache as the datapath has it now, in prefix order.
    pub fn read_ipcache(&self) -> Result<Vec<(Cidr, IpcacheTarget)>, DatapathError> {
        let mut entries = self.ipcache.entries()?;
        entries.sort();
        Ok(entries)
    }

    /// The ipcache as the agent last wrote it.
    pub fn ipcache(&self) -> &BTreeMap<Cidr, IpcacheTarget> {
        &self.ipcache_state
    }

    /// Status facts for `netstack status`.
    pub fn status(&self) -> api_types::Status {
        use api_types::{ConntrackGcStatus, FileStatus, LastSync, Status};
        Status {
            node: self.config.node_name.clone(),
            pod_cidr: self.config.pod_cidr.to_string(),
            allow_localhost: self.config.allow_localhost.name().into(),
            bpffs: self.config.bpffs.clone(),
            uptime_seconds: self.started.elapsed().as_secs(),
            endpoints: self.endpoints.len(),
            policies: self.policies.len(),
            identities: self.identities.iter().count(),
            syncs: self.syncs,
            last_sync: self.last_sync.map(|(d, w, r)| LastSync {
                micros: d.as_micros() as u64,
                entries_written: w,
                entries_removed: r,
            }),
            files: self.sources.files().into_iter().map(|(file, resources)| FileStatus { file, resources }).collect(),
            errors: self.errors.clone(),
            warnings: self.sources.warnings(),
            kubernetes: self.sources.kubernetes(),
            services: Some(self.services_status()),
            conntrack_gc: match &self.conntrack_gc.clock {
                Ok(_) => {
                    ConntrackGcStatus::Running { runs: self.conntrack_gc.runs, removed: self.conntrack_gc.removed }
                }
                Err(e) => ConntrackGcStatus::Unavailable { error: e.to_string() },
            },
            kvstore: self.cluster.as_ref().map(Membership::health),
            routing: self.config.routing.name().to_owned(),
            tunnel: self.tunnel.as_ref().map(|t| match t.overlay().verdicts() {
                Ok(rows) => api_types::DeviceCounters::Counting {
                    device: crate::cluster::routing::TUNNEL_DEVICE.to_owned(),
                    verdicts: rows.into_iter().map(api_types::VerdictRow::from).collect(),
                },
                Err(e) => api_types::DeviceCounters::Unavailable { error: e.to_string() },
            }),
            http: self.http.as_ref().map(|h| h.address().to_string()),
            encryption: self.encryption.as_ref().map(crate::encryption::node::NodeEncryption::status),
            flows: Some({
                let (received, undecodable) = self.flows.counters();
                api_types::FlowsStatus {
                    capacity: self.flows.ring().capacity(),
                    stored: self.flows.ring().written(),
                    received,
                    undecodable,
                    lost_in_datapath: self.flows.lost_in_datapath(),
                    lost_to_followers: self.flows.ring().lost_to_followers(),
                    aggregation: self.config.aggregation.name().to_owned(),
                }
            }),
            north_south: self
                .services
                .north_south()
                .map(|(device, datapath)| match datapath.map(|d| d.verdicts()) {
                    Ok(Ok(rows)) => api_types::DeviceCounters::Counting {
                        device: device.to_owned(),
                        verdicts: rows.into_iter().map(api_types::VerdictRow::from).collect(),
                    },
                    Ok(Err(e)) => api_types::DeviceCounters::Unavailable { error: format!("{device}: {e}") },
                    Err(e) => api_types::DeviceCounters::Unavailable { error: format!("{device}: {e}") },
                })
                .collect(),
        }
    }
}

/// Runs the agent until the process is stopped: syncs every `interval`, serves the API (and
/// metrics and the service map on `http`, when given).
pub fn run(config: AgentConfig, interval: Duration, http: Option<std::net::TcpListener>) -> Result<(), AgentError> {
    let stop = stop_requested();
    let socket = config.socket();
    let agent = Arc::new(Mutex::new(Agent::new(config)?));
    {
        let mut a = agent.lock().expect("not poisoned");
        if let Some(listener) = http {
            a.serve_http(listener)?;
        }
        a.tend_cluster();
        a.sync(true);
    }
    let server = api::serve(&socket, Arc::clone(&agent))?;
    loop {
        std::thread::sleep(interval);
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            // With the agent held, no request is half done either. Ends as a crash would for
            // the cluster (its lease left to run out, the datapath kept), at a point where
            // nothing is half made.
            let _held = agent.lock();
            std::process::exit(0);
        }
        if server.is_finished() {
            return Err(AgentError::ApiStopped);
        }
        let mut a = agent.lock().expect("not poisoned");
        let reconnected = a.tend_cluster();
        if a.sync(reconnected) {
            for e in a.errors() {
                eprintln!("netstack agent: {e}");
            }
        }
        if let Err(e) = a.collect_conntrack() {
            eprintln!("netstack agent: {e}");
        }
    }
}

/// SIGTERM and SIGINT, which ended the agent wherever it was (once halfway through making a
/// pod's namespace, leaving its file unbound), now set the returned flag, which the agent's
/// loop reads between two syncs. The signals are blocked here, before the agent starts any
/// thread (threads inherit the mask), and waited for by a thread of their own. (Processes the
/// agent starts do not inherit the mask: `Command` clears it.)
fn stop_requested() -> Arc<std::sync::atomic::AtomicBool> {
    use nix::sys::signal::{SigSet, Signal};
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    // Unblockable, the signals keep their default: the agent ends wherever it is, as before.
    if signals.thread_block().is_ok() {
        let flag = Arc::clone(&stop);
        let waiter = std::thread::Builder::new().name("signals".into()).spawn(move || {
            if signals.wait().is_ok() {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        });
        if waiter.is_err() {
            let _ = signals.thread_unblock();
        }
    }
    stop
}

/// Removes everything an agent with `config` made: endpoints (namespaces, veths, pins), the
/// node's pins, its tunnel and WireGuard devices (the userspace one's process stopped), the API
/// socket. The state directory itself stays.
pub fn reset(config: &AgentConfig) -> Result<(), AgentError> {
    // Every step is tried, whatever failed before it: what one leaves is no reason to leave
    // the rest (a pinned datapath, a WireGuard device's process). The first failure is told.
    let mut first_error: Option<AgentError> = None;
    let mut note = |result: Result<(), AgentError>| {
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    };
    // A state file that no longer reads leaves nothing to remove by it.
    let persisted = Persisted::load(&config.state_dir).unwrap_or_default();
    for record in persisted.endpoints.values() {
        note(endpoint::remove(record, None).map_err(AgentError::from));
    }
    if config.bpffs.exists() {
        note(
            std::fs::remove_dir_all(&config.bpffs)
                .map_err(|source| AgentError::Directory { path: config.bpffs.clone(), source }),
        );
    }
    if config.routing == Routing::Tunnel {
        note(
            crate::cluster::routing::remove_devices()
                .map_err(|e| AgentError::Tunnel(crate::cluster::routing::TunnelError::Plumbing(e))),
        );
    }
    note(
        crate::encryption::node::reset(&config.state_dir)
            .map_err(|e| AgentError::Encryption(crate::encryption::node::EncryptionError::Plumbing(e))),
    );
    let _ = std::fs::remove_file(config.state_dir.join("state.json"));
    let _ = std::fs::remove_file(config.socket());
    first_error.map_or(Ok(()), Err)
}
