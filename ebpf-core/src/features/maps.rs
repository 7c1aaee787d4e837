use std::os::fd::AsFd;

use ebpf_btf::{BtfBuilder, IntEncoding};

use super::programs::privilege;
use super::{Cache, Support};
use crate::sys::{self, Errno, MapCreate};
use crate::types::MapType;

static CACHE: Cache<MapType> = Cache::new();

/// Whether maps of `map_type` can be created.
pub fn map_type(map_type: MapType) -> Support {
    CACHE.get_or_probe(map_type, || probe(map_type))
}

const NO_PREALLOC: u32 = 1;
const MMAPABLE: u32 = 1 << 10;

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(size).unwrap_or(4096)
}

fn probe(map_type: MapType) -> Support {
    if let Err(why) = privilege() {
        return Support::Unknown(why);
    }
    // Local-storage maps need BTF describing an int key and value.
    let storage_btf = match map_type {
        MapType::SkStorage | MapType::InodeStorage | MapType::TaskStorage | MapType::CgrpStorage => {
            let mut btf = BtfBuilder::new();
            btf.add_int("int", 4, IntEncoding::Signed);
            match sys::btf_load(&btf.encode()) {
                Ok(fd) => Some(fd),
                Err(e) => return Support::Unknown(format!("could not load the probe's BTF: {e}")),
            }
        }
        _ => None,
    };
    let inner = match map_type {
        MapType::ArrayOfMaps | MapType::HashOfMaps => {
            let template = MapCreate {
                map_type: MapType::Array.raw(),
                key_size: 4,
                value_size: 4,
                max_entries: 1,
                ..Default::default()
            };
            match sys::map_create(&template) {
                Ok(fd) => Some(fd),
                Err(e) => return Support::Unknown(format!("could not create the inner map template: {e}")),
            }
        }
        _ => None,
    };
    let mut request =
        MapCreate { map_type: map_type.raw(), key_size: 4, value_size: 4, max_entries: 1, ..Default::default() };
    let mut expect_notsupp = false;
    match map_type {
        MapType::Hash
        | MapType::Array
        | MapType::PercpuHash
        | MapType::PercpuArray
        | MapType::LruHash
        | MapType::LruPercpuHash
        | MapType::StackTrace => request.value_size = 8,
        MapType::LpmTrie => {
            request.key_size = 8;
            request.value_size = 8;
            request.map_flags = NO_PREALLOC;
        }
        MapType::CgroupStorage | MapType::PercpuCgroupStorage => {
            request.key_size = 16; // struct bpf_cgroup_storage_key
            request.value_size = 8;
            request.max_entries = 0;
        }
        MapType::Queue | MapType::Stack | MapType::BloomFilter => request.key_size = 0,
        MapType::Ringbuf | MapType::UserRingbuf => {
            request.key_size = 0;
            request.value_size = 0;
            request.max_entries = page_size();
        }
        MapType::Arena => {
            request.key_size = 0;
            request.value_size = 0;
            request.map_flags = MMAPABLE;
        }
        MapType::SkStorage | MapType::InodeStorage | MapType::TaskStorage | MapType::CgrpStorage => {
            request.map_flags = NO_PREALLOC;
            request.max_entries = 0;
            request.btf_key_type_id = 1;
            request.btf_value_type_id = 1;
        }
        MapType::StructOps => {
            // Type id 1 of vmlinux is never a struct_ops value type: a kernel that knows
            // struct_ops maps gets as far as looking it up and answers ENOTSUPP.
            request.btf_vmlinux_value_type_id = 1;
            expect_notsupp = true;
        }
        _ => {}
    }
    request.btf = storage_btf.as_ref().map(|fd| fd.as_fd());
    request.inner_map = inner.as_ref().map(|m| m.as_fd());
    match sys::map_create(&request) {
        Ok(_) => Support::Yes,
        Err(e) if expect_notsupp && e.errno == Errno::ENOTSUPP => Support::Yes,
        Err(e) if e.errno == Errno::EINVAL => {
            Support::No("EINVAL: map type unknown to or not built into this kernel".to_owned())
        }
        Err(e) if e.errno == Errno::EPERM => Support::No("the kernel refuses this map type (EPERM)".to_owned()),
        Err(e) => Support::Unknown(format!("probe create failed with {}", e.errno)),
    }
}
