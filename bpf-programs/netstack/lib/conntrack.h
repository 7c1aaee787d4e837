/* Connection tracking: the lookup that tells an established flow, a reply and a related ICMP
 * error from a new flow, and TCP's closing. */
#ifndef NETSTACK_LIB_CONNTRACK_H
#define NETSTACK_LIB_CONNTRACK_H

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
 * *closing tells whether it is a closing TCP connection, *report whether the packet is one a
 * flow event reports (the connection's first reply, or its FIN or RST). */
static __always_inline int conntrack_lookup(struct __sk_buff *skb, struct ct_key *t, __u8 direction, __u8 family,
					    __u8 icmp_type, __u8 tcp_flags, __u64 packets, int *closing, int *report)
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
		*report = t->protocol == IPPROTO_TCP && (tcp_flags & (TCP_FIN | TCP_RST));
		return CT_ESTABLISHED;
	}
	reverse(&rev, t);
	rev.direction = direction == DIR_EGRESS ? DIR_INGRESS : DIR_EGRESS;
	e = kind & TRACK_REPLY ? bpf_map_lookup_elem(&conntrack, &rev) : 0;
	if (e) {
		e->last_seen = bpf_jiffies64();
		*report = e->reply_packets == 0 || (t->protocol == IPPROTO_TCP && (tcp_flags & (TCP_FIN | TCP_RST)));
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

#endif
