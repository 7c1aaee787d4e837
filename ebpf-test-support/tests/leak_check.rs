//! Run after the whole suite (`.ci/run` does, with `--ignored`): no namespace, interface,
//! cgroup, qdisc, pin or WireGuard device process a test made is left behind. Test objects
//! carry `unique_name()`s (`<prefix>_<pid>_<n>`), so anything of that shape is a leak.

use std::path::Path;
use std::process::Command;

use ebpf_test_support::cgroup::CGROUP2_ROOT;

fn is_test_name(name: &str) -> bool {
    let mut parts = name.split('_');
    let (Some(prefix), Some(pid), Some(n), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !prefix.is_empty()
        && prefix.len() <= 4
        && prefix.chars().all(|c| c.is_ascii_alphanumeric())
        && [pid, n].iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

fn output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn test_named_entries(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_test_name(&name) {
            found.push(entry.path().display().to_string());
        }
        if entry.path().is_dir() {
            found.extend(test_named_entries(&entry.path()));
        }
    }
    found
}

#[test]
fn test_names_are_recognised() {
    assert!(is_test_name("vl_4242_17"));
    assert!(is_test_name("cg_1_0"));
    assert!(!is_test_name("veth0"));
    assert!(!is_test_name("maps.debug"));
    assert!(!is_test_name("lib_fixture_pinned"));
}

#[test]
#[ignore = "run by .ci/run after every other test"]
fn nothing_is_left_behind_by_the_suite() {
    let mut leaks = Vec::new();
    for line in output("ip", &["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        // netstack agents name pod namespaces `<node>-<namespace>-<pod>`; the demo's node is
        // `nsdemo<pid>`.
        let node = name.split('-').next().unwrap_or("");
        if is_test_name(name) || is_test_name(node) || name.starts_with("nsdemo") {
            leaks.push(format!("network namespace {name}"));
        }
    }
    for line in output("ip", &["-o", "link", "show"]).lines() {
        let name = line.split(':').nth(1).unwrap_or("").trim().split('@').next().unwrap_or("");
        if is_test_name(name) {
            leaks.push(format!("interface {name}"));
        }
    }
    for line in output("tc", &["qdisc", "show"]).lines() {
        if line.contains("clsact") {
            leaks.push(format!("qdisc: {line}"));
        }
    }
    leaks.extend(test_named_entries(Path::new("/sys/fs/bpf")).into_iter().map(|p| format!("pin {p}")));
    for entry in std::fs::read_dir("/sys/fs/bpf").into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("netstack_") {
            leaks.push(format!("pin {} (a netstack agent's datapath)", entry.path().display()));
        }
    }
    if Path::new("/sys/fs/bpf/lib_fixture_pinned").exists() {
        leaks.push("pin /sys/fs/bpf/lib_fixture_pinned (the loader differential test)".to_owned());
    }
    leaks.extend(test_named_entries(Path::new(CGROUP2_ROOT)).into_iter().map(|p| format!("cgroup {p}")));
    // A node's userspace WireGuard device outlives its agent; bringing the node down stops it.
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.iter().any(|a| *a == b"wireguard-device") {
            let shown: Vec<String> = args.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            leaks.push(format!("process {}: {}", entry.file_name().to_string_lossy(), shown.join(" ").trim()));
        }
    }
    assert!(leaks.is_empty(), "the test suite left these behind:\n{}", leaks.join("\n"));
}
