use object::{Object, ObjectSection};

use crate::error::{Error, Result};

/// The `.BTF` and `.BTF.ext` sections of an ELF object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectBtf {
    /// `.BTF`.
    pub btf: Vec<u8>,
    /// `.BTF.ext`, when present.
    pub ext: Option<Vec<u8>>,
}

/// Reads an object's BTF sections; `Ok(None)` for an object without `.BTF`.
pub fn read_btf(elf: &[u8]) -> Result<Option<ObjectBtf>> {
    let invalid = |reason: String| Error::InvalidSpec { object: "ELF object".to_owned(), reason };
    let file = object::File::parse(elf).map_err(|e| invalid(format!("not a readable ELF file: {e}")))?;
    let section = |name: &str| -> Result<Option<Vec<u8>>> {
        match file.section_by_name(name) {
            Some(s) => s.data().map(|d| Some(d.to_vec())).map_err(|e| invalid(format!("section {name}: {e}"))),
            None => Ok(None),
        }
    };
    let Some(btf) = section(".BTF")? else { return Ok(None) };
    Ok(Some(ObjectBtf { btf, ext: section(".BTF.ext")? }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_object_carries_btf_and_ext() {
        // A heap copy: the ELF reader wants aligned input, which include_bytes! does not promise.
        let elf = include_bytes!("../../../bpf-programs/out/tests/xdp_count.o").to_vec();
        let found = read_btf(&elf).unwrap().unwrap();
        let btf = ebpf_btf::Btf::parse(found.btf).unwrap();
        assert!(btf.find("xdp_count", ebpf_btf::BtfKind::Func).is_some());
        assert!(found.ext.is_some());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(read_btf(b"\x7fELF garbage").is_err());
        assert!(read_btf(&[]).is_err());
    }
}
