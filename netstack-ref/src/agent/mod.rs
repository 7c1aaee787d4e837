//! The node agent: reads desired state (namespaces, pods, policies) from YAML, makes each pod an
//! endpoint, allocates identities, keeps the ipcache, resolves policy per endpoint and writes
//! only what changed into its policy map. Everything the datapath needs is pinned, so a restart
//! (or a crash) leaves traffic flowing; the next agent adopts the pins and re-syncs.

pub mod api;
pub mod endpoint;
pub mod netns;
pub mod probe;
pub mod sources;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::datapath::{Conntrack, CtLifetimes, EndpointDatapath, Ipcache, JiffiesClock};
use crate::identity::{pod_security_labels, IdentityAllocator, Labels, ReservedIdentity, FIRST_LOCAL_IDENTITY};
use crate::manifest::{Namespace, Pod, Resource};
use crate::policy::api::Cidr;
use crate::policy::{resolve_with, AllowLocalhost, Policy, PolicyMapState, Universe};
use endpoint::EndpointRecord;
use sources::Sources;

/// How an agent is set up.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Persistent state: `state.json`, `applied/`, `agent.sock`.
    pub state_dir: PathBuf,
    /// A directory of manifests to watch.
    pub manifests: Option<PathBuf>,
    /// The node's name (its `kubernetes.io/hostname` label).
    pub node_name: String,
    /// The node's pod CIDR (IPv4); its first address is the pods' gateway.
    pub pod_cidr: Cidr,
    /// Where the datapath is pinned.
    pub bpffs: PathBuf,
    /// Whether the host may always reach the node's pods (`--allow-localhost`).
    pub allow_localhost: AllowLocalhost,
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
            node_name: "node-1".into(),
            pod_cidr: Cidr::parse("10.200.0.0/24").expect("valid"),
            bpffs,
            allow_localhost: AllowLocalhost::Always,
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

/// What survives a restart besides the pins.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    endpoints: BTreeMap<String, EndpointRecord>,
    /// Identity numbers by their labels' text, so numbers stay stable across restarts.
    identities: BTreeMap<String, u32>,
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

/// The agent's state.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    sources: Sources,
    persisted: Persisted,
    identities: IdentityAllocator,
    endpoints: BTreeMap<String, LiveEndpoint>,
    ipcache: Ipcache,
    ipcache_state: BTreeMap<Cidr, u32>,
    cidr_ids: BTreeMap<Cidr, u32>,
    policies: Vec<Policy>,
    errors: Vec<String>,
    started: Instant,
    syncs: u64,
    last_sync: Option<(Duration, usize, usize)>,
    conntrack_gc: ConntrackGc,
}

/// How often the agent forgets idle connections.
pub const CONNTRACK_GC_INTERVAL: Duration = Duration::from_secs(30);

/// Conntrack garbage collection: its clock (none when the kernel's jiffies cannot be read, which
/// `status` reports) and what it has done.
#[derive(Debug)]
struct ConntrackGc {
    clock: Result<JiffiesClock, String>,
    lifetimes: CtLifetimes,
    last_run: Option<Instant>,
    runs: u64,
    removed: u64,
}

