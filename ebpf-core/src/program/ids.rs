use crate::error::{Error, Result};
use crate::sys::{self, IdKind};

/// Iterates over the global ids of loaded kernel objects of one kind, in increasing order.
/// Objects that vanish during the walk are simply not seen.
#[derive(Debug)]
pub struct ObjectIds {
    kind: IdKind,
    next: u32,
    done: bool,
}

impl Iterator for ObjectIds {
    type Item = Result<u32>;

    fn next(&mut self) -> Option<Result<u32>> {
        if self.done {
            return None;
        }
        match sys::next_id(self.kind, self.next) {
            Ok(Some(id)) => {
                self.next = id;
                Some(Ok(id))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(Error::syscall(format!("list {:?} ids", self.kind).to_lowercase(), e)))
            }
        }
    }
}

/// Ids of every loaded program.
pub fn program_ids() -> ObjectIds {
    ObjectIds { kind: IdKind::Prog, next: 0, done: false }
}

/// Ids of every map.
pub fn map_ids() -> ObjectIds {
    ObjectIds { kind: IdKind::Map, next: 0, done: false }
}

/// Ids of every link.
pub fn link_ids() -> ObjectIds {
    ObjectIds { kind: IdKind::Link, next: 0, done: false }
}

/// Ids of every BTF object (vmlinux, modules', and those programs and maps loaded).
pub fn btf_ids() -> ObjectIds {
    ObjectIds { kind: IdKind::Btf, next: 0, done: false }
}
