//! Where programs are attached: `ebpftool net list` (XDP, TCX and tc per interface of this
//! network namespace) and `ebpftool cgroup tree` (cgroup hooks under a cgroup v2 root).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use ebpf_core::link::{query, TcDirection, TcNetlink, Tcx, TcxAttach};
use ebpf_core::{AttachType, LinkType, Program};
use serde_json::{json, Value};

use crate::target::CliError;

#[derive(Subcommand)]
pub enum NetCommand {
    /// XDP, TCX and tc (cls_bpf) programs of every interface of this network namespace.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum CgroupCommand {
    /// Programs attached to cgroup hooks, for every cgroup under ROOT.
    Tree {
        /// A cgroup v2 directory (default: the cgroup2 mount).
        root: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn program_name(id: u32) -> String {
    Program::from_id(id).map_or_else(|_| "?".to_owned(), |p| p.name().to_owned())
}

/// (name, ifindex) of every interface, by index.
fn interfaces() -> Result<Vec<(String, u32)>, CliError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/sys/class/net")? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Ok(index) = nix::net::if_::if_nametoindex(name.as_str()) {
            out.push((name, index));
        }
    }
    out.sort_by_key(|(_, index)| *index);
    Ok(out)
}

fn net_list(as_json: bool) -> Result<(), CliError> {
    let links = crate::links::all_links()?;
    let (mut xdp, mut tc) = (Vec::new(), Vec::new());
    for (name, ifindex) in interfaces()? {
        for link in links.iter().filter(|l| l["type"] == LinkType::Xdp.name() && l["ifindex"] == ifindex) {
            xdp.push(json!({"devname": name, "ifindex": ifindex, "mode": "link", "id": link["prog_id"],
                            "name": link["prog_name"], "link_id": link["id"]}));
        }
        for (hook, at) in [("tcx/ingress", TcxAttach::ingress()), ("tcx/egress", TcxAttach::egress())] {
            for id in Tcx::query(ifindex, at).unwrap_or_default() {
                tc.push(json!({"devname": name, "ifindex": ifindex, "kind": hook, "id": id, "name": program_name(id)}));
            }
        }
        for (hook, direction) in [("clsact/ingress", TcDirection::Ingress), ("clsact/egress", TcDirection::Egress)] {
            for filter in TcNetlink::list(ifindex, direction).unwrap_or_default() {
                tc.push(json!({"devname": name, "ifindex": ifindex, "kind": hook, "id": filter.program_id,
                               "name": filter.name, "prio": filter.priority, "handle": filter.handle}));
            }
        }
    }
    if as_json {
        println!("{}", json!([{"xdp": xdp, "tc": tc}]));
        return Ok(());
    }
    println!("xdp:");
    for x in &xdp {
        println!(
            "{}({}) {} id {}",
            x["devname"].as_str().unwrap_or(""),
            x["ifindex"],
            x["mode"].as_str().unwrap_or(""),
            x["id"]
        );
    }
    println!("\ntc:");
    for t in &tc {
        println!(
            "{}({}) {} {} id {}",
            t["devname"].as_str().unwrap_or(""),
            t["ifindex"],
            t["kind"].as_str().unwrap_or(""),
            t["name"].as_str().unwrap_or(""),
            t["id"]
        );
    }
    Ok(())
}

/// Where cgroup v2 is mounted.
fn cgroup2_root() -> Result<PathBuf, CliError> {
    let mounts = std::fs::read_to_string("/proc/mounts")?;
    mounts
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(fields[1]))
        })
        .ok_or_else(|| "no cgroup2 mount; give a root".into())
}

/// Cgroup hooks: every attach type a program can be attached to a cgroup with.
fn cgroup_hooks() -> impl Iterator<Item = AttachType> {
    AttachType::ALL.iter().copied().filter(|t| t.name().starts_with("cgroup") || *t == AttachType::LsmCgroup)
}

fn walk(dir: &Path, out: &mut Vec<Value>) -> Result<(), CliError> {
    let handle = std::fs::File::open(dir)?;
    let mut programs = Vec::new();
    for hook in cgroup_hooks() {
        let Ok(attached) = query(&handle, hook) else { continue };
        for id in attached.prog_ids {
            programs.push(json!({"id": id, "attach_type": hook.name(), "name": program_name(id)}));
        }
    }
    if !programs.is_empty() {
        out.push(json!({"cgroup": dir.display().to_string(), "programs": programs}));
    }
    let mut children: Vec<PathBuf> =
        std::fs::read_dir(dir)?.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    children.sort();
    for child in children {
        walk(&child, out)?;
    }
    Ok(())
}

pub fn net(command: NetCommand) -> Result<(), CliError> {
    match command {
        NetCommand::List { json } => net_list(json),
    }
}

pub fn cgroup(command: CgroupCommand) -> Result<(), CliError> {
    let CgroupCommand::Tree { root, json } = command;
    let root = match root {
        Some(root) => root,
        None => cgroup2_root()?,
    };
    let mut out = Vec::new();
    walk(&root, &mut out)?;
    if json {
        println!("{}", Value::Array(out));
        return Ok(());
    }
    println!("CgroupPath\nID       AttachType      Name");
    for cgroup in &out {
        println!("{}", cgroup["cgroup"].as_str().unwrap_or(""));
        for p in cgroup["programs"].as_array().into_iter().flatten() {
            println!(
                "    {:<8} {:<24} {}",
                p["id"],
                p["attach_type"].as_str().unwrap_or(""),
                p["name"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}
