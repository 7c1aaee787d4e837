//! Malformed objects give typed errors naming what is wrong, never a panic. No kernel needed.

use ebpf_core::object::{CollectionSpec, ObjectError};
use object::{Object, ObjectSection};
use proptest::prelude::*;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../bpf-programs/out/tests/{name}.o", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// File offset of section `name`'s contents.
fn section_offset(elf: &[u8], name: &str) -> usize {
    let file = object::File::parse(elf).unwrap();
    let section = file.section_by_name(name).unwrap();
    section.file_range().unwrap().0 as usize
}

/// File offset of section `name`'s header (Elf64_Shdr, 64 bytes).
fn section_header(elf: &[u8], name: &str) -> usize {
    let file = object::File::parse(elf).unwrap();
    let index = file.section_by_name(name).unwrap().index().0;
    let shoff = u64::from_le_bytes(elf[0x28..0x30].try_into().unwrap()) as usize;
    shoff + index * 64
}

fn error(elf: &[u8]) -> ObjectError {
    match CollectionSpec::from_elf(elf) {
        Ok(spec) => panic!(
            "malformed object was accepted: programs {:?}",
            spec.programs.iter().map(|p| &p.name).collect::<Vec<_>>()
        ),
        Err(e) => e,
    }
}

#[test]
fn not_an_elf_file() {
    assert!(matches!(error(b""), ObjectError::Elf(_)));
    assert!(matches!(error(b"\x7fELF and then nothing useful"), ObjectError::Elf(_)));
}

