use std::os::fd::BorrowedFd;

use super::attr::InfoAttr;
use super::{fd_u32, raw_bpf, Cmd, SysResult};

/// `struct bpf_prog_info` (kernel 6.18 layout).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct RawProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
    ifindex: u32,
    gpl_compatible: u32,
    netns_dev: u64,
    netns_ino: u64,
    nr_jited_ksyms: u32,
    nr_jited_func_lens: u32,
    jited_ksyms: u64,
    jited_func_lens: u64,
    btf_id: u32,
    func_info_rec_size: u32,
    func_info: u64,
    nr_func_info: u32,
    nr_line_info: u32,
    line_info: u64,
    jited_line_info: u64,
    nr_jited_line_info: u32,
    line_info_rec_size: u32,
    jited_line_info_rec_size: u32,
    nr_prog_tags: u32,
    prog_tags: u64,
    run_time_ns: u64,
    run_cnt: u64,
    recursion_misses: u64,
    verified_insns: u32,
    attach_btf_obj_id: u32,
    attach_btf_id: u32,
    _pad: u32,
}

/// `struct bpf_map_info` (up to `map_extra`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct RawMapInfo {
    map_type: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: [u8; 16],
    ifindex: u32,
    btf_vmlinux_value_type_id: u32,
    netns_dev: u64,
    netns_ino: u64,
    btf_id: u32,
    btf_key_type_id: u32,
    btf_value_type_id: u32,
    btf_vmlinux_id: u32,
    map_extra: u64,
}

/// `struct bpf_btf_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct RawBtfInfo {
    btf: u64,
    btf_size: u32,
    id: u32,
    name: u64,
    name_len: u32,
    kernel_btf: u32,
}

/// `struct bpf_link_info`: the common head, the kind-specific union kept as raw words.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct RawLinkInfo {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    extra: [u64; 8],
}

trait InfoStruct: Default {}
impl InfoStruct for RawProgInfo {}
impl InfoStruct for RawMapInfo {}
impl InfoStruct for RawBtfInfo {}
impl InfoStruct for RawLinkInfo {}

fn get_info<T: InfoStruct>(fd: BorrowedFd<'_>, info: &mut T) -> SysResult<()> {
    let mut attr =
        InfoAttr { bpf_fd: fd_u32(fd), info_len: std::mem::size_of::<T>() as u32, info: info as *mut T as u64 };
    raw_bpf(Cmd::ObjGetInfoByFd, &mut attr).map(drop)
}

fn c_name(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// What the kernel reports about a loaded program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgInfo {
    /// `enum bpf_prog_type` value.
    pub prog_type: u32,
    /// Global id.
    pub id: u32,
    /// SHA-derived tag of the instructions, as `bpftool` prints it.
    pub tag: [u8; 8],
    /// Name (at most 15 characters).
    pub name: String,
    /// Bytes of JIT-compiled code.
    pub jited_len: u32,
    /// Bytes of translated (post-verifier) instructions.
    pub xlated_len: u32,
    /// Boot-time nanoseconds when it was loaded.
    pub load_time_ns: u64,
    /// uid of the loader.
    pub created_by_uid: u32,
    /// Ids of the maps it uses.
    pub map_ids: Vec<u32>,
    /// BTF object id (0 without BTF).
    pub btf_id: u32,
    /// Whether the license is GPL-compatible.
    pub gpl_compatible: bool,
    /// Total run time while stats were enabled.
    pub run_time_ns: u64,
    /// Number of runs while stats were enabled.
    pub run_count: u64,
    /// Runs skipped because of recursion.
    pub recursion_misses: u64,
    /// Instructions the verifier processed.
    pub verified_insns: u32,
}

