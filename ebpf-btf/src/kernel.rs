//! The running kernel's BTF: vmlinux and modules, from `/sys/kernel/btf`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::btf::Btf;
use crate::header::BtfError;

/// Where the kernel publishes its BTF.
pub const SYS_BTF_DIR: &str = "/sys/kernel/btf";

fn file_error(path: &Path, message: impl ToString) -> BtfError {
    BtfError::File { path: path.display().to_string(), message: message.to_string() }
}

/// Reads and parses a standalone BTF file; errors name the file.
pub fn read_btf_file(path: impl AsRef<Path>) -> Result<Btf, BtfError> {
    let path = path.as_ref();
    let data = std::fs::read(path).map_err(|e| file_error(path, e))?;
    Btf::parse(data).map_err(|e| file_error(path, e))
}

/// Reads and parses split BTF on top of `base`; errors name the file.
pub fn read_split_btf_file(path: impl AsRef<Path>, base: Arc<Btf>) -> Result<Btf, BtfError> {
    let path = path.as_ref();
    let data = std::fs::read(path).map_err(|e| file_error(path, e))?;
    Btf::parse_split(data, base).map_err(|e| file_error(path, e))
}

/// The kernel's own BTF (`/sys/kernel/btf/vmlinux`).
pub fn vmlinux() -> Result<Btf, BtfError> {
    read_btf_file(Path::new(SYS_BTF_DIR).join("vmlinux"))
}

/// A kernel module's BTF (`/sys/kernel/btf/<module>`), split on top of `vmlinux`.
pub fn module(name: &str, vmlinux: Arc<Btf>) -> Result<Btf, BtfError> {
    if name.is_empty() || name.contains('/') || name == "vmlinux" {
        return Err(file_error(Path::new(SYS_BTF_DIR), format!("{name:?} is not a module name")));
    }
    read_split_btf_file(Path::new(SYS_BTF_DIR).join(name), vmlinux)
}

/// Names of the modules that publish BTF.
pub fn module_names() -> Result<Vec<String>, BtfError> {
    let dir = PathBuf::from(SYS_BTF_DIR);
    let entries = std::fs::read_dir(&dir).map_err(|e| file_error(&dir, e))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "vmlinux")
        .collect();
    names.sort();
    Ok(names)
}
