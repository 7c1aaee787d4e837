// The tunnel's datapath beside the endpoints' (which send their pods' packets into the tunnel
// themselves, lib/tunnel.h). The node's VXLAN device is in external (collect-metadata) mode: the
// kernel encapsulates and decapsulates, these programs say to which node and with which VNI.
// from_host (TCX egress of the node's host device, where the node routes the other nodes' pod
// CIDRs: what the host itself sends there, or forwards) sends a packet to the node its
// destination sits behind (the ipcache's tunnel endpoint), the VNI carrying its source's
// security identity. from_overlay (TCX ingress of the VXLAN device: what arrives
// decapsulated) accepts packets only from known nodes and hands the VNI's identity on in
// skb->mark, so the receiving endpoint enforces policy on the identity the sending node vouched
// for, not on the inner source address (lib/policy.h: source_identity).
#include "netstack_compat.h"
#include "abi.h"
#include "lib/proto.h"
#include "lib/ipcache.h"
#include "lib/counters.h"
#include "lib/tunnel.h"
#include "lib/clock.h"
#include "lib/lb_reply.h"

/* The VXLAN device. */
TEMPLATE_CONST(__u32, TUNNEL_IFINDEX, 0);

ABI_EXPORT(enum, direction);
ABI_EXPORT(enum, reserved_identity);
ABI_EXPORT(enum, drop_reason);
ABI_EXPORT(enum, identity_mark);
ABI_EXPORT(enum, verdict_index);

#define PACKET_HOST 0
#define PACKET_OTHERHOST 3

static __always_inline struct iphdr *ipv4_header(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	return ip;
}

/* The identity a packet leaves this node with: the one its endpoint marked it with (endpoint.c),
 * else by its source address a local pod's own, the host's as remote-node (what the host is to
 * the other nodes), anything else world. */
static __always_inline __u32 sending_identity(struct __sk_buff *skb, __be32 saddr)
{
	struct ipcache_value *source;

	if ((skb->mark & MARK_MAGIC_MASK) == MARK_MAGIC_IDENTITY)
		return skb->mark >> MARK_IDENTITY_SHIFT;
	source = ipcache_lookup_v4(saddr);

	if (!source || source->tunnel_endpoint)
		return IDENTITY_WORLD_IPV4;
	if (source->identity == IDENTITY_HOST)
		return IDENTITY_REMOTE_NODE;
	return source->identity;
}

SEC("tc")
int from_host(struct __sk_buff *skb)
{
	struct ipcache_value *destination;
	struct iphdr *ip = ipv4_header(skb);

	if (!ip)
		return count(skb, DIR_EGRESS, REASON_UNSUPPORTED_L3_PROTOCOL);
	destination = ipcache_lookup_v4(ip->daddr);
	if (!destination || !destination->tunnel_endpoint)
		return count(skb, DIR_EGRESS, REASON_NO_TUNNEL_ENDPOINT);
	return encapsulate(skb, DIR_EGRESS, destination->tunnel_endpoint, sending_identity(skb, ip->saddr),
			   TUNNEL_IFINDEX);
}

SEC("tc")
int from_overlay(struct __sk_buff *skb)
{
	struct bpf_tunnel_key key = {};
	struct ipcache_value *sender;
	struct packet packet;
	__u32 identity;
	int read;

	if (bpf_skb_get_tunnel_key(skb, &key, sizeof(key), 0) < 0)
		return count(skb, DIR_INGRESS, REASON_NO_TUNNEL_KEY);
	/* Only a node may speak for an identity: the outer source must be one. */
	sender = ipcache_lookup_v4(bpf_htonl(key.remote_ipv4));
	if (!sender || sender->identity != IDENTITY_REMOTE_NODE)
		return count(skb, DIR_INGRESS, REASON_UNKNOWN_SENDER);
	/* A node sends its host as remote-node: a host identity from the tunnel is forged. */
	identity = key.tunnel_id;
	if (identity == 0 || identity == IDENTITY_HOST || identity >= MARK_IDENTITY_LIMIT)
		return count(skb, DIR_INGRESS, REASON_INVALID_IDENTITY);
	skb->mark = identity << MARK_IDENTITY_SHIFT | MARK_MAGIC_IDENTITY;
	/* Traced, with the sender's identity, when a TCP connection starts or ends (there is no
	 * conntrack here to say more), or every packet with aggregation off. */
	read = read_packet(skb, &packet);
	if ((read && packet.protocol == IPPROTO_TCP && (packet.tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST))) ||
	    every_packet_reported()) {
		struct event_facts trace = {
			.kind = EVENT_TRACE,
			.subtype = TRACE_FROM_OVERLAY,
			.direction = DIR_INGRESS,
			.src_identity = identity,
		};

		emit(skb, &trace);
	}
	/* A DSR flow another node forwarded to one of our pods: its reply leaves from here with
	 * the frontend as source (nodeport.c's to_external on the external device). */
	if (read && packet.has_dsr) {
		expect_reply(&packet, packet.daddr, packet.dport, packet.dsr.address, packet.dsr.port, lb_now());
		if (strip_dsr_option(skb))
			return count(skb, DIR_INGRESS, REASON_WRITE_ERROR);
	}
	/* The inner frame is addressed to the sending node's device (the tunnel does no ARP):
	 * the packet is for this node to route. */
	if (skb->pkt_type == PACKET_OTHERHOST)
		bpf_skb_change_type(skb, PACKET_HOST);
	return count(skb, DIR_INGRESS, REASON_FORWARDED);
}

NETSTACK_LICENSE;
