use std::os::fd::AsFd;

use crate::error::{Error, Result};
use crate::map::Map;
use crate::program::Program;
use crate::sys;
use crate::types::AttachType;

/// Socket filters (`SO_ATTACH_BPF`): the program sees every packet the socket receives and
/// returns how many bytes of it to keep (0 drops it). The filter belongs to the socket and
/// goes with it; there is no link.
#[derive(Debug)]
pub struct SocketFilter;

impl SocketFilter {
    /// Attaches `program` (a `socket_filter` program) to `socket`, replacing its filter.
    pub fn attach(socket: &impl AsFd, program: &Program) -> Result<()> {
        sys::attach_socket_filter(socket.as_fd(), program.as_fd()).map_err(|errno| Error::Os {
            operation: format!("attach socket filter \"{}\" (SO_ATTACH_BPF)", program.name()),
            errno,
        })
    }

    /// Removes the socket's filter.
    pub fn detach(socket: &impl AsFd) -> Result<()> {
        sys::detach_socket_filter(socket.as_fd())
            .map_err(|errno| Error::Os { operation: "detach socket filter (SO_DETACH_BPF)".to_owned(), errno })
    }
}

/// A program attached to a sockmap or sockhash with `BPF_PROG_ATTACH` (sk_msg verdicts,
/// sk_skb stream parsers and verdicts): it runs for every socket in the map. Detached on drop.
#[derive(Debug)]
pub struct SockMapProgram {
    map: Map,
    program: Program,
    attach_type: AttachType,
}

impl SockMapProgram {
    /// Attaches `program` to `map` at `attach_type` (`SkMsgVerdict`, `SkSkbStreamParser`,
    /// `SkSkbStreamVerdict` or `SkSkbVerdict`). Both are held (by duplicated fds) until drop.
    pub fn attach(map: &Map, program: &Program, attach_type: AttachType) -> Result<SockMapProgram> {
        let map = map.try_clone()?;
        let program = program.try_clone()?;
        sys::prog_attach(map_target(&map), program.as_fd(), attach_type.raw(), 0, 0, 0).map_err(|e| {
            Error::syscall(format!("attach program \"{}\" to {} at {attach_type}", program.name(), map.describe()), e)
        })?;
        Ok(SockMapProgram { map, program, attach_type })
    }
}

fn map_target(map: &Map) -> u32 {
    std::os::fd::AsRawFd::as_raw_fd(&map.as_fd()) as u32
}

impl Drop for SockMapProgram {
    fn drop(&mut self) {
        let _ = sys::prog_detach(map_target(&self.map), Some(self.program.as_fd()), self.attach_type.raw());
    }
}
