// Library fixture: one CO-RE relocation of every kind. Kernel types are resolved against the
// running kernel's BTF; the probe types against hand-built targets where fields move, grow,
// vanish or are renamed. Each result lands in its own slot of `results`.
#include "netstack_compat.h"
#include <bpf/bpf_core_read.h>

struct sk_buff {
	unsigned int len;
	__u32 mark;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	int not_in_any_kernel;
} __attribute__((preserve_access_index));

struct xdp_md___local {
	__u32 data;
	__u32 data_end;
} __attribute__((preserve_access_index));

struct probe_bits {
	unsigned int low : 3;
	int mid : 9;
	unsigned int high : 20;
} __attribute__((preserve_access_index));

struct probe {
	int a;
	long long b;
	struct probe_bits bits;
	int arr[4];
	union {
		int u1;
		long u2;
	};
} __attribute__((preserve_access_index));

struct probe___old {
	int a;
	int legacy;
} __attribute__((preserve_access_index));

enum probe_mode { PROBE_OFF = 0, PROBE_ON = 7, PROBE_GONE = 9 };

__u64 results[24];

SEC("raw_tracepoint/sys_enter")
int core_relocs(void *ctx)
{
	struct probe *pr = ctx;

	results[0] = bpf_core_field_offset(struct sk_buff, mark);
	results[1] = bpf_core_field_size(struct sk_buff, len);
	results[2] = bpf_core_field_exists(struct task_struct, tgid);
	results[3] = bpf_core_field_exists(struct task_struct, not_in_any_kernel);
	results[4] = bpf_core_type_exists(struct xdp_md___local);
	results[5] = bpf_core_type_size(struct xdp_md___local);
	results[6] = bpf_core_type_matches(struct xdp_md___local);
	results[7] = bpf_core_enum_value_exists(enum bpf_map_type, BPF_MAP_TYPE_RINGBUF);
	results[8] = bpf_core_enum_value(enum bpf_map_type, BPF_MAP_TYPE_RINGBUF);
	results[9] = bpf_core_type_id_kernel(struct sk_buff);
	results[10] = bpf_core_type_id_local(struct probe);
	results[11] = bpf_core_field_offset(struct probe, b);
	results[12] = bpf_core_field_size(struct probe, b);
	results[13] = BPF_CORE_READ_BITFIELD(&pr->bits, mid);
	results[14] = bpf_core_field_offset(struct probe, arr[2]);
	results[15] = bpf_core_field_exists(struct probe___old, legacy);
	results[16] = bpf_core_field_offset(struct probe, u2);
	results[17] = bpf_core_enum_value(enum probe_mode, PROBE_ON);
	results[18] = bpf_core_enum_value_exists(enum probe_mode, PROBE_GONE);
	results[19] = bpf_core_type_matches(struct probe);
	return 0;
}

NETSTACK_LICENSE;
