// Library fixture: legacy map definitions larger than libbpf's struct bpf_map_def — samples/bpf's
// layout (inner_map_idx, numa_node) plus a word no loader knows, left zero. The loader reads the
// definition size from the section (size over map symbols) and refuses non-zero unknown bytes.
#include "netstack_compat.h"

struct samples_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
	unsigned int inner_map_idx;
	unsigned int numa_node;
	unsigned int reserved;
};

struct samples_map_def sized_hash SEC("maps") = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 16,
};

struct samples_map_def sized_array SEC("maps") = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u32),
	.max_entries = 2,
};

SEC("socket")
int count_in_both(struct __sk_buff *skb)
{
	__u32 key = 1;
	__u64 one = 1, *count = bpf_map_lookup_elem(&sized_hash, &key);
	__u32 *slot = bpf_map_lookup_elem(&sized_array, &key);

	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&sized_hash, &key, &one, BPF_ANY);
	if (slot)
		__sync_fetch_and_add(slot, 1);
	return 0;
}

NETSTACK_LICENSE;
