//! Where a user-space probe goes: a binary found by path or library name, and a function's file
//! offset read from its ELF symbols (executables, PIE or not, and shared libraries alike: the
//! kernel places uprobes by file offset, so load addresses never matter).
//!
//! Attaching is [`link::Uprobe`](crate::link::Uprobe) and
//! [`link::UprobeMulti`](crate::link::UprobeMulti).

use std::path::{Path, PathBuf};

use object::elf::{self, FileHeader64};
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader, Sym};
use object::Endianness;

use crate::error::{Error, Result};

/// Directories searched for a library given by name (`libc.so.6`), after `LD_LIBRARY_PATH`.
const LIBRARY_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/lib64",
    "/usr/lib",
    "/lib",
];

fn invalid(object: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidSpec { object: object.into(), reason: reason.into() }
}

/// The file a probe on `binary` goes into: a path with a `/` as given; a library name
/// (`libc.so.6`) searched in `LD_LIBRARY_PATH` and the usual library directories; another
/// name searched in `PATH`, as libbpf resolves them.
pub fn resolve_binary(binary: &str) -> Result<PathBuf> {
    if binary.contains('/') {
        return Ok(PathBuf::from(binary));
    }
    let env_dirs = |var: &str| std::env::var(var).unwrap_or_default();
    let dirs: Vec<String> = if binary.contains(".so") {
        let from_env = env_dirs("LD_LIBRARY_PATH");
        from_env
            .split(':')
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .chain(LIBRARY_DIRS.iter().map(|d| (*d).to_owned()))
            .collect()
    } else {
        env_dirs("PATH").split(':').filter(|d| !d.is_empty()).map(str::to_owned).collect()
    };
    dirs.iter()
        .map(|dir| Path::new(dir).join(binary))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| invalid(format!("binary {binary}"), format!("not found in {}", dirs.join(":"))))
}

/// A user-space ELF file's symbols and segments, read once for several lookups.
pub struct UserBinary {
    path: PathBuf,
    data: Vec<u8>,
}

/// One function symbol's place in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Found {
    offset: u64,
    weak: bool,
}

