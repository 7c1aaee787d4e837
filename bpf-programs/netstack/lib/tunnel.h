/* Sending into the tunnel: the tunnel key (the remote node, the source's identity as VNI) set on
 * the packet, which is redirected to the node's VXLAN device; the kernel encapsulates. */
#ifndef NETSTACK_LIB_TUNNEL_H
#define NETSTACK_LIB_TUNNEL_H

/* Counts the packet forwarded in `direction` and sends it to `tunnel_endpoint` (network order)
 * through the device `ifindex` with `identity` as VNI. */
static __always_inline int encapsulate(struct __sk_buff *skb, __u8 direction, __be32 tunnel_endpoint, __u32 identity,
				       __u32 ifindex)
{
	struct bpf_tunnel_key key = {};

	key.remote_ipv4 = bpf_ntohl(tunnel_endpoint);
	key.tunnel_id = identity;
	key.tunnel_ttl = 64;
	if (bpf_skb_set_tunnel_key(skb, &key, sizeof(key), BPF_F_ZERO_CSUM_TX) < 0)
		return count(skb, direction, REASON_WRITE_ERROR);
	count(skb, direction, REASON_FORWARDED);
	return bpf_redirect(ifindex, 0);
}

#endif
