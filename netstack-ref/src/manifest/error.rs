//! Errors that point into the input: file, line and field.

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem at a place in a document, before the file is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// 1-based line.
    pub line: usize,
    /// The field path (`spec.ingress[0].toPorts[0].ports[0].protocol`); empty for the document.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Located {
    /// The error in `file`; `what` says what kind of document it was (`policy`, `manifest`).
    pub fn in_file(self, what: &'static str, file: &Path) -> ManifestError {
        ManifestError { what, file: file.to_path_buf(), line: self.line, field: self.field, message: self.message }
    }
}

/// A manifest that cannot be used: where, and why.
///
/// Displays as `policy examples/l4.yaml:14: spec.ingress[0].toPorts[0].ports[0].protocol:
/// "TPC" is not one of TCP, UDP, SCTP, ICMP, ANY`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// `policy` for CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy, `manifest` otherwise.
    pub what: &'static str,
    /// The file the document came from.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// The field path; empty when the document as a whole is wrong.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}:{}: ", self.what, self.file.display(), self.line)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}
