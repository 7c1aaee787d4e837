//! User-space probes against the real kernel: uprobes and uretprobes on functions of this test
//! binary (a PIE executable) and of libc (a shared library found by name), per process, and
//! uprobe_multi links (bpf-programs/tests/uprobe_count.c).

use ebpf_core::link::{Uprobe, UprobeMulti, UprobeOptions};
use ebpf_core::object::{Collection, CollectionSpec};
use ebpf_core::uprobe::{resolve_binary, UserBinary};
use ebpf_core::{Error, LoadOptions};
use ebpf_test_support::{kernel_refuses, require_kernel};

/// A function of this binary to probe: exported under its own name, never inlined.
#[no_mangle]
#[inline(never)]
pub extern "C" fn ebpf_uprobe_target(value: u64) -> u64 {
    std::hint::black_box(value).wrapping_mul(3).wrapping_add(1)
}

/// A second one, for links that probe several places.
#[no_mangle]
#[inline(never)]
pub extern "C" fn ebpf_uprobe_other(value: u64) -> u64 {
    std::hint::black_box(value) ^ 0x55
}

/// The tests probe the same functions in the same process: one at a time, or they would
/// count each other's calls.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn load() -> Collection {
    let path = format!("{}/../bpf-programs/out/tests/uprobe_count.o", env!("CARGO_MANIFEST_DIR"));
    let spec = CollectionSpec::from_elf(&std::fs::read(&path).unwrap()).unwrap();
    Collection::load(spec, &LoadOptions::default()).unwrap()
}

fn read(collection: &Collection, name: &str) -> u64 {
    collection.variable(name).unwrap().get::<u64>().unwrap()
}

fn this_binary() -> String {
    std::env::current_exe().unwrap().to_str().unwrap().to_owned()
}

fn only_me() -> UprobeOptions {
    UprobeOptions { pid: Some(std::process::id()), ..UprobeOptions::default() }
}

#[test]
fn symbols_resolve_to_file_offsets() {
    let binary = UserBinary::open(this_binary()).unwrap();
    let offset = binary.symbol_offset("ebpf_uprobe_target").unwrap();
    let other = binary.symbol_offset("ebpf_uprobe_other").unwrap();
    assert_ne!(offset, other);
    assert!(offset < std::fs::metadata(this_binary()).unwrap().len());
    let err = binary.symbol_offset("ebpf_no_such_function").unwrap_err().to_string();
    assert!(err.contains("no function ebpf_no_such_function"), "{err}");
    let mut both = binary.matching_functions("ebpf_uprobe_*").unwrap();
    both.sort_unstable();
    let mut expected = vec![offset, other];
    expected.sort_unstable();
    assert_eq!(both, expected);

    // A shared library by name; its exported functions live in .dynsym (with versions).
    let libc = resolve_binary("libc.so.6").unwrap();
    assert!(libc.is_absolute(), "{}", libc.display());
    UserBinary::open(&libc).unwrap().symbol_offset("getppid").unwrap();
    assert!(resolve_binary("libnetstack-no-such.so.1").is_err());
}

#[test]
fn a_uprobe_counts_calls_of_a_function_in_this_pie_binary() {
    let Some(_root) = require_kernel() else { return };
    let _serial = serial();
    let collection = load();
    let entry = collection.program("count_entry").unwrap();
    let options = UprobeOptions { cookie: 0xc0ffee, ..only_me() };
    let probe = Uprobe::attach(entry, &this_binary(), "ebpf_uprobe_target", &options).unwrap();
    for i in 0..5 {
        ebpf_uprobe_target(100 + i);
    }
    assert_eq!(read(&collection, "calls"), 5);
    assert_eq!(read(&collection, "last_arg"), 104, "the probe reads the first argument");
    assert_eq!(read(&collection, "last_cookie"), 0xc0ffee);

    let exit = collection.program("count_return").unwrap();
    let retprobe = UprobeOptions { retprobe: true, ..only_me() };
    let _ret = Uprobe::attach(exit, &this_binary(), "ebpf_uprobe_target", &retprobe).unwrap();
    assert_eq!(ebpf_uprobe_target(7), 22);
    assert_eq!(read(&collection, "last_return"), 22, "the uretprobe reads the return value");

    drop(probe);
    ebpf_uprobe_target(1);
    assert_eq!(read(&collection, "calls"), 6, "no count once the link is dropped");
}

#[test]
fn a_uprobe_on_a_shared_library_function_found_by_name() {
    let Some(_root) = require_kernel() else { return };
    let _serial = serial();
    let collection = load();
    let entry = collection.program("count_entry").unwrap();
    let _probe = Uprobe::attach(entry, "libc.so.6", "getppid", &only_me()).unwrap();
    for _ in 0..3 {
        nix::unistd::getppid();
    }
    // Other threads of this test process may call it too.
    assert!(read(&collection, "calls") >= 3, "{}", read(&collection, "calls"));
}

#[test]
fn a_uprobe_for_one_process_ignores_the_others() {
    let Some(_root) = require_kernel() else { return };
    let _serial = serial();
    let collection = load();
    let entry = collection.program("count_entry").unwrap();
    // Process 1 (init) never runs this binary's code: nothing may count.
    let options = UprobeOptions { pid: Some(1), ..UprobeOptions::default() };
    let _probe = Uprobe::attach(entry, &this_binary(), "ebpf_uprobe_target", &options).unwrap();
    ebpf_uprobe_target(1);
    assert_eq!(read(&collection, "calls"), 0);
}

#[test]
fn one_uprobe_multi_link_probes_several_functions() {
    let Some(_root) = require_kernel() else { return };
    let _serial = serial();
    let collection = load();
    let multi = collection.program("count_multi").unwrap();
    let link = match UprobeMulti::attach(multi, &this_binary(), &["ebpf_uprobe_t*", "ebpf_uprobe_other"], &only_me()) {
        Ok(link) => link,
        Err(e @ Error::Syscall { .. }) if e.errno() == Some(ebpf_core::Errno::EOPNOTSUPP) => {
            kernel_refuses("uprobe_multi links", &e.to_string());
            return;
        }
        Err(e) => panic!("{e}"),
    };
    for i in 0..4 {
        ebpf_uprobe_target(i);
        ebpf_uprobe_other(i);
    }
    assert_eq!(read(&collection, "multi_calls"), 8);
    drop(link);
    ebpf_uprobe_other(0);
    assert_eq!(read(&collection, "multi_calls"), 8);
}

#[test]
fn bad_targets_are_refused_with_what_was_wrong() {
    let Some(_root) = require_kernel() else { return };
    let _serial = serial();
    let collection = load();
    let entry = collection.program("count_entry").unwrap();
    let err = Uprobe::attach(entry, &this_binary(), "ebpf_uprobe_target+zz", &only_me()).unwrap_err();
    assert!(err.to_string().contains("\"zz\" is not an offset"), "{err}");
    let err = Uprobe::attach(entry, "/nonexistent/netstack-binary", "main", &only_me()).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/netstack-binary"), "{err}");
    let multi = collection.program("count_multi").unwrap();
    let err = UprobeMulti::attach(multi, &this_binary(), &["ebpf_nothing_matches_*"], &only_me()).unwrap_err();
    assert!(err.to_string().contains("no function matches ebpf_nothing_matches_*"), "{err}");
}
