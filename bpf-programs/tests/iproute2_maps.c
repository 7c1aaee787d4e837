// Library fixture: maps in iproute2's struct bpf_elf_map layout (include/bpf_elf.h), as tc
// objects define them — one pinned PIN_GLOBAL_NS, which the loader pins by name under the pin
// directory the caller gives, one not pinned.
#include "netstack_compat.h"

#define PIN_NONE 0
#define PIN_GLOBAL_NS 2

struct bpf_elf_map {
	__u32 type;
	__u32 size_key;
	__u32 size_value;
	__u32 max_elem;
	__u32 flags;
	__u32 id;
	__u32 pinning;
	__u32 inner_id;
	__u32 inner_idx;
};

struct bpf_elf_map SEC("maps") tc_shared_counts = {
	.type = BPF_MAP_TYPE_ARRAY,
	.size_key = sizeof(__u32),
	.size_value = sizeof(__u64),
	.max_elem = 4,
	.id = 1,
	.pinning = PIN_GLOBAL_NS,
};

struct bpf_elf_map SEC("maps") tc_private_counts = {
	.type = BPF_MAP_TYPE_ARRAY,
	.size_key = sizeof(__u32),
	.size_value = sizeof(__u64),
	.max_elem = 4,
	.pinning = PIN_NONE,
};

SEC("classifier")
int tc_count(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *shared = bpf_map_lookup_elem(&tc_shared_counts, &key);
	__u64 *private = bpf_map_lookup_elem(&tc_private_counts, &key);

	if (shared)
		__sync_fetch_and_add(shared, 1);
	if (private)
		__sync_fetch_and_add(private, 1);
	return 0;
}

NETSTACK_LICENSE;
