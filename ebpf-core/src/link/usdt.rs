use std::sync::{Arc, Mutex};

use super::uprobe::{Uprobe, UprobeOptions};
use crate::error::{Error, Result};
use crate::map::{Map, UpdateFlags};
use crate::program::Program;
use crate::types::MapType;
use crate::uprobe::{resolve_binary, UserBinary};
use crate::usdt::{read_probes, UsdtArg, UsdtLocation, UsdtProbe};

/// The name of the map `bpf-programs/include/usdt.h` defines.
pub const USDT_SPECS_MAP: &str = "usdt_specs";

/// `USDT_MAX_ARGS` of usdt.h.
const MAX_ARGS: usize = 12;
/// `sizeof(struct usdt_arg_spec)`.
const ARG_SPEC_SIZE: usize = 16;
/// `sizeof(struct usdt_spec)`: the arguments, the cookie, the count and padding.
pub(crate) const SPEC_SIZE: usize = MAX_ARGS * ARG_SPEC_SIZE + 16;
/// Offsets in `struct usdt_spec` (checked against the C header's BTF by the tests).
pub(crate) const COOKIE_OFFSET: usize = MAX_ARGS * ARG_SPEC_SIZE;
pub(crate) const ARG_COUNT_OFFSET: usize = COOKIE_OFFSET + 8;

/// `struct usdt_spec` for one probe site, as usdt.h reads it.
pub(crate) fn encode_spec(args: &[UsdtArg], cookie: u64) -> Option<[u8; SPEC_SIZE]> {
    if args.len() > MAX_ARGS {
        return None;
    }
    let mut out = [0u8; SPEC_SIZE];
    for (slot, arg) in out.chunks_exact_mut(ARG_SPEC_SIZE).zip(args) {
        let (value, kind, register) = match arg.location {
            UsdtLocation::Constant(value) => (value as u64, 0u32, 0u16),
            UsdtLocation::Register { pt_regs_offset } => (0, 1, pt_regs_offset),
            UsdtLocation::Memory { pt_regs_offset, offset } => (offset as u64, 2, pt_regs_offset),
        };
        slot[0..8].copy_from_slice(&value.to_ne_bytes());
        slot[8..12].copy_from_slice(&kind.to_ne_bytes());
        slot[12..14].copy_from_slice(&register.to_ne_bytes());
        slot[14] = u8::from(arg.signed);
        slot[15] = arg.size;
    }
    out[COOKIE_OFFSET..COOKIE_OFFSET + 8].copy_from_slice(&cookie.to_ne_bytes());
    out[ARG_COUNT_OFFSET..ARG_COUNT_OFFSET + 2].copy_from_slice(&(args.len() as u16).to_ne_bytes());
    Some(out)
}

/// The `usdt_specs` map of a loaded object that includes usdt.h, with which of its slots
/// attached probes use. Clones share the slots.
#[derive(Debug, Clone)]
pub struct UsdtSpecs {
    map: Arc<Map>,
    in_use: Arc<Mutex<Vec<bool>>>,
}

impl UsdtSpecs {
    /// Takes the specs map (`collection.map(USDT_SPECS_MAP)`), checking it is usdt.h's.
    pub fn new(map: &Map) -> Result<UsdtSpecs> {
        if map.map_type() != Some(MapType::Array) || map.key_size() != 4 || map.value_size() != SPEC_SIZE {
            return Err(Error::InvalidSpec {
                object: map.describe(),
                reason: format!("not usdt.h's specs map (an array of {SPEC_SIZE}-byte struct usdt_spec)"),
            });
        }
        let slots = map.max_entries() as usize;
        Ok(UsdtSpecs { map: Arc::new(map.try_clone()?), in_use: Arc::new(Mutex::new(vec![false; slots])) })
    }

    fn take_slot(&self) -> Option<u32> {
        let mut in_use = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
        let free = in_use.iter().position(|used| !used)?;
        in_use[free] = true;
        Some(free as u32)
    }

    fn release(&self, slots: &[u32]) {
        let mut in_use = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
        for &slot in slots {
            if let Some(used) = in_use.get_mut(slot as usize) {
                *used = false;
            }
        }
    }
}

/// How a USDT probe attaches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsdtOptions {
    /// Only in this process (`None`: every process running the binary).
    pub pid: Option<u32>,
    /// What `usdt_cookie()` returns in the program.
    pub cookie: u64,
}

/// A USDT probe attached at every site of `provider:name` in a binary: one uprobe per site,
/// its semaphore raised while attached, its argument spec in the specs map. Dropping it
/// detaches the sites and frees their spec slots.
#[derive(Debug)]
pub struct Usdt {
    sites: Vec<Uprobe>,
    slots: Vec<u32>,
    specs: UsdtSpecs,
}

impl Drop for Usdt {
    fn drop(&mut self) {
        // Detach before the slots can be reused by another probe.
        self.sites.clear();
        self.specs.release(&self.slots);
    }
}

