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
#include "endpoint.h"

TEMPLATE_CONST(__u32, ENDPOINT_ID, 0);
TEMPLATE_CONST(__u32, ENDPOINT_IDENTITY, 0);
/* Network byte order, as on the wire. */
TEMPLATE_CONST(__u32, ENDPOINT_IPV4, 0);
TEMPLATE_CONST(__u8, ENDPOINT_IPV6[16], {});
/* The host-side veth: where ARP replies are sent back out, and whose MAC they carry. */
TEMPLATE_CONST(__u32, HOST_IFINDEX, 0);
TEMPLATE_CONST(__u8, HOST_MAC[6], {});

/* Cached flows are confirmed by conntrack every quarter second; a kernel without a readable
 * configuration (CONFIG_HZ 0) confirms every packet. */
extern unsigned int CONFIG_HZ __kconfig __weak;
#define FLOW_REFRESH (CONFIG_HZ / 4)

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_value);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ipcache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} conntrack SEC(".maps");

/* Bumped by the agent whenever it deletes conntrack entries: cached flows confirmed before
 * then go back to conntrack. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ct_epoch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct flow_slot);
	__uint(max_entries, FLOW_CACHE_SLOTS);
} flow_cache SEC(".maps");

/* One per endpoint: the agent pins it under the endpoint's directory. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct policy_key);
	__type(value, struct policy_entry);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} policy SEC(".maps");

/* Packets and bytes per (direction, reason): index = direction * 256 + reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct verdict_count);
	__uint(max_entries, 512);
} verdicts SEC(".maps");

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

static __always_inline int count(struct __sk_buff *skb, __u8 direction, __u8 reason)
{
	__u32 index = (__u32)direction * 256 + reason;
	struct verdict_count *c = bpf_map_lookup_elem(&verdicts, &index);

	if (c) {
		c->packets++;
		c->bytes += skb->len;
	}
	return reason == REASON_FORWARDED ? TC_ACT_OK : TC_ACT_SHOT;
}

static __always_inline void set_v4(__u8 *addr, __u32 v4)
{
	__builtin_memset(addr, 0, 10);
	addr[10] = 0xff;
	addr[11] = 0xff;
	__builtin_memcpy(addr + 12, &v4, 4);
}

/* How conntrack treats a packet (bits): TRACK_FORWARD — it may run the way a connection's first
 * packet did, and opens a connection when policy allows it; TRACK_REPLY — it may answer a
 * connection; TRACK_ERROR — an ICMP error, passed only when it quotes a tracked connection. TCP,
 * UDP and the rest are FORWARD|REPLY; an ICMP query request only FORWARD, its reply only
 * REPLY (so a request can never pass as a reply); other ICMP messages are decided by policy,
 * packet by packet. */
#define TRACK_FORWARD 1
#define TRACK_REPLY 2
#define TRACK_ERROR 4

/* The request type of an ICMP query message (its own, or the one it answers), or 0. */
static __always_inline __u8 icmp_query_of(__u8 proto, __u8 type, int *reply)
{
	*reply = 0;
	if (proto == IPPROTO_ICMP) {
		switch (type) {
		case ICMP_ECHO:
		case ICMP_TIMESTAMP:
		case ICMP_INFO_REQUEST:
		case ICMP_ADDRESS:
		case ICMP_EXT_ECHO:
			return type;
		case ICMP_ECHOREPLY:
			*reply = 1;
			return ICMP_ECHO;
		case ICMP_TIMESTAMPREPLY:
		case ICMP_INFO_REPLY:
		case ICMP_ADDRESSREPLY:
		case ICMP_EXT_ECHOREPLY:
			*reply = 1;
			return type - 1;
		}
		return 0;
	}
	switch (type) {
	case ICMPV6_ECHO_REQUEST:
	case ICMPV6_EXT_ECHO_REQUEST:
		return type;
	case ICMPV6_ECHO_REPLY:
	case ICMPV6_EXT_ECHO_REPLY:
		*reply = 1;
		return type - 1;
	}
	return 0;
}

