//! A file-system operation that failed: the one error payload every module that touches files
//! shares.

use std::path::{Path, PathBuf};

/// What was done to which path, and the system's error.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", path.display())]
pub struct FileError {
    /// The operation (`read`, `create`, `remove`).
    pub what: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    /// A `map_err` adapter: `std::fs::read(&p).map_err(FileError::at("read", &p))`.
    pub fn at(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FileError {
        let path = path.to_path_buf();
        move |source| FileError { what, path, source }
    }
}
