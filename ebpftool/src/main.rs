//! `ebpftool`: inspect the kernel's BPF state through our own library.
//!
//! ```text
//! ebpftool feature [--json]          what the running kernel supports
//! ebpftool prog list|show [PROG] [--json]    loaded programs (PROG: id N | pinned PATH | name NAME)
//! ebpftool prog dump xlated|jited PROG [--json]   as the kernel runs it / x86-64 code, tail calls marked
//! ebpftool prog load OBJ PATH | loadall OBJ DIR | pin PROG PATH
//! ebpftool prog run PROG data_in FILE [data_out FILE] [repeat N] [--json]
//! ebpftool map list|show [MAP] [--json]
//! ebpftool map dump MAP [--json]     a map's entries
//! ebpftool map lookup|delete MAP key BYTES | update MAP key BYTES value BYTES [any|exist|noexist]
//! ebpftool map pin MAP PATH
//! ebpftool link list|show [LINK] [--json] | pin LINK PATH | detach LINK
//! ebpftool net list [--json]         XDP, TCX and tc programs per interface
//! ebpftool cgroup tree [ROOT] [--json]   programs on cgroup hooks
//! ebpftool btf dump vmlinux|module NAME|FILE   types, as bpftool's raw listing
//! ebpftool object info FILE [--json]  programs (with tail-call sites), maps, variables
//! ebpftool object load FILE [--pin DIR] [--set NAME=VALUE]... [--json]
//! ebpftool gen skeleton FILE [--name NAME]   Rust skeleton: the object's types, maps, programs, globals
//! ```

mod btf;
mod feature;
mod gen;
mod hooks;
mod jited;
mod links;
mod object;
mod objects;
mod target;

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
    /// Links: list, show, pin, detach.
    Link {
        #[command(subcommand)]
        command: links::LinkCommand,
    },
    /// Programs attached to this namespace's interfaces (XDP, TCX, tc).
    Net {
        #[command(subcommand)]
        command: hooks::NetCommand,
    },
    /// Programs attached to cgroups.
    Cgroup {
        #[command(subcommand)]
        command: hooks::CgroupCommand,
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
        Command::Prog { command } => objects::prog(command),
        Command::Map { command } => objects::map(command),
        Command::Link { command } => links::run(command),
        Command::Net { command } => hooks::net(command),
        Command::Cgroup { command } => hooks::cgroup(command),
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
