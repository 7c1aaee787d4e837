// Example (ebpf-core/examples/tc_classifier.rs): a TCX ingress classifier that drops UDP
// datagrams to one port, set at load (BLOCKED_PORT), and counts passed and dropped packets.
#include "netstack_compat.h"
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>

TEMPLATE_CONST(__u16, BLOCKED_PORT, 9);

/* [0] passed, [1] dropped */
__u64 verdicts[2];

SEC("tcx/ingress")
int tc_classifier(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);

	if ((void *)(udp + 1) <= data_end && eth->h_proto == bpf_htons(ETH_P_IP) && ip->ihl == 5 &&
	    ip->protocol == IPPROTO_UDP && udp->dest == bpf_htons(BLOCKED_PORT)) {
		__sync_fetch_and_add(&verdicts[1], 1);
		return TC_ACT_SHOT;
	}
	__sync_fetch_and_add(&verdicts[0], 1);
	return TC_ACT_OK;
}

NETSTACK_LICENSE;