static __always_inline int is_icmp_error(__u8 proto, __u8 type)
{
	if (proto == IPPROTO_ICMP)
		return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED || type == ICMP_PARAMETERPROB;
	if (proto == IPPROTO_ICMPV6)
		return type >= ICMPV6_DEST_UNREACH && type <= ICMPV6_PARAMPROB;
	return 0;
}

/* The TRACK_* bits of a packet of protocol `proto` (ICMP type `type`). */
static __always_inline int ct_kind(__u8 proto, __u8 type)
{
	int reply;

	if (proto != IPPROTO_ICMP && proto != IPPROTO_ICMPV6)
		return TRACK_FORWARD | TRACK_REPLY;
	if (is_icmp_error(proto, type))
		return TRACK_ERROR;
	if (!icmp_query_of(proto, type, &reply))
		return 0;
	return reply ? TRACK_REPLY : TRACK_FORWARD;
}

/* An ICMP query and its reply share the request's type and the identifier (both ports). */
static __always_inline void icmp_tuple(struct ct_key *t, __u8 type, __be16 id)
{
	int reply;

	t->icmp_query = icmp_query_of(t->protocol, type, &reply);
	if (t->icmp_query) {
		t->sport = id;
		t->dport = id;
	}
}

/* Parses the packet into a conntrack tuple (addresses as IPv6, IPv4 mapped). Returns 0, or a
 * drop reason; *family is 0 for packets that are neither IPv4 nor IPv6 (ARP and the like). */
static __always_inline int parse(struct __sk_buff *skb, struct ct_key *t, __u8 *family, __u8 *icmp_type,
				 __u8 *tcp_flags)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u8 proto;
	void *l4;

	if ((void *)(eth + 1) > end)
		return REASON_INVALID_PACKET;
	__builtin_memset(t, 0, sizeof(*t));
	t->endpoint_id = ENDPOINT_ID;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > end || ip->ihl < 5)
			return REASON_INVALID_PACKET;
		set_v4(t->saddr, ip->saddr);
		set_v4(t->daddr, ip->daddr);
		proto = ip->protocol;
		/* Later fragments carry no L4 header: they cannot be matched by port. */
		if (ip->frag_off & bpf_htons(0x1fff))
			return REASON_FRAGMENT;
		l4 = (void *)ip + ip->ihl * 4;
		*family = 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end)
			return REASON_INVALID_PACKET;
		__builtin_memcpy(t->saddr, &ip6->saddr, 16);
		__builtin_memcpy(t->daddr, &ip6->daddr, 16);
		proto = ip6->nexthdr;
		l4 = ip6 + 1;
		*family = 6;
	} else {
		*family = 0;
		return 0;
	}
	t->protocol = proto;
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP) {
		/* TCP, UDP and SCTP all start with the two ports. */
		__be16 *ports = l4;

		if ((void *)(ports + 2) > end)
			return REASON_INVALID_PACKET;
		t->sport = ports[0];
		t->dport = ports[1];
		if (proto == IPPROTO_TCP && l4 + TCP_FLAGS_OFFSET + 1 <= end)
			*tcp_flags = *(__u8 *)(l4 + TCP_FLAGS_OFFSET);
	} else if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
		struct icmp_header *icmp = l4;

		if ((void *)(icmp + 1) > end)
			return REASON_INVALID_PACKET;
		*icmp_type = icmp->type;
		icmp_tuple(t, icmp->type, icmp->id);
	}
	return 0;
}

static __always_inline void reverse(struct ct_key *rev, const struct ct_key *t)
{
	*rev = *t;
	__builtin_memcpy(rev->saddr, t->daddr, 16);
	__builtin_memcpy(rev->daddr, t->saddr, 16);
	rev->sport = t->dport;
	rev->dport = t->sport;
}

/* ICMPv6 neighbour discovery and router messages are link plumbing, not flows. */
static __always_inline int is_nd(__u8 proto, __u8 type)
{
	return proto == IPPROTO_ICMPV6 && type >= 133 && type <= 137;
}

static __always_inline int has_ports(__u8 protocol)
{
	return protocol == IPPROTO_TCP || protocol == IPPROTO_UDP || protocol == IPPROTO_SCTP;
}

