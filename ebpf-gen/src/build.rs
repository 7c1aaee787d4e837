//! The build-script helper: generate a skeleton into `OUT_DIR` and have cargo rerun the build
//! script when the object changes.

use std::path::{Path, PathBuf};

use crate::{rustfmt, GenError, SkeletonOptions};

/// Generates the skeleton of the object at `object` as `$OUT_DIR/<name>.skel.rs` (formatted when
/// rustfmt runs), prints `cargo:rerun-if-changed` for the object, and returns the file's path.
/// The object is embedded by absolute path.
pub fn skeleton(object: impl AsRef<Path>, name: &str) -> Result<PathBuf, GenError> {
    let out_dir = std::env::var_os("OUT_DIR").map(PathBuf::from).ok_or_else(|| GenError::Io {
        what: "OUT_DIR is not set (call this from a build script)",
        path: PathBuf::new(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    let out = out_dir.join(format!("{name}.skel.rs"));
    skeleton_to(object.as_ref(), name, &out)?;
    println!("cargo:rerun-if-changed={}", object.as_ref().display());
    Ok(out)
}

/// Generates the skeleton of the object at `object` into the file `out`.
pub fn skeleton_to(object: &Path, name: &str, out: &Path) -> Result<(), GenError> {
    let bytes = std::fs::read(object).map_err(|source| GenError::Io { what: "read", path: object.into(), source })?;
    let absolute = std::fs::canonicalize(object).map_err(|source| GenError::Io {
        what: "resolve",
        path: object.into(),
        source,
    })?;
    let options = SkeletonOptions {
        name: name.to_owned(),
        object_name: object.file_name().map_or_else(|| name.to_owned(), |n| n.to_string_lossy().into_owned()),
        include_path: absolute.to_string_lossy().into_owned(),
    };
    let source = crate::skeleton(&bytes, &options)?;
    let source = rustfmt(&source).unwrap_or(source);
    std::fs::write(out, source).map_err(|source| GenError::Io { what: "write", path: out.into(), source })
}
