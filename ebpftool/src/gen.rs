//! `ebpftool gen skeleton`: Rust skeletons from an object's BTF (ebpf-gen); `ebpftool gen
//! object`: objects linked statically (ebpf_core::object::Linker).

use std::path::PathBuf;

use clap::Subcommand;

/// Code generation.
#[derive(Subcommand)]
pub enum GenCommand {
    /// Prints the Rust skeleton of an object: its C types, typed maps, programs and globals.
    Skeleton {
        /// The object file.
        object: PathBuf,
        /// The skeleton's name (default: the file's stem; `endpoint` gives `OpenEndpoint`,
        /// `Endpoint`).
        #[arg(long)]
        name: Option<String>,
        /// The path the generated `include_bytes!` embeds the object from, as the generated
        /// file will see it (default: the object's absolute path).
        #[arg(long)]
        include_path: Option<String>,
    },
    /// Links BPF objects into one, as `bpftool gen object` does: sections merged, globals
    /// resolved (strong over weak, externs to definitions), BTF merged with each type once.
    Object {
        /// The linked object to write.
        output: PathBuf,
        /// The objects to link, in order.
        #[arg(num_args = 1.., required = true)]
        inputs: Vec<PathBuf>,
    },
}

/// Runs a `gen` command.
pub fn run(command: GenCommand) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        GenCommand::Object { output, inputs } => {
            let mut linker = ebpf_core::object::Linker::new();
            for input in &inputs {
                let bytes = std::fs::read(input).map_err(|e| format!("{}: {e}", input.display()))?;
                linker.add(&input.display().to_string(), &bytes)?;
            }
            let linked = linker.link()?;
            std::fs::write(&output, linked).map_err(|e| format!("{}: {e}", output.display()))?;
            Ok(())
        }
        GenCommand::Skeleton { object, name, include_path } => {
            let bytes = std::fs::read(&object).map_err(|e| format!("{}: {e}", object.display()))?;
            let stem = object.file_stem().map_or_else(|| "object".to_owned(), |s| s.to_string_lossy().into_owned());
            let include_path = match include_path {
                Some(path) => path,
                None => std::fs::canonicalize(&object)?.to_string_lossy().into_owned(),
            };
            let options = ebpf_gen::SkeletonOptions {
                name: name.unwrap_or(stem),
                object_name: object.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                include_path,
            };
            let source = ebpf_gen::skeleton(&bytes, &options)?;
            print!("{}", ebpf_gen::rustfmt(&source).unwrap_or(source));
            Ok(())
        }
    }
}
