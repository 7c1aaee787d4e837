//! `ebpftool object info|load`: what an ELF object holds, and whether it loads.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use ebpf_core::object::{tail_call_sites, Collection, CollectionSpec, TailCallIndex, TailCallSite};
use ebpf_core::{LoadOptions, MapContents, MapSpec, Pinning, ProgramSpec, ProgramType};
use serde_json::{json, Value};

#[derive(Subcommand)]
pub enum ObjectCommand {
    /// Programs (with tail-call sites), maps and variables of an object file.
    Info {
        /// The object file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load the maps and programs of an object (all, or those --program names); exit status 0
    /// only if all of them load.
    Load {
        /// The object file.
        file: PathBuf,
        /// Pin programs here by name; maps declared `pinning: by name` are pinned (or reused) here too.
        #[arg(long)]
        pin: Option<PathBuf>,
        /// Set a global variable before load: NAME=VALUE (integers, true/false, 0x hex bytes).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// Load only this program (repeat for several); the others are neither resolved nor
        /// loaded.
        #[arg(long = "program", value_name = "NAME")]
        programs: Vec<String>,
        /// Give a program whose section names no type its type: NAME=TYPE (sched_cls, xdp, …).
        #[arg(long = "type", value_name = "NAME=TYPE")]
        types: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn read_spec(file: &Path) -> Result<CollectionSpec, Box<dyn std::error::Error>> {
    let bytes = std::fs::read(file).map_err(|e| format!("read {}: {e}", file.display()))?;
    Ok(CollectionSpec::from_elf(&bytes).map_err(|e| format!("{}: {e}", file.display()))?)
}

fn site_text(site: &TailCallSite) -> String {
    let map = site.map.as_deref().unwrap_or("<unknown map>");
    match site.index {
        TailCallIndex::Constant(slot) if site.is_direct() => {
            format!("insn {}: {map}[{slot}], constant (direct jump)", site.instruction)
        }
        TailCallIndex::Constant(slot) => format!("insn {}: {map}[{slot}], map not constant", site.instruction),
        TailCallIndex::Dynamic => format!("insn {}: {map}[?], dynamic (indirect jump)", site.instruction),
    }
}

fn program_json(program: &ProgramSpec) -> Value {
    let sites: Vec<Value> = tail_call_sites(program)
        .iter()
        .map(|s| {
            json!({
                "insn": s.instruction,
                "map": s.map,
                "index": match s.index { TailCallIndex::Constant(c) => json!(c), TailCallIndex::Dynamic => Value::Null },
                "direct": s.is_direct(),
            })
        })
        .collect();
    json!({
        "name": program.name.as_str(),
        "section": program.section.as_deref(),
        "type": program.program_type.name(),
        "attach_type": program.expected_attach_type.map(|t| t.name()),
        "attach_to": program.attach_to,
        "autoload": program.autoload,
        "insns": program.instructions.iter().map(|i| i.slots()).sum::<usize>(),
        "tail_calls": sites,
    })
}

fn map_json(map: &MapSpec) -> Value {
    json!({
        "name": map.name,
        "type": map.map_type.name(),
        "key_size": map.key_size,
        "value_size": map.value_size,
        "max_entries": map.max_entries,
        "flags": map.flags.bits(),
        "pinning": if map.pinning == Pinning::ByName { "by_name" } else { "none" },
        "struct_ops": struct_ops_json(map),
    })
}

/// A struct_ops map's kernel type and which program implements each member.
fn struct_ops_json(map: &MapSpec) -> Value {
    let MapContents::StructOps(value) = &map.contents else { return Value::Null };
    let programs: serde_json::Map<String, Value> =
        value.members.iter().filter_map(|m| m.program.as_ref().map(|p| (m.name.clone(), json!(p)))).collect();
    json!({"type": value.type_name, "programs": programs})
}

fn info(file: &Path, as_json: bool) -> Result<(), Box<dyn std::error::Error>> {
    let spec = read_spec(file)?;
    if as_json {
        let variables: Vec<Value> = spec
            .variables
            .iter()
            .map(|v| {
                json!({"name": v.name, "section": v.section, "offset": v.offset, "size": v.size(),
                       "type": v.ty.to_string(), "constant": v.constant})
            })
            .collect();
        let out = json!({
            "programs": spec.programs.iter().map(program_json).collect::<Vec<_>>(),
            "maps": spec.maps.iter().map(map_json).collect::<Vec<_>>(),
            "variables": variables,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("programs:");
    for program in &spec.programs {
        let insns: usize = program.instructions.iter().map(|i| i.slots()).sum();
        let mut attach = program.expected_attach_type.map_or(String::new(), |t| format!("  attach {t}"));
        if let Some(target) = &program.attach_to {
            attach.push_str(&format!("  to {target}"));
        }
        if !program.autoload {
            attach.push_str("  (left out of loads)");
        }
        println!(
            "  {}  section {}  type {}{attach}  insns {insns}",
            program.name,
            program.section.as_deref().unwrap_or("-"),
            program.program_type
        );
        for site in tail_call_sites(program) {
            println!("    tail call {}", site_text(&site));
        }
    }
    println!("maps:");
    for map in &spec.maps {
        let pinned = if map.pinning == Pinning::ByName { "  pinned by name" } else { "" };
        println!(
            "  {}  type {}  key {}  value {}  max_entries {}  flags {:#x}{pinned}",
            map.name,
            map.map_type,
            map.key_size,
            map.value_size,
            map.max_entries,
            map.flags.bits()
        );
        if let MapContents::StructOps(value) = &map.contents {
            let members: Vec<String> =
                value.members.iter().filter_map(|m| m.program.as_ref().map(|p| format!("{}={p}", m.name))).collect();
            println!("    implements {}: {}", value.type_name, members.join(" "));
        }
    }
    println!("variables:");
    for v in &spec.variables {
        let constant = if v.constant { "  const" } else { "" };
        println!("  {}  {}+{}  size {}  type {}{constant}", v.name, v.section, v.offset, v.size(), v.ty);
    }
    Ok(())
}

/// What the command line changes in the spec before load.
struct Choices<'a> {
    set: &'a [String],
    programs: &'a [String],
    types: &'a [String],
}

impl Choices<'_> {
    fn apply(&self, spec: &mut CollectionSpec) -> Result<(), Box<dyn std::error::Error>> {
        for assignment in self.set {
            let (name, value) =
                assignment.split_once('=').ok_or_else(|| format!("--set {assignment}: expected NAME=VALUE"))?;
            spec.variable_mut(name)?.set_text(value)?;
        }
        for assignment in self.types {
            let (name, ty) =
                assignment.split_once('=').ok_or_else(|| format!("--type {assignment}: expected NAME=TYPE"))?;
            let ty = ProgramType::from_name(ty).ok_or_else(|| format!("--type {assignment}: no program type {ty}"))?;
            spec.program_mut(name)?.program_type = ty;
        }
        if !self.programs.is_empty() {
            for name in self.programs {
                spec.program(name)?;
            }
            for program in spec.programs.iter_mut() {
                program.autoload = self.programs.iter().any(|n| program.name == n.as_str());
            }
        }
        Ok(())
    }
}

fn load(
    file: &Path,
    pin: Option<&Path>,
    choices: &Choices<'_>,
    as_json: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut spec = read_spec(file)?;
    choices.apply(&mut spec)?;
    let mut options = LoadOptions::default();
    if let Some(dir) = pin {
        options = options.pin_dir(dir);
    }
    let collection = Collection::load(spec, &options)?;
    let pinned = match pin {
        Some(dir) => collection.pin_programs(dir)?,
        None => Vec::new(),
    };
    let programs: Vec<Value> = collection
        .programs()
        .map(|p| {
            let id = p.info().map(|i| i.id).unwrap_or(0);
            json!({"name": p.name(), "id": id})
        })
        .collect();
    let maps: Vec<Value> = collection
        .maps()
        .map(|m| {
            let id = m.info().map(|i| i.id).unwrap_or(0);
            json!({"name": m.name(), "id": id, "type": m.map_type().map(|t| t.name())})
        })
        .collect();
    if as_json {
        let pins: Vec<String> = pinned.iter().map(|p| p.display().to_string()).collect();
        println!("{}", serde_json::to_string_pretty(&json!({"programs": programs, "maps": maps, "pinned": pins}))?);
    } else {
        for p in &programs {
            println!("loaded program {}  id {}", p["name"].as_str().unwrap_or("?"), p["id"]);
        }
        for m in &maps {
            println!("created map {}  id {}", m["name"].as_str().unwrap_or("?"), m["id"]);
        }
        for path in &pinned {
            println!("pinned {}", path.display());
        }
    }
    Ok(())
}

pub fn run(command: ObjectCommand) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        ObjectCommand::Info { file, json } => info(&file, json),
        ObjectCommand::Load { file, pin, set, programs, types, json } => {
            load(&file, pin.as_deref(), &Choices { set: &set, programs: &programs, types: &types }, json)
        }
    }
}
