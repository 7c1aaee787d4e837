use std::io::Write;
use std::sync::Arc;

use clap::{Subcommand, ValueEnum};
use ebpf_btf::{c_dump, kernel, raw_dump, Btf, BtfError};

#[derive(Subcommand)]
pub enum BtfCommand {
    /// Print every type: `vmlinux`, `module NAME`, an ELF object's `.BTF`, or a raw BTF file.
    Dump {
        /// `vmlinux`, `module NAME`, or a path to an object file or a raw `.BTF` blob.
        #[arg(required = true, num_args = 1..=2)]
        source: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Raw)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// bpftool's raw listing, one type per line group.
    Raw,
    /// A C header (`vmlinux.h` style).
    C,
}

fn load(source: &[String]) -> Result<Btf, BtfError> {
    match source {
        [what] if what == "vmlinux" => kernel::vmlinux(),
        [what, name] if what == "module" => kernel::module(name, Arc::new(kernel::vmlinux()?)),
        [path] => {
            let bytes =
                std::fs::read(path).map_err(|e| BtfError::File { path: path.clone(), message: e.to_string() })?;
            if bytes.starts_with(b"\x7fELF") {
                // An object file: its .BTF section.
                let found = ebpf_core::object::read_btf(&bytes)
                    .map_err(|e| BtfError::File { path: path.clone(), message: e.to_string() })?
                    .ok_or_else(|| BtfError::File {
                        path: path.clone(),
                        message: "the object has no .BTF section".to_owned(),
                    })?;
                Btf::parse(found.btf).map_err(|e| BtfError::File { path: path.clone(), message: e.to_string() })
            } else {
                Btf::parse(bytes).map_err(|e| BtfError::File { path: path.clone(), message: e.to_string() })
            }
        }
        _ => Err(BtfError::File {
            path: source.join(" "),
            message: "expected `vmlinux`, `module NAME` or a BTF file".to_owned(),
        }),
    }
}

pub fn run(command: BtfCommand) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        BtfCommand::Dump { source, format } => {
            let btf = load(&source)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let written = match format {
                Format::Raw => raw_dump(&btf, &mut out),
                Format::C => out.write_all(c_dump(&btf, "__VMLINUX_H__")?.as_bytes()),
            };
            match written.and_then(|()| out.flush()) {
                Ok(()) => Ok(()),
                // A closed pipe (`| head`) is not an error worth reporting.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    }
}
