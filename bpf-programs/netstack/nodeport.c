// North-south load balancing (NodePort, ExternalIPs, LoadBalancer) at the node's external
// device, per packet, as Cilium's nodeport path does it. TCX ingress (from_external): a packet
// from outside to a frontend gets a backend (session affinity by client address, else the
// frontend's Maglev table at a hash of the client's address and port, so every node picks the
// same backend for the same client), kept by conntrack for the rest of its flow:
//   - a pod of this node: the destination is rewritten and the packet goes up the stack to the
//     pod; its reply's source is restored on the way out (to_external);
//   - another node's pod, SNAT: the source becomes this node's address and a port of its own,
//     the packet leaves for the backend at once; the reply comes back here and is translated
//     back to the client;
//   - another node's pod, DSR: the client's address stays, the frontend rides along in an IPv4
//     option; the backend's node records it (from_external there) and its reply leaves that
//     node with the frontend as source, straight to the client.
// TCX egress (to_external): replies of pods reached through a frontend get the frontend back as
// their source. loadBalancerSourceRanges and externalTrafficPolicy: Local (no backend here)
// drop with their own reasons.
#include "netstack_compat.h"
#include "abi.h"
#include "lib/proto.h"
#include "lib/ipcache.h"
#include "lib/counters.h"
#include "lib/tunnel.h"
#include "lib/clock.h"
#include "lib/lb.h"
#include "lib/lb_reply.h"

/* This node's external address and pod CIDR, network order; the VXLAN device in tunnel mode. */
TEMPLATE_CONST(__u32, NODE_IPV4, 0);
TEMPLATE_CONST(__u32, POD_CIDR_IPV4, 0);
TEMPLATE_CONST(__u32, POD_CIDR_MASK, 0);
TEMPLATE_CONST(__u32, TUNNEL_IFINDEX, 0);

ABI_EXPORT(enum, lb_ct_mode);
ABI_EXPORT(enum, lb_dsr);
ABI_EXPORT(enum, lb_nat_ports);
ABI_EXPORT(enum, lb_ct_timeouts);
ABI_EXPORT(enum, lb_affinity_kind);
ABI_EXPORT(enum, lb_maglev);
ABI_EXPORT(enum, drop_reason);
ABI_EXPORT(enum, direction);
ABI_EXPORT(enum, verdict_index);

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb4_ct_key);
	__type(value, struct lb4_ct_entry);
	__uint(max_entries, 262144);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb4_snat_key);
	__type(value, struct lb4_snat_entry);
	__uint(max_entries, 262144);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_snat SEC(".maps");

static __always_inline __u32 l4_csum_off(const struct packet *p)
{
	return p->l4_off + (p->protocol == IPPROTO_TCP ? 16 : 6);
}

static __always_inline __u64 l4_csum_flags(const struct packet *p)
{
	return p->protocol == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

/* The exact-match cache of established north-south flows (per CPU), in front of the service
 * and conntrack lookups, as the endpoint's is (lib/flow_cache.h): a packet whose tuple holds its
 * slot, confirmed by conntrack less than FLOW_REFRESH ago, is translated as the slot says after
 * one inlined array lookup. SYN, FIN and RST always go to conntrack, so new and closing
 * connections are never decided by the cache; a service change reaches cached flows within
 * FLOW_REFRESH. */
#define LB_FLOW_CACHE_SLOTS 1024

struct lb_flow_slot {
	__be32 client;
	__be32 frontend;
	__be16 client_port;
	__be16 frontend_port;
	__u8 protocol;
	__u8 mode; /* enum lb_ct_mode */
	__u8 valid;
	__u8 pad;
	__be32 backend;
	__be16 backend_port;
	__be16 nat_port;
	/* Where the translated packet goes through the tunnel (0: routed). */
	__be32 tunnel_endpoint;
	__u32 pad2;
	__u64 refreshed; /* jiffies */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_flow_slot);
	__uint(max_entries, LB_FLOW_CACHE_SLOTS);
} lb4_flow_cache SEC(".maps");

