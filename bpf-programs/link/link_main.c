// Static-linking fixture, the main half: an XDP program that calls into link_lib.c (an extern
// function and an extern variable) and gives the strong definition of its weak verdict().
#include "netstack_compat.h"

extern int bump(__u32 slot);
extern __u64 lib_threshold;
static __u64 calls_seen;

static __noinline int plus_one(int x)
{
	return x + 2;
}

__noinline int verdict(void)
{
	return XDP_DROP;
}

SEC("xdp")
int linked_xdp(struct xdp_md *ctx)
{
	calls_seen = plus_one(calls_seen);
	if (lib_threshold > 100)
		return XDP_ABORTED;
	if (bump(0))
		return verdict();
	return XDP_PASS;
}

NETSTACK_LICENSE;
