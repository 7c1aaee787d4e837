use std::path::PathBuf;

use clap::Subcommand;
use ebpf_core::insn::{CallNames, Disassembler};
use ebpf_core::kallsyms::KernelSymbols;
use ebpf_core::object::{Collection, CollectionSpec};
use ebpf_core::program::{map_ids, program_ids};
use ebpf_core::{LoadOptions, Map, MapType, Program, ProgramType, TestRun, UpdateFlags};
use serde_json::{json, Value};

use crate::target::{self, hex_strings, CliError};

#[derive(Subcommand)]
pub enum ProgCommand {
    /// One line per loaded program.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Details of one program (`id N`, `pinned PATH`, `name NAME`), or of all.
    Show {
        /// The program.
        #[arg(num_args = 0..)]
        target: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Instructions of one program.
    Dump {
        /// `xlated`: as the kernel runs them; `jited`: the x86-64 code the JIT wrote, with
        /// tail calls marked (direct jump, empty slot, or through the retpoline thunk).
        #[arg(value_parser = ["xlated", "jited"])]
        kind: String,
        /// The program (`id N`, `pinned PATH`, `name NAME`).
        #[arg(num_args = 1.., required = true)]
        target: Vec<String>,
        /// Print JSON (jited).
        #[arg(long)]
        json: bool,
    },
    /// Loads an object's programs and pins the first at PATH (its maps live while it does).
    Load {
        /// The ELF object.
        object: PathBuf,
        /// Where on bpffs to pin the first program.
        path: PathBuf,
    },
    /// Loads an object's programs and pins each under DIR by name.
    Loadall {
        /// The ELF object.
        object: PathBuf,
        /// A bpffs directory.
        dir: PathBuf,
    },
    /// Pins a loaded program: `pin id N PATH`.
    Pin {
        /// The program, then the path.
        #[arg(num_args = 2.., required = true)]
        args: Vec<String>,
    },
    /// Runs a program once or more under BPF_PROG_TEST_RUN: `run id N data_in FILE [data_out
    /// FILE] [repeat N]`.
    Run {
        /// The program, then its options.
        #[arg(num_args = 1.., required = true)]
        args: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum MapCommand {
    /// One line per map.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Details of one map (`id N`, `pinned PATH`, `name NAME`), or of all.
    Show {
        /// The map.
        #[arg(num_args = 0..)]
        target: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every entry of one map, keys and values as bytes.
    Dump {
        /// The map.
        #[arg(num_args = 1.., required = true)]
        target: Vec<String>,
        /// Print JSON (`[{"key": [..bytes..], "value": [..bytes..]}, ...]`).
        #[arg(long)]
        json: bool,
    },
    /// One entry: `lookup id N key BYTES`.
    Lookup {
        /// The map, then `key BYTES`.
        #[arg(num_args = 1.., required = true)]
        args: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Writes one entry: `update id N key BYTES value BYTES [any|exist|noexist]`.
    Update {
        /// The map, `key BYTES`, `value BYTES` and the flag.
        #[arg(num_args = 1.., required = true)]
        args: Vec<String>,
    },
    /// Deletes one entry: `delete id N key BYTES`.
    Delete {
        /// The map, then `key BYTES`.
        #[arg(num_args = 1.., required = true)]
        args: Vec<String>,
    },
    /// Pins a map: `pin id N PATH`.
    Pin {
        /// The map, then the path.
        #[arg(num_args = 2.., required = true)]
        args: Vec<String>,
    },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// One map entry: key bytes and value bytes.
type Entry = (Vec<u8>, Vec<u8>);

/// Every entry of `map`, walked key by key (values of per-CPU maps: every CPU's slot).
fn entries(map: &Map) -> Result<Vec<Entry>, ebpf_core::Error> {
    let mut out = Vec::new();
    let mut key = vec![0u8; map.key_size()];
    let mut next = vec![0u8; map.key_size()];
    let mut first = true;
    while map.next_key(if first { None } else { Some(&key) }, &mut next)? {
        first = false;
        std::mem::swap(&mut key, &mut next);
        // An entry deleted between the walk and the lookup is skipped.
        if let Some(value) = map.get(&key)? {
            out.push((key.clone(), value));
        }
    }
    Ok(out)
}

fn tag_hex(tag: &[u8; 8]) -> String {
    tag.iter().map(|b| format!("{b:02x}")).collect()
}

fn program_json(id: u32) -> Result<Value, ebpf_core::Error> {
    let info = Program::from_id(id)?.info()?;
    let kind = ProgramType::from_raw(info.prog_type).map_or_else(|| info.prog_type.to_string(), |t| t.to_string());
    Ok(json!({
        "id": id,
        "type": kind,
        "name": info.name,
        "tag": tag_hex(&info.tag),
        "gpl_compatible": info.gpl_compatible,
        "bytes_xlated": info.xlated_len,
        "jited": info.jited_len > 0,
        "bytes_jited": info.jited_len,
        "map_ids": info.map_ids,
        "run_cnt": info.run_count,
        "run_time_ns": info.run_time_ns,
    }))
}

fn show_program(id: u32) -> Result<String, ebpf_core::Error> {
    let info = Program::from_id(id)?.info()?;
    let kind =
        ProgramType::from_raw(info.prog_type).map_or_else(|| format!("type {}", info.prog_type), |t| t.to_string());
    let mut line = format!("{id}: {kind}  name {}  tag {}", info.name, tag_hex(&info.tag));
    if info.gpl_compatible {
        line.push_str("  gpl");
    }
    line.push_str(&format!("\n\txlated {}B  jited {}B", info.xlated_len, info.jited_len));
    if !info.map_ids.is_empty() {
        let ids: Vec<String> = info.map_ids.iter().map(u32::to_string).collect();
        line.push_str(&format!("  map_ids {}", ids.join(",")));
    }
    if info.run_count > 0 {
        line.push_str(&format!("\n\trun_cnt {}  run_time_ns {}", info.run_count, info.run_time_ns));
    }
    Ok(line)
}

/// Every listed object that still exists, as `show(id)` describes it.
fn each<T>(
    ids: impl Iterator<Item = ebpf_core::Result<u32>>,
    show: impl Fn(u32) -> Result<T, ebpf_core::Error>,
) -> Result<Vec<T>, ebpf_core::Error> {
    let mut out = Vec::new();
    for id in ids {
        // Objects can vanish between listing and opening.
        match show(id?) {
            Ok(shown) => out.push(shown),
            Err(e) if e.errno() == Some(ebpf_core::Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn print_all(json: bool, values: Vec<Value>, texts: Vec<String>) {
    if json {
        println!("{}", Value::Array(values));
    } else {
        for text in texts {
            println!("{text}");
        }
    }
}

/// The id of a program or map the command line names.
fn program_id(args: &[String]) -> Result<(u32, Program, &[String]), CliError> {
    let (which, rest) = target::parse(args)?;
    let program = target::program(&which)?;
    Ok((program.info()?.id, program, rest))
}

fn run_program(args: &[String], as_json: bool) -> Result<(), CliError> {
    let (_, program, mut rest) = program_id(args)?;
    let (mut data_in, mut data_out, mut repeat) = (None, None, 1u32);
    while let [key, value, tail @ ..] = rest {
        match key.as_str() {
            "data_in" => data_in = Some(PathBuf::from(value)),
            "data_out" => data_out = Some(PathBuf::from(value)),
            "repeat" => repeat = value.parse().map_err(|_| "repeat: not a number")?,
            other => return Err(format!("run: unknown option {other}").into()),
        }
        rest = tail;
    }
    if let [extra, ..] = rest {
        return Err(format!("run: {extra} needs a value").into());
    }
    let data = match &data_in {
        Some(path) if path.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
            buf
        }
        Some(path) => std::fs::read(path).map_err(|e| format!("data_in {}: {e}", path.display()))?,
        None => return Err("run: give data_in FILE (the packet or input to run on)".into()),
    };
    let result = program.test_run(&TestRun { data: &data, repeat, ..TestRun::default() })?;
    if let Some(path) = &data_out {
        std::fs::write(path, &result.data).map_err(|e| format!("data_out {}: {e}", path.display()))?;
    }
    let nanos = result.duration.as_nanos() as u64;
    if as_json {
        println!("{}", json!({"retval": result.retval, "duration": nanos, "data_size_out": result.data.len()}));
    } else {
        println!("Return value: {}, duration{}: {nanos}ns", result.retval, if repeat > 1 { " (average)" } else { "" });
    }
    Ok(())
}

fn load_object(object: &PathBuf) -> Result<Collection, CliError> {
    let bytes = std::fs::read(object).map_err(|e| format!("{}: {e}", object.display()))?;
    Ok(Collection::load(CollectionSpec::from_elf(&bytes)?, &LoadOptions::default())?)
}

pub fn prog(command: ProgCommand) -> Result<(), CliError> {
    match command {
        ProgCommand::List { json } => print_all(
            json,
            each(program_ids(), program_json)?,
            if json { Vec::new() } else { each(program_ids(), show_program)? },
        ),
        ProgCommand::Show { target, json } if target.is_empty() => print_all(
            json,
            each(program_ids(), program_json)?,
            if json { Vec::new() } else { each(program_ids(), show_program)? },
        ),
        ProgCommand::Show { target, json } => {
            let (id, _, _) = program_id(&target)?;
            if json {
                println!("{}", program_json(id)?);
            } else {
                println!("{}", show_program(id)?);
            }
        }
        ProgCommand::Dump { kind, target, json } => {
            let (_, program, _) = program_id(&target)?;
            let symbols = KernelSymbols::load().unwrap_or_default();
            if kind == "jited" {
                let image = program.jited()?;
                if image.code.is_empty() {
                    return Err(format!("{} is not JIT'd (net.core.bpf_jit_enable is off?)", program.name()).into());
                }
                let functions = crate::jited::disassemble(&image, &symbols);
                let names: Vec<String> = image
                    .function_addresses
                    .iter()
                    .enumerate()
                    .map(|(i, &a)| symbols.name_at(a).map_or_else(|| format!("{}[{i}]", program.name()), str::to_owned))
                    .collect();
                if json {
                    println!("{}", crate::jited::to_json(&functions, &names));
                } else {
                    print!("{}", crate::jited::listing(&functions, &names));
                }
                return Ok(());
            }
            let listing = Disassembler::with_names(CallNames::Xlated(&symbols)).listing(&program.translated()?);
            print!("{listing}");
        }
        ProgCommand::Load { object, path } => {
            let collection = load_object(&object)?;
            let first = collection.programs().next().ok_or("the object has no program to load")?;
            first.pin(&path)?;
        }
        ProgCommand::Loadall { object, dir } => {
            load_object(&object)?.pin_programs(&dir)?;
        }
        ProgCommand::Pin { args } => {
            let (_, program, rest) = program_id(&args)?;
            let [path] = rest else { return Err("pin: give the program, then one path".into()) };
            program.pin(path)?;
        }
        ProgCommand::Run { args, json } => run_program(&args, json)?,
    }
    Ok(())
}

fn map_json(id: u32) -> Result<Value, ebpf_core::Error> {
    let map = Map::from_id(id)?;
    Ok(json!({
        "id": id,
        "type": map.map_type().map_or("unknown", MapType::name),
        "name": map.name(),
        "flags": map.flags().bits(),
        "bytes_key": map.key_size(),
        "bytes_value": map.value_size(),
        "max_entries": map.max_entries(),
    }))
}

fn show_map(id: u32) -> Result<String, ebpf_core::Error> {
    let map = Map::from_id(id)?;
    Ok(format!(
        "{id}: {}  name {}  key {}B  value {}B  max_entries {}  flags {:#x}",
        map.map_type().map_or("unknown", MapType::name),
        map.name(),
        map.key_size(),
        map.value_size(),
        map.max_entries(),
        map.flags().bits()
    ))
}

/// The map the command line names, and the rest of it.
fn named_map(args: &[String]) -> Result<(Map, &[String]), CliError> {
    let (which, rest) = target::parse(args)?;
    Ok((target::map(&which)?, rest))
}

/// The key the command line gives, checked against the map's key size.
fn key_of<'a>(map: &Map, args: &'a [String]) -> Result<(Vec<u8>, &'a [String]), CliError> {
    let (key, rest) = target::bytes(args, "key")?;
    if key.len() != map.key_size() {
        return Err(
            format!("key: {} bytes given, {} has {}-byte keys", key.len(), map.describe(), map.key_size()).into()
        );
    }
    Ok((key, rest))
}

pub fn map(command: MapCommand) -> Result<(), CliError> {
    match command {
        MapCommand::List { json } => {
            print_all(json, each(map_ids(), map_json)?, if json { Vec::new() } else { each(map_ids(), show_map)? })
        }
        MapCommand::Show { target, json } if target.is_empty() => {
            print_all(json, each(map_ids(), map_json)?, if json { Vec::new() } else { each(map_ids(), show_map)? })
        }
        MapCommand::Show { target, json } => {
            let (map, _) = named_map(&target)?;
            let id = map.info()?.id;
            if json {
                println!("{}", map_json(id)?);
            } else {
                println!("{}", show_map(id)?);
            }
        }
        MapCommand::Dump { target, json } => {
            let (map, _) = named_map(&target)?;
            if map.key_size() == 0 {
                return Err(ebpf_core::Error::InvalidSpec {
                    object: map.describe(),
                    reason: "has no keys to walk (ring buffers, queues and stacks are read, not dumped)".to_owned(),
                }
                .into());
            }
            let all = entries(&map)?;
            if json {
                let list: Vec<Value> = all.iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
                println!("{}", Value::Array(list));
            } else {
                for (key, value) in &all {
                    println!("key: {}  value: {}", hex(key), hex(value));
                }
                println!("Found {} elements", all.len());
            }
        }
        MapCommand::Lookup { args, json } => {
            let (map, rest) = named_map(&args)?;
            let (key, _) = key_of(&map, rest)?;
            let value = map.get(&key)?.ok_or_else(|| format!("lookup: no entry for key {}", hex(&key)))?;
            if json {
                println!("{}", json!({"key": hex_strings(&key), "value": hex_strings(&value)}));
            } else {
                println!("key: {}  value: {}", hex(&key), hex(&value));
            }
        }
        MapCommand::Update { args } => {
            let (map, rest) = named_map(&args)?;
            let (key, rest) = key_of(&map, rest)?;
            let (value, rest) = target::bytes(rest, "value")?;
            let flags = match rest.first().map(String::as_str) {
                None | Some("any") => UpdateFlags::ANY,
                Some("exist") => UpdateFlags::EXIST,
                Some("noexist") => UpdateFlags::NO_EXIST,
                Some(other) => return Err(format!("update: unknown flag {other} (any, exist, noexist)").into()),
            };
            map.update(&key, &value, flags)?;
        }
        MapCommand::Delete { args } => {
            let (map, rest) = named_map(&args)?;
            let (key, _) = key_of(&map, rest)?;
            if !map.delete(&key)? {
                return Err(format!("delete: no entry for key {}", hex(&key)).into());
            }
        }
        MapCommand::Pin { args } => {
            let (map, rest) = named_map(&args)?;
            let [path] = rest else { return Err("pin: give the map, then one path".into()) };
            map.pin(path)?;
        }
    }
    Ok(())
}
