// Library fixture: a map defined the pre-BTF way, a struct bpf_map_def in section "maps"
// (libbpf 1.0 dropped these; older objects still carry them).
#include "netstack_compat.h"

struct legacy_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct legacy_map_def legacy_counts SEC("maps") = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 4,
};

SEC("socket")
int legacy_count(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&legacy_counts, &key);

	if (value)
		__sync_fetch_and_add(value, 1);
	return 0;
}

NETSTACK_LICENSE;
