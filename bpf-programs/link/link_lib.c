// Static-linking fixture, the library half: a map, a global variable and a global function
// the other half uses, a weak function it overrides, and a static function and variable of
// its own whose names the other half reuses.
#include "netstack_compat.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} link_counts SEC(".maps");

__u64 lib_threshold = 3;
static __u64 calls_seen;

static __noinline int plus_one(int x)
{
	return x + 1;
}

/* Counts a call in slot `slot`; true once the count passes lib_threshold. */
__noinline int bump(__u32 slot)
{
	__u64 *count = bpf_map_lookup_elem(&link_counts, &slot);

	calls_seen = plus_one(calls_seen);
	if (!count)
		return 0;
	*count += 1;
	return *count > lib_threshold;
}

/* Overridden by the strong definition of link_main.c. */
__weak __noinline int verdict(void)
{
	return XDP_ABORTED;
}

NETSTACK_LICENSE;
