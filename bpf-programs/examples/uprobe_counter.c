// Example (ebpf-core/examples/uprobe_counter.rs): counts calls of a user-space function, per
// process, through a uprobe.
#include "netstack_compat.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);   /* pid */
	__type(value, __u64); /* calls */
} calls SEC(".maps");

SEC("uprobe")
int uprobe_counter(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	__u64 one = 1, *count = bpf_map_lookup_elem(&calls, &pid);

	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&calls, &pid, &one, BPF_NOEXIST);
	return 0;
}

NETSTACK_LICENSE;