/* Cached flows are confirmed by conntrack every quarter second; a kernel without a readable
 * configuration (CONFIG_HZ 0) confirms every packet. */
extern unsigned int CONFIG_HZ __kconfig __weak;
#define FLOW_REFRESH (CONFIG_HZ / 4)

static __always_inline struct lb_flow_slot *flow_slot(const struct packet *p)
{
	__u32 h = p->saddr ^ p->daddr ^ ((__u32)p->sport << 16 | p->dport) ^ p->protocol;
	__u32 index;

	h ^= h >> 16;
	h *= 0x45d9f3b;
	h ^= h >> 16;
	index = h & (LB_FLOW_CACHE_SLOTS - 1);
	return bpf_map_lookup_elem(&lb4_flow_cache, &index);
}

/* The packet's cached translation, if its slot holds its flow, fresh. */
static __always_inline struct lb_flow_slot *cached_flow(const struct packet *p, __u64 jiffies)
{
	struct lb_flow_slot *slot;

	if (p->tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST))
		return NULL;
	slot = flow_slot(p);
	if (!slot || !slot->valid || slot->client != p->saddr || slot->frontend != p->daddr ||
	    slot->client_port != p->sport || slot->frontend_port != p->dport || slot->protocol != p->protocol)
		return NULL;
	if (jiffies - slot->refreshed > FLOW_REFRESH)
		return NULL;
	return slot;
}

/* RFC 1624's incremental update of a header checksum for a 32-bit word changed from `from` to
 * `to` (one's complement sums do not care about byte order, so the words go in as they lie). */
