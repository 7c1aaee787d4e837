//! Where desired state comes from, behind one interface ([`ResourceSource`]): YAML files (the
//! manifests directory and what `netstack apply` left in the state directory), manifest files
//! kept in the cluster's kvstore, and a Kubernetes API server's watch streams. The agent reads
//! the union; a resource several name (same kind, namespace and name) is taken from the local
//! files, then the kvstore, then the API server.

pub mod directory;
pub mod kube_objects;
pub mod kubernetes;
pub mod kvstore;

use std::path::{Path, PathBuf};

use crate::manifest::{self, Parsed, Resource};
pub use directory::DirectorySource;
pub use kubernetes::{KubernetesConfig, KubernetesSource, KubernetesStatus};
pub use kvstore::KvstoreSource;

/// One place resources come from.
pub trait ResourceSource: std::fmt::Debug + Send {
    /// Takes in what changed since the last call; whether the resources may differ.
    fn refresh(&mut self) -> bool;
    /// Every resource in force.
    fn resources(&self) -> Vec<Resource>;
    /// What was refused (a file, an object), with why; what was in force before stays.
    fn errors(&self) -> Vec<String>;
    /// Fields ignored, as the API server would prune them.
    fn warnings(&self) -> Vec<String>;
    /// `Err` while the source cannot yet give a complete picture (a cache not listed yet):
    /// acting on a partial one would remove what is missing from it.
    fn ready(&self) -> Result<(), NotReady>;
}

/// A source that has not listed everything yet, and what it waits for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("waiting for {from} to list {waiting}{}", last_error.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
pub struct NotReady {
    /// The source (`the kvstore`, `the API server https://…`).
    pub from: String,
    /// What it has not listed yet.
    pub waiting: String,
    /// Its latest failure, if any.
    pub last_error: Option<String>,
}

/// Refuses a policy that uses a field validated but not enforced yet, naming the field.
pub fn refuse_unenforced(file: &Path, parsed: &Parsed) -> Result<(), SourceError> {
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
    Ok(())
}

/// Whether a file decodes into resources the agent can apply (with the warnings of fields the
/// API server would prune); the policy fields not enforced yet are refused here, naming the
/// field.
pub fn check(file: &Path) -> Result<Parsed, SourceError> {
    let parsed = manifest::read(file, false)?;
    refuse_unenforced(file, &parsed)?;
    Ok(parsed)
}

/// [`check`] for a file's text read elsewhere (the kvstore), named `file` in errors.
pub fn check_text(file: &Path, text: &str) -> Result<Parsed, SourceError> {
    let parsed = manifest::parse_file(file, text, false)?;
    refuse_unenforced(file, &parsed)?;
    Ok(parsed)
}

/// Why a file's (or an object's) resources are not applied.
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

/// The agent's sources: the files always, the kvstore's files and the Kubernetes API when
/// configured.
#[derive(Debug)]
pub struct Sources {
    directory: DirectorySource,
    kvstore: Option<KvstoreSource>,
    kubernetes: Option<KubernetesSource>,
}

impl Sources {
    /// Files in `dirs`, and the other sources given.
    pub fn new(dirs: Vec<PathBuf>, kvstore: Option<KvstoreSource>, kubernetes: Option<KubernetesSource>) -> Sources {
        Sources { directory: DirectorySource::new(dirs), kvstore, kubernetes }
    }

    /// In increasing precedence.
    fn each(&self) -> impl Iterator<Item = &dyn ResourceSource> {
        let kubernetes = self.kubernetes.as_ref().map(|k| k as &dyn ResourceSource);
        let kvstore = self.kvstore.as_ref().map(|k| k as &dyn ResourceSource);
        kubernetes.into_iter().chain(kvstore).chain(std::iter::once(&self.directory as &dyn ResourceSource))
    }

    /// The files read (on disk and in the kvstore), with how many resources each holds in
    /// force.
    pub fn files(&self) -> Vec<(PathBuf, usize)> {
        let mut files = self.directory.files();
        files.extend(self.kvstore.iter().flat_map(KvstoreSource::files));
        files
    }

    /// The Kubernetes source's watches, when there is one.
    pub fn kubernetes(&self) -> Option<KubernetesStatus> {
        self.kubernetes.as_ref().map(KubernetesSource::status)
    }
}

impl ResourceSource for Sources {
    fn refresh(&mut self) -> bool {
        // Both, always: each keeps its own view current.
        let kubernetes = self.kubernetes.as_mut().is_some_and(ResourceSource::refresh);
        let kvstore = self.kvstore.as_mut().is_some_and(ResourceSource::refresh);
        self.directory.refresh() | kubernetes | kvstore
    }

    fn resources(&self) -> Vec<Resource> {
        let mut by_key = std::collections::BTreeMap::new();
        for source in self.each() {
            for r in source.resources() {
                by_key.insert(r.key(), r);
            }
        }
        by_key.into_values().collect()
    }

    fn errors(&self) -> Vec<String> {
        self.each().flat_map(|s| s.errors()).collect()
    }

    fn warnings(&self) -> Vec<String> {
        self.each().flat_map(|s| s.warnings()).collect()
    }

    fn ready(&self) -> Result<(), NotReady> {
        self.each().try_for_each(|s| s.ready())
    }
}
