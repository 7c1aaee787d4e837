//! Kernel symbols from `/proc/kallsyms`, to name the helper and kernel-function addresses in
//! translated (post-verifier) programs.

use std::collections::HashMap;
use std::path::Path;

/// An address → name index of kernel symbols.
#[derive(Clone, Debug, Default)]
pub struct KernelSymbols {
    by_address: HashMap<u64, String>,
    /// Every address, sorted: for the symbol an address falls in.
    sorted: Vec<u64>,
    call_base: u64,
}

impl KernelSymbols {
    /// Reads `/proc/kallsyms`. Addresses read as zero without privilege; the index is then empty.
    pub fn load() -> std::io::Result<KernelSymbols> {
        Self::from_file(Path::new("/proc/kallsyms"))
    }

    /// Reads a kallsyms-format file.
    pub fn from_file(path: &Path) -> std::io::Result<KernelSymbols> {
        Ok(Self::parse(&std::fs::read_to_string(path)?))
    }

    /// Parses kallsyms text: `address type name [module]` per line. Malformed lines are skipped.
    pub fn parse(text: &str) -> KernelSymbols {
        let mut symbols = KernelSymbols::default();
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let (Some(address), Some(_kind), Some(name)) = (fields.next(), fields.next(), fields.next()) else {
                continue;
            };
            let Ok(address) = u64::from_str_radix(address, 16) else {
                continue;
            };
            if address == 0 {
                continue;
            }
            if name == "__bpf_call_base" {
                symbols.call_base = address;
            }
            symbols.by_address.entry(address).or_insert_with(|| name.to_owned());
        }
        symbols.sorted = symbols.by_address.keys().copied().collect();
        symbols.sorted.sort_unstable();
        symbols
    }

    /// Address of `__bpf_call_base`, from which translated helper calls are deltas.
    pub fn call_base(&self) -> u64 {
        self.call_base
    }

    /// The symbol starting exactly at `address`.
    pub fn name_at(&self, address: u64) -> Option<&str> {
        self.by_address.get(&address).map(String::as_str)
    }

    /// The symbol `address` falls in (the nearest at or below it) and the offset into it.
    pub fn containing(&self, address: u64) -> Option<(&str, u64)> {
        let at = self.sorted.partition_point(|&a| a <= address).checked_sub(1)?;
        let start = self.sorted[at];
        Some((self.by_address.get(&start)?.as_str(), address - start))
    }

    /// The address of the symbol called `name` (a scan: for the rare typeless ksym).
    pub fn address_of(&self, name: &str) -> Option<u64> {
        self.by_address.iter().find(|(_, n)| n.as_str() == name).map(|(&a, _)| a)
    }

    /// Number of symbols indexed.
    pub fn len(&self) -> usize {
        self.by_address.len()
    }

    /// True when nothing was indexed (for example without the privilege to see addresses).
    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_and_the_call_base() {
        let text = "ffffffff81000000 T _stext\nffffffff81200000 T __bpf_call_base\nffffffff81200100 T bpf_map_lookup_elem\n0000000000000000 T hidden\ngarbage\n";
        let symbols = KernelSymbols::parse(text);
        assert_eq!(symbols.call_base(), 0xffffffff81200000);
        assert_eq!(symbols.name_at(0xffffffff81200100), Some("bpf_map_lookup_elem"));
        assert_eq!(symbols.len(), 3);
        assert_eq!(symbols.containing(0xffffffff81200140), Some(("bpf_map_lookup_elem", 0x40)));
        assert_eq!(symbols.containing(0xffffffff81200000), Some(("__bpf_call_base", 0)));
        assert_eq!(symbols.containing(0xffffffff80000000), None);
    }
}