static __always_inline void ip_csum_replace4(__sum16 *check, __be32 from, __be32 to)
{
	__u32 sum = (__u16)~*check;

	sum += (__u16)~from + (__u16)~(from >> 16) + (__u16)to + (__u16)(to >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	*check = ~sum;
}

/* One's complement addition of 32-bit partial sums (the kernel's csum_add). */
static __always_inline __u32 csum_add(__u32 sum, __u32 addend)
{
	sum += addend;
	return sum + (sum < addend);
}

/* Rewrites the packet's source and destination (address, port) to the ones given. The L4
 * checksum goes through the kernel's helper, which knows whether the skb carries a full
 * checksum or only the pseudo header's (a veth's CHECKSUM_PARTIAL): once for the addresses
 * (pseudo header), once for the ports, each with all its changes summed; the rest is written in
 * place — helper calls are dear here. */
static __always_inline int rewrite(struct __sk_buff *skb, struct packet *p, __be32 saddr, __be16 sport, __be32 daddr,
				   __be16 dport)
{
	__u32 address_diff = csum_add(csum_add(~p->saddr, saddr), csum_add(~p->daddr, daddr));
	__u32 port_diff = csum_add(csum_add((__u16)~p->sport, sport), csum_add((__u16)~p->dport, dport));
	__u64 flags = l4_csum_flags(p);
	struct iphdr *ip;
	__be16 *ports;
	void *data, *end;

	if ((saddr != p->saddr || daddr != p->daddr) &&
	    bpf_l4_csum_replace(skb, l4_csum_off(p), 0, address_diff, BPF_F_PSEUDO_HDR | flags))
		return -1;
	if ((sport != p->sport || dport != p->dport) && bpf_l4_csum_replace(skb, l4_csum_off(p), 0, port_diff, flags))
		return -1;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	ip = data + IP_OFF;
	ports = data + (p->l4_off & 0xff);
	if ((void *)(ip + 1) > end || (void *)(ports + 2) > end)
		return -1;
	ip_csum_replace4(&ip->check, p->saddr, saddr);
	ip_csum_replace4(&ip->check, p->daddr, daddr);
	ip->saddr = saddr;
	ip->daddr = daddr;
	ports[0] = sport;
	ports[1] = dport;
	p->saddr = saddr;
	p->daddr = daddr;
	p->sport = sport;
	p->dport = dport;
	return 0;
}

static __always_inline int set_destination(struct __sk_buff *skb, struct packet *p, __be32 address, __be16 port)
{
	return rewrite(skb, p, p->saddr, p->sport, address, port);
}

static __always_inline int set_source(struct __sk_buff *skb, struct packet *p, __be32 address, __be16 port)
{
	return rewrite(skb, p, address, port, p->daddr, p->dport);
}

/* Inserts the DSR option (the frontend) after the 20-byte header of an option-less packet. */
static __always_inline int add_dsr_option(struct __sk_buff *skb, __be32 frontend, __be16 port)
{
	struct lb_dsr_option opt = {
		.type = LB_DSR_OPTION_TYPE, .length = LB_DSR_OPTION_LENGTH, .port = port, .address = frontend
	};
	__be32 old_word, new_word;
	__u8 *bytes = (__u8 *)&new_word;
	__s64 diff;

	if (bpf_skb_load_bytes(skb, IP_OFF, &old_word, sizeof(old_word)))
		return -1;
	new_word = old_word;
	bytes[0] += sizeof(opt) / 4; /* ihl */
	*(__be16 *)(bytes + 2) = bpf_htons(bpf_ntohs(*(__be16 *)(bytes + 2)) + sizeof(opt));
	if (bpf_skb_adjust_room(skb, sizeof(opt), BPF_ADJ_ROOM_NET, 0))
		return -1;
	if (bpf_skb_store_bytes(skb, IP_OFF + IP_BASE_LEN, &opt, sizeof(opt), 0) ||
	    bpf_skb_store_bytes(skb, IP_OFF, &new_word, sizeof(new_word), 0))
		return -1;
	diff = bpf_csum_diff(&old_word, sizeof(old_word), &new_word, sizeof(new_word), 0);
	diff = bpf_csum_diff(0, 0, (__be32 *)&opt, sizeof(opt), diff);
	if (diff < 0)
		return -1;
	return bpf_l3_csum_replace(skb, IP_CSUM_OFF, 0, diff, 0);
}

static __always_inline int is_local_pod(__be32 address)
{
	return POD_CIDR_MASK && (address & POD_CIDR_MASK) == POD_CIDR_IPV4;
}

/* Sends the packet on towards its destination: through the tunnel when the ipcache puts it
 * behind another node there (the VNI saying `identity`), else out of the device the routing
 * table says, neighbour resolved. */
static __always_inline int send_on(struct __sk_buff *skb, const struct packet *p, __be32 tunnel_endpoint,
				   __u32 identity)
{
	struct bpf_fib_lookup fib = {};
	long rc;

	if (tunnel_endpoint)
		return encapsulate(skb, DIR_INGRESS, tunnel_endpoint, identity, TUNNEL_IFINDEX);
	fib.family = AF_INET;
	fib.ifindex = skb->ifindex;
	fib.l4_protocol = p->protocol;
	fib.sport = p->sport;
	fib.dport = p->dport;
	fib.ipv4_src = p->saddr;
	fib.ipv4_dst = p->daddr;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (bpf_skb_store_bytes(skb, 0, fib.dmac, ETH_ALEN, 0) ||
		    bpf_skb_store_bytes(skb, ETH_ALEN, fib.smac, ETH_ALEN, 0))
			return count(skb, DIR_INGRESS, REASON_WRITE_ERROR);
		count(skb, DIR_INGRESS, REASON_FORWARDED);
		return bpf_redirect(fib.ifindex, 0);
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		count(skb, DIR_INGRESS, REASON_FORWARDED);
		return bpf_redirect_neigh(fib.ifindex, 0, 0, 0);
	}
	return count(skb, DIR_INGRESS, REASON_NO_FIB);
}

/* Where the tunnel takes a packet to `address`: its node's underlay address, or 0 (routed). */
static __always_inline __be32 tunnel_endpoint_of(__be32 address)
{
	struct ipcache_value *v;

	if (!TUNNEL_IFINDEX)
		return 0;
	v = ipcache_lookup_v4(address);
	return v ? v->tunnel_endpoint : 0;
}

