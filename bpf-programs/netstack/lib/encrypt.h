/* Where a pod's packet leaves: through the tunnel, through the WireGuard device, or dropped
 * in strict mode (lib/ipcache.h's encrypt_key, the node's WireGuard device in node_config). */
#ifndef NETSTACK_LIB_ENCRYPT_H
#define NETSTACK_LIB_ENCRYPT_H

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct node_config);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} node_config SEC(".maps");

/* What the ipcache says of a destination, for sending to it. */
struct egress_route {
	__be32 tunnel_endpoint; /* its node's underlay address in tunnel mode, else 0 */
	__u8 encrypt; /* enum encrypt_kind */
};

static __always_inline __u32 wireguard_ifindex(void)
{
	__u32 zero = 0;
	struct node_config *config = bpf_map_lookup_elem(&node_config, &zero);

	return config ? config->wireguard_ifindex : 0;
}

#endif
