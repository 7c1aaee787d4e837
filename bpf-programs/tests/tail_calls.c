// Library fixture: a prog array filled from static values, constant-index tail calls (one a
// chain of two), a tail call whose index comes from the packet, and a program of another
// attach type that the kernel must refuse to put in the same prog array.
#include "netstack_compat.h"
#include "tail_call.h"

int stage_pass(struct xdp_md *ctx);
int stage_drop(struct xdp_md *ctx);
int stage_hop(struct xdp_md *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
	__array(values, int(void *));
} jumps SEC(".maps") = {
	.values = {
		[0] = (void *)&stage_pass,
		[1] = (void *)&stage_drop,
		[2] = (void *)&stage_hop,
	},
};

SEC("xdp")
int stage_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int stage_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

SEC("xdp")
int stage_hop(struct xdp_md *ctx)
{
	tail_call_static(ctx, &jumps, 1);
	return XDP_ABORTED;
}

/* Slot 0, constant: a direct jump. A failed tail call falls through to XDP_ABORTED. */
SEC("xdp")
int entry(struct xdp_md *ctx)
{
	tail_call_static(ctx, &jumps, 0);
	return XDP_ABORTED;
}

/* Slot 2 → slot 1: two constant hops. */
SEC("xdp")
int chain(struct xdp_md *ctx)
{
	tail_call_static(ctx, &jumps, 2);
	return XDP_ABORTED;
}

/* The slot is the packet's first byte: only an indirect jump can serve it. */
SEC("xdp")
int dispatch(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 *first = data;

	if ((void *)(first + 1) > data_end)
		return XDP_ABORTED;
	bpf_tail_call(ctx, &jumps, *first);
	return XDP_ABORTED;
}

/* Same program type, other attach type: not allowed into `jumps` (Linux 6.18+). */
SEC("xdp/devmap")
int devmap_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

NETSTACK_LICENSE;
