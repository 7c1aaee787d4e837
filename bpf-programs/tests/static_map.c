// Library fixture (refused on purpose): a program using a `static` map, which relocates as
// "byte N of .maps" rather than through the map's own symbol. Which map is meant cannot be
// told for certain, so the loader refuses the object (as cilium/ebpf does).
#include "netstack_compat.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} visible_counts SEC(".maps");

static struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} hidden_counts SEC(".maps");

SEC("socket")
int count_hidden(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *hidden = bpf_map_lookup_elem(&hidden_counts, &key);
	__u64 *visible = bpf_map_lookup_elem(&visible_counts, &key);

	if (hidden)
		__sync_fetch_and_add(hidden, 1);
	if (visible)
		__sync_fetch_and_add(visible, 1);
	return 0;
}

NETSTACK_LICENSE;
