use std::os::fd::AsFd;

use super::Link;
use crate::error::{Error, Result};
use crate::map::{Map, MapFlags, UpdateFlags};
use crate::sys::{self, LinkTarget};
use crate::types::{AttachType, MapType};

/// A registered struct_ops value (a TCP congestion control the kernel now offers, …).
///
/// A `.struct_ops.link` map is registered through a `bpf_link`: dropping the link (unless
/// pinned) unregisters it, and [`StructOps::update`] swaps in another implementation
/// atomically. A plain `.struct_ops` map is registered by writing its value; dropping the
/// handle deletes the value, which unregisters it.
#[derive(Debug)]
pub struct StructOps {
    registration: Registration,
}

#[derive(Debug)]
enum Registration {
    Link(Link),
    Value(ValueRegistration),
}

/// A value registered by a map update, unregistered by deleting it.
#[derive(Debug)]
struct ValueRegistration {
    map: Map,
}

impl Drop for ValueRegistration {
    fn drop(&mut self) {
        let _ = self.map.delete(&0u32.to_ne_bytes());
    }
}

fn check_struct_ops(map: &Map) -> Result<()> {
    if map.map_type() != Some(MapType::StructOps) {
        return Err(Error::InvalidSpec {
            object: map.describe(),
            reason: "only struct_ops maps are registered as struct_ops".to_owned(),
        });
    }
    Ok(())
}

impl StructOps {
    /// Registers the `.struct_ops.link` map `map` (its value already written, as
    /// [`Collection::load`](crate::Collection::load) writes it) through a new `bpf_link`.
    pub fn attach(map: &Map) -> Result<StructOps> {
        check_struct_ops(map)?;
        if !map.flags().contains(MapFlags::LINK) {
            return Err(Error::InvalidSpec {
                object: map.describe(),
                reason: "it was made without BPF_F_LINK (a .struct_ops section): writing its value registers it"
                    .to_owned(),
            });
        }
        let what = format!("struct_ops link of map \"{}\"", map.name());
        let fd =
            sys::link_create(map.as_fd(), 0, AttachType::StructOps.raw(), 0, LinkTarget::Plain { target_btf_id: 0 })
                .map_err(|e| Error::syscall(format!("attach {what}"), e))?;
        Ok(StructOps { registration: Registration::Link(Link::new(fd, what)) })
    }

    /// Registers the value `image` of a plain struct_ops map by writing it.
    pub(crate) fn register_value(map: &Map, image: &[u8]) -> Result<StructOps> {
        check_struct_ops(map)?;
        map.update(&0u32.to_ne_bytes(), image, UpdateFlags::ANY).map_err(|e| match e.errno() {
            Some(sys::Errno::EBUSY) => Error::InvalidSpec {
                object: map.describe(),
                reason: "its value is registered already (a struct_ops value registers once)".to_owned(),
            },
            _ => e,
        })?;
        Ok(StructOps { registration: Registration::Value(ValueRegistration { map: map.try_clone()? }) })
    }

    /// Swaps the implementation for that of `map` (another `.struct_ops.link` map of the same
    /// kernel struct, its value written), atomically. Only link registrations can.
    pub fn update(&self, map: &Map) -> Result<()> {
        check_struct_ops(map)?;
        let Registration::Link(link) = &self.registration else {
            return Err(Error::InvalidSpec {
                object: "struct_ops registered by a map update".to_owned(),
                reason: "only a .struct_ops.link registration can swap its implementation".to_owned(),
            });
        };
        sys::link_update(link.as_fd(), map.as_fd(), None, 0)
            .map_err(|e| Error::syscall(format!("update {} to map \"{}\"", link.describe(), map.name()), e))
    }

    /// The `bpf_link`, for a `.struct_ops.link` registration (to pin it, read its info).
    pub fn link(&self) -> Option<&Link> {
        match &self.registration {
            Registration::Link(link) => Some(link),
            Registration::Value(_) => None,
        }
    }

    /// Unregisters now, reporting what the kernel says (dropping does the same silently).
    pub fn unregister(self) -> Result<()> {
        match self.registration {
            Registration::Link(link) => link.detach(),
            // The drop that follows deletes again and is refused, harmlessly.
            Registration::Value(registration) => registration.map.delete(&0u32.to_ne_bytes()).map(drop),
        }
    }
}
