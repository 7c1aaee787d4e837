//! `ebpftool btf dump vmlinux --format c`: clang-19 compiles programs against the header, and
//! every uniquely named struct and union has the size and member offsets the BTF says.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ebpf_btf::{kernel, BtfKind};

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn prerequisites() -> bool {
    let required = std::env::var("EBPF_REQUIRE_KERNEL").as_deref() == Ok("1");
    let ok =
        Path::new("/sys/kernel/btf/vmlinux").exists() && Command::new("clang-19").arg("--version").output().is_ok();
    assert!(ok || !required, "needs /sys/kernel/btf/vmlinux and clang-19");
    if !ok {
        eprintln!("SKIPPED: needs /sys/kernel/btf/vmlinux and clang-19");
    }
    ok
}

fn header_in(dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_ebpftool"))
        .args(["btf", "dump", "vmlinux", "--format", "c"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(dir.join("vmlinux.h"), out.stdout).unwrap();
}

fn clang(dir: &Path, args: &[&str]) {
    let out = Command::new("clang-19")
        .current_dir(dir)
        .args(["-target", "bpf", "-O2", "-Wall", "-Werror"])
        .args(args)
        .output()
        .unwrap();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "clang-19 failed:\n{}", errors.lines().take(30).collect::<Vec<_>>().join("\n"));
}

fn temp_dir(tag: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("ebpftool-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

#[test]
fn programs_using_kernel_types_compile_against_the_header() {
    if !prerequisites() {
        return;
    }
    let dir = temp_dir("cdump");
    header_in(&dir.0);
    std::fs::write(
        dir.0.join("prog.c"),
        r#"#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

SEC("xdp")
int uses_kernel_types(struct xdp_md *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct sk_buff *skb = 0;
	int pid = BPF_CORE_READ(task, pid);
	unsigned int len = BPF_CORE_READ(skb, len);
	return (ctx->data_end - ctx->data) + pid + len > 0 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
"#,
    )
    .unwrap();
    clang(&dir.0, &["-g", "-c", "prog.c", "-o", "prog.o"]);
}

#[test]
fn struct_sizes_and_member_offsets_match_the_btf() {
    if !prerequisites() {
        return;
    }
    let dir = temp_dir("layout");
    header_in(&dir.0);
    let btf = kernel::vmlinux().unwrap();
    // Tags share one namespace in C; names used twice get suffixes, so check unique ones.
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for t in btf.types() {
        if matches!(t.kind(), Some(BtfKind::Struct | BtfKind::Union | BtfKind::Enum | BtfKind::Enum64))
            && !t.name().is_empty()
        {
            *uses.entry(t.name()).or_default() += 1;
        }
    }
    let mut asserts = String::from("#include \"vmlinux.h\"\n");
    let (mut types, mut members) = (0, 0);
    for t in btf.types() {
        let keyword = match t.kind() {
            Some(BtfKind::Struct) => "struct",
            Some(BtfKind::Union) => "union",
            _ => continue,
        };
        if t.name().is_empty() || uses[t.name()] != 1 {
            continue;
        }
        let name = t.name();
        asserts.push_str(&format!("_Static_assert(sizeof({keyword} {name}) == {}, \"{name}\");\n", t.size().unwrap()));
        types += 1;
        for m in t.members().filter(|m| !m.name.is_empty() && m.bitfield_size == 0 && m.bit_offset % 8 == 0) {
            asserts.push_str(&format!(
                "_Static_assert(__builtin_offsetof({keyword} {name}, {}) == {}, \"{name}.{}\");\n",
                m.name,
                m.bit_offset / 8,
                m.name
            ));
            members += 1;
        }
    }
    assert!(types > 5_000 && members > 30_000, "{types} types, {members} members");
    std::fs::write(dir.0.join("layout.c"), asserts).unwrap();
    clang(&dir.0, &["-fsyntax-only", "layout.c"]);
}
