//! What the agent keeps across restarts besides the pins: `state.json` in its state directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::endpoint::EndpointRecord;
use crate::file_error::FileError;

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading, writing or renaming it.
    #[error(transparent)]
    File(#[from] FileError),
    /// Its JSON.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// The endpoints the agent made and the identity numbers it handed out.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Persisted {
    /// Endpoints by pod key.
    pub endpoints: BTreeMap<String, EndpointRecord>,
    /// Identity numbers by their labels' text, so numbers stay stable across restarts.
    pub identities: BTreeMap<String, u32>,
    /// How the agent routed to other nodes (a tunnel device is left to remove).
    #[serde(default)]
    pub routing: crate::cluster::routing::Routing,
}

impl Persisted {
    /// The state in `state_dir`, or an empty one when there is none yet.
    pub fn load(state_dir: &Path) -> Result<Persisted, StateError> {
        let path = state_dir.join("state.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Json { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Persisted::default()),
            Err(source) => Err(FileError { what: "read", path, source }.into()),
        }
    }

    /// Writes the state into `state_dir`, atomically (a temporary file renamed over it).
    pub fn save(&self, state_dir: &Path) -> Result<(), StateError> {
        let path = state_dir.join("state.json");
        let tmp = path.with_extension("json.tmp");
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|source| StateError::Json { path: path.clone(), source })?;
        std::fs::write(&tmp, bytes).map_err(FileError::at("write", &tmp))?;
        Ok(std::fs::rename(&tmp, &path).map_err(FileError::at("rename", &tmp))?)
    }
}
