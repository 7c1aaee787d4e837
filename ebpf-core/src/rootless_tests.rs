//! Map, program and collection logic without root: every `bpf(2)` call goes to a handler
//! (the syscall seam, `sys::seam`) that records what was asked and answers as a kernel would.

use std::sync::{Arc, Mutex};

use crate::object::{Collection, CollectionSpec};
use crate::sys::seam::{fake_fd, with_syscalls};
use crate::sys::{Cmd, Errno};
use crate::{Error, LoadOptions, Map, MapSpec, MapType};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../bpf-programs/out/tests/{name}.o", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn word(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Every call the body makes, with the attribute bytes as the library filled them; new
/// objects get fake fds, `fail` decides which commands the "kernel" refuses.
fn record<R>(
    fail: impl Fn(Cmd, usize) -> Option<Errno> + 'static,
    body: impl FnOnce() -> R,
) -> (R, Vec<(Cmd, Vec<u8>)>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let result = with_syscalls(
        move |cmd, attr| {
            let mut seen = seen.lock().unwrap();
            let nth = seen.iter().filter(|(c, _): &&(Cmd, Vec<u8>)| *c == cmd).count();
            seen.push((cmd, attr.to_vec()));
            if let Some(errno) = fail(cmd, nth) {
                return Err(errno);
            }
            Ok(match cmd {
                Cmd::MapCreate | Cmd::ProgLoad | Cmd::BtfLoad => fake_fd(),
                _ => 0,
            })
        },
        body,
    );
    let calls = calls.lock().unwrap().clone();
    (result, calls)
}

#[test]
fn a_map_is_created_with_the_spec_s_sizes_and_name() {
    let spec = MapSpec::new("rootless_map", MapType::Hash, 4, 16, 128);
    let (map, calls) = record(|_, _| None, || Map::create(&spec));
    let map = map.unwrap();
    assert_eq!((map.key_size(), map.value_size(), map.max_entries()), (4, 16, 128));
    let [(Cmd::MapCreate, attr)] = calls.as_slice() else { panic!("{calls:?}") };
    // union bpf_attr, map create: type, key size, value size, max entries, flags, ..., name at 28.
    assert_eq!([word(attr, 0), word(attr, 4), word(attr, 8), word(attr, 12)], [1, 4, 16, 128]);
    assert_eq!(&attr[28..40], b"rootless_map");
}

#[test]
fn a_collection_creates_its_maps_before_loading_its_program() {
    let spec = CollectionSpec::from_elf(&fixture("xdp_count")).unwrap();
    let (collection, calls) = record(|_, _| None, || Collection::load(spec, &LoadOptions::default()));
    let collection = collection.unwrap();
    let commands: Vec<Cmd> = calls.iter().map(|(c, _)| *c).collect();
    let first_load = commands.iter().position(|&c| c == Cmd::ProgLoad).unwrap();
    let creates = commands.iter().filter(|&&c| c == Cmd::MapCreate).count();
    assert_eq!(creates, 2, "verdicts and .rodata: {commands:?}");
    assert!(commands[..first_load].iter().filter(|&&c| c == Cmd::MapCreate).count() == creates, "{commands:?}");
    // .rodata is written (DROP_PORT) and frozen before the program that reads it loads.
    let frozen = commands.iter().position(|&c| c == Cmd::MapFreeze).unwrap();
    assert!(frozen < first_load, "{commands:?}");
    // The program is XDP (type 6) and the kernel is given its instructions.
    let (_, load) = &calls[first_load];
    assert_eq!(word(load, 0), 6);
    assert!(word(load, 4) > 10, "instruction count");
    assert!(collection.program("xdp_count").is_ok());
}

#[test]
fn a_refused_program_fails_the_whole_load_and_names_it() {
    use std::os::fd::IntoRawFd;
    let spec = CollectionSpec::from_elf(&fixture("xdp_count")).unwrap();
    // The maps' fds are of a file of this test's own, so they can be told from other threads'.
    let marker = std::env::temp_dir().join(format!("ebpf_rootless_{}", std::process::id()));
    std::fs::write(&marker, b"").unwrap();
    let path = marker.clone();
    let result = with_syscalls(
        move |cmd, _| match cmd {
            Cmd::ProgLoad => Err(Errno::EPERM),
            Cmd::MapCreate => Ok(i64::from(std::fs::File::open(&path).unwrap().into_raw_fd())),
            _ => Ok(0),
        },
        || Collection::load(spec, &LoadOptions::default()),
    );
    let err = result.unwrap_err();
    assert!(matches!(err, Error::Syscall { .. } | Error::Verifier(_)), "{err}");
    assert!(err.to_string().contains("xdp_count"), "{err}");
    // All or nothing: every map made for the load was closed again.
    let still_open = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == marker))
        .count();
    std::fs::remove_file(&marker).unwrap();
    assert_eq!(still_open, 0);
}

#[test]
fn batch_reads_stop_when_the_kernel_says_the_walk_is_done() {
    let spec = MapSpec::new("rootless_batch", MapType::Hash, 4, 8, 16);
    with_syscalls(
        |cmd, attr| match cmd {
            Cmd::MapCreate => Ok(fake_fd()),
            // The kernel's answer past the last element: no elements (count, at byte 32 of
            // the batch attributes, set to 0) and ENOENT.
            Cmd::MapLookupBatch => {
                attr[32..36].copy_from_slice(&0u32.to_ne_bytes());
                Err(Errno::ENOENT)
            }
            other => panic!("unexpected {other}"),
        },
        || {
            let map = Map::create(&spec).unwrap();
            let mut cursor = crate::BatchCursor::default();
            let (mut keys, mut values) = (vec![0u8; 4 * 4], vec![0u8; 4 * 8]);
            assert_eq!(map.lookup_batch(&mut cursor, &mut keys, &mut values).unwrap(), 0);
            assert!(cursor.is_done(), "ENOENT ends the walk");
            assert_eq!(map.lookup_batch(&mut cursor, &mut keys, &mut values).unwrap(), 0, "and stays ended");
        },
    );
}

#[test]
fn an_arena_is_mapped_at_the_address_its_object_gives() {
    use std::os::fd::IntoRawFd;
    let spec = CollectionSpec::from_elf(&fixture("arena_map")).unwrap();
    let page = crate::mem::page_size();
    // The "kernel" answers the arena's creation with shared memory of its size (a memfd).
    let result = with_syscalls(
        move |cmd, _| match cmd {
            Cmd::MapCreate => {
                let fd = nix::sys::memfd::memfd_create(c"arena", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
                    .map_err(|_| Errno::ENOMEM)?;
                nix::unistd::ftruncate(&fd, (4 * page) as i64).map_err(|_| Errno::ENOMEM)?;
                Ok(i64::from(fd.into_raw_fd()))
            }
            _ => Ok(0),
        },
        || Collection::load(spec, &LoadOptions::default()),
    );
    let collection = result.unwrap();
    let arena = collection.arena("arena").unwrap();
    assert_eq!((arena.address(), arena.len()), (1 << 44, 4 * page));
    assert!(arena.write_value(page + 8, &42u64.to_ne_bytes()));
    let mut back = [0u8; 8];
    assert!(arena.read_value(page + 8, &mut back));
    assert_eq!(u64::from_ne_bytes(back), 42);
    assert!(collection.arena("not_there").is_err());
}
