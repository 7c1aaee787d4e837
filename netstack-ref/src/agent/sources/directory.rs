//! YAML files in the manifests directory and in the state directory's `applied/` (what
//! `netstack apply` put there). Files are re-read when they change; a file that no longer
//! decodes keeps its previous resources in force.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use super::{check, ResourceSource};
use crate::manifest::Resource;

/// What the agent knows about one file.
#[derive(Debug)]
struct FileState {
    fingerprint: (SystemTime, u64),
    resources: Vec<Resource>,
    warnings: Vec<String>,
    error: Option<String>,
}

/// The watched directories and the last good decoding of each file in them.
#[derive(Debug, Default)]
pub struct DirectorySource {
    dirs: Vec<PathBuf>,
    files: BTreeMap<PathBuf, FileState>,
}

impl DirectorySource {
    /// Watches `dirs` (missing ones are watched for appearing).
    pub fn new(dirs: Vec<PathBuf>) -> DirectorySource {
        DirectorySource { dirs, files: BTreeMap::new() }
    }

    /// The files read, with how many resources each holds in force.
    pub fn files(&self) -> Vec<(PathBuf, usize)> {
        self.files.iter().map(|(p, f)| (p.clone(), f.resources.len())).collect()
    }
}

impl ResourceSource for DirectorySource {
    fn refresh(&mut self) -> bool {
        let mut seen = Vec::new();
        for dir in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                    seen.push(path);
                }
            }
        }
        let mut changed = false;
        let before = self.files.len();
        self.files.retain(|p, _| seen.contains(p));
        changed |= self.files.len() != before;
        for path in seen {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            let fingerprint = (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len());
            if self.files.get(&path).is_some_and(|f| f.fingerprint == fingerprint) {
                continue;
            }
            changed = true;
            match check(&path) {
                Ok(parsed) => {
                    let warnings = parsed.warnings.iter().map(ToString::to_string).collect();
                    let state = FileState { fingerprint, resources: parsed.resources, warnings, error: None };
                    self.files.insert(path, state);
                }
                Err(error) => {
                    let previous = self.files.remove(&path).map(|f| f.resources).unwrap_or_default();
                    let error = Some(error.to_string());
                    let state = FileState { fingerprint, resources: previous, warnings: Vec::new(), error };
                    self.files.insert(path, state);
                }
            }
        }
        changed
    }

    /// Later files override earlier ones with the same key.
    fn resources(&self) -> Vec<Resource> {
        let mut by_key: BTreeMap<String, Resource> = BTreeMap::new();
        for file in self.files.values() {
            for r in &file.resources {
                by_key.insert(r.key(), r.clone());
            }
        }
        by_key.into_values().collect()
    }

    fn errors(&self) -> Vec<String> {
        self.files.values().filter_map(|f| f.error.clone()).collect()
    }

    fn warnings(&self) -> Vec<String> {
        self.files.values().flat_map(|f| f.warnings.iter().cloned()).collect()
    }

    fn ready(&self) -> Result<(), super::NotReady> {
        Ok(())
    }
}
