//! Resources from a Kubernetes API server: one watcher (the `kube` crate's list-then-watch,
//! with bookmarks, resuming from the last resource version, relisting after 410 Gone) per
//! watched kind, each feeding a cache the agent reads on its sync. A relist replaces the kind's
//! objects at once when it completes, so an object deleted while the watch was away goes, and a
//! half-listed kind is never acted on: until every kind has been listed once the source says it
//! is not ready and the agent keeps the datapath as it is.
//!
//! Pointing it at a cluster: `netstack agent --kubernetes` reads the kubeconfig as `kubectl`
//! does (`KUBECONFIG`, `~/.kube/config`, or the in-cluster service account);
//! `--kubeconfig PATH [--kube-context NAME]` names one. It needs `get`, `list` and `watch` on
//! the kinds in [`WATCHED`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use futures_util::StreamExt;
use kube::api::{ApiResource, DynamicObject};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Config};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::kube_objects::{object_key, project, Projection, WatchedKind, WATCHED};
use super::{NotReady, ResourceSource};
use crate::manifest::Resource;

/// Which API server, and as whom.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// A kubeconfig file; none infers one as `kubectl` does.
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig's context to use; none uses its current context.
    pub context: Option<String>,
}

/// Why the source cannot start.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    /// Its runtime cannot start.
    #[error("start the Kubernetes client's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The kubeconfig.
    #[error("read kubeconfig {}: {reason}", path.display())]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No kubeconfig was named and none could be inferred.
    #[error("find a kubeconfig (KUBECONFIG, ~/.kube/config, in-cluster): {0}")]
    Infer(String),
    /// The client cannot be built from the configuration (e.g. a TLS setting).
    #[error("make a Kubernetes client for {server}: {reason}")]
    Client {
        /// The API server.
        server: String,
        /// Why.
        reason: String,
    },
}

/// One object as the agent holds it.
#[derive(Clone, Debug)]
struct Held {
    /// What it means, when it decoded; a refused update keeps the previous meaning.
    resource: Option<Resource>,
    warnings: Vec<String>,
    error: Option<String>,
}

/// One kind's objects and its watch's history.
#[derive(Debug, Default)]
struct KindCache {
    objects: BTreeMap<String, Held>,
    /// Filled during a (re)list; replaces `objects` when the list completes.
    relisting: Option<BTreeMap<String, Held>>,
    listed: bool,
    /// The API server does not serve the kind (404 on list): no such objects.
    absent: bool,
    lists: u64,
    events: u64,
    last_event: Option<SystemTime>,
    last_error: Option<String>,
}

impl KindCache {
    fn hold(&self, kind: &WatchedKind, object: Value) -> (String, Held) {
        let key = object_key(&object);
        let previous = self.objects.get(&key).and_then(|h| h.resource.clone());
        let held = match project(kind, &object) {
            Ok(Projection::Applied(resource, warnings)) => Held { resource: Some(*resource), warnings, error: None },
            Ok(Projection::Skipped(_)) => Held { resource: None, warnings: Vec::new(), error: None },
            Err(e) => Held { resource: previous, warnings: Vec::new(), error: Some(e.to_string()) },
        };
        (key, held)
    }

    /// Takes in one watcher event; whether what the agent reads changed.
    fn take(&mut self, kind: &WatchedKind, event: Result<watcher::Event<DynamicObject>, watcher::Error>) -> bool {
        let as_value = |o: DynamicObject| serde_json::to_value(o).unwrap_or(Value::Null);
        self.last_event = Some(SystemTime::now());
        match event {
            Ok(watcher::Event::Init) => {
                self.relisting = Some(BTreeMap::new());
                false
            }
            Ok(watcher::Event::InitApply(object)) => {
                let (key, held) = self.hold(kind, as_value(object));
                self.relisting.get_or_insert_with(BTreeMap::new).insert(key, held);
                false
            }
            Ok(watcher::Event::InitDone) => {
                self.objects = self.relisting.take().unwrap_or_default();
                self.listed = true;
                self.absent = false;
                self.lists += 1;
                self.last_error = None;
                true
            }
            Ok(watcher::Event::Apply(object)) => {
                self.events += 1;
                let (key, held) = self.hold(kind, as_value(object));
                self.objects.insert(key, held);
                true
            }
            Ok(watcher::Event::Delete(object)) => {
                self.events += 1;
                self.objects.remove(&object_key(&as_value(object))).is_some()
            }
            Err(e) => {
                let not_served = matches!(&e, watcher::Error::InitialListFailed(kube::Error::Api(s)) if s.code == 404);
                self.last_error = Some(e.to_string());
                if not_served && !self.listed {
                    // Nothing of a kind the server does not serve (e.g. Cilium's CRDs not
                    // installed); the watcher keeps trying, and lists it once it is.
                    self.absent = true;
                    return true;
                }
                false
            }
        }
    }
}

#[derive(Debug, Default)]
struct Cache {
    /// Bumped whenever what the agent reads changes.
    generation: u64,
    kinds: BTreeMap<&'static str, KindCache>,
}

/// The Kubernetes source: its watchers run on their own runtime, stopped on drop.
#[derive(Debug)]
pub struct KubernetesSource {
    server: String,
    cache: Arc<Mutex<Cache>>,
    seen: u64,
    started: Instant,
    _runtime: tokio::runtime::Runtime,
}

