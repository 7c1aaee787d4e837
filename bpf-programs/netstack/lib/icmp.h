/* ICMP and ICMPv6 as conntrack sees them: queries and their replies, errors, neighbour
 * discovery. */
#ifndef NETSTACK_LIB_ICMP_H
#define NETSTACK_LIB_ICMP_H

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

/* ICMPv6 neighbour discovery and router messages are link plumbing, not flows. */
static __always_inline int is_nd(__u8 proto, __u8 type)
{
	return proto == IPPROTO_ICMPV6 && type >= 133 && type <= 137;
}

#endif