/// `BPF_OBJ_GET_INFO_BY_FD` on a program, map ids included.
pub fn prog_info(fd: BorrowedFd<'_>) -> SysResult<ProgInfo> {
    let mut raw = RawProgInfo::default();
    get_info(fd, &mut raw)?;
    let mut map_ids = vec![0u32; raw.nr_map_ids as usize];
    if !map_ids.is_empty() {
        let mut again = RawProgInfo {
            nr_map_ids: map_ids.len() as u32,
            map_ids: map_ids.as_mut_ptr() as u64,
            ..Default::default()
        };
        get_info(fd, &mut again)?;
        map_ids.truncate((again.nr_map_ids as usize).min(map_ids.len()));
    }
    Ok(ProgInfo {
        prog_type: raw.prog_type,
        id: raw.id,
        tag: raw.tag,
        name: c_name(&raw.name),
        jited_len: raw.jited_prog_len,
        xlated_len: raw.xlated_prog_len,
        load_time_ns: raw.load_time,
        created_by_uid: raw.created_by_uid,
        map_ids,
        btf_id: raw.btf_id,
        gpl_compatible: raw.gpl_compatible & 1 == 1,
        run_time_ns: raw.run_time_ns,
        run_count: raw.run_cnt,
        recursion_misses: raw.recursion_misses,
        verified_insns: raw.verified_insns,
    })
}

/// The translated instructions of a program as raw bytes (what `bpftool prog dump xlated` reads).
pub fn prog_xlated(fd: BorrowedFd<'_>) -> SysResult<Vec<u8>> {
    loop {
        let mut raw = RawProgInfo::default();
        get_info(fd, &mut raw)?;
        let mut buf = vec![0u8; raw.xlated_prog_len as usize];
        let mut again = RawProgInfo {
            xlated_prog_len: buf.len() as u32,
            xlated_prog_insns: buf.as_mut_ptr() as u64,
            ..Default::default()
        };
        get_info(fd, &mut again)?;
        if again.xlated_prog_len as usize <= buf.len() {
            buf.truncate(again.xlated_prog_len as usize);
            return Ok(buf);
        }
    }
}

/// A program's machine code as the JIT wrote it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JitedImage {
    /// The code of every function (the main program first, then its subprograms), back to
    /// back.
    pub code: Vec<u8>,
    /// Kernel address of each function.
    pub function_addresses: Vec<u64>,
    /// Length in bytes of each function's code.
    pub function_lengths: Vec<u32>,
}

/// `BPF_OBJ_GET_INFO_BY_FD` for a program's JIT'd code and where its functions are (empty
/// when the program is interpreted; addresses read as 0 without `CAP_SYSLOG`-like rights).
pub fn prog_jited(fd: BorrowedFd<'_>) -> SysResult<JitedImage> {
    loop {
        let mut raw = RawProgInfo::default();
        get_info(fd, &mut raw)?;
        let mut code = vec![0u8; raw.jited_prog_len as usize];
        let mut addresses = vec![0u64; raw.nr_jited_ksyms as usize];
        let mut lengths = vec![0u32; raw.nr_jited_func_lens as usize];
        // Every pointer is to a buffer of exactly the length given beside it.
        let mut again = RawProgInfo {
            jited_prog_len: code.len() as u32,
            jited_prog_insns: code.as_mut_ptr() as u64,
            nr_jited_ksyms: addresses.len() as u32,
            jited_ksyms: addresses.as_mut_ptr() as u64,
            nr_jited_func_lens: lengths.len() as u32,
            jited_func_lens: lengths.as_mut_ptr() as u64,
            ..Default::default()
        };
        get_info(fd, &mut again)?;
        // A program is never re-JIT'd, but check as prog_xlated does.
        if again.jited_prog_len as usize <= code.len()
            && again.nr_jited_ksyms as usize <= addresses.len()
            && again.nr_jited_func_lens as usize <= lengths.len()
        {
            code.truncate(again.jited_prog_len as usize);
            addresses.truncate(again.nr_jited_ksyms as usize);
            lengths.truncate(again.nr_jited_func_lens as usize);
            return Ok(JitedImage { code, function_addresses: addresses, function_lengths: lengths });
        }
    }
}