/// One kind's watch, for `netstack status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KindStatus {
    /// The kind.
    pub kind: String,
    /// Listed at least once (or not served, which counts as listed and empty).
    pub listed: bool,
    /// The API server does not serve it.
    pub absent: bool,
    /// Objects held.
    pub objects: usize,
    /// Of them, resources in force.
    pub in_force: usize,
    /// Complete lists taken in (the first and each relist).
    pub lists: u64,
    /// Watch events taken in after the lists.
    pub events: u64,
    /// Seconds since the watch last said anything.
    pub idle_seconds: Option<u64>,
    /// The watch's latest error, cleared by the next complete list.
    pub last_error: Option<String>,
}

/// The Kubernetes source for `netstack status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesStatus {
    /// The API server.
    pub server: String,
    /// Seconds since the watches started.
    pub uptime_seconds: u64,
    /// Each kind's watch.
    pub kinds: Vec<KindStatus>,
}

impl KubernetesSource {
    /// Reads the configuration and starts one watcher per kind in [`WATCHED`]. An API server
    /// that is not reachable yet is not an error: the watchers retry with a backoff, and the
    /// source is not ready until each kind has been listed.
    pub fn start(config: &KubernetesConfig) -> Result<KubernetesSource, KubernetesError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("netstack-kube")
            .enable_all()
            .build()
            .map_err(KubernetesError::Runtime)?;
        let client_config = runtime.block_on(load_config(config))?;
        let server = client_config.cluster_url.to_string();
        let client = runtime
            .block_on(async { Client::try_from(client_config) })
            .map_err(|e| KubernetesError::Client { server: server.clone(), reason: e.to_string() })?;
        let cache = Arc::new(Mutex::new(Cache::default()));
        for kind in WATCHED {
            cache.lock().expect("not poisoned").kinds.insert(kind.kind, KindCache::default());
            runtime.spawn(watch(client.clone(), kind, Arc::clone(&cache)));
        }
        Ok(KubernetesSource { server, cache, seen: 0, started: Instant::now(), _runtime: runtime })
    }

    /// Each kind's watch.
    pub fn status(&self) -> KubernetesStatus {
        let cache = self.cache.lock().expect("not poisoned");
        let now = SystemTime::now();
        let kinds = cache
            .kinds
            .iter()
            .map(|(kind, k)| KindStatus {
                kind: (*kind).to_owned(),
                listed: k.listed || k.absent,
                absent: k.absent,
                objects: k.objects.len(),
                in_force: k.objects.values().filter(|h| h.resource.is_some()).count(),
                lists: k.lists,
                events: k.events,
                idle_seconds: k.last_event.and_then(|t| now.duration_since(t).ok()).map(|d| d.as_secs()),
                last_error: k.last_error.clone(),
            })
            .collect();
        KubernetesStatus { server: self.server.clone(), uptime_seconds: self.started.elapsed().as_secs(), kinds }
    }
}

async fn load_config(config: &KubernetesConfig) -> Result<Config, KubernetesError> {
    match &config.kubeconfig {
        Some(path) => {
            let failed = |reason: String| KubernetesError::Kubeconfig { path: path.clone(), reason };
            let file = Kubeconfig::read_from(path).map_err(|e| failed(e.to_string()))?;
            let options = KubeConfigOptions { context: config.context.clone(), ..KubeConfigOptions::default() };
            Config::from_custom_kubeconfig(file, &options).await.map_err(|e| failed(e.to_string()))
        }
        None => Config::infer().await.map_err(|e| KubernetesError::Infer(e.to_string())),
    }
}

/// Watches one kind until the runtime stops.
async fn watch(client: Client, kind: WatchedKind, cache: Arc<Mutex<Cache>>) {
    let resource = ApiResource {
        group: kind.group.to_owned(),
        version: kind.version.to_owned(),
        api_version: kind.api_version(),
        kind: kind.kind.to_owned(),
        plural: kind.plural.to_owned(),
    };
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        let mut cache = cache.lock().expect("not poisoned");
        let changed = cache.kinds.entry(kind.kind).or_default().take(&kind, event);
        if changed {
            cache.generation += 1;
        }
    }
}

impl ResourceSource for KubernetesSource {
    fn refresh(&mut self) -> bool {
        let generation = self.cache.lock().expect("not poisoned").generation;
        let changed = generation != self.seen;
        self.seen = generation;
        changed
    }

    fn resources(&self) -> Vec<Resource> {
        let cache = self.cache.lock().expect("not poisoned");
        cache.kinds.values().flat_map(|k| k.objects.values().filter_map(|h| h.resource.clone())).collect()
    }

    fn errors(&self) -> Vec<String> {
        let cache = self.cache.lock().expect("not poisoned");
        cache.kinds.values().flat_map(|k| k.objects.values().filter_map(|h| h.error.clone())).collect()
    }

    fn warnings(&self) -> Vec<String> {
        let cache = self.cache.lock().expect("not poisoned");
        cache.kinds.values().flat_map(|k| k.objects.values().flat_map(|h| h.warnings.iter().cloned())).collect()
    }

    fn ready(&self) -> Result<(), NotReady> {
        let cache = self.cache.lock().expect("not poisoned");
        let waiting: Vec<(&str, &KindCache)> =
            cache.kinds.iter().filter(|(_, k)| !k.listed && !k.absent).map(|(kind, k)| (*kind, k)).collect();
        if waiting.is_empty() {
            return Ok(());
        }
        Err(NotReady {
            from: format!("the API server {}", self.server),
            waiting: waiting.iter().map(|(kind, _)| *kind).collect::<Vec<_>>().join(", "),
            last_error: waiting.iter().find_map(|(_, k)| k.last_error.clone()),
        })
    }
}
