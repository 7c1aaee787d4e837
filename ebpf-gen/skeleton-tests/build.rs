//! Generates a skeleton for every object under bpf-programs/out the loader accepts, and an
//! index of them.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn objects(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("bpf-programs/out").flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            objects(&path, out);
        } else if path.extension().is_some_and(|e| e == "o") {
            out.push(path);
        }
    }
}

/// Fixtures the loader refuses on purpose: they have no skeleton (ebpf-core's tests check the
/// refusal).
const REFUSED: &[&str] = &["static_map"];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bpf-programs/out");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut found = Vec::new();
    objects(&root, &mut found);
    let mut index = String::new();
    for object in &found {
        let stem = object.file_stem().expect("a file name").to_string_lossy().into_owned();
        if REFUSED.contains(&stem.as_str()) {
            continue;
        }
        let dir = object.parent().and_then(|d| d.file_name()).expect("a directory").to_string_lossy().into_owned();
        let file = ebpf_gen::build::skeleton(object, &stem).unwrap_or_else(|e| panic!("{}: {e}", object.display()));
        writeln!(
            index,
            "/// The skeleton of `bpf-programs/out/{dir}/{stem}.o`.\npub mod {stem} {{\n    include!({:?});\n}}\n",
            file.display()
        )
        .unwrap();
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("skeletons.rs"), index).expect("write the index");
}
