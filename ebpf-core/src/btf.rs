//! BTF blobs loaded into the kernel (`BPF_BTF_LOAD`), for what takes a BTF object by fd: maps
//! with typed values, programs with line info, and introspection.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::error::{Error, Result};
use crate::sys::{self, BtfInfo};

/// A BTF object in the kernel; released when dropped unless something else holds it.
#[derive(Debug)]
pub struct LoadedBtf {
    fd: OwnedFd,
}

impl LoadedBtf {
    /// Loads `blob` (raw BTF: header, types, strings). A kernel refusal comes back with the
    /// errno (`EINVAL` for what it cannot take).
    pub fn load(blob: &[u8]) -> Result<LoadedBtf> {
        let fd = sys::btf_load(blob)?;
        Ok(LoadedBtf { fd })
    }

    /// Opens the BTF object with global id `id` (see [`program::btf_ids`](crate::program::btf_ids)).
    pub fn from_id(id: u32) -> Result<LoadedBtf> {
        let fd = sys::btf_fd_by_id(id).map_err(|e| Error::syscall(format!("open BTF id {id}"), e))?;
        Ok(LoadedBtf { fd })
    }

    /// What the kernel reports about it (its id, size, name).
    pub fn info(&self) -> Result<BtfInfo> {
        sys::btf_info(self.fd.as_fd()).map_err(|e| Error::syscall("read info of a loaded BTF object", e))
    }
}

impl AsFd for LoadedBtf {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
