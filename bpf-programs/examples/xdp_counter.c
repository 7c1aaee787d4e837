// Example (ebpf-core/examples/xdp_counter.rs): counts the packets an interface receives, per IP
// protocol, in a per-CPU array the example reads every second. Every packet passes.
#include "netstack_compat.h"
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 256); /* by IP protocol number; 255 counts what is not IPv4 */
	__type(key, __u32);
	__type(value, __u64);
} packets SEC(".maps");

SEC("xdp")
int xdp_counter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	__u32 key = 255;
	__u64 *count;

	if ((void *)(ip + 1) <= data_end && eth->h_proto == bpf_htons(ETH_P_IP))
		key = ip->protocol;
	count = bpf_map_lookup_elem(&packets, &key);
	if (count)
		*count += 1;
	return XDP_PASS;
}

NETSTACK_LICENSE;