/* A hash of the client's address and port: the same flow gets the same slot on every node. */
static __always_inline __u32 flow_hash(const struct packet *p)
{
	__u32 h = p->saddr ^ ((__u32)p->sport << 16) ^ p->protocol;

	h ^= h >> 16;
	h *= 0x7feb352d;
	h ^= h >> 15;
	h *= 0x846ca68b;
	h ^= h >> 16;
	return h;
}

static __always_inline __u64 lifetime(const struct lb4_ct_entry *e, __u8 protocol)
{
	if (e->closing)
		return LB_CT_CLOSING_LIFETIME;
	return protocol == IPPROTO_TCP ? LB_CT_TCP_LIFETIME : LB_CT_OTHER_LIFETIME;
}

/* A new flow's backend and how it is reached; 0, or a drop reason. */
static __always_inline int new_flow(struct lb4_key *key, struct lb4_service *master, const struct packet *p,
				    struct lb4_ct_entry *e, __u64 now)
{
	struct lb_affinity_key client = {
		.client = p->saddr, .kind = LB_AFFINITY_ADDRESS, .rev_nat_id = master->rev_nat_id
	};
	struct lb4_backend *backend = NULL;
	__u32 id = 0;

	if (master->count == 0 || master->count > LB_MAX_BACKENDS)
		return REASON_NO_SERVICE;
	if (master->flags & LB_FLAG_AFFINITY)
		backend = lb_affinity_held(&client, master, now, &id);
	if (!backend)
		backend = lb_maglev_backend(master, flow_hash(p), &id);
	if (!backend)
		backend = lb_backend_in_slot(key, master, flow_hash(p) % master->count + 1, &id);
	if (!backend)
		return REASON_NO_SERVICE;
	if (master->flags & LB_FLAG_AFFINITY)
		lb_affinity_hold(&client, id, now);
	e->backend = backend->address;
	e->backend_port = backend->port;
	e->backend_id = id;
	e->rev_nat_id = master->rev_nat_id;
	e->last_seen = now;
	if (is_local_pod(backend->address))
		e->mode = LB_CT_LOCAL;
	else if ((master->flags & LB_FLAG_DSR) && p->ihl == 5)
		e->mode = LB_CT_DSR;
	else
		e->mode = LB_CT_SNAT;
	return 0;
}

/* Takes a port of this node for a SNAT flow to e's backend; 0, or a drop reason. */
static __always_inline int take_nat_port(const struct packet *p, struct lb4_ct_entry *e, __u64 now)
{
	struct lb4_snat_key key = { .backend = e->backend, .backend_port = e->backend_port, .protocol = p->protocol };
	struct lb4_snat_entry back = {
		.client = p->saddr, .frontend = p->daddr, .client_port = p->sport, .frontend_port = p->dport,
		.last_seen = now
	};

	for (int i = 0; i < LB_NAT_PORT_TRIES; i++) {
		__u16 port = LB_NAT_PORT_MIN + bpf_get_prandom_u32() % (LB_NAT_PORT_MAX - LB_NAT_PORT_MIN + 1);

		key.nat_port = bpf_htons(port);
		if (bpf_map_update_elem(&lb4_snat, &key, &back, BPF_NOEXIST) == 0) {
			e->nat_port = key.nat_port;
			return 0;
		}
	}
	return REASON_NAT_NO_MAPPING;
}

/* A reply of a SNAT flow (to this node's address and one of its NAT ports): back to the client. */
static __always_inline int snat_reply(struct __sk_buff *skb, struct packet *p)
{
	struct lb4_snat_key key = {
		.backend = p->saddr, .backend_port = p->sport, .nat_port = p->dport, .protocol = p->protocol
	};
	struct lb4_snat_entry *back = bpf_map_lookup_elem(&lb4_snat, &key);
	__u64 now;

	if (!back)
		return -1;
	now = lb_now();
	if (back->last_seen != now)
		back->last_seen = now;
	if (rewrite(skb, p, back->frontend, back->frontend_port, back->client, back->client_port))
		return count(skb, DIR_INGRESS, REASON_WRITE_ERROR);
	return send_on(skb, p, 0, IDENTITY_WORLD_IPV4);
}

