/* Policy: the peer's identity (from the tunnel or the ipcache), and the endpoint's policy map's
 * verdict. */
#ifndef NETSTACK_LIB_POLICY_H
#define NETSTACK_LIB_POLICY_H

static __always_inline __u32 world(__u8 family)
{
	return family == 4 ? IDENTITY_WORLD_IPV4 : IDENTITY_WORLD_IPV6;
}

/* The identity of the address a packet goes to, and where the tunnel takes it (0: nowhere). */
static __always_inline __u32 destination_identity(const __u8 *addr, __u8 family, struct egress_route *route)
{
	struct ipcache_value *v = ipcache_lookup(addr, family);

	if (!v)
		return world(family);
	route->tunnel_endpoint = v->tunnel_endpoint;
	route->encrypt = v->encrypt_key;
	return v->identity;
}

/* The identity of the peer a packet comes from: the one the tunnel carried (lib/overlay's
 * mark), else the ipcache's — unless the ipcache puts the address behind the tunnel, when a
 * packet that did not come through it only claims the address and is world. */
static __always_inline __u32 source_identity(struct __sk_buff *skb, const __u8 *addr, __u8 family)
{
	struct ipcache_value *v;

	if ((skb->mark & MARK_MAGIC_MASK) == MARK_MAGIC_IDENTITY)
		return skb->mark >> MARK_IDENTITY_SHIFT;
	v = ipcache_lookup(addr, family);
	if (!v || v->tunnel_endpoint)
		return world(family);
	return v->identity;
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
/* How the entry that decided matched: by identity or any, by port or not. */
static __always_inline __u8 match_of(const struct policy_entry *e, int by_identity)
{
	int by_port = e->prefix_len > POLICY_PREFIX_ANY_PROTOCOL;

	if (by_identity)
		return by_port ? POLICY_MATCH_L3_L4 : POLICY_MATCH_L3_ONLY;
	return by_port ? POLICY_MATCH_L4_ONLY : POLICY_MATCH_ALL;
}

/* The verdict for a new flow with `peer`; *match says how the deciding entry matched. */
static __always_inline int decide(__u32 peer, __u8 direction, const struct ct_key *t, __u8 icmp_type, __u8 *match)
{
	struct policy_key key = {
		.prefixlen = POLICY_FULL_PREFIX,
		.identity = peer,
		.direction = direction,
		.protocol = t->protocol,
		.port = policy_port(t, icmp_type),
	};
	struct policy_entry *exact = bpf_map_lookup_elem(&policy, &key), *any;

	int by_identity = 1;

	*match = POLICY_MATCH_NONE;
	if (exact && exact->deny) {
		__sync_fetch_and_add(&exact->packets, 1);
		*match = match_of(exact, 1);
		return REASON_POLICY_DENY;
	}
	key.identity = 0;
	any = bpf_map_lookup_elem(&policy, &key);
	if (any && (any->deny || !exact || any->prefix_len > exact->prefix_len)) {
		exact = any;
		by_identity = 0;
	}
	if (!exact)
		return REASON_POLICY_DENIED;
	__sync_fetch_and_add(&exact->packets, 1);
	*match = match_of(exact, by_identity);
	return exact->deny ? REASON_POLICY_DENY : REASON_FORWARDED;
}

#endif
