//! `ebpftool`: inspect the kernel's BPF state through our own library.
//!
//! ```text
//! ebpftool feature [--json]          what the running kernel supports
//! ebpftool prog list                 loaded programs
//! ebpftool prog show ID              one program's details
//! ebpftool prog dump xlated ID       its instructions, as the kernel runs them
//! ebpftool map list                  maps
//! ebpftool map dump ID [--json]      a map's entries
//! ebpftool btf dump vmlinux|module NAME|FILE   types, as bpftool's raw listing
//! ebpftool object info FILE [--json]  programs (with tail-call sites), maps, variables
//! ebpftool object load FILE [--pin DIR] [--set NAME=VALUE]... [--json]
//! ebpftool gen skeleton FILE [--name NAME]   Rust skeleton: the object's types, maps, programs, globals
//! ```

mod btf;
mod feature;
mod gen;
mod object;
mod objects;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ebpftool", version, about = "Inspect the kernel's BPF state (a bpftool-like CLI over ebpf-core)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Probe what the running kernel supports: program, map and link types, helpers, misc.
    Feature {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Loaded programs.
    Prog {
        #[command(subcommand)]
        command: objects::ProgCommand,
    },
    /// Maps.
    Map {
        #[command(subcommand)]
        command: objects::MapCommand,
    },
    /// BPF Type Format.
    Btf {
        #[command(subcommand)]
        command: btf::BtfCommand,
    },
    /// ELF object files: what they hold, and loading them.
    Object {
        #[command(subcommand)]
        command: object::ObjectCommand,
    },
    /// Code generation from objects.
    Gen {
        #[command(subcommand)]
        command: gen::GenCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<(), Box<dyn std::error::Error>> = match cli.command {
        Command::Feature { json } => feature::run(json).map_err(Into::into),
        Command::Prog { command } => objects::prog(command).map_err(Into::into),
        Command::Map { command } => objects::map(command).map_err(Into::into),
        Command::Btf { command } => btf::run(command),
        Command::Object { command } => object::run(command),
        Command::Gen { command } => gen::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ebpftool: {e}");
            ExitCode::FAILURE
        }
    }
}
