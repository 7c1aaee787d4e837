//! `ebpftool link`: list, show, pin and detach `bpf_link`s.

use clap::Subcommand;
use ebpf_core::info::LinkInfo;
use ebpf_core::link::Link;
use ebpf_core::program::link_ids;
use ebpf_core::{AttachType, LinkType, Program};
use serde_json::{json, Value};

use crate::target::{self, CliError};

#[derive(Subcommand)]
pub enum LinkCommand {
    /// Every link.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One link (`id N`, `pinned PATH`), or every link.
    Show {
        /// The link.
        #[arg(num_args = 0..)]
        target: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pins a link: `pin id N PATH` (the attachment then outlives its last fd).
    Pin {
        /// The link, then the path.
        #[arg(num_args = 2.., required = true)]
        args: Vec<String>,
    },
    /// Detaches a link now, pinned or not: `detach id N`.
    Detach {
        /// The link.
        #[arg(num_args = 1.., required = true)]
        target: Vec<String>,
    },
}

/// The two 32-bit words that start the kind-specific part of `bpf_link_info`.
fn words(info: &LinkInfo) -> (u32, u32) {
    (info.extra[0] as u32, (info.extra[0] >> 32) as u32)
}

fn attach_name(raw: u32) -> String {
    AttachType::from_raw(raw).map_or_else(|| raw.to_string(), |t| t.name().to_owned())
}

/// What each kind of link attaches to, from `bpf_link_info`'s union (include/uapi/linux/bpf.h).
pub fn details(info: &LinkInfo) -> Value {
    let (first, second) = words(info);
    match LinkType::from_raw(info.link_type) {
        Some(LinkType::Xdp) => json!({"ifindex": first}),
        Some(LinkType::Tcx | LinkType::Netkit) => json!({"ifindex": first, "attach_type": attach_name(second)}),
        Some(LinkType::Cgroup) => json!({"cgroup_id": info.extra[0], "attach_type": attach_name(info.extra[1] as u32)}),
        Some(LinkType::Netns) => json!({"netns_ino": first, "attach_type": attach_name(second)}),
        Some(LinkType::Tracing) => {
            json!({"attach_type": attach_name(first), "target_obj_id": second, "target_btf_id": info.extra[1] as u32})
        }
        Some(LinkType::StructOps) => json!({"map_id": first}),
        Some(LinkType::Sockmap) => json!({"map_id": first, "attach_type": attach_name(second)}),
        Some(LinkType::Netfilter) => json!({"pf": first, "hooknum": second}),
        _ => json!({}),
    }
}

fn link_json(link: &Link) -> Result<Value, ebpf_core::Error> {
    let info = link.info()?;
    let program = Program::from_id(info.prog_id).ok().map(|p| p.name().to_owned());
    let mut value = json!({
        "id": info.id,
        "type": LinkType::from_raw(info.link_type).map_or_else(|| info.link_type.to_string(), |t| t.name().to_owned()),
        "prog_id": info.prog_id,
        "prog_name": program,
    });
    if let (Value::Object(out), Value::Object(extra)) = (&mut value, details(&info)) {
        out.extend(extra);
    }
    Ok(value)
}

fn text(value: &Value) -> String {
    let mut line = format!("{}: {}  prog {}", value["id"], value["type"].as_str().unwrap_or("?"), value["prog_id"]);
    if let Some(name) = value["prog_name"].as_str() {
        line.push_str(&format!(" ({name})"));
    }
    for key in ["ifindex", "attach_type", "cgroup_id", "netns_ino", "map_id", "target_btf_id"] {
        if let Some(v) = value.get(key) {
            line.push_str(&format!("  {key} {}", v.as_str().map_or_else(|| v.to_string(), str::to_owned)));
        }
    }
    line
}

/// Every link that still exists, as JSON.
pub fn all_links() -> Result<Vec<Value>, ebpf_core::Error> {
    let mut out = Vec::new();
    for id in link_ids() {
        match Link::from_id(id?).and_then(|l| link_json(&l)) {
            Ok(value) => out.push(value),
            Err(e) if e.errno() == Some(ebpf_core::Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn print(values: Vec<Value>, as_json: bool) {
    if as_json {
        println!("{}", Value::Array(values));
    } else {
        for value in &values {
            println!("{}", text(value));
        }
    }
}

pub fn run(command: LinkCommand) -> Result<(), CliError> {
    match command {
        LinkCommand::List { json } => print(all_links()?, json),
        LinkCommand::Show { target, json } if target.is_empty() => print(all_links()?, json),
        LinkCommand::Show { target, json } => {
            let link = target::link(&target::parse(&target)?.0)?;
            let value = link_json(&link)?;
            if json {
                println!("{value}");
            } else {
                println!("{}", text(&value));
            }
        }
        LinkCommand::Pin { args } => {
            let (which, rest) = target::parse(&args)?;
            let [path] = rest else { return Err("pin: give the link, then one path".into()) };
            target::link(&which)?.pin(path)?;
        }
        LinkCommand::Detach { target } => target::link(&target::parse(&target)?.0)?.detach()?,
    }
    Ok(())
}