impl Agent {
    /// Opens the state directory and the node's shared maps; adopts nothing yet (that happens
    /// in the first [`sync`](Self::sync)).
    pub fn new(config: AgentConfig) -> Result<Agent, String> {
        std::fs::create_dir_all(config.applied_dir()).map_err(|e| format!("{}: {e}", config.state_dir.display()))?;
        std::fs::create_dir_all(config.bpffs.join("endpoints"))
            .map_err(|e| format!("{}: {e}", config.bpffs.display()))?;
        let persisted: Persisted = match std::fs::read(config.state_dir.join("state.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("state.json: {e}"))?,
            Err(_) => Persisted::default(),
        };
        let ipcache = Ipcache::open(&config.bpffs).map_err(|e| e.to_string())?;
        // What the previous agent wrote is what the datapath has now.
        let ipcache_state = ipcache.entries().map_err(|e| e.to_string())?.into_iter().collect();
        let mut dirs = vec![config.applied_dir()];
        dirs.extend(config.manifests.clone());
        Ok(Agent {
            sources: Sources::new(dirs),
            config,
            persisted,
            identities: IdentityAllocator::new(),
            endpoints: BTreeMap::new(),
            ipcache,
            ipcache_state,
            cidr_ids: BTreeMap::new(),
            policies: Vec::new(),
            errors: Vec::new(),
            started: Instant::now(),
            syncs: 0,
            last_sync: None,
            conntrack_gc: ConntrackGc {
                clock: JiffiesClock::new().map_err(|e| e.to_string()),
                lifetimes: CtLifetimes::default(),
                last_run: None,
                runs: 0,
                removed: 0,
            },
        })
    }

    /// Forgets connections idle past their lifetime (Cilium's defaults: established TCP 6 h,
    /// TCP without a reply 60 s, TCP after FIN/RST 10 s, the rest 60 s) when
    /// [`CONNTRACK_GC_INTERVAL`] has passed since the last run. Returns how many were removed.
    pub fn collect_conntrack(&mut self) -> Result<usize, String> {
        let gc = &mut self.conntrack_gc;
        if gc.last_run.is_some_and(|t| t.elapsed() < CONNTRACK_GC_INTERVAL) {
            return Ok(0);
        }
        gc.last_run = Some(Instant::now());
        let clock = gc.clock.as_ref().map_err(|e| format!("conntrack gc: {e}"))?;
        // No endpoint has pinned conntrack yet: nothing to collect.
        let Ok(conntrack) = Conntrack::open(&self.config.bpffs) else { return Ok(0) };
        let now = clock.now().map_err(|e| format!("conntrack gc: {e}"))?;
        let removed =
            conntrack.collect_garbage(now, clock.hz(), &gc.lifetimes).map_err(|e| format!("conntrack gc: {e}"))?;
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
        if !self.sources.scan() && !force {
            return false;
        }
        let started = Instant::now();
        self.errors = self.sources.errors();
        let (written, removed) = self.reconcile();
        self.syncs += 1;
        self.last_sync = Some((started.elapsed(), written, removed));
        if let Err(e) = self.persist() {
            self.errors.push(e);
        }
        true
    }

    fn persist(&self) -> Result<(), String> {
        let path = self.config.state_dir.join("state.json");
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&self.persisted).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, &path)).map_err(|e| format!("state.json: {e}"))
    }

    fn reconcile(&mut self) -> (usize, usize) {
        let mut namespaces: BTreeMap<String, Namespace> = BTreeMap::new();
        let mut pods: BTreeMap<String, Pod> = BTreeMap::new();
        let mut policies = Vec::new();
        for r in self.sources.resources() {
            match r {
                Resource::Namespace(n) => {
                    namespaces.insert(n.name.clone(), n);
                }
                Resource::Pod(p) => {
                    pods.insert(format!("{}/{}", p.namespace, p.name), p);
                }
                Resource::Policy(p) => policies.push(p),
            }
        }
        self.policies = policies;

        // Endpoints that are gone.
        let gone: Vec<String> = self.persisted.endpoints.keys().filter(|k| !pods.contains_key(*k)).cloned().collect();
        let mut gone_ids = Vec::new();
        for key in gone {
            let record = self.persisted.endpoints.remove(&key).expect("listed");
            let live = self.endpoints.remove(&key);
            if let Some(l) = &live {
                self.identities.release(&l.labels);
            }
            if let Err(e) = endpoint::remove(&record, live.map(|l| l.datapath)) {
                self.errors.push(format!("remove endpoint {key}: {e}"));
            }
            gone_ids.push(record.id);
        }
        // Their connections go with them (one walk of the table for all): a pod that gets an
        // address later starts clean.
        if !gone_ids.is_empty() {
            if let Ok(conntrack) = Conntrack::open(&self.config.bpffs) {
                if let Err(e) = conntrack.remove_where(|k, _| gone_ids.contains(&k.endpoint_id)) {
                    self.errors.push(format!("remove endpoints {gone_ids:?}: conntrack: {e}"));
                }
            }
        }

        // Identities: stable numbers for known label sets.
        for (key, pod) in &pods {
            let ns_labels = namespaces.get(&pod.namespace).map(|n| n.labels.clone()).unwrap_or_default();
            let labels = pod_security_labels(
                pod.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                &pod.namespace,
                ns_labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                &pod.service_account,
            );
            let previous = self.endpoints.get(key).map(|l| l.labels.clone());
            if previous.as_ref() == Some(&labels) {
                continue;
            }
            if let Some(old) = previous {
                self.identities.release(&old);
            }
            let text = labels.to_string();
            let identity = match (self.identities.get(&labels), self.persisted.identities.get(&text)) {
                (None, Some(&id)) if self.identities.restore(&labels, id) => id,
                _ => self.identities.allocate(&labels).get(),
            };
            self.persisted.identities.insert(text, identity);
            if let Some(live) = self.endpoints.get_mut(key) {
                live.labels = labels;
                live.identity = identity;
                live.pod = pod.clone();
                continue;
            }
            // A new endpoint, or one a previous agent left running.
            let record = match self.persisted.endpoints.get(key) {
                Some(r) => r.clone(),
                None => match self.new_record(key, identity) {
                    Ok(r) => r,
                    Err(e) => {
                        self.errors.push(format!("endpoint {key}: {e}"));
                        self.identities.release(&labels);
                        continue;
                    }
                },
            };
            let shared = self.config.bpffs.clone();
            match endpoint::create(&record, self.config.router(), &shared.join("endpoints"), &shared) {
                Ok(datapath) => {
                    let policy = datapath
                        .read_policy()
                        .map(|entries| entries.into_iter().map(|(k, v, _)| (k, v)).collect())
                        .unwrap_or_default();
                    self.persisted.endpoints.insert(key.clone(), record.clone());
                    self.endpoints.insert(
                        key.clone(),
                        LiveEndpoint { record, pod: pod.clone(), labels, identity, datapath, policy },
                    );
                }
                Err(e) => {
                    self.errors.push(format!("endpoint {key}: {e}"));
                    self.identities.release(&labels);
                }
            }
        }
        self.persisted.identities.retain(|_, id| self.identities.labels(*id).is_some());

        // CIDR identities: one per prefix the policies name; numbers kept while the prefix is.
        let cidrs: BTreeSet<Cidr> = self.policies.iter().flat_map(|p| p.cidrs()).collect();
        self.cidr_ids.retain(|c, _| cidrs.contains(c));
        for c in cidrs {
            if !self.cidr_ids.contains_key(&c) {
                let used: BTreeSet<u32> = self.cidr_ids.values().copied().collect();
                let id = (FIRST_LOCAL_IDENTITY..).find(|i| !used.contains(i)).expect("local identities left");
                self.cidr_ids.insert(c, id);
            }
        }

        self.sync_ipcache();

        let universe = Universe::new(
            Labels::from_pairs([("kubernetes.io/hostname", self.config.node_name.as_str())]),
            self.endpoints.values().map(|l| (l.identity, l.labels.clone())),
            self.cidr_ids.iter().map(|(c, id)| (*id, *c)),
        );
        let (mut written, mut removed) = (0, 0);
        for (key, live) in &mut self.endpoints {
            let state = resolve_with(&self.policies, &live.labels, &universe, self.config.allow_localhost);
            match live.datapath.apply_policy(&live.policy, &state) {
                Ok((w, r)) => {
                    written += w;
                    removed += r;
                    live.policy = state;
                }
                Err(e) => self.errors.push(format!("endpoint {key}: {e}")),
            }
        }
        (written, removed)
    }

    fn new_record(&self, key: &str, identity: u32) -> Result<EndpointRecord, String> {
        let used: BTreeSet<Ipv4Addr> = self.persisted.endpoints.values().map(|r| r.ipv4).collect();
        let IpAddr::V4(base) = self.config.pod_cidr.addr else { return Err("the pod CIDR must be IPv4".into()) };
        let size = 1u32 << (32 - self.config.pod_cidr.len as u32);
        let ipv4 = (2..size.saturating_sub(1))
            .map(|i| Ipv4Addr::from(u32::from(base) + i))
            .find(|a| !used.contains(a))
            .ok_or_else(|| format!("pod CIDR {} is full", self.config.pod_cidr))?;
        let id = (1..).find(|i| !self.persisted.endpoints.values().any(|r| r.id == *i)).expect("ids left");
        // Interface and namespace names are unique per node and pod, and short (IFNAMSIZ).
        let hash = format!("{}/{key}", self.config.node_name)
            .bytes()
            .fold(0x811c9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x01000193));
        Ok(EndpointRecord {
            id,
            pod: key.to_string(),
            ipv4,
            netns: format!("{}-{}", self.config.node_name, key.replace('/', "-")),
            host_if: format!("lxc{hash:08x}"),
            identity,
        })
    }

    fn sync_ipcache(&mut self) {
        let mut desired: BTreeMap<Cidr, u32> = BTreeMap::new();
        let host = |a: Ipv4Addr| Cidr::new(IpAddr::V4(a), 32).expect("host prefix");
        desired.insert(host(self.config.router()), ReservedIdentity::Host.id());
        for live in self.endpoints.values() {
            desired.insert(host(live.record.ipv4), live.identity);
        }
        for (c, id) in &self.cidr_ids {
            desired.entry(*c).or_insert(*id);
        }
        for (c, id) in &desired {
            if self.ipcache_state.get(c) != Some(id) {
                if let Err(e) = self.ipcache.upsert(c, *id) {
                    self.errors.push(e.to_string());
                }
            }
        }
        for c in self.ipcache_state.keys().filter(|c| !desired.contains_key(c)) {
            if let Err(e) = self.ipcache.remove(c) {
                self.errors.push(e.to_string());
            }
        }
        self.ipcache_state = desired;
    }

    /// Live endpoints by pod key.
    pub fn endpoints(&self) -> &BTreeMap<String, LiveEndpoint> {
        &self.endpoints
    }

    /// Policies in force.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Problems of the latest sync (refused files, failed endpoints).
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// Every identity in use: reserved ones, pods' and CIDR ones, with labels.
    pub fn identities(&self) -> Vec<(u32, String)> {
        let mut out: Vec<(u32, String)> =
            ReservedIdentity::ALL.iter().filter(|r| r.id() != 0).map(|r| (r.id(), r.labels().to_string())).collect();
        out.extend(self.identities.iter().map(|(id, l)| (id, l.to_string())));
        out.extend(self.cidr_ids.iter().map(|(c, id)| (*id, format!("cidr:{c},reserved:world"))));
        out
    }

    /// The ipcache as the agent last wrote it.
    pub fn ipcache(&self) -> &BTreeMap<Cidr, u32> {
        &self.ipcache_state
    }

    /// Status facts for `netstack status`.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "node": self.config.node_name,
            "podCIDR": self.config.pod_cidr.to_string(),
            "allowLocalhost": self.config.allow_localhost.name(),
            "bpffs": self.config.bpffs,
            "uptimeSeconds": self.started.elapsed().as_secs(),
            "endpoints": self.endpoints.len(),
            "policies": self.policies.len(),
            "identities": self.identities.iter().count(),
            "syncs": self.syncs,
            "lastSync": self.last_sync.map(|(d, w, r)| serde_json::json!({
                "micros": d.as_micros() as u64, "entriesWritten": w, "entriesRemoved": r
            })),
            "files": self.sources.files().iter().map(|(p, n)| serde_json::json!({"file": p, "resources": n})).collect::<Vec<_>>(),
            "errors": self.errors,
            "warnings": self.sources.warnings(),
            "conntrackGc": match &self.conntrack_gc.clock {
                Ok(_) => serde_json::json!({"runs": self.conntrack_gc.runs, "removed": self.conntrack_gc.removed}),
                Err(e) => serde_json::json!({"error": e}),
            },
        })
    }
}

