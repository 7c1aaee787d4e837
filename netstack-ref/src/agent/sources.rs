//! Where desired state comes from: YAML files in the manifests directory and in the state
//! directory's `applied/` (what `netstack apply` put there). Files are re-read when they
//! change; a file that no longer decodes keeps its previous resources in force.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::manifest::{self, Parsed, Resource};

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
pub struct Sources {
    dirs: Vec<PathBuf>,
    files: BTreeMap<PathBuf, FileState>,
}

/// Whether a file decodes into resources the agent can apply (with the warnings of fields the
/// API server would prune); the policy fields not enforced yet are refused here, naming the
/// field.
pub fn check(file: &Path) -> Result<Parsed, SourceError> {
    let parsed = manifest::read(file, false)?;
    for r in &parsed.resources {
        if let Resource::Policy(p) = r {
            if let Some((origin, what)) = p.unenforced().into_iter().next() {
                return Err(SourceError::Unenforced {
                    file: file.to_path_buf(),
                    line: origin.line,
                    field: origin.field,
                    what,
                });
            }
        }
    }
    Ok(parsed)
}

/// Why a file's resources are not applied.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// It does not decode.
    #[error(transparent)]
    Manifest(#[from] manifest::error::ManifestError),
    /// A policy uses a field that is validated but not enforced yet.
    #[error("policy {}:{line}: {field}: {what} is validated but not enforced yet; the policy is not applied", file.display())]
    Unenforced {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// The field path.
        field: String,
        /// What is not enforced.
        what: &'static str,
    },
}

impl Sources {
    /// Watches `dirs` (missing ones are watched for appearing).
    pub fn new(dirs: Vec<PathBuf>) -> Sources {
        Sources { dirs, files: BTreeMap::new() }
    }

    /// Re-reads what changed; returns whether the set of resources may differ.
    pub fn scan(&mut self) -> bool {
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

    /// Every resource in force, later files overriding earlier ones with the same key.
    pub fn resources(&self) -> Vec<Resource> {
        let mut by_key: BTreeMap<String, Resource> = BTreeMap::new();
        for file in self.files.values() {
            for r in &file.resources {
                by_key.insert(r.key(), r.clone());
            }
        }
        by_key.into_values().collect()
    }

    /// Files whose latest version was refused, with why.
    pub fn errors(&self) -> Vec<String> {
        self.files.values().filter_map(|f| f.error.clone()).collect()
    }

    /// Fields the files in force carry that the API server would prune (ignored).
    pub fn warnings(&self) -> Vec<String> {
        self.files.values().flat_map(|f| f.warnings.iter().cloned()).collect()
    }

    /// The files read, with how many resources each holds in force.
    pub fn files(&self) -> Vec<(PathBuf, usize)> {
        self.files.iter().map(|(p, f)| (p.clone(), f.resources.len())).collect()
    }
}
