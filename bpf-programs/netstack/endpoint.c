// The endpoint datapath: one object, loaded once per pod with its constants rewritten, attached
// to the host side of the pod's veth. TCX ingress (from_container) sees what the pod sends and
// enforces its egress policy; TCX egress (to_container) sees what reaches the pod and enforces
// its ingress policy.
//
// Each direction has two stages joined by a constant-index tail call: the entry stage handles
// ARP/ND and connection tracking (established flows and their replies stop there), the policy
// stage looks the peer up in the ipcache and decides a new flow by the endpoint's policy map.
#include "netstack_compat.h"
#include "tail_call.h"
#include "abi.h"
#include "lib/proto.h"
#include "lib/config.h"
/* The endpoint's flow events carry its id. */
#define EVENT_ENDPOINT ENDPOINT_ID
#include "lib/ipcache.h"
#include "lib/maps.h"
#include "lib/counters.h"
#include "lib/encrypt.h"
#include "lib/icmp.h"
#include "lib/parse.h"
#include "lib/conntrack.h"
#include "lib/flow_cache.h"
#include "lib/arp.h"
#include "lib/policy.h"
#include "lib/tunnel.h"

ABI_EXPORT(enum, direction);
ABI_EXPORT(enum, stage);
ABI_EXPORT(enum, reserved_identity);
ABI_EXPORT(enum, drop_reason);
ABI_EXPORT(enum, policy_prefix);
ABI_EXPORT(enum, ct_flags);
ABI_EXPORT(enum, flow_cache_size);
ABI_EXPORT(enum, verdict_index);
ABI_EXPORT(enum, identity_mark);
ABI_EXPORT(enum, event_kind);
ABI_EXPORT(enum, encrypt_kind);
ABI_EXPORT(enum, event_aggregation);
ABI_EXPORT(enum, sock_xlate_point);
ABI_EXPORT(struct, sock_trace);
ABI_EXPORT(enum, trace_point);
ABI_EXPORT(enum, policy_match);
ABI_EXPORT(enum, event_flags);
ABI_EXPORT(enum, event_capture);
ABI_EXPORT(struct, flow_event);

int egress_policy(struct __sk_buff *skb);
int ingress_policy(struct __sk_buff *skb);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(max_entries, STAGE_COUNT);
	__array(values, int(struct __sk_buff *));
} stages SEC(".maps") = {
	.values = {
		[STAGE_EGRESS_POLICY] = (void *)&egress_policy,
		[STAGE_INGRESS_POLICY] = (void *)&ingress_policy,
	},
};

static __always_inline int source_is_endpoint(const struct ct_key *t, __u8 family)
{
	if (family == 4) {
		__u32 src;
		__builtin_memcpy(&src, t->saddr + 12, 4);
		return src == ENDPOINT_IPV4;
	}
	for (int i = 0; i < 16; i++)
		if (t->saddr[i] != ENDPOINT_IPV6[i])
			return 0;
	return 1;
}

/* A packet the pod may send leaves with its identity in the mark: the endpoint vouches for it
 * (the source address was checked, or the flow cache matched a checked tuple), so a local
 * receiver (lib/policy.h) need not look the sender up. A packet for another node's pod goes
 * straight into the tunnel, its identity as VNI (the node's routes take the tunnel's packets
 * through WireGuard when it encrypts), or, natively routed, into the WireGuard device; in
 * strict mode one that would leave in clear is dropped. */
static __always_inline int sent(struct __sk_buff *skb, const struct egress_route *route)
{
	__u32 wireguard;

	if (route->encrypt == ENCRYPT_REQUIRED)
		return count(skb, DIR_EGRESS, REASON_UNENCRYPTED_TRAFFIC);
	if (ENDPOINT_IDENTITY < MARK_IDENTITY_LIMIT)
		skb->mark = ENDPOINT_IDENTITY << MARK_IDENTITY_SHIFT | MARK_MAGIC_IDENTITY;
	if (route->tunnel_endpoint && TUNNEL_IFINDEX)
		return encapsulate(skb, DIR_EGRESS, route->tunnel_endpoint, ENDPOINT_IDENTITY, TUNNEL_IFINDEX);
	if (route->encrypt == ENCRYPT_WIREGUARD) {
		wireguard = wireguard_ifindex();
		if (wireguard) {
			count(skb, DIR_EGRESS, REASON_FORWARDED);
			return bpf_redirect(wireguard, 0);
		}
	}
	return count(skb, DIR_EGRESS, REASON_FORWARDED);
}

/* How a packet to `daddr` leaves: the ipcache's tunnel endpoint (in tunnel mode) and
 * encryption. */
static __always_inline void egress_route_of(const __u8 *daddr, __u8 family, struct egress_route *route)
{
	struct ipcache_value *v = ipcache_lookup(daddr, family);

	if (!v)
		return;
	route->tunnel_endpoint = TUNNEL_IFINDEX ? v->tunnel_endpoint : 0;
	route->encrypt = v->encrypt_key;
}

