/* Packets into conntrack tuples: addresses as IPv6 (IPv4 mapped), ports, ICMP identifiers. */
#ifndef NETSTACK_LIB_PARSE_H
#define NETSTACK_LIB_PARSE_H

static __always_inline void set_v4(__u8 *addr, __u32 v4)
{
	__builtin_memset(addr, 0, 10);
	addr[10] = 0xff;
	addr[11] = 0xff;
	__builtin_memcpy(addr + 12, &v4, 4);
}

static __always_inline __be32 v4_of(const __u8 *addr)
{
	__be32 v4;

	__builtin_memcpy(&v4, addr + 12, 4);
	return v4;
}

static __always_inline int has_ports(__u8 protocol)
{
	return protocol == IPPROTO_TCP || protocol == IPPROTO_UDP || protocol == IPPROTO_SCTP;
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

#endif
