// Library fixture: two variants of one probe, as tools ship them to pick one at run time — an
// fentry on a function no kernel has, and a socket filter. The caller leaves the fentry variant
// out (libbpf's autoload = false); it is then neither resolved nor loaded.
#include "netstack_compat.h"

__u64 runs;

SEC("fentry/netstack_no_such_kernel_function")
int variant_fentry(void *ctx)
{
	__sync_fetch_and_add(&runs, 1);
	return 0;
}

SEC("socket")
int variant_socket(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&runs, 1);
	return 1;
}

NETSTACK_LICENSE;
