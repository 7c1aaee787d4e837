use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd};

use bytemuck::Pod;
use ebpf_core::{Map, MapType, UpdateFlags};

use crate::{check_kind, check_size, MapError};

macro_rules! index_map {
    ($(#[$doc:meta])* $name:ident, [$($kind:ident),+]) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name<K: Pod = u32> {
            map: Map,
            _key: PhantomData<K>,
        }

        view_of_borrowed_map!($name<K>);

        impl<K: Pod> TryFrom<Map> for $name<K> {
            type Error = MapError;

            fn try_from(map: Map) -> Result<Self, MapError> {
                check_kind(&map, &[$(MapType::$kind),+])?;
                check_size::<K>(&map, "key", map.key_size())?;
                Ok($name { map, _key: PhantomData })
            }
        }

        impl<K: Pod> $name<K> {
            /// Removes `key`; `false` when it was absent.
            pub fn remove(&self, key: &K) -> Result<bool, MapError> {
                Ok(self.map.delete(bytemuck::bytes_of(key))?)
            }

            /// The underlying untyped map.
            pub fn map(&self) -> &Map {
                &self.map
            }
        }
    };
}

index_map!(
    /// A device map (`devmap` or `devmap_hash`): `bpf_redirect_map` targets by interface index.
    DevMap,
    [Devmap, DevmapHash]
);

index_map!(
    /// A CPU map (`cpumap`): `bpf_redirect_map` hands packets to another CPU's queue.
    CpuMap,
    [Cpumap]
);

index_map!(
    /// An AF_XDP socket map (`xskmap`): `bpf_redirect_map` delivers frames to user-space rings.
    XskMap,
    [Xskmap]
);

index_map!(
    /// A socket map (`sockmap` or `sockhash`): sockets for `sk_msg`/`sk_skb` redirection.
    SockMap,
    [Sockmap, Sockhash]
);

impl<K: Pod> DevMap<K> {
    /// Redirects through `key` go out of interface `ifindex`.
    pub fn set(&self, key: &K, ifindex: u32, flags: UpdateFlags) -> Result<(), MapError> {
        // `struct bpf_devmap_val` without a program when the value is 8 bytes.
        let mut value = [0u8; 8];
        value[..4].copy_from_slice(&ifindex.to_ne_bytes());
        let len = self.map.value_size().min(8);
        Ok(self.map.update(bytemuck::bytes_of(key), &value[..len], flags)?)
    }

    /// The interface index behind `key`.
    pub fn ifindex(&self, key: &K) -> Result<Option<u32>, MapError> {
        let mut value = vec![0u8; self.map.value_size()];
        Ok(self
            .map
            .lookup(bytemuck::bytes_of(key), &mut value)?
            .then(|| u32::from_ne_bytes(value[..4].try_into().expect("4 bytes"))))
    }
}

impl<K: Pod> CpuMap<K> {
    /// Enables CPU `key` with a queue of `queue_size` frames.
    pub fn set(&self, key: &K, queue_size: u32, flags: UpdateFlags) -> Result<(), MapError> {
        // `struct bpf_cpumap_val { qsize; bpf_prog.fd }`, without a program.
        let mut value = [0u8; 8];
        value[..4].copy_from_slice(&queue_size.to_ne_bytes());
        let len = self.map.value_size().min(8);
        Ok(self.map.update(bytemuck::bytes_of(key), &value[..len], flags)?)
    }

    /// The queue size of CPU `key`, if enabled.
    pub fn queue_size(&self, key: &K) -> Result<Option<u32>, MapError> {
        let mut value = vec![0u8; self.map.value_size()];
        Ok(self
            .map
            .lookup(bytemuck::bytes_of(key), &mut value)?
            .then(|| u32::from_ne_bytes(value[..4].try_into().expect("4 bytes"))))
    }
}

impl<K: Pod> XskMap<K> {
    /// Points `key` at an AF_XDP socket.
    pub fn set(&self, key: &K, socket: &impl AsFd, flags: UpdateFlags) -> Result<(), MapError> {
        let fd = socket.as_fd().as_raw_fd() as u32;
        Ok(self.map.update(bytemuck::bytes_of(key), &fd.to_ne_bytes(), flags)?)
    }
}

impl<K: Pod> SockMap<K> {
    /// Stores `socket` under `key` (TCP, or UDP on kernels that allow it).
    pub fn set(&self, key: &K, socket: &impl AsFd, flags: UpdateFlags) -> Result<(), MapError> {
        let fd = u64::from(socket.as_fd().as_raw_fd() as u32);
        let value = fd.to_ne_bytes();
        let len = self.map.value_size().min(8);
        Ok(self.map.update(bytemuck::bytes_of(key), &value[..len], flags)?)
    }

    /// The socket cookie of the socket under `key` (8-byte values only).
    pub fn cookie(&self, key: &K) -> Result<Option<u64>, MapError> {
        let mut value = vec![0u8; self.map.value_size()];
        let found = self.map.lookup(bytemuck::bytes_of(key), &mut value)?;
        Ok(found.then(|| value.iter().rev().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))))
    }
}