SEC("tc")
int from_container(struct __sk_buff *skb)
{
	struct ct_key t;
	struct flow_slot *cached = flow_cache_pass(skb, DIR_EGRESS);
	__u8 family = 0, icmp_type = 0, tcp_flags = 0;
	struct egress_route route = {};
	int reason;

	if (cached) {
		route.tunnel_endpoint = cached->tunnel_endpoint;
		route.encrypt = cached->encrypt;
		return sent(skb, &route);
	}
	reason = parse(skb, &t, &family, &icmp_type, &tcp_flags);

	if (reason)
		return count(skb, DIR_EGRESS, reason);
	if (family == 0) {
		struct ethhdr *eth = (void *)(long)skb->data;
		if ((void *)(eth + 1) <= (void *)(long)skb->data_end && eth->h_proto == bpf_htons(ETH_P_ARP))
			return arp_respond(skb);
		return count(skb, DIR_EGRESS, REASON_UNSUPPORTED_L3_PROTOCOL);
	}
	/* Neighbour discovery comes from link-local addresses: before the source check. */
	if (is_nd(t.protocol, icmp_type))
		return TC_ACT_OK;
	if (!source_is_endpoint(&t, family))
		return count(skb, DIR_EGRESS, REASON_INVALID_SOURCE_IP);
	egress_route_of(t.daddr, family, &route);
	if (conntrack_pass(skb, &t, DIR_EGRESS, family, icmp_type, tcp_flags, &route))
		return sent(skb, &route);
	tail_call_static(skb, &stages, STAGE_EGRESS_POLICY);
	return count(skb, DIR_EGRESS, REASON_MISSED_TAIL_CALL);
}

SEC("tc")
int to_container(struct __sk_buff *skb)
{
	struct ct_key t;
	__u8 family = 0, icmp_type = 0, tcp_flags = 0;
	int reason;

	if (flow_cache_pass(skb, DIR_INGRESS))
		return count(skb, DIR_INGRESS, REASON_FORWARDED);
	reason = parse(skb, &t, &family, &icmp_type, &tcp_flags);

	if (reason)
		return count(skb, DIR_INGRESS, reason);
	if (family == 0)
		return TC_ACT_OK;
	if (is_nd(t.protocol, icmp_type))
		return TC_ACT_OK;
	struct egress_route none = {};

	if (conntrack_pass(skb, &t, DIR_INGRESS, family, icmp_type, tcp_flags, &none))
		return count(skb, DIR_INGRESS, REASON_FORWARDED);
	tail_call_static(skb, &stages, STAGE_INGRESS_POLICY);
	return count(skb, DIR_INGRESS, REASON_MISSED_TAIL_CALL);
}

static __always_inline int policy_stage(struct __sk_buff *skb, __u8 direction)
{
	struct ct_key t;
	struct ct_entry entry = {};
	__u8 family = 0, icmp_type = 0, tcp_flags = 0, match;
	int reason = parse(skb, &t, &family, &icmp_type, &tcp_flags);
	struct egress_route route = {};
	__u32 peer;

	if (reason)
		return count(skb, direction, reason);
	if (family == 0)
		return count(skb, direction, REASON_UNSUPPORTED_L3_PROTOCOL);
	peer = direction == DIR_EGRESS ? destination_identity(t.daddr, family, &route)
				       : source_identity(skb, t.saddr, family);
	reason = decide(peer, direction, &t, icmp_type, &match);
	struct event_facts facts = {
		.kind = EVENT_POLICY_VERDICT,
		.subtype = reason,
		.direction = direction,
		.flags = reason == REASON_FORWARDED ? 0 : EVENT_FLAG_DENIED,
		.match = match,
		.src_identity = direction == DIR_EGRESS ? ENDPOINT_IDENTITY : peer,
		.dst_identity = direction == DIR_EGRESS ? peer : ENDPOINT_IDENTITY,
	};
	emit(skb, &facts);
	if (reason != REASON_FORWARDED)
		return count(skb, direction, reason);
	/* The connection starts: traced once here, then at its first reply and its end. */
	facts.kind = EVENT_TRACE;
	facts.subtype = direction == DIR_INGRESS ? TRACE_TO_ENDPOINT : TRACE_FROM_ENDPOINT;
	facts.match = POLICY_MATCH_NONE;
	emit(skb, &facts);
	/* What may open a connection does; ICMP errors, replies and other messages do not. */
	if (ct_kind(t.protocol, icmp_type) & TRACK_FORWARD) {
		t.direction = direction;
		entry.created = bpf_ktime_get_ns();
		entry.last_seen = bpf_jiffies64();
		entry.packets = 1;
		entry.src_identity = direction == DIR_EGRESS ? ENDPOINT_IDENTITY : peer;
		entry.dst_identity = direction == DIR_EGRESS ? peer : ENDPOINT_IDENTITY;
		bpf_map_update_elem(&conntrack, &t, &entry, BPF_ANY);
	}
	return direction == DIR_EGRESS ? sent(skb, &route) : count(skb, direction, REASON_FORWARDED);
}

SEC("tc")
int egress_policy(struct __sk_buff *skb)
{
	return policy_stage(skb, DIR_EGRESS);
}

SEC("tc")
int ingress_policy(struct __sk_buff *skb)
{
	return policy_stage(skb, DIR_INGRESS);
}

NETSTACK_LICENSE;

