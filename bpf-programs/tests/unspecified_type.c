// Library fixture: a program in a section whose name says no program type (a custom loader's
// naming). It parses as a program of unspecified type; the caller sets the type before load,
// as cilium/ebpf lets it.
#include "netstack_compat.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} custom_runs SEC(".maps");

SEC("netstack_custom/count")
int count_runs(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *runs = bpf_map_lookup_elem(&custom_runs, &key);

	if (runs)
		__sync_fetch_and_add(runs, 1);
	return 7;
}

NETSTACK_LICENSE;
