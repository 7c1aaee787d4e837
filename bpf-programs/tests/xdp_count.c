// Library fixture: counts packets per verdict and drops UDP to one templated port.
#include "netstack_compat.h"
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>

TEMPLATE_CONST(__u16, DROP_PORT, 53);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3); /* indexed by verdict: XDP_DROP (1) and XDP_PASS (2) */
	__type(key, __u32);
	__type(value, __u64);
} verdicts SEC(".maps");

static __always_inline void count(__u32 verdict)
{
	__u64 *n = bpf_map_lookup_elem(&verdicts, &verdict);
	if (n)
		__sync_fetch_and_add(n, 1);
}

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);

	if ((void *)(udp + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) ||
	    ip->protocol != IPPROTO_UDP || ip->ihl != 5 || udp->dest != bpf_htons(DROP_PORT)) {
		count(XDP_PASS);
		return XDP_PASS;
	}
	count(XDP_DROP);
	return XDP_DROP;
}

NETSTACK_LICENSE;