impl Usdt {
    /// Attaches `program` (a `usdt` program that includes usdt.h) to probe `provider:name` of
    /// `binary` (a path, or a name found as [`resolve_binary`] finds it).
    pub fn attach(
        program: &Program,
        specs: &UsdtSpecs,
        binary: &str,
        provider: &str,
        name: &str,
        options: &UsdtOptions,
    ) -> Result<Usdt> {
        let path = resolve_binary(binary)?;
        let file = UserBinary::open(&path)?;
        let what = format!("USDT {provider}:{name} in {}", path.display());
        let sites: Vec<UsdtProbe> = read_probes(file.bytes())
            .map_err(|e| Error::InvalidSpec { object: what.clone(), reason: e.to_string() })?
            .into_iter()
            .filter(|p| p.provider == provider && p.name == name)
            .collect();
        if sites.is_empty() {
            return Err(Error::InvalidSpec { object: what, reason: "the binary has no such probe".to_owned() });
        }
        let mut usdt = Usdt { sites: Vec::with_capacity(sites.len()), slots: Vec::new(), specs: specs.clone() };
        for site in &sites {
            let spec = encode_spec(&site.args, options.cookie).ok_or_else(|| Error::InvalidSpec {
                object: what.clone(),
                reason: format!("{} arguments; usdt.h reads up to {MAX_ARGS}", site.args.len()),
            })?;
            let slot = specs.take_slot().ok_or_else(|| Error::InvalidSpec {
                object: what.clone(),
                reason: format!("every one of the {} spec slots is in use", specs.map.max_entries()),
            })?;
            usdt.slots.push(slot);
            specs.map.update(&slot.to_ne_bytes(), &spec, UpdateFlags::ANY)?;
            let ref_ctr_offset = match site.semaphore {
                0 => 0,
                address => file.address_offset(address)?,
            };
            let offset = file.address_offset(site.address)?;
            let uprobe_options =
                UprobeOptions { pid: options.pid, retprobe: false, cookie: u64::from(slot), ref_ctr_offset };
            usdt.sites.push(Uprobe::attach_offset(program, &path, offset, &uprobe_options)?);
        }
        Ok(usdt)
    }

    /// How many sites it is attached at.
    pub fn sites(&self) -> usize {
        self.sites.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_laid_out_as_usdt_h() {
        let args = [
            UsdtArg { size: 8, signed: true, location: UsdtLocation::Register { pt_regs_offset: 80 } },
            UsdtArg { size: 4, signed: true, location: UsdtLocation::Memory { pt_regs_offset: 152, offset: 8 } },
        ];
        let spec = encode_spec(&args, 7).unwrap();
        assert_eq!(&spec[8..16], &[1, 0, 0, 0, 80, 0, 1, 8]);
        assert_eq!(&spec[16..24], &8u64.to_ne_bytes());
        assert_eq!(&spec[24..32], &[2, 0, 0, 0, 152, 0, 1, 4]);
        assert_eq!(&spec[COOKIE_OFFSET..COOKIE_OFFSET + 8], &7u64.to_ne_bytes());
        assert_eq!(spec[ARG_COUNT_OFFSET], 2);
        assert!(encode_spec(&[args[0]; 13], 0).is_none());
    }

    /// usdt.h is the one definition of the layout: this side must match its BTF.
    #[test]
    fn the_layout_is_usdt_h_s() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../bpf-programs/out/tests/usdt_args.o");
        let spec = crate::CollectionSpec::from_elf(&std::fs::read(path).unwrap()).unwrap();
        let btf = ebpf_btf::Btf::parse(spec.btf.clone().unwrap()).unwrap();
        let find = |name| btf.find(name, ebpf_btf::BtfKind::Struct).unwrap();
        let (spec_type, arg_type) = (find("usdt_spec"), find("usdt_arg_spec"));
        assert_eq!(spec_type.size(), Some(SPEC_SIZE as u32));
        assert_eq!(arg_type.size(), Some(ARG_SPEC_SIZE as u32));
        let offset = |ty: ebpf_btf::Type<'_>, member: &str| btf.find_member(ty.id(), member).unwrap().bit_offset / 8;
        assert_eq!(offset(spec_type, "cookie"), COOKIE_OFFSET as u32);
        assert_eq!(offset(spec_type, "arg_count"), ARG_COUNT_OFFSET as u32);
        let args = btf.find_member(spec_type.id(), "args").unwrap().member.ty;
        assert_eq!(btf.type_by_id(args).unwrap().array().unwrap().nelems, MAX_ARGS as u32);
        let fields: Vec<u32> =
            ["value", "kind", "reg_offset", "is_signed", "size"].iter().map(|m| offset(arg_type, m)).collect();
        assert_eq!(fields, vec![0, 8, 12, 14, 15]);
        let map = spec.map(USDT_SPECS_MAP).unwrap();
        assert_eq!(map.value_size as usize, SPEC_SIZE);
    }
}