/* An ICMP error about a connection we track ("related"): it quotes the start of a packet that
 * went the other way, whose tuple must be one conntrack holds — run the connection's way or as
 * its reply. Quoted IPv4 headers with options and IPv6 extension headers are not followed. */
static __always_inline int related_to_tracked(struct __sk_buff *skb, const struct ct_key *outer, __u8 family,
					      __u8 direction)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ct_key inner = {}, opened;
	__u8 *l4;
	int kind;

	inner.endpoint_id = outer->endpoint_id;
	if (family == 4) {
		struct iphdr *ip = data + sizeof(struct ethhdr);
		if ((void *)(ip + 1) > end)
			return 0;
		struct iphdr *in = (void *)ip + ip->ihl * 4 + sizeof(struct icmp_header);
		if ((void *)(in + 1) > end || in->ihl != 5)
			return 0;
		set_v4(inner.saddr, in->saddr);
		set_v4(inner.daddr, in->daddr);
		inner.protocol = in->protocol;
		l4 = (void *)(in + 1);
	} else {
		struct ipv6hdr *in = data + sizeof(struct ethhdr) + sizeof(struct ipv6hdr) + sizeof(struct icmp_header);
		if ((void *)(in + 1) > end)
			return 0;
		__builtin_memcpy(inner.saddr, &in->saddr, 16);
		__builtin_memcpy(inner.daddr, &in->daddr, 16);
		inner.protocol = in->nexthdr;
		l4 = (void *)(in + 1);
	}
	if (has_ports(inner.protocol)) {
		__be16 *ports = (void *)l4;
		if ((void *)(ports + 2) > end)
			return 0;
		inner.sport = ports[0];
		inner.dport = ports[1];
		kind = TRACK_FORWARD | TRACK_REPLY;
	} else if (inner.protocol == IPPROTO_ICMP || inner.protocol == IPPROTO_ICMPV6) {
		struct icmp_header *icmp = (void *)l4;
		if ((void *)(icmp + 1) > end)
			return 0;
		icmp_tuple(&inner, icmp->type, icmp->id);
		kind = ct_kind(inner.protocol, icmp->type) & (TRACK_FORWARD | TRACK_REPLY);
	} else {
		return 0;
	}
	/* The quoted packet ran the other way from the error. */
	inner.direction = direction == DIR_EGRESS ? DIR_INGRESS : DIR_EGRESS;
	if ((kind & TRACK_FORWARD) && bpf_map_lookup_elem(&conntrack, &inner))
		return 1;
	reverse(&opened, &inner);
	opened.direction = direction;
	return (kind & TRACK_REPLY) && bpf_map_lookup_elem(&conntrack, &opened) != 0;
}

enum ct_state {
	CT_NEW,
	CT_ESTABLISHED, /* the packet runs the way the connection's first packet did */
	CT_REPLY,
	CT_RELATED, /* an ICMP error about a tracked connection */
};

/* TCP: a FIN or RST marks the connection closing (garbage collection then gives it seconds, not
 * hours); a new SYN on a closing connection's tuple opens a new one, decided by policy again. */
