/* The per-CPU exact-match cache of established IPv4 flows in front of conntrack. */
#ifndef NETSTACK_LIB_FLOW_CACHE_H
#define NETSTACK_LIB_FLOW_CACHE_H

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
 * passes: its slot is returned (NULL: no pass). The source check is implied: from_container
 * fills slots only after it. */
static __always_inline struct flow_slot *flow_cache_pass(struct __sk_buff *skb, __u8 direction)
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
	/* With aggregation off every packet is reported: conntrack_pass does that. */
	if (every_packet_reported())
		return 0;
	slot->pending++;
	return slot;
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
 * the slot passed for it (or flushing another flow's first), and `route`, where its packets
 * go (through the tunnel, through WireGuard). */
static __always_inline int conntrack_pass(struct __sk_buff *skb, struct ct_key *t, __u8 direction, __u8 family,
					  __u8 icmp_type, __u8 tcp_flags, const struct egress_route *route)
{
	struct flow_slot *slot = 0;
	__u64 packets = 1;
	int state, closing = 0, report = 0;

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
	state = conntrack_lookup(skb, t, direction, family, icmp_type, tcp_flags, packets, &closing, &report);
	if (state == CT_NEW)
		return 0;
	if (report || every_packet_reported()) {
		struct event_facts trace = {
			.kind = EVENT_TRACE,
			.subtype = direction == DIR_INGRESS ? TRACE_TO_ENDPOINT : TRACE_FROM_ENDPOINT,
			.direction = direction,
			.flags = state == CT_REPLY ? EVENT_FLAG_REPLY : 0,
		};
		emit(skb, &trace);
	}
	if (slot && !closing) {
		slot->saddr = v4_of(t->saddr);
		slot->daddr = v4_of(t->daddr);
		slot->sport = t->sport;
		slot->dport = t->dport;
		slot->protocol = t->protocol;
		slot->direction = direction;
		slot->reply = state == CT_REPLY;
		slot->epoch = conntrack_epoch();
		slot->tunnel_endpoint = route->tunnel_endpoint;
		slot->encrypt = route->encrypt;
		slot->refreshed = bpf_jiffies64();
		slot->valid = 1;
	}
	return 1;
}

#endif
