//! `union bpf_attr`, one `#[repr(C)]` struct per command, laid out exactly as the kernel's
//! UAPI header (fields named as there). Every struct has explicit padding, so zeroing with
//! `Default` leaves no uninitialised bytes for the kernel's tail-zero check to trip on.

/// Marks a plain-data attribute struct the `bpf(2)` wrapper may hand to the kernel.
///
/// Only this module implements it; every implementor is `#[repr(C)]` with no implicit padding.
pub trait Attr: Sized + private::Sealed {}

mod private {
    pub trait Sealed {}
}

macro_rules! attrs {
    ($($ty:ident),* $(,)?) => {
        $(impl private::Sealed for $ty {} impl Attr for $ty {})*
    };
}

/// `BPF_MAP_CREATE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MapCreateAttr {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub inner_map_fd: u32,
    pub numa_node: u32,
    pub map_name: [u8; 16],
    pub map_ifindex: u32,
    pub btf_fd: u32,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
    pub btf_vmlinux_value_type_id: u32,
    pub map_extra: u64,
    pub value_type_btf_obj_fd: i32,
    pub map_token_fd: i32,
}

/// `BPF_MAP_LOOKUP_ELEM`, `UPDATE_ELEM`, `DELETE_ELEM`, `GET_NEXT_KEY`, `LOOKUP_AND_DELETE_ELEM`, `FREEZE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MapElemAttr {
    pub map_fd: u32,
    pub _pad: u32,
    pub key: u64,
    /// `value`, or `next_key` for `GET_NEXT_KEY`.
    pub value: u64,
    pub flags: u64,
}

/// The four `BPF_MAP_*_BATCH` commands.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MapBatchAttr {
    pub in_batch: u64,
    pub out_batch: u64,
    pub keys: u64,
    pub values: u64,
    pub count: u32,
    pub map_fd: u32,
    pub elem_flags: u64,
    pub flags: u64,
}

/// `BPF_PROG_LOAD`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgLoadAttr {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub prog_name: [u8; 16],
    pub prog_ifindex: u32,
    pub expected_attach_type: u32,
    pub prog_btf_fd: u32,
    pub func_info_rec_size: u32,
    pub func_info: u64,
    pub func_info_cnt: u32,
    pub line_info_rec_size: u32,
    pub line_info: u64,
    pub line_info_cnt: u32,
    pub attach_btf_id: u32,
    /// `attach_prog_fd` or `attach_btf_obj_fd`.
    pub attach_prog_fd: u32,
    pub core_relo_cnt: u32,
    pub fd_array: u64,
    pub core_relos: u64,
    pub core_relo_rec_size: u32,
    /// Written by the kernel (6.4+): the log size the whole verifier log needs.
    pub log_true_size: u32,
    pub prog_token_fd: i32,
    pub fd_array_cnt: u32,
}

/// `BPF_OBJ_PIN` and `BPF_OBJ_GET`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ObjPinAttr {
    pub pathname: u64,
    pub bpf_fd: u32,
    pub file_flags: u32,
    pub path_fd: i32,
    pub _pad: u32,
}

/// `BPF_PROG_ATTACH` and `BPF_PROG_DETACH`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgAttachAttr {
    /// `target_fd` or `target_ifindex`.
    pub target: u32,
    pub attach_bpf_fd: u32,
    pub attach_type: u32,
    pub attach_flags: u32,
    pub replace_bpf_fd: u32,
    /// `relative_fd` or `relative_id`.
    pub relative: u32,
    pub expected_revision: u64,
}

/// `BPF_PROG_QUERY`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgQueryAttr {
    /// `target_fd` or `target_ifindex`.
    pub target: u32,
    pub attach_type: u32,
    pub query_flags: u32,
    pub attach_flags: u32,
    pub prog_ids: u64,
    /// `prog_cnt` / `count`: capacity in, number attached out.
    pub count: u32,
    pub _pad: u32,
    pub prog_attach_flags: u64,
    pub link_ids: u64,
    pub link_attach_flags: u64,
    pub revision: u64,
}

/// `BPF_PROG_TEST_RUN`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TestRunAttr {
    pub prog_fd: u32,
    pub retval: u32,
    pub data_size_in: u32,
    pub data_size_out: u32,
    pub data_in: u64,
    pub data_out: u64,
    pub repeat: u32,
    pub duration: u32,
    pub ctx_size_in: u32,
    pub ctx_size_out: u32,
    pub ctx_in: u64,
    pub ctx_out: u64,
    pub flags: u32,
    pub cpu: u32,
    pub batch_size: u32,
    pub _pad: u32,
}

/// The `*_GET_NEXT_ID` and `*_GET_FD_BY_ID` families.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GetIdAttr {
    /// `start_id`, `prog_id`, `map_id`, `btf_id` or `link_id`.
    pub id: u32,
    pub next_id: u32,
    pub open_flags: u32,
    pub fd_by_id_token_fd: i32,
}

/// `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InfoAttr {
    pub bpf_fd: u32,
    pub info_len: u32,
    pub info: u64,
}

/// `BPF_BTF_LOAD`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BtfLoadAttr {
    pub btf: u64,
    pub btf_log_buf: u64,
    pub btf_size: u32,
    pub btf_log_size: u32,
    pub btf_log_level: u32,
    pub btf_log_true_size: u32,
    pub btf_flags: u32,
    pub btf_token_fd: i32,
}

/// `BPF_LINK_CREATE`; `E` is the attach-kind specific tail (the kernel's anonymous union).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkCreateAttr<E> {
    /// `prog_fd` or `map_fd`.
    pub prog_fd: u32,
    /// `target_fd` or `target_ifindex`.
    pub target: u32,
    pub attach_type: u32,
    pub flags: u32,
    pub extra: E,
}