/* The frontend's master entry for traffic from outside: only NodePort, ExternalIP and
 * LoadBalancer frontends are served (a ClusterIP is not reachable from outside). */
static __always_inline struct lb4_service *external_frontend(struct lb4_key *key)
{
	struct lb4_service *master = lb_master(key, LB_SCOPE_EXTERNAL);

	if (!master || !(master->flags & (LB_FLAG_NODE_PORT | LB_FLAG_EXTERNAL_IP | LB_FLAG_LOAD_BALANCER)))
		return NULL;
	return master;
}

static __always_inline int source_allowed(const struct lb4_service *master, __be32 client)
{
	struct lb4_source_range_key key = {
		.prefixlen = 32 + 32, .rev_nat_id = master->rev_nat_id, .address = client
	};

	if (!(master->flags & LB_FLAG_SOURCE_RANGES) || !(master->flags & LB_FLAG_LOAD_BALANCER))
		return 1;
	return bpf_map_lookup_elem(&lb4_source_ranges, &key) != NULL;
}

/* Translates the packet of a flow whose way is `slot` (the flow cache's, or one filled from
 * conntrack) and sends it on. */
static __always_inline int forward(struct __sk_buff *skb, struct packet *p, const struct lb_flow_slot *way)
{
	__be32 frontend = p->daddr;
	__be16 frontend_port = p->dport;

	switch (way->mode) {
	case LB_CT_LOCAL:
		if (set_destination(skb, p, way->backend, way->backend_port))
			return count(skb, DIR_INGRESS, REASON_WRITE_ERROR);
		return count(skb, DIR_INGRESS, REASON_FORWARDED);
	case LB_CT_DSR:
		if (set_destination(skb, p, way->backend, way->backend_port) ||
		    add_dsr_option(skb, frontend, frontend_port))
			return count(skb, DIR_INGRESS, REASON_WRITE_ERROR);
		/* The client's own packet: world to the backend's policy. */
		return send_on(skb, p, way->tunnel_endpoint, IDENTITY_WORLD_IPV4);
	default:
		if (rewrite(skb, p, NODE_IPV4, way->nat_port, way->backend, way->backend_port))
			return count(skb, DIR_INGRESS, REASON_WRITE_ERROR);
		/* From this node now: remote-node, as the native underlay address says too. */
		return send_on(skb, p, way->tunnel_endpoint, IDENTITY_REMOTE_NODE);
	}
}

/* A packet to a frontend, past the flow cache: its flow's conntrack entry (made for a new flow,
 * then *created is set), copied into *way; 0, or a drop reason; -1 for a packet to no frontend. */