#[test]
fn an_elf_file_for_another_machine() {
    let mut elf = fixture("xdp_count");
    elf[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    assert!(matches!(error(&elf), ObjectError::NotBpf(_)), "{}", error(&elf));
}

#[test]
fn truncated_objects() {
    let elf = fixture("xdp_count");
    for len in (0..elf.len()).step_by(61) {
        assert!(CollectionSpec::from_elf(&elf[..len]).is_err(), "truncated to {len} bytes was accepted");
    }
}

#[test]
fn a_relocation_at_an_instruction_that_takes_none() {
    let mut elf = fixture("xdp_count");
    let rel = section_offset(&elf, ".relxdp");
    // Elf64_Rel: r_offset (8 bytes), r_info (8 bytes). Byte 0 of the program is `r2 = *(u32 *)(r1 + 4)`.
    elf[rel..rel + 8].copy_from_slice(&0u64.to_le_bytes());
    let err = error(&elf);
    assert!(matches!(err, ObjectError::Relocation { ref section, .. } if section == "xdp"), "{err}");
    assert!(err.to_string().contains("takes none"), "{err}");
}

#[test]
fn a_relocation_past_the_end_of_the_code() {
    let mut elf = fixture("xdp_count");
    let rel = section_offset(&elf, ".relxdp");
    elf[rel..rel + 8].copy_from_slice(&0x10_0000u64.to_le_bytes());
    let err = error(&elf);
    assert!(matches!(err, ObjectError::Relocation { offset: 0x10_0000, .. }), "{err}");
}

#[test]
fn a_relocation_into_the_second_half_of_a_64_bit_load() {
    let mut elf = fixture("xdp_count");
    let rel = section_offset(&elf, ".relxdp");
    let original = u64::from_le_bytes(elf[rel..rel + 8].try_into().unwrap());
    elf[rel..rel + 8].copy_from_slice(&(original + 8).to_le_bytes());
    let err = error(&elf);
    assert!(matches!(err, ObjectError::Relocation { .. }), "{err}");
}

#[test]
fn a_relocation_between_instructions() {
    let mut elf = fixture("xdp_count");
    let rel = section_offset(&elf, ".relxdp");
    let original = u64::from_le_bytes(elf[rel..rel + 8].try_into().unwrap());
    elf[rel..rel + 8].copy_from_slice(&(original + 4).to_le_bytes());
    let err = error(&elf);
    assert!(matches!(err, ObjectError::Relocation { .. }), "{err}");
}

#[test]
fn a_relocation_naming_a_symbol_that_does_not_exist() {
    let mut elf = fixture("xdp_count");
    let rel = section_offset(&elf, ".relxdp");
    let info = u64::from_le_bytes(elf[rel + 8..rel + 16].try_into().unwrap());
    let bad = (9999u64 << 32) | (info & 0xffff_ffff);
    elf[rel + 8..rel + 16].copy_from_slice(&bad.to_le_bytes());
    let err = error(&elf);
    assert!(err.to_string().contains("9999"), "{err}");
}

#[test]
fn an_unknown_map_type() {
    let mut elf = fixture("legacy_maps");
    let maps = section_offset(&elf, "maps");
    elf[maps..maps + 4].copy_from_slice(&999u32.to_le_bytes());
    let err = error(&elf);
    assert!(matches!(err, ObjectError::UnknownMapType { ref map, raw: 999 } if map == "legacy_counts"), "{err}");
    assert_eq!(err.to_string(), "map \"legacy_counts\": unknown map type 999");
}

/// Bytes of a legacy definition past the fields the loader reads are refused when not zero, as
/// is a samples/bpf inner_map_idx it does not support.
#[test]
fn legacy_definitions_with_unknown_fields_are_refused() {
    let elf = fixture("legacy_map_layouts");
    let maps = section_offset(&elf, "maps");
    let mut unknown = elf.clone();
    unknown[maps + 28] = 1;
    let err = error(&unknown).to_string();
    assert!(err.contains("byte 28 of its 32-byte definition is not zero"), "{err}");
    let mut inner = elf;
    inner[maps + 20] = 1;
    let err = error(&inner).to_string();
    assert!(err.contains("inner_map_idx 1"), "{err}");
}

#[test]
fn iproute2_pinning_and_map_in_map_it_cannot_honour_are_refused() {
    let elf = fixture("iproute2_maps");
    let maps = section_offset(&elf, "maps");
    let patched = |word: usize, value: u32| {
        let mut elf = elf.clone();
        elf[maps + word * 4..maps + word * 4 + 4].copy_from_slice(&value.to_le_bytes());
        error(&elf).to_string()
    };
    assert!(patched(6, 1).contains("PIN_OBJECT_NS"), "pinning 1");
    assert!(patched(6, 7).contains("iproute2 pinning 7"), "a custom pinning");
    assert!(patched(8, 1).contains("inner_idx 1"), "map-in-map");
}

#[test]
fn a_static_map_referenced_by_section_offset_is_refused() {
    let err = error(&fixture("static_map")).to_string();
    assert!(err.contains("byte 0 of section .maps rather than by its own symbol"), "{err}");
}

#[test]
fn a_btf_map_definition_with_non_zero_bytes_is_refused() {
    let mut elf = fixture("maps_defs");
    let maps = section_offset(&elf, ".maps");
    elf[maps + 3] = 0x5a;
    let err = error(&elf).to_string();
    assert!(err.contains("byte 3 of its") && err.contains("definition is not zero"), "{err}");
}

#[test]
fn huge_counts() {
    let mut elf = fixture("xdp_count");
    elf[0x3c..0x3e].copy_from_slice(&0xfff0u16.to_le_bytes()); // e_shnum
    assert!(matches!(error(&elf), ObjectError::Elf(_)));

    let mut elf = fixture("xdp_count");
    let btf = section_offset(&elf, ".BTF");
    elf[btf + 12..btf + 16].copy_from_slice(&u32::MAX.to_le_bytes()); // type_len
    let err = error(&elf);
    assert!(matches!(err, ObjectError::Btf { section: ".BTF", .. }), "{err}");
}

#[test]
fn code_that_is_not_whole_instructions() {
    let mut elf = fixture("xdp_count");
    let header = section_header(&elf, "xdp");
    let size = u64::from_le_bytes(elf[header + 32..header + 40].try_into().unwrap());
    elf[header + 32..header + 40].copy_from_slice(&(size - 3).to_le_bytes());
    let err = error(&elf);
    assert!(err.to_string().contains("xdp"), "{err}");
}

/// `xdp_count.o` with its program section renamed from "xdp" to "xdq".
fn with_unknown_section_name() -> Vec<u8> {
    let mut elf = fixture("xdp_count");
    // clang stores the section's name as the tail of ".relxdp".
    let names = section_offset(&elf, ".strtab");
    let at = elf[names..].windows(8).position(|w| w == b".relxdp\0").unwrap() + names;
    elf[at + 6] = b'q';
    elf
}

#[test]
fn a_program_section_with_a_name_no_loader_knows_gives_an_unspecified_program() {
    let spec = CollectionSpec::from_elf(&with_unknown_section_name()).unwrap();
    let program = spec.program("xdp_count").unwrap();
    assert_eq!(program.program_type, ebpf_core::ProgramType::Unspec);
    assert_eq!(program.section.as_deref(), Some("xdq"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Any object with bytes flipped reads or fails with an error; it never panics.
    #[test]
    fn flipped_bytes_never_panic(
        fixture_index in 0usize..10,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
    ) {
        let names = [
            "xdp_count",
            "tail_calls",
            "template",
            "subprogs",
            "maps_defs",
            "externs",
            "legacy_maps",
            "core_kernel",
            "legacy_map_layouts",
            "iproute2_maps",
        ];
        let mut elf = fixture(names[fixture_index]);
        for (index, byte) in flips {
            let at = index.index(elf.len());
            elf[at] ^= byte;
        }
        let _ = CollectionSpec::from_elf(&elf);
    }
}

/// Inputs the fuzzer found, kept so they stay fixed.
#[test]
fn fuzz_regressions_read_or_fail_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let input = std::fs::read(entry.unwrap().path()).unwrap();
        if let Ok(spec) = CollectionSpec::from_elf(&input) {
            for program in &spec.programs {
                let _ = ebpf_core::object::tail_call_sites(program);
            }
        }
        seen += 1;
    }
    assert!(seen > 0);
}

#[test]
fn a_struct_ops_relocation_off_a_function_pointer() {
    let mut elf = fixture("struct_ops_cc");
    let rel = section_offset(&elf, ".rel.struct_ops");
    elf[rel..rel + 8].copy_from_slice(&24u64.to_le_bytes()); // into `name`
    let err = error(&elf).to_string();
    assert!(err.contains("does not fall on a pointer member of ebpf_cc"), "{err}");

    let mut elf = fixture("struct_ops_cc");
    elf[rel + 8] = 1; // R_BPF_64_64: an instruction's relocation
    let err = error(&elf).to_string();
    assert!(err.contains("type 1 in a struct_ops value"), "{err}");
}

/// Inputs the linker fuzzer found (two objects in one file, as fuzz/fuzz_targets/linker.rs
/// splits them), kept so they stay fixed: each links or fails with an error, never a panic.
#[test]
fn linker_fuzz_regressions_link_or_fail_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/linker_regressions");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let (split, rest) = data.split_first_chunk::<2>().unwrap();
        let (first, second) = rest.split_at(usize::from(u16::from_le_bytes(*split)).min(rest.len()));
        let mut linker = ebpf_core::object::Linker::new();
        if linker.add("first.o", first).is_ok() && linker.add("second.o", second).is_ok() {
            if let Ok(linked) = linker.link() {
                let _ = CollectionSpec::from_elf(&linked);
            }
        }
        seen += 1;
    }
    assert!(seen > 0);
}
