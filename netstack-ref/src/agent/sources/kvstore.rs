//! Manifest files kept in the cluster's kvstore (`resources/<file>`), which every agent of a
//! cluster reads: one place to apply to instead of a directory per machine. Polled (a listing
//! is one small etcd range read); a file is decoded again only when its revision changed, with
//! the same decoder and rules as a file on disk. A lost kvstore keeps what was read last.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{check_text, NotReady, ResourceSource};
use crate::cluster::kvstore::{KvError, KvStore};
use crate::manifest::Resource;

/// How often the kvstore is listed.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How long one kvstore call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// One stored file as last decoded.
#[derive(Debug)]
struct StoredFile {
    revision: i64,
    resources: Vec<Resource>,
    warnings: Vec<String>,
    error: Option<String>,
}

/// The kvstore's manifest files.
#[derive(Debug)]
pub struct KvstoreSource {
    endpoint: String,
    store: Option<KvStore>,
    files: BTreeMap<String, StoredFile>,
    listed: bool,
    last_poll: Option<Instant>,
    last_error: Option<String>,
}

impl KvstoreSource {
    /// Reads `resources/` from the etcd at `endpoint` (connecting on the first refresh).
    pub fn new(endpoint: &str) -> KvstoreSource {
        KvstoreSource {
            endpoint: endpoint.to_owned(),
            store: None,
            files: BTreeMap::new(),
            listed: false,
            last_poll: None,
            last_error: None,
        }
    }

    /// The files read, with how many resources each holds in force.
    pub fn files(&self) -> Vec<(PathBuf, usize)> {
        self.files.iter().map(|(name, f)| (PathBuf::from(format!("kvstore:{name}")), f.resources.len())).collect()
    }

    fn list(&mut self) -> Result<Vec<(String, String, i64)>, KvError> {
        let store = match self.store.take() {
            Some(store) => store,
            None => KvStore::connect(std::slice::from_ref(&self.endpoint), "netstack", CALL_TIMEOUT)?,
        };
        let listed = store.resource_files()?;
        // Kept only while it answers: a failed call reconnects next time.
        self.store = Some(store);
        Ok(listed)
    }
}

impl ResourceSource for KvstoreSource {
    fn refresh(&mut self) -> bool {
        if self.last_poll.is_some_and(|t| t.elapsed() < POLL_INTERVAL) {
            return false;
        }
        self.last_poll = Some(Instant::now());
        let stored = match self.list() {
            Ok(stored) => stored,
            Err(e) => {
                self.last_error = Some(e.to_string());
                return false;
            }
        };
        self.last_error = None;
        let mut changed = !self.listed;
        self.listed = true;
        let before = self.files.len();
        self.files.retain(|name, _| stored.iter().any(|(n, _, _)| n == name));
        changed |= self.files.len() != before;
        for (name, text, revision) in stored {
            if self.files.get(&name).is_some_and(|f| f.revision == revision) {
                continue;
            }
            changed = true;
            let path = PathBuf::from(format!("kvstore:{name}"));
            let file = match check_text(&path, &text) {
                Ok(parsed) => StoredFile {
                    revision,
                    resources: parsed.resources,
                    warnings: parsed.warnings.iter().map(ToString::to_string).collect(),
                    error: None,
                },
                Err(e) => StoredFile {
                    revision,
                    resources: self.files.remove(&name).map(|f| f.resources).unwrap_or_default(),
                    warnings: Vec::new(),
                    error: Some(e.to_string()),
                },
            };
            self.files.insert(name, file);
        }
        changed
    }

    fn resources(&self) -> Vec<Resource> {
        let mut by_key = BTreeMap::new();
        for file in self.files.values() {
            for r in &file.resources {
                by_key.insert(r.key(), r.clone());
            }
        }
        by_key.into_values().collect()
    }

    fn errors(&self) -> Vec<String> {
        let mut errors: Vec<String> = self.files.values().filter_map(|f| f.error.clone()).collect();
        if let (true, Some(e)) = (self.listed, &self.last_error) {
            errors.push(format!("resources in the kvstore (the last listing stays in force): {e}"));
        }
        errors
    }

    fn warnings(&self) -> Vec<String> {
        self.files.values().flat_map(|f| f.warnings.iter().cloned()).collect()
    }

    fn ready(&self) -> Result<(), NotReady> {
        if self.listed {
            return Ok(());
        }
        Err(NotReady {
            from: format!("the kvstore at {}", self.endpoint),
            waiting: "resources/".to_owned(),
            last_error: self.last_error.clone(),
        })
    }
}