static __always_inline int tcp_ends(const struct ct_entry *e, const struct ct_key *t, __u8 tcp_flags)
{
	return t->protocol == IPPROTO_TCP && (e->flags & CT_CLOSING) && (tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN;
}

/* Returns 1 when the connection is closing (after noting this packet). */
static __always_inline int tcp_note(struct ct_entry *e, const struct ct_key *t, __u8 tcp_flags)
{
	if (t->protocol == IPPROTO_TCP && (tcp_flags & (TCP_FIN | TCP_RST)))
		e->flags |= CT_CLOSING;
	return (e->flags & CT_CLOSING) != 0;
}

/* Finds the connection `t` belongs to and adds `packets` to its count in that direction;
 * *closing tells whether it is a closing TCP connection. */
static __always_inline int conntrack_lookup(struct __sk_buff *skb, struct ct_key *t, __u8 direction, __u8 family,
					    __u8 icmp_type, __u8 tcp_flags, __u64 packets, int *closing)
{
	int kind = ct_kind(t->protocol, icmp_type);
	struct ct_key rev;
	struct ct_entry *e;

	t->direction = direction;
	e = kind & TRACK_FORWARD ? bpf_map_lookup_elem(&conntrack, t) : 0;
	if (e) {
		if (tcp_ends(e, t, tcp_flags))
			return CT_NEW;
		e->last_seen = bpf_jiffies64();
		e->packets += packets;
		*closing = tcp_note(e, t, tcp_flags);
		return CT_ESTABLISHED;
	}
	reverse(&rev, t);
	rev.direction = direction == DIR_EGRESS ? DIR_INGRESS : DIR_EGRESS;
	e = kind & TRACK_REPLY ? bpf_map_lookup_elem(&conntrack, &rev) : 0;
	if (e) {
		e->last_seen = bpf_jiffies64();
		e->reply_packets += packets;
		*closing = tcp_note(e, t, tcp_flags);
		return CT_REPLY;
	}
	if ((kind & TRACK_ERROR) && related_to_tracked(skb, t, family, direction))
		return CT_RELATED;
	return CT_NEW;
}

static __always_inline __u32 conntrack_epoch(void)
{
	__u32 zero = 0;
	__u32 *epoch = bpf_map_lookup_elem(&ct_epoch, &zero);

	return epoch ? *epoch : 0;
}

static __always_inline __be32 v4_of(const __u8 *addr)
{
	__be32 v4;

	__builtin_memcpy(&v4, addr + 12, 4);
	return v4;
}

/* The slot of an IPv4 tuple (ports as loaded, network order). */
static __always_inline struct flow_slot *flow_slot_at(__be32 saddr, __be32 daddr, __be16 sport, __be16 dport,
						      __u8 protocol)
{
	__u32 ports = ((__u32)sport << 16) | dport;
	__u32 index = ((saddr ^ daddr ^ ports ^ protocol) * 0x9e3779b1u) >> (32 - FLOW_CACHE_BITS);

	return bpf_map_lookup_elem(&flow_cache, &index);
}

/* Whether `slot` holds the IPv4 tuple, as seen in `direction`. */
static __always_inline int flow_slot_holds(const struct flow_slot *slot, __be32 saddr, __be32 daddr, __be16 sport,
					   __be16 dport, __u8 protocol, __u8 direction)
{
	return slot->valid && slot->saddr == saddr && slot->daddr == daddr && slot->sport == sport &&
	       slot->dport == dport && slot->protocol == protocol && slot->direction == direction;
}

/* The fast path, before any other parsing: an IPv4 TCP/UDP/SCTP packet of a flow this CPU's
 * cache holds, fresh (confirmed by conntrack within FLOW_REFRESH and since its last flush),
 * passes. The source check is implied: from_container fills slots only after it. */
static __always_inline int flow_cache_pass(struct __sk_buff *skb, __u8 direction)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct flow_slot *slot;
	__be16 *ports;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl < 5 ||
	    (ip->frag_off & bpf_htons(0x1fff)) || !has_ports(ip->protocol))
		return 0;
	ports = (void *)ip + ip->ihl * 4;
	if ((void *)(ports + 2) > end)
		return 0;
	/* A FIN or RST goes to conntrack, which notes the connection closing (and keeps it out of
	 * the cache from then on). */
	if (ip->protocol == IPPROTO_TCP &&
	    ((void *)ports + TCP_FLAGS_OFFSET + 1 > end || (*((__u8 *)ports + TCP_FLAGS_OFFSET) & (TCP_FIN | TCP_RST))))
		return 0;
	slot = flow_slot_at(ip->saddr, ip->daddr, ports[0], ports[1], ip->protocol);
	if (!slot || !flow_slot_holds(slot, ip->saddr, ip->daddr, ports[0], ports[1], ip->protocol, direction))
		return 0;
	if (slot->epoch != conntrack_epoch() || bpf_jiffies64() - slot->refreshed >= FLOW_REFRESH)
		return 0;
	slot->pending++;
	return 1;
}

/* Adds the packets a slot passed to its connection's entry, before the slot goes to another
 * flow; the entry's last_seen already stands within FLOW_REFRESH of them. */
