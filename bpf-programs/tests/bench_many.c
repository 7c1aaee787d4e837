// Library fixture (load benchmark): seven programs of several types, no maps or globals, in
// sections every libbpf since 1.0 knows (so bpftool's older libbpf can load it too).
#include "netstack_compat.h"
#include <linux/if_ether.h>
#include <bpf/bpf_endian.h>

static __always_inline int proto_is_ip(void *data, void *data_end)
{
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return 0;
	return eth->h_proto == bpf_htons(ETH_P_IP);
}

SEC("xdp")
int many_xdp(struct xdp_md *ctx)
{
	return proto_is_ip((void *)(long)ctx->data, (void *)(long)ctx->data_end) ? XDP_PASS : XDP_DROP;
}

SEC("classifier")
int many_tc(struct __sk_buff *skb)
{
	return proto_is_ip((void *)(long)skb->data, (void *)(long)skb->data_end) ? 0 : 2;
}

SEC("classifier")
int many_classifier(struct __sk_buff *skb)
{
	return skb->len > 1500 ? 2 : -1;
}

SEC("socket")
int many_socket_mark(struct __sk_buff *skb)
{
	return skb->mark & 1 ? 0 : skb->len;
}

SEC("socket")
int many_socket(struct __sk_buff *skb)
{
	return skb->len;
}

SEC("cgroup_skb/ingress")
int many_cg_in(struct __sk_buff *skb)
{
	return skb->len < 20000;
}

SEC("cgroup_skb/egress")
int many_cg_out(struct __sk_buff *skb)
{
	return skb->protocol != 0;
}

NETSTACK_LICENSE;
