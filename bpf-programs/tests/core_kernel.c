// Library fixture: CO-RE against the running kernel's types — field offsets, sizes and
// existence, a read through a relocated pointer, an enum value and a kernel type id. Results
// land in `results` for the test to compare with the kernel's BTF.
#include "netstack_compat.h"
#include <bpf/bpf_core_read.h>

/* Local views of kernel types: only the fields used, in any order; the loader finds where
 * the running kernel keeps them. */
struct __sk_buff___local {
	__u32 mark;
	__u32 len;
} __attribute__((preserve_access_index));

struct sk_buff {
	unsigned int len;
	__u32 mark;
	__u32 no_such_field_in_any_kernel;
} __attribute__((preserve_access_index));

__u64 results[6];

SEC("tc")
int core_kernel(struct __sk_buff *skb)
{
	struct __sk_buff___local *local = (void *)skb;

	results[0] = bpf_core_field_offset(struct sk_buff, mark);
	results[1] = bpf_core_field_size(struct sk_buff, len);
	results[2] = bpf_core_field_exists(struct sk_buff, no_such_field_in_any_kernel);
	results[3] = bpf_core_enum_value(enum bpf_map_type, BPF_MAP_TYPE_RINGBUF);
	results[4] = bpf_core_type_id_kernel(struct sk_buff);
	results[5] = local->len; /* the context field, at its relocated offset */
	return 0;
}

NETSTACK_LICENSE;
