use std::os::fd::OwnedFd;

use super::attr::BtfLoadAttr;
use super::{bpf_fd, mut_ptr, ptr, Cmd, Errno, SysError};

/// A rejected `BPF_BTF_LOAD`, with the kernel's BTF verifier log when one was asked for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{error}{}", if log.is_empty() { String::new() } else { format!("; BTF log:\n{log}") })]
pub struct BtfLoadError {
    /// The failed call.
    pub error: SysError,
    /// The whole log (empty unless logging was requested).
    pub log: String,
}

/// `BPF_BTF_LOAD`. On failure the load is repeated with a log large enough for the whole
/// message, so the error says why.
pub fn btf_load(blob: &[u8]) -> Result<OwnedFd, BtfLoadError> {
    let mut attr = BtfLoadAttr { btf: ptr(blob), btf_size: blob.len() as u32, ..Default::default() };
    let error = match bpf_fd(Cmd::BtfLoad, &mut attr) {
        Ok(fd) => return Ok(fd),
        Err(error) => error,
    };
    let mut log = vec![0u8; 64 * 1024];
    loop {
        let mut attr = BtfLoadAttr {
            btf: ptr(blob),
            btf_size: blob.len() as u32,
            btf_log_buf: mut_ptr(&mut log),
            btf_log_size: log.len() as u32,
            btf_log_level: 1,
            ..Default::default()
        };
        match bpf_fd(Cmd::BtfLoad, &mut attr) {
            // Loading can succeed on the retry (a transient failure the first time).
            Ok(fd) => return Ok(fd),
            Err(SysError { errno: Errno::ENOSPC, .. }) if (attr.btf_log_true_size as usize) > log.len() => {
                log.resize(attr.btf_log_true_size as usize, 0);
            }
            Err(_) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]).trim_end().to_owned();
                return Err(BtfLoadError { error, log: text });
            }
        }
    }
}