static __always_inline void flow_slot_flush(const struct flow_slot *slot)
{
	struct ct_key seen = {
		.endpoint_id = ENDPOINT_ID,
		.protocol = slot->protocol,
		.direction = slot->direction,
		.sport = slot->sport,
		.dport = slot->dport,
	};
	struct ct_key key;
	struct ct_entry *e;

	set_v4(seen.saddr, slot->saddr);
	set_v4(seen.daddr, slot->daddr);
	/* A reply's entry is keyed by the connection's first packet: the other way round. */
	key = seen;
	if (slot->reply) {
		reverse(&key, &seen);
		key.direction = slot->direction == DIR_EGRESS ? DIR_INGRESS : DIR_EGRESS;
	}
	e = bpf_map_lookup_elem(&conntrack, &key);
	if (!e)
		return;
	if (slot->reply)
		e->reply_packets += slot->pending;
	else
		e->packets += slot->pending;
}

/* Established flows, their replies and related ICMP errors pass without a policy lookup.
 * Returns 1 when the packet belongs to a tracked connection. Past flow_cache_pass: an IPv4
 * TCP/UDP/SCTP flow conntrack confirms takes this CPU's cache slot, carrying in the packets
 * the slot passed for it (or flushing another flow's first). */
static __always_inline int conntrack_pass(struct __sk_buff *skb, struct ct_key *t, __u8 direction, __u8 family,
					  __u8 icmp_type, __u8 tcp_flags)
{
	struct flow_slot *slot = 0;
	__u64 packets = 1;
	int state, closing = 0;

	if (family == 4 && has_ports(t->protocol)) {
		__be32 saddr = v4_of(t->saddr), daddr = v4_of(t->daddr);

		slot = flow_slot_at(saddr, daddr, t->sport, t->dport, t->protocol);
		if (slot) {
			if (flow_slot_holds(slot, saddr, daddr, t->sport, t->dport, t->protocol, direction))
				packets += slot->pending;
			else if (slot->valid && slot->pending)
				flow_slot_flush(slot);
			slot->valid = 0;
			slot->pending = 0;
		}
	}
	state = conntrack_lookup(skb, t, direction, family, icmp_type, tcp_flags, packets, &closing);
	if (state == CT_NEW)
		return 0;
	if (slot && !closing) {
		slot->saddr = v4_of(t->saddr);
		slot->daddr = v4_of(t->daddr);
		slot->sport = t->sport;
		slot->dport = t->dport;
		slot->protocol = t->protocol;
		slot->direction = direction;
		slot->reply = state == CT_REPLY;
		slot->epoch = conntrack_epoch();
		slot->refreshed = bpf_jiffies64();
		slot->valid = 1;
	}
	return 1;
}

/* Answers ARP requests for any address but the pod's own with the host veth's MAC, so the pod
 * sends everything to the host, which routes it. */
static __always_inline int arp_respond(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct arp_eth *arp = (void *)(eth + 1);
	__u8 mac[6];
	__u32 ip;

	if ((void *)(arp + 1) > end)
		return TC_ACT_OK;
	if (arp->hdr.ar_op != bpf_htons(ARPOP_REQUEST) || arp->hdr.ar_hrd != bpf_htons(ARPHRD_ETHER) ||
	    arp->hdr.ar_pro != bpf_htons(ETH_P_IP) || arp->target_ip == ENDPOINT_IPV4)
		return TC_ACT_OK;
	for (int i = 0; i < 6; i++)
		mac[i] = HOST_MAC[i];
	__builtin_memcpy(eth->h_dest, eth->h_source, 6);
	__builtin_memcpy(eth->h_source, mac, 6);
	arp->hdr.ar_op = bpf_htons(ARPOP_REPLY);
	ip = arp->target_ip;
	__builtin_memcpy(arp->target_mac, arp->sender_mac, 6);
	arp->target_ip = arp->sender_ip;
	__builtin_memcpy(arp->sender_mac, mac, 6);
	arp->sender_ip = ip;
	return bpf_redirect(HOST_IFINDEX, 0);
}

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