impl UserBinary {
    /// Reads the ELF file at `path` (see [`resolve_binary`] for names).
    pub fn open(path: impl AsRef<Path>) -> Result<UserBinary> {
        let path = path.as_ref().to_owned();
        let data =
            std::fs::read(&path).map_err(|source| Error::Io { operation: "read", path: path.clone(), source })?;
        let binary = UserBinary { path, data };
        binary.header()?;
        Ok(binary)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn what(&self) -> String {
        format!("binary {}", self.path.display())
    }

    fn header(&self) -> Result<(&FileHeader64<Endianness>, Endianness)> {
        let header = FileHeader64::<Endianness>::parse(&*self.data)
            .map_err(|e| invalid(self.what(), format!("not a 64-bit ELF file: {e}")))?;
        let endian = header.endian().map_err(|e| invalid(self.what(), e.to_string()))?;
        Ok((header, endian))
    }

    /// The file offset of function `symbol` (`malloc`; a versioned name such as
    /// `malloc@@GLIBC_2.2.5` matches too), from `.symtab`, else `.dynsym`. Several
    /// definitions at different places are ambiguous unless exactly one is not weak.
    pub fn symbol_offset(&self, symbol: &str) -> Result<u64> {
        let mut found = Vec::new();
        for table_type in [elf::SHT_SYMTAB, elf::SHT_DYNSYM] {
            self.functions(table_type, &mut |name, at| {
                if name == symbol || (!symbol.contains('@') && name.split('@').next() == Some(symbol)) {
                    found.push(at);
                }
            })?;
            if !found.is_empty() {
                break;
            }
        }
        found.sort_by_key(|f| (f.offset, f.weak));
        found.dedup_by_key(|f| f.offset);
        let strong: Vec<Found> = found.iter().filter(|f| !f.weak).copied().collect();
        match (found.as_slice(), strong.as_slice()) {
            ([], _) => Err(invalid(self.what(), format!("no function {symbol} in its symbol tables"))),
            ([one], _) | (_, [one]) => Ok(one.offset),
            _ => Err(invalid(
                self.what(),
                format!(
                    "{symbol} is defined at {} places ({}); give an offset",
                    found.len(),
                    found.iter().map(|f| format!("{:#x}", f.offset)).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }

    /// The file offsets of the functions whose names `pattern` matches (`*` any run of
    /// characters, `?` any one), from `.symtab`, else `.dynsym`; versions (`@GLIBC_2.2.5`)
    /// are not part of the name matched.
    pub fn matching_functions(&self, pattern: &str) -> Result<Vec<u64>> {
        let mut found = Vec::new();
        for table_type in [elf::SHT_SYMTAB, elf::SHT_DYNSYM] {
            self.functions(table_type, &mut |name, at| {
                if glob_matches(pattern, name.split('@').next().unwrap_or(name)) {
                    found.push(at.offset);
                }
            })?;
            if !found.is_empty() {
                break;
            }
        }
        found.sort_unstable();
        found.dedup();
        Ok(found)
    }

    /// Calls `visit(name, place)` for every defined function of the symbol table of type
    /// `table_type`.
    fn functions(&self, table_type: u32, visit: &mut dyn FnMut(&str, Found)) -> Result<()> {
        let (header, endian) = self.header()?;
        let bad = |e: object::read::Error| invalid(self.what(), e.to_string());
        let sections = header.sections(endian, &*self.data).map_err(bad)?;
        // An absent table reads as an empty one.
        let symbols = sections.symbols(endian, &*self.data, table_type).map_err(bad)?;
        for symbol in symbols.iter() {
            let kind = symbol.st_type();
            let index = symbol.st_shndx(endian);
            if !matches!(kind, elf::STT_FUNC | elf::STT_GNU_IFUNC) || index == elf::SHN_UNDEF {
                continue;
            }
            let Ok(section) = sections.section(object::SectionIndex(usize::from(index))) else { continue };
            let Ok(name) = symbols.symbol_name(endian, symbol) else { continue };
            let Ok(name) = std::str::from_utf8(name) else { continue };
            let value = symbol.st_value(endian);
            let Some(offset) = value
                .checked_sub(section.sh_addr(endian))
                .and_then(|within| within.checked_add(section.sh_offset(endian)))
            else {
                continue;
            };
            visit(name, Found { offset, weak: symbol.st_bind() == elf::STB_WEAK });
        }
        Ok(())
    }

    /// The file offset of virtual address `address`, through the loadable segment holding it
    /// (what USDT notes and semaphores give).
    pub fn address_offset(&self, address: u64) -> Result<u64> {
        let (header, endian) = self.header()?;
        let segments = header.program_headers(endian, &*self.data).map_err(|e| invalid(self.what(), e.to_string()))?;
        segments
            .iter()
            .filter(|s| s.p_type(endian) == elf::PT_LOAD)
            .find_map(|s| {
                let start = s.p_vaddr(endian);
                let within = address.checked_sub(start)?;
                (within < s.p_memsz(endian)).then(|| s.p_offset(endian) + within)
            })
            .ok_or_else(|| invalid(self.what(), format!("no loadable segment holds address {address:#x}")))
    }

    /// The raw bytes of the file (for readers of its notes).
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }
}

/// Does `text` match `pattern` (`*`: any run of characters, `?`: any one)? Linear in the
/// lengths: the last `*` is where a mismatch backtracks to.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

impl std::fmt::Debug for UserBinary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserBinary").field("path", &self.path).field("bytes", &self.data.len()).finish()
    }
}

/// The uprobe PMU of the running kernel: its perf type and where a return probe and a
/// reference counter go in `config` (read from `/sys/bus/event_source/devices/uprobe`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct UprobePmu {
    pub perf_type: u32,
    pub retprobe_bit: u32,
    pub ref_ctr_shift: u32,
}

const UPROBE_PMU: &str = "/sys/bus/event_source/devices/uprobe";

/// The first bit a `format/` file names (`config:0`, `config:32-63`).
fn format_bit(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(format!("{UPROBE_PMU}/format/{name}")).ok()?;
    text.trim().strip_prefix("config:")?.split('-').next()?.parse().ok()
}

impl UprobePmu {
    pub(crate) fn read() -> Result<UprobePmu> {
        let path = format!("{UPROBE_PMU}/type");
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            operation: "read the uprobe PMU type (a kernel without CONFIG_UPROBE_EVENTS has none)",
            path: path.clone().into(),
            source,
        })?;
        let perf_type = text.trim().parse().map_err(|_| invalid("uprobe PMU", format!("{path} holds {text:?}")))?;
        Ok(UprobePmu {
            perf_type,
            retprobe_bit: format_bit("retprobe").unwrap_or(0),
            ref_ctr_shift: format_bit("ref_ctr_offset").unwrap_or(32),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn globs_match_as_shells_do() {
        assert!(glob_matches("malloc*", "malloc_usable_size"));
        assert!(glob_matches("malloc*", "malloc"));
        assert!(!glob_matches("malloc*", "xmalloc"));
        assert!(glob_matches("*alloc", "calloc"));
        assert!(glob_matches("?alloc", "calloc"));
        assert!(!glob_matches("?alloc", "alloc"));
        assert!(glob_matches("a*b*c", "aXbYbZc"));
        assert!(!glob_matches("a*b*c", "aXbYbZ"));
        assert!(glob_matches("*", ""));
    }

    /// The reference: a plain recursive matcher.
    fn slow(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|skip| slow(rest, &text[skip..])),
            Some((&c, rest)) => text.split_first().is_some_and(|(&t, tail)| (c == b'?' || c == t) && slow(rest, tail)),
        }
    }

    proptest! {
        #[test]
        fn globs_agree_with_the_recursive_definition(pattern in "[ab*?]{0,8}", text in "[ab]{0,10}") {
            prop_assert_eq!(glob_matches(&pattern, &text), slow(pattern.as_bytes(), text.as_bytes()));
        }
    }
}
