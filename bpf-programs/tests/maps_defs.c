// Library fixture: map definitions of every shape libbpf reads from .maps — map in map with
// static values, a hash pinned by name with flags, a ring buffer, a perf event array sized by
// the loader, and sizes given as numbers instead of types.
#include "netstack_compat.h"

struct inner_array {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} inner_a SEC(".maps"), inner_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 2);
	__type(key, __u32);
	__array(values, struct inner_array);
} outer SEC(".maps") = {
	.values = { &inner_a, &inner_b },
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lib_fixture_pinned SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32);
	__uint(key_size, 8);
	__uint(value_size, 16);
} sized_by_number SEC(".maps");

/* Socket-local storage: the kernel takes its layout from BTF only. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} sk_counts SEC(".maps");

/* A value with a kernel-managed field: the kernel must see its BTF. */
struct locked_counter {
	struct bpf_spin_lock lock;
	__u64 count;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct locked_counter);
} locked SEC(".maps");

/* Returns inner_b's value 0 through the outer map, and touches every other map. */
SEC("cgroup_skb/egress")
int through_outer(struct __sk_buff *skb)
{
	__u32 one = 1, zero = 0;
	__u64 key8 = 0;
	__u32 *value;
	__u64 *count;
	void *inner = bpf_map_lookup_elem(&outer, &one);

	count = bpf_map_lookup_elem(&lib_fixture_pinned, &zero);
	if (count)
		__sync_fetch_and_add(count, 1);
	bpf_map_lookup_elem(&sized_by_number, &key8);
	struct locked_counter *counter = bpf_map_lookup_elem(&locked, &zero);
	if (counter) {
		bpf_spin_lock(&counter->lock);
		counter->count++;
		bpf_spin_unlock(&counter->lock);
	}
	bpf_ringbuf_output(&events, &zero, sizeof(zero), 0);
	bpf_perf_event_output(skb, &perf_events, BPF_F_CURRENT_CPU, &zero, sizeof(zero));
	if (!inner)
		return 1;
	value = bpf_map_lookup_elem(inner, &zero);
	return value ? 1 : 0;
}

NETSTACK_LICENSE;
