//! bpftool's grammar for naming kernel objects and bytes: `id N`, `pinned PATH`, `name NAME`
//! (or a bare id), and byte lists such as `key 0 0 0 1` or `key hex 00 00 00 01`.

use std::path::PathBuf;

use ebpf_core::link::Link;
use ebpf_core::program::{map_ids, program_ids};
use ebpf_core::{Map, Program};

/// How an object is named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Id(u32),
    Pinned(PathBuf),
    Name(String),
}

/// Errors of the command line.
pub type CliError = Box<dyn std::error::Error>;

/// Reads a target from the front of `args`; returns it and the rest.
pub fn parse(args: &[String]) -> Result<(Target, &[String]), CliError> {
    let value = |i: usize, what: &str| args.get(i).ok_or_else(|| format!("{what} needs a value"));
    match args.first().map(String::as_str) {
        Some("id") => Ok((Target::Id(value(1, "id")?.parse().map_err(|_| "id: not a number")?), &args[2..])),
        Some("pinned") => Ok((Target::Pinned(value(1, "pinned")?.into()), &args[2..])),
        Some("name") => Ok((Target::Name(value(1, "name")?.clone()), &args[2..])),
        Some(bare) => match bare.parse() {
            Ok(id) => Ok((Target::Id(id), &args[1..])),
            Err(_) => Err(format!("expected id N, pinned PATH or name NAME, found {bare:?}").into()),
        },
        None => Err("expected id N, pinned PATH or name NAME".into()),
    }
}

/// The one object of a kind whose name is `name` (ids are walked in order).
fn by_name<T>(
    ids: impl Iterator<Item = ebpf_core::Result<u32>>,
    open: impl Fn(u32) -> ebpf_core::Result<T>,
    name_of: impl Fn(&T) -> String,
    kind: &str,
    name: &str,
) -> Result<T, CliError> {
    let mut found = Vec::new();
    for id in ids {
        // Objects can vanish between listing and opening.
        if let Ok(object) = open(id?) {
            if name_of(&object) == name {
                found.push(object);
            }
        }
    }
    match found.len() {
        0 => Err(format!("no {kind} named {name}").into()),
        1 => Ok(found.remove(0)),
        n => Err(format!("{n} {kind}s are named {name}: name one by id").into()),
    }
}

pub fn program(target: &Target) -> Result<Program, CliError> {
    Ok(match target {
        Target::Id(id) => Program::from_id(*id)?,
        Target::Pinned(path) => Program::from_pin(path)?,
        Target::Name(name) => by_name(program_ids(), Program::from_id, |p| p.name().to_owned(), "program", name)?,
    })
}

pub fn map(target: &Target) -> Result<Map, CliError> {
    Ok(match target {
        Target::Id(id) => Map::from_id(*id)?,
        Target::Pinned(path) => Map::from_pin(path)?,
        Target::Name(name) => by_name(map_ids(), Map::from_id, |m| m.name().to_owned(), "map", name)?,
    })
}

pub fn link(target: &Target) -> Result<Link, CliError> {
    match target {
        Target::Id(id) => Ok(Link::from_id(*id)?),
        Target::Pinned(path) => Ok(Link::from_pin(path)?),
        Target::Name(_) => Err("links have no names: name one by id or pinned path".into()),
    }
}

/// Reads the bytes after `keyword` (`key 0 0 0 1`, `value hex 01 00`, `0x1f`), up to the next
/// word that is not a byte; returns them and the rest.
pub fn bytes<'a>(args: &'a [String], keyword: &str) -> Result<(Vec<u8>, &'a [String]), CliError> {
    if args.first().map(String::as_str) != Some(keyword) {
        return Err(format!("expected {keyword} BYTES").into());
    }
    let mut rest = &args[1..];
    let hex = rest.first().map(String::as_str) == Some("hex");
    if hex {
        rest = &rest[1..];
    }
    let mut out = Vec::new();
    while let Some(word) = rest.first() {
        let byte = if hex {
            u8::from_str_radix(word, 16).ok()
        } else if let Some(digits) = word.strip_prefix("0x") {
            u8::from_str_radix(digits, 16).ok()
        } else {
            word.parse().ok()
        };
        match byte {
            Some(b) => out.push(b),
            None => break,
        }
        rest = &rest[1..];
    }
    if out.is_empty() {
        return Err(format!("{keyword}: no bytes given").into());
    }
    Ok((out, rest))
}

/// `0x0a 0x00` — bytes as bpftool's JSON prints them.
pub fn hex_strings(bytes: &[u8]) -> Vec<String> {
    bytes.iter().map(|b| format!("0x{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn targets_and_bytes_as_bpftool_writes_them() {
        let args = words("id 7 key 1 0 0 0 value hex ff 01 any");
        let (target, rest) = parse(&args).unwrap();
        assert_eq!(target, Target::Id(7));
        let (key, rest) = bytes(rest, "key").unwrap();
        assert_eq!(key, [1, 0, 0, 0]);
        let (value, rest) = bytes(rest, "value").unwrap();
        assert_eq!((value, rest), (vec![0xff, 1], &words("any")[..]));
        assert_eq!(parse(&words("pinned /sys/fs/bpf/x")).unwrap().0, Target::Pinned("/sys/fs/bpf/x".into()));
        assert_eq!(parse(&words("12")).unwrap().0, Target::Id(12));
        assert!(parse(&words("tag 00")).is_err());
        assert!(bytes(&words("key value"), "key").is_err());
        assert_eq!(bytes(&words("key 0x10 0x20"), "key").unwrap().0, [0x10, 0x20]);
    }
}
