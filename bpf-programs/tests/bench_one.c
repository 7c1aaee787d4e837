// Library fixture (load benchmark): one XDP program, no maps or globals, so a raw bpf(2) load
// of its instructions is the floor a loader is measured against.
#include "netstack_compat.h"
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>

SEC("xdp")
int bench_one(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (ip->ttl <= 1)
		return XDP_DROP;
	if (ip->protocol == 17 && ip->ihl == 5)
		return XDP_PASS;
	return ip->tos & 1 ? XDP_DROP : XDP_PASS;
}

NETSTACK_LICENSE;