/// Runs the agent until the process is stopped: syncs every `interval`, serves the API.
pub fn run(config: AgentConfig, interval: Duration) -> Result<(), String> {
    let socket = config.socket();
    let agent = Arc::new(Mutex::new(Agent::new(config)?));
    agent.lock().expect("not poisoned").sync(true);
    let server = api::serve(&socket, Arc::clone(&agent))?;
    loop {
        std::thread::sleep(interval);
        if server.is_finished() {
            return Err("API server stopped".into());
        }
        let mut a = agent.lock().expect("not poisoned");
        if a.sync(false) {
            for e in a.errors() {
                eprintln!("netstack agent: {e}");
            }
        }
        if let Err(e) = a.collect_conntrack() {
            eprintln!("netstack agent: {e}");
        }
    }
}

/// Removes everything an agent with `config` made: endpoints (namespaces, veths, pins), the
/// node's pins, the API socket. The state directory itself stays.
pub fn reset(config: &AgentConfig) -> Result<(), String> {
    let persisted: Persisted = std::fs::read(config.state_dir.join("state.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    for record in persisted.endpoints.values() {
        endpoint::remove(record, None)?;
    }
    if config.bpffs.exists() {
        std::fs::remove_dir_all(&config.bpffs).map_err(|e| format!("{}: {e}", config.bpffs.display()))?;
    }
    let _ = std::fs::remove_file(config.state_dir.join("state.json"));
    let _ = std::fs::remove_file(config.socket());
    Ok(())
}