/// What the kernel reports about a map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapInfo {
    /// `enum bpf_map_type` value.
    pub map_type: u32,
    /// Global id.
    pub id: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Capacity.
    pub max_entries: u32,
    /// `BPF_F_*` flags.
    pub map_flags: u32,
    /// Name (at most 15 characters).
    pub name: String,
    /// BTF object id (0 without BTF).
    pub btf_id: u32,
    /// BTF type id of the key.
    pub btf_key_type_id: u32,
    /// BTF type id of the value.
    pub btf_value_type_id: u32,
    /// Type-specific extra.
    pub map_extra: u64,
}

/// `BPF_OBJ_GET_INFO_BY_FD` on a map.
pub fn map_info(fd: BorrowedFd<'_>) -> SysResult<MapInfo> {
    let mut raw = RawMapInfo::default();
    get_info(fd, &mut raw)?;
    Ok(MapInfo {
        map_type: raw.map_type,
        id: raw.id,
        key_size: raw.key_size,
        value_size: raw.value_size,
        max_entries: raw.max_entries,
        map_flags: raw.map_flags,
        name: c_name(&raw.name),
        btf_id: raw.btf_id,
        btf_key_type_id: raw.btf_key_type_id,
        btf_value_type_id: raw.btf_value_type_id,
        map_extra: raw.map_extra,
    })
}

/// What the kernel reports about a BTF object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BtfInfo {
    /// Global id.
    pub id: u32,
    /// Size of the raw BTF.
    pub size: u32,
    /// Name (`vmlinux`, a module name, or empty for program BTF).
    pub name: String,
    /// True for kernel and module BTF.
    pub kernel_btf: bool,
}

/// `BPF_OBJ_GET_INFO_BY_FD` on a BTF object.
pub fn btf_info(fd: BorrowedFd<'_>) -> SysResult<BtfInfo> {
    let mut name = vec![0u8; 64];
    let mut raw = RawBtfInfo { name: name.as_mut_ptr() as u64, name_len: name.len() as u32, ..Default::default() };
    get_info(fd, &mut raw)?;
    Ok(BtfInfo { id: raw.id, size: raw.btf_size, name: c_name(&name), kernel_btf: raw.kernel_btf != 0 })
}

/// What the kernel reports about a link: the common part.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkInfo {
    /// `enum bpf_link_type` value.
    pub link_type: u32,
    /// Global id.
    pub id: u32,
    /// Id of the attached program.
    pub prog_id: u32,
    /// The kind-specific part, as raw 64-bit words in the kernel's layout.
    pub extra: [u64; 8],
}

/// `BPF_OBJ_GET_INFO_BY_FD` on a link.
pub fn link_info(fd: BorrowedFd<'_>) -> SysResult<LinkInfo> {
    let mut raw = RawLinkInfo::default();
    get_info(fd, &mut raw)?;
    Ok(LinkInfo { link_type: raw.link_type, id: raw.id, prog_id: raw.prog_id, extra: raw.extra })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn info_layouts_match_the_kernel_uapi() {
        assert_eq!(offset_of!(RawProgInfo, name), 64);
        assert_eq!(offset_of!(RawProgInfo, netns_dev), 88);
        assert_eq!(offset_of!(RawProgInfo, btf_id), 128);
        assert_eq!(offset_of!(RawProgInfo, run_time_ns), 192);
        assert_eq!(offset_of!(RawProgInfo, attach_btf_id), 224);
        assert_eq!(size_of::<RawProgInfo>(), 232);
        assert_eq!(offset_of!(RawMapInfo, netns_dev), 48);
        assert_eq!(offset_of!(RawMapInfo, map_extra), 80);
        assert_eq!(size_of::<RawBtfInfo>(), 32);
    }
}
