// Library fixture: bpf-to-bpf calls (a static and a global function in .text), a callback
// passed by address (bpf_loop), two programs in one section, and a map shared by them.
#include "netstack_compat.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} calls SEC(".maps");

static __noinline __u64 add3(__u64 x)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&calls, &zero);

	if (n)
		__sync_fetch_and_add(n, 1);
	return x + 3;
}

__noinline int twice_plus3(int x)
{
	return add3(x) * 2;
}

static int sum_index(__u32 index, void *ctx)
{
	*(__u64 *)ctx += index;
	return 0;
}

SEC("tc")
int tc_twice(struct __sk_buff *skb)
{
	return twice_plus3(1); /* (1 + 3) * 2 = 8 */
}

SEC("tc")
int tc_loop(struct __sk_buff *skb)
{
	__u64 sum = 0;

	bpf_loop(4, sum_index, &sum, 0); /* 0 + 1 + 2 + 3 */
	return sum + add3(0);            /* 6 + 3 = 9 */
}

SEC("socket")
int socket_calls(struct __sk_buff *skb)
{
	return add3(skb->len);
}

NETSTACK_LICENSE;