SEC("tc")
int from_container(struct __sk_buff *skb)
{
	struct ct_key t;
	__u8 family = 0, icmp_type = 0, tcp_flags = 0;
	int reason;

	if (flow_cache_pass(skb, DIR_EGRESS))
		return count(skb, DIR_EGRESS, REASON_FORWARDED);
	reason = parse(skb, &t, &family, &icmp_type, &tcp_flags);

	if (reason)
		return count(skb, DIR_EGRESS, reason);
	if (family == 0) {
		struct ethhdr *eth = (void *)(long)skb->data;
		if ((void *)(eth + 1) <= (void *)(long)skb->data_end && eth->h_proto == bpf_htons(ETH_P_ARP))
			return arp_respond(skb);
		return count(skb, DIR_EGRESS, REASON_UNSUPPORTED_L3);
	}
	/* Neighbour discovery comes from link-local addresses: before the source check. */
	if (is_nd(t.protocol, icmp_type))
		return TC_ACT_OK;
	if (!source_is_endpoint(&t, family))
		return count(skb, DIR_EGRESS, REASON_INVALID_SOURCE);
	if (conntrack_pass(skb, &t, DIR_EGRESS, family, icmp_type, tcp_flags))
		return count(skb, DIR_EGRESS, REASON_FORWARDED);
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
	if (conntrack_pass(skb, &t, DIR_INGRESS, family, icmp_type, tcp_flags))
		return count(skb, DIR_INGRESS, REASON_FORWARDED);
	tail_call_static(skb, &stages, STAGE_INGRESS_POLICY);
	return count(skb, DIR_INGRESS, REASON_MISSED_TAIL_CALL);
}

static __always_inline __u32 identity_of(const __u8 *addr, __u8 family)
{
	struct ipcache_key key = {};
	struct ipcache_value *v;

	key.prefixlen = 32 + 128;
	key.family = family;
	__builtin_memcpy(key.addr, addr, 16);
	v = bpf_map_lookup_elem(&ipcache, &key);
	if (v)
		return v->identity;
	return family == 4 ? IDENTITY_WORLD_IPV4 : IDENTITY_WORLD_IPV6;
}

static __always_inline __u16 policy_port(const struct ct_key *t, __u8 icmp_type)
{
	/* ICMP rules name a type; it stands in the port field (network order, like ports). */
	if (t->protocol == IPPROTO_ICMP || t->protocol == IPPROTO_ICMPV6)
		return bpf_htons(icmp_type);
	return t->dport;
}

/* The lookup order of the design note: the peer's identity, then any identity (0); a deny
 * wins; otherwise the more specific match; no match drops. */
static __always_inline int decide(__u32 peer, __u8 direction, const struct ct_key *t, __u8 icmp_type)
{
	struct policy_key key = {
		.prefixlen = POLICY_FULL_PREFIX,
		.identity = peer,
		.direction = direction,
		.protocol = t->protocol,
		.port = policy_port(t, icmp_type),
	};
	struct policy_entry *exact = bpf_map_lookup_elem(&policy, &key), *any;

	if (exact && exact->deny) {
		__sync_fetch_and_add(&exact->packets, 1);
		return REASON_POLICY_DENY;
	}
	key.identity = 0;
	any = bpf_map_lookup_elem(&policy, &key);
	if (any && (any->deny || !exact || any->prefix_len > exact->prefix_len))
		exact = any;
	if (!exact)
		return REASON_POLICY_DENIED;
	__sync_fetch_and_add(&exact->packets, 1);
	return exact->deny ? REASON_POLICY_DENY : REASON_FORWARDED;
}

static __always_inline int policy_stage(struct __sk_buff *skb, __u8 direction)
{
	struct ct_key t;
	struct ct_entry entry = {};
	__u8 family = 0, icmp_type = 0, tcp_flags = 0;
	int reason = parse(skb, &t, &family, &icmp_type, &tcp_flags);
	__u32 peer;

	if (reason)
		return count(skb, direction, reason);
	if (family == 0)
		return count(skb, direction, REASON_UNSUPPORTED_L3);
	peer = identity_of(direction == DIR_EGRESS ? t.daddr : t.saddr, family);
	reason = decide(peer, direction, &t, icmp_type);
	if (reason != REASON_FORWARDED)
		return count(skb, direction, reason);
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
	return count(skb, direction, REASON_FORWARDED);
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