/// Tail of `LINK_CREATE` for attach kinds that need nothing more.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkNoExtra {
    pub target_btf_id: u32,
    pub _pad: u32,
}

/// Tail of `LINK_CREATE` for TCX, netkit and cgroup (mprog) links: ordering.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkMprogExtra {
    /// `relative_fd` or `relative_id`.
    pub relative: u32,
    pub _pad: u32,
    pub expected_revision: u64,
}

/// Tail of `LINK_CREATE` for iterators.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkIterExtra {
    pub iter_info: u64,
    pub iter_info_len: u32,
    pub _pad: u32,
}

/// Tail of `LINK_CREATE` for perf-event links.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkPerfEventExtra {
    pub bpf_cookie: u64,
}

/// Tail of `LINK_CREATE` for tracing (fentry/fexit/…) links.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkTracingExtra {
    pub target_btf_id: u32,
    pub _pad: u32,
    pub cookie: u64,
}

/// Tail of `LINK_CREATE` for netfilter links.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkNetfilterExtra {
    pub pf: u32,
    pub hooknum: u32,
    pub priority: i32,
    pub flags: u32,
}

/// `BPF_LINK_UPDATE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkUpdateAttr {
    pub link_fd: u32,
    /// `new_prog_fd` or `new_map_fd`.
    pub new_prog_fd: u32,
    pub flags: u32,
    /// `old_prog_fd` or `old_map_fd`.
    pub old_prog_fd: u32,
}

/// `BPF_LINK_DETACH`, `BPF_ENABLE_STATS` and `BPF_MAP_FREEZE`: one 32-bit field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleFdAttr {
    /// `link_fd`, `type` (stats) or `map_fd`.
    pub value: u32,
    pub _pad: u32,
}

/// `BPF_RAW_TRACEPOINT_OPEN`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RawTracepointAttr {
    pub name: u64,
    pub prog_fd: u32,
    pub _pad: u32,
    pub cookie: u64,
}

/// `BPF_ITER_CREATE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct IterCreateAttr {
    pub link_fd: u32,
    pub flags: u32,
}

/// `BPF_PROG_BIND_MAP`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProgBindMapAttr {
    pub prog_fd: u32,
    pub map_fd: u32,
    pub flags: u32,
    pub _pad: u32,
}

attrs!(
    MapCreateAttr,
    MapElemAttr,
    MapBatchAttr,
    ProgLoadAttr,
    ObjPinAttr,
    ProgAttachAttr,
    ProgQueryAttr,
    TestRunAttr,
    GetIdAttr,
    InfoAttr,
    BtfLoadAttr,
    LinkUpdateAttr,
    SingleFdAttr,
    RawTracepointAttr,
    IterCreateAttr,
    ProgBindMapAttr,
);

macro_rules! link_attrs {
    ($($ty:ident),* $(,)?) => {
        $(impl private::Sealed for LinkCreateAttr<$ty> {} impl Attr for LinkCreateAttr<$ty> {})*
    };
}

/// Tail of `LINK_CREATE` for `uprobe_multi` links.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkUprobeMultiExtra {
    pub path: u64,
    pub offsets: u64,
    pub ref_ctr_offsets: u64,
    pub cookies: u64,
    pub cnt: u32,
    pub flags: u32,
    pub pid: u32,
    pub _pad: u32,
}

link_attrs!(
    LinkNoExtra,
    LinkMprogExtra,
    LinkIterExtra,
    LinkPerfEventExtra,
    LinkTracingExtra,
    LinkNetfilterExtra,
    LinkUprobeMultiExtra
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    // Offsets and sizes as in the kernel's union bpf_attr (include/uapi/linux/bpf.h, 6.18).
    #[test]
    fn layouts_match_the_kernel_uapi() {
        assert_eq!(size_of::<MapCreateAttr>(), 80);
        assert_eq!(offset_of!(MapCreateAttr, map_name), 28);
        assert_eq!(offset_of!(MapCreateAttr, map_extra), 64);
        assert_eq!(size_of::<MapElemAttr>(), 32);
        assert_eq!(size_of::<MapBatchAttr>(), 56);
        assert_eq!(offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(offset_of!(ProgLoadAttr, attach_btf_id), 108);
        assert_eq!(offset_of!(ProgLoadAttr, fd_array), 120);
        assert_eq!(offset_of!(ProgLoadAttr, log_true_size), 140);
        assert_eq!(size_of::<ProgLoadAttr>(), 152);
        assert_eq!(size_of::<ObjPinAttr>(), 24);
        assert_eq!(offset_of!(ProgAttachAttr, expected_revision), 24);
        assert_eq!(offset_of!(ProgQueryAttr, prog_attach_flags), 32);
        assert_eq!(size_of::<ProgQueryAttr>(), 64);
        assert_eq!(offset_of!(TestRunAttr, flags), 64);
        assert_eq!(size_of::<TestRunAttr>(), 80);
        assert_eq!(size_of::<GetIdAttr>(), 16);
        assert_eq!(size_of::<BtfLoadAttr>(), 40);
        assert_eq!(offset_of!(LinkCreateAttr<LinkMprogExtra>, extra), 16);
        assert_eq!(size_of::<LinkCreateAttr<LinkMprogExtra>>(), 32);
        assert_eq!(offset_of!(LinkCreateAttr<LinkUprobeMultiExtra>, extra), 16);
        assert_eq!(offset_of!(LinkUprobeMultiExtra, cnt), 32);
        assert_eq!(offset_of!(LinkUprobeMultiExtra, pid), 40);
        assert_eq!(size_of::<RawTracepointAttr>(), 24);
    }
}
