use clap::Subcommand;
use ebpf_core::insn::{CallNames, Disassembler};
use ebpf_core::kallsyms::KernelSymbols;
use ebpf_core::program::{map_ids, program_ids};
use ebpf_core::{Map, MapType, Program, ProgramType};

#[derive(Subcommand)]
pub enum ProgCommand {
    /// One line per loaded program.
    List,
    /// Details of one program.
    Show {
        /// Program id.
        id: u32,
    },
    /// Instructions of one program.
    Dump {
        /// `xlated`: as the kernel runs them.
        #[arg(value_parser = ["xlated"])]
        kind: String,
        /// Program id.
        id: u32,
    },
}

#[derive(Subcommand)]
pub enum MapCommand {
    /// One line per map.
    List,
    /// Every entry of one map, keys and values as bytes.
    Dump {
        /// Map id.
        id: u32,
        /// Print JSON (`[{"key": [..bytes..], "value": [..bytes..]}, ...]`).
        #[arg(long)]
        json: bool,
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

pub fn prog(command: ProgCommand) -> Result<(), ebpf_core::Error> {
    match command {
        ProgCommand::List => {
            for id in program_ids() {
                let id = id?;
                // Programs can vanish between listing and opening.
                match show_program(id) {
                    Ok(text) => println!("{text}"),
                    Err(e) if e.errno() == Some(ebpf_core::Errno::ENOENT) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        ProgCommand::Show { id } => println!("{}", show_program(id)?),
        ProgCommand::Dump { id, .. } => {
            let program = Program::from_id(id)?;
            let symbols = KernelSymbols::load().unwrap_or_default();
            let listing = Disassembler::with_names(CallNames::Xlated(&symbols)).listing(&program.translated()?);
            print!("{listing}");
        }
    }
    Ok(())
}

pub fn map(command: MapCommand) -> Result<(), ebpf_core::Error> {
    match command {
        MapCommand::List => {
            for id in map_ids() {
                let id = id?;
                let map = match Map::from_id(id) {
                    Ok(map) => map,
                    Err(e) if e.errno() == Some(ebpf_core::Errno::ENOENT) => continue,
                    Err(e) => return Err(e),
                };
                let kind = map.map_type().map_or("unknown", MapType::name);
                println!(
                    "{id}: {kind}  name {}  key {}B  value {}B  max_entries {}  flags {:#x}",
                    map.name(),
                    map.key_size(),
                    map.value_size(),
                    map.max_entries(),
                    map.flags().bits()
                );
            }
        }
        MapCommand::Dump { id, json } => {
            let map = Map::from_id(id)?;
            if map.key_size() == 0 {
                return Err(ebpf_core::Error::InvalidSpec {
                    object: map.describe(),
                    reason: "has no keys to walk (ring buffers, queues and stacks are read, not dumped)".to_owned(),
                });
            }
            let all = entries(&map)?;
            if json {
                let list: Vec<serde_json::Value> =
                    all.iter().map(|(k, v)| serde_json::json!({"key": k, "value": v})).collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for (key, value) in &all {
                    println!("key: {}  value: {}", hex(key), hex(value));
                }
                println!("Found {} elements", all.len());
            }
        }
    }
    Ok(())
}