static __always_inline int track(struct packet *p, struct lb_flow_slot *way, int *created)
{
	struct lb4_key key = { .address = p->daddr, .port = p->dport, .protocol = p->protocol };
	struct lb4_ct_key ct_key = {
		.client = p->saddr, .frontend = p->daddr, .client_port = p->sport, .frontend_port = p->dport,
		.protocol = p->protocol
	};
	struct lb4_ct_entry *held, fresh = {};
	struct lb4_service *master = external_frontend(&key);
	__u64 now;
	int reason;

	if (!master)
		return -1;
	if (!source_allowed(master, p->saddr))
		return REASON_NOT_IN_SRC_RANGE;
	now = lb_now();
	held = bpf_map_lookup_elem(&lb4_ct, &ct_key);
	/* A new SYN on a closing flow's tuple is a new connection. */
	if (held && (now - held->last_seen > lifetime(held, p->protocol) ||
		     (held->closing && (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)))
		held = NULL;
	if (!held) {
		reason = new_flow(&key, master, p, &fresh, now);
		if (!reason && fresh.mode == LB_CT_SNAT)
			reason = take_nat_port(p, &fresh, now);
		if (reason)
			return reason;
		if (bpf_map_update_elem(&lb4_ct, &ct_key, &fresh, BPF_ANY))
			return REASON_CT_CREATE_FAILED;
		held = bpf_map_lookup_elem(&lb4_ct, &ct_key);
		if (!held)
			return REASON_CT_CREATE_FAILED;
		*created = 1;
	}
	if (held->last_seen != now)
		held->last_seen = now;
	if (p->tcp_flags & (TCP_FIN | TCP_RST))
		held->closing = 1;
	if (held->mode == LB_CT_LOCAL)
		expect_reply(p, held->backend, held->backend_port, p->daddr, p->dport, now);
	way->client = p->saddr;
	way->frontend = p->daddr;
	way->client_port = p->sport;
	way->frontend_port = p->dport;
	way->protocol = p->protocol;
	way->mode = held->mode;
	way->backend = held->backend;
	way->backend_port = held->backend_port;
	way->nat_port = held->nat_port;
	way->tunnel_endpoint = held->mode == LB_CT_LOCAL ? 0 : tunnel_endpoint_of(held->backend);
	return 0;
}

/* A connection from outside to a frontend, as it arrived (before any translation): traced when it
 * starts and at its end (FIN/RST), or every packet with aggregation off. */
static __always_inline void trace_from_network(struct __sk_buff *skb, const struct packet *p, int created)
{
	struct event_facts trace = { .kind = EVENT_TRACE, .subtype = TRACE_FROM_NETWORK, .direction = DIR_INGRESS };

	if (created || (p->tcp_flags & (TCP_FIN | TCP_RST)) || every_packet_reported())
		emit(skb, &trace);
}

SEC("tc")
int from_external(struct __sk_buff *skb)
{
	struct lb_flow_slot *cached, way = {};
	struct packet p;
	__u64 jiffies;
	int reason, created = 0;

	if (!read_packet(skb, &p))
		return TC_ACT_OK;
	/* A DSR flow another node forwarded to a pod of ours: remember the frontend for the reply. */
	if (p.has_dsr) {
		if (!is_local_pod(p.daddr))
			return TC_ACT_OK;
		expect_reply(&p, p.daddr, p.dport, p.dsr.address, p.dsr.port, lb_now());
		if (strip_dsr_option(skb))
			return count(skb, DIR_INGRESS, REASON_WRITE_ERROR);
		return count(skb, DIR_INGRESS, REASON_FORWARDED);
	}
	jiffies = bpf_jiffies64();
	cached = cached_flow(&p, jiffies);
	if (cached) {
		way = *cached;
		if (every_packet_reported())
			trace_from_network(skb, &p, 0);
		return forward(skb, &p, &way);
	}
	/* Replies of SNAT flows come to this node's NAT ports, above every node port. */
	if (p.daddr == NODE_IPV4 && bpf_ntohs(p.dport) >= LB_NAT_PORT_MIN) {
		reason = snat_reply(skb, &p);
		if (reason >= 0)
			return reason;
	}
	reason = track(&p, &way, &created);
	if (reason < 0)
		return TC_ACT_OK;
	if (reason)
		return count(skb, DIR_INGRESS, reason);
	trace_from_network(skb, &p, created);
	/* Closing connections are not cached: their next packets see conntrack. */
	if (!(p.tcp_flags & (TCP_FIN | TCP_RST))) {
		cached = flow_slot(&p);
		if (cached) {
			way.valid = 1;
			way.refreshed = jiffies;
			*cached = way;
		}
	}
	return forward(skb, &p, &way);
}

SEC("tc")
int to_external(struct __sk_buff *skb)
{
	struct packet p;
	struct lb4_reply_key key = {};
	struct lb4_reply_entry *reply;

	if (!read_packet(skb, &p))
		return TC_ACT_OK;
	key.backend = p.saddr;
	key.client = p.daddr;
	key.backend_port = p.sport;
	key.client_port = p.dport;
	key.protocol = p.protocol;
	reply = bpf_map_lookup_elem(&lb4_reply, &key);
	if (!reply)
		return TC_ACT_OK;
	if (set_source(skb, &p, reply->frontend, reply->frontend_port))
		return count(skb, DIR_EGRESS, REASON_WRITE_ERROR);
	return count(skb, DIR_EGRESS, REASON_FORWARDED);
}

NETSTACK_LICENSE;
