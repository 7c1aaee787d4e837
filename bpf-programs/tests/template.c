// Library fixture: compile once, configure at load. Constants in .rodata select the verdict
// (the verifier sees their frozen values and prunes the other branches); .data and .bss
// variables are read and written by user space through mmap while the program runs.
#include "netstack_compat.h"

TEMPLATE_CONST(__u32, MODE, 0);
TEMPLATE_CONST(__u8, BIAS_ENABLED, 1);

__u32 bias = 5;
__u64 packets;
__u64 last_len;

SEC("xdp")
int templated(struct xdp_md *ctx)
{
	__sync_fetch_and_add(&packets, 1);
	last_len = ctx->data_end - ctx->data;
	if (MODE == 0)
		return XDP_PASS;
	if (MODE == 1)
		return XDP_DROP;
	return XDP_TX;
}

SEC("xdp")
int biased(struct xdp_md *ctx)
{
	if (BIAS_ENABLED)
		return bias;
	return 0;
}

NETSTACK_LICENSE;
